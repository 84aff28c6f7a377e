from __future__ import annotations

import zoneinfo
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from tracking import auto_events
from tracking.models import Site


def clean_time_zone(value: str) -> str:
    """A site's time zone as its forms take it: an IANA name zoneinfo knows (the people
    pages render every date in it, and an unknown name fails each of them)."""
    value = value.strip()
    if value not in zoneinfo.available_timezones():
        raise forms.ValidationError(f"Unknown time zone {value!r}; use an IANA name like Europe/Berlin.")
    return value


def clean_origin(value: str) -> str:
    """An allowed origin as browsers send it in ``Origin`` (tracking.http compares the two
    as they are): scheme and host in lower case, the host in punycode, no default port.
    Anything else (a path, a wildcard, two origins on a line) would never match, and the
    site's pages would be refused every event."""
    shown = value.strip()
    origin = shown.rstrip("/")
    hint = "write it as scheme and host only, e.g. https://shop.example"
    if any(ch.isspace() or ch in ",;" for ch in origin):
        raise forms.ValidationError(f"{shown!r} is not one origin: put each origin on a line of its own.")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        raise forms.ValidationError(f"{shown!r} is not an origin: {hint}.") from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        raise forms.ValidationError(f"{shown!r} is not an origin (http:// or https://…): {hint}.")
    if parts.path or parts.query or parts.fragment or "?" in origin or "#" in origin:
        raise forms.ValidationError(f"{shown!r} has a path or query; browsers send only the origin: {hint}.")
    if parts.username is not None or "*" in host:
        raise forms.ValidationError(f"{shown!r} cannot match a browser's origin: {hint} (one line per origin, no wildcards).")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise forms.ValidationError(f"{shown!r} has a host name that is not valid: {hint}.") from None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def clean_origins(values: Any) -> list[str]:
    """A site's allowed origins: each cleaned (``clean_origin``), repeats dropped; ``*``
    (any origin, as no origins at all) is kept."""
    if values in (None, ""):
        return []
    if not isinstance(values, list):
        raise forms.ValidationError('Enter a list of origins, e.g. ["https://shop.example"].')
    origins: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise forms.ValidationError(f"{value!r} is not an origin: enter text such as https://shop.example.")
        if value.strip():
            origin = "*" if value.strip() == "*" else clean_origin(value)
            if origin not in origins:
                origins.append(origin)
    return origins


class SiteSettingsForm(forms.ModelForm):
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One origin per line, e.g. https://shop.example. Empty allows any origin.",
    )

    class Meta:
        model = Site
        fields = [
            "name",
            "time_zone",
            "session_timeout_minutes",
            "anonymous_retention_days",
            "cart_abandon_minutes",
            "only_signed_data",
            "respect_do_not_track",
            "allowed_origins",
        ]
        labels = {
            "session_timeout_minutes": "Session timeout (minutes)",
            "anonymous_retention_days": "Anonymous history retention (days)",
            "cart_abandon_minutes": "Cart abandonment timeout (minutes)",
            "only_signed_data": "Only accept signed identities",
            "respect_do_not_track": "Respect browsers' Do Not Track",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if isinstance(field, forms.IntegerField):
                # The model's bounds (a positive field's form field says 0), in the input's
                # min and max and in the error.
                limits = [v for v in Site._meta.get_field(name).validators if isinstance(v, (MinValueValidator, MaxValueValidator))]
                field.validators = [v for v in field.validators if not isinstance(v, MinValueValidator)] + limits
                for validator in limits:
                    field.widget.attrs["min" if isinstance(validator, MinValueValidator) else "max"] = validator.limit_value
        if self.instance and isinstance(self.instance.allowed_origins, list):
            self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins)

    def clean_time_zone(self) -> str:
        return clean_time_zone(self.cleaned_data["time_zone"])

    def clean_allowed_origins(self) -> list[str]:
        return clean_origins(self.cleaned_data["allowed_origins"].splitlines())


class AutoEventRuleForm(forms.Form):
    """One row of the auto-event rules editor (see tracking.auto_events)."""

    kind = forms.ChoiceField(
        choices=list(auto_events.KINDS.items()),
        initial="page",
        label="When",
        widget=forms.Select(attrs={"aria-label": "When"}),
    )
    match = forms.CharField(
        max_length=auto_events.MAX_MATCH_LENGTH,
        label="URL pattern or CSS selector",
        widget=forms.TextInput(
            attrs={"placeholder": "/pricing*", "spellcheck": "false", "aria-label": "URL pattern or CSS selector"}
        ),
    )
    event = forms.CharField(
        max_length=auto_events.MAX_EVENT_LENGTH,
        label="Record event",
        widget=forms.TextInput(attrs={"placeholder": "Pricing Viewed", "aria-label": "Record event"}),
    )

    def clean_event(self) -> str:
        try:
            return auto_events.check_event_name(self.cleaned_data["event"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind, match = cleaned.get("kind"), cleaned.get("match")
        if kind and match is not None:
            check = auto_events.check_url_pattern if kind == "page" else auto_events.check_selector
            try:
                cleaned["match"] = check(match)
            except ValueError as exc:
                self.add_error("match", str(exc))
        return cleaned


class BaseAutoEventRuleFormSet(forms.BaseFormSet):
    def rules(self) -> list[dict[str, str]]:
        """The kept rows, in order, as stored in ``Site.auto_event_rules``."""
        return [
            {"kind": form.cleaned_data["kind"], "match": form.cleaned_data["match"], "event": form.cleaned_data["event"]}
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]


AutoEventRuleFormSet = forms.formset_factory(
    AutoEventRuleForm,
    formset=BaseAutoEventRuleFormSet,
    extra=0,
    can_delete=True,
    max_num=100,
    validate_max=True,
    absolute_max=100,
)


def auto_event_rules_formset(site: Site, data=None) -> BaseAutoEventRuleFormSet:
    """The rules editor for ``site``; a POST without the editor leaves the rules as they are
    (the formset stays unbound)."""
    if data is not None and "rules-TOTAL_FORMS" not in data:
        data = None
    rules = site.auto_event_rules if isinstance(site.auto_event_rules, list) else []
    initial = [
        {"kind": r.get("kind"), "match": r.get("match", ""), "event": r.get("event", "")}
        for r in rules
        if isinstance(r, dict) and r.get("kind") in auto_events.KINDS
    ]
    return AutoEventRuleFormSet(data, initial=initial, prefix="rules")
