from __future__ import annotations

import zoneinfo

from django import forms

from tracking.models import Site


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
            "allowed_origins",
        ]
        labels = {
            "session_timeout_minutes": "Session timeout (minutes)",
            "anonymous_retention_days": "Anonymous history retention (days)",
            "cart_abandon_minutes": "Cart abandonment timeout (minutes)",
            "only_signed_data": "Only accept signed identities",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and isinstance(self.instance.allowed_origins, list):
            self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins)

    def clean_time_zone(self) -> str:
        value = self.cleaned_data["time_zone"].strip()
        if value not in zoneinfo.available_timezones():
            raise forms.ValidationError(f"Unknown time zone {value!r}; use an IANA name like Europe/Berlin.")
        return value

    def clean_allowed_origins(self) -> list[str]:
        origins = []
        for line in self.cleaned_data["allowed_origins"].splitlines():
            origin = line.strip().rstrip("/")
            if not origin:
                continue
            if not origin.startswith(("http://", "https://")):
                raise forms.ValidationError(f"{origin!r} is not an origin (http:// or https://…).")
            origins.append(origin)
        return origins
