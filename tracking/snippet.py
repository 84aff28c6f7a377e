"""The tracker snippet a site pastes into its pages (shown in the admin and Settings)."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string

from tracking.models import Site


def tracker_snippet(site: Site, *, base_url: str | None = None) -> str:
    write_key = site.primary_write_key()
    return render_to_string(
        "tracking/snippet.html",
        {
            "base_url": (base_url or settings.SITE_URL).rstrip("/"),
            "write_key": write_key.key if write_key else "NO-ACTIVE-WRITE-KEY",
            "site": site,
        },
    ).strip()
