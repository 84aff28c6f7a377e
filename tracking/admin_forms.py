"""Admin editing aids for a site: the Raptor parameter mapping as a table of rows
("p2 means product_id") instead of raw JSON."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join

from tracking import auto_events
from tracking.forms import clean_origins, clean_time_zone
from tracking.ingest import raptor
from tracking.ingest.schema import MessageError
from tracking.models import Site

BLANK_ROWS = 4

Rows = list[tuple[str, str]]


class RaptorMappingWidget(forms.Widget):
    """One row per parameter: ``<name>-param`` (p1…p999) and ``<name>-field`` (what it
    means, with common names offered). A plain ``<name>`` value (JSON, as scripts and
    older forms post) is accepted too."""

    def value_from_datadict(self, data, files, name) -> Rows | str | None:
        if name in data:
            return data.get(name)
        params, fields = data.getlist(f"{name}-param"), data.getlist(f"{name}-field")
        if not params and not fields:
            return None
        return [(param.strip(), field.strip()) for param, field in zip(params, fields, strict=False)]

    def value_omitted_from_data(self, data, files, name) -> bool:
        return name not in data and f"{name}-param" not in data

    def render(self, name, value, attrs=None, renderer=None) -> str:
        rows = _rows(value)
        if not rows:
            rows = list(raptor.DEFAULT_MAPPING.items())
        rows += [("", "")] * BLANK_ROWS
        list_id = f"{name}-targets"
        body = format_html_join(
            "",
            '<tr><td><input type="text" name="{}-param" value="{}" placeholder="p2" size="6" '
            'aria-label="Raptor parameter" pattern="[pP][1-9][0-9]{{0,2}}"></td>'
            '<td><input type="text" name="{}-field" value="{}" placeholder="product_id" size="24" '
            'list="{}" aria-label="What it means"></td></tr>',
            ((name, param, name, target, list_id) for param, target in rows),
        )
        options = format_html_join("", '<option value="{}">', ((t,) for t in raptor.SUGGESTED_TARGETS))
        return format_html(
            '<table class="raptor-mapping" id="{}"><thead><tr><th>Parameter</th><th>Means</th></tr></thead>'
            "<tbody>{}</tbody></table><datalist id=\"{}\">{}</datalist>",
            (attrs or {}).get("id", f"id_{name}"),
            body,
            list_id,
            options,
        )


class RaptorMappingField(forms.Field):
    widget = RaptorMappingWidget
    default_help_text = (
        "What each Raptor parameter p1…p999 means for this site. event_type (the event's name) "
        "is required; user_id is the site's user id (Raptor's P7); any other name becomes an "
        "event property. Parameters without a row are kept as properties named pN. Clear a row "
        "to drop it; with no rows the site uses p1 = event_type, p7 = user_id."
    )

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", self.default_help_text)
        super().__init__(**kwargs)

    def to_python(self, value: Rows | str | dict | None) -> dict[str, str]:
        if value in (None, "", []):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise forms.ValidationError('Enter JSON such as {"p1": "event_type"}.') from None
        if isinstance(value, list):
            value = _pairs_to_mapping(value)
        try:
            return raptor.clean_mapping(value)
        except MessageError as exc:
            raise forms.ValidationError(f"{exc.field}: {exc.reason}") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return raptor.clean_mapping(initial or {}) != self.to_python(data)
        except (forms.ValidationError, MessageError):
            return True


def _pairs_to_mapping(pairs: Rows) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for param, target in pairs:
        if not param and not target:
            continue
        if not param:
            raise forms.ValidationError(f"Name the parameter (p1…p999) that means {target}.")
        if not target:
            raise forms.ValidationError(f"{param}: say what it means, e.g. product_id.")
        key = param.lower()
        if key in mapping:
            raise forms.ValidationError(f"{key}: is mapped twice.")
        mapping[key] = target
    return mapping


def _rows(value: Any) -> Rows:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return []
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [(str(p), str(t)) for p, t in value if p or t]
    return []


class SiteAdminForm(forms.ModelForm):
    raptor_mapping = RaptorMappingField(label="Raptor parameter mapping")

    class Meta:
        model = Site
        fields = ["raptor_mapping"]

    def clean_time_zone(self) -> str:
        # The admin's fieldsets add time_zone to this form; the settings page checks it too.
        return clean_time_zone(self.cleaned_data["time_zone"])

    def clean_allowed_origins(self) -> list[str]:
        # Also in the admin's fieldsets: the same origins the settings page accepts.
        return clean_origins(self.cleaned_data["allowed_origins"])

    def clean_auto_event_rules(self) -> list[dict[str, str]]:
        # Raw JSON here: the rules the Settings page's editor would accept, or the reason.
        try:
            return auto_events.check_rules(self.cleaned_data["auto_event_rules"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
