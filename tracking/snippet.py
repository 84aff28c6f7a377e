"""The tracker snippets a site pastes into its pages (shown in the admin and Settings)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.template.loader import render_to_string

from tracking import tracker
from tracking.models import Site


@dataclass(frozen=True, slots=True)
class DropIns:
    """What a site leaving Carma or Tracktor changes in its pages: only URL and token."""

    carma_tag: str
    carma_src: str  # Carma's own script path on Footprint's host
    tracktor_url_prefix: str
    write_key: str


def _context(site: Site, base_url: str | None) -> dict:
    base = (base_url or settings.SITE_URL).rstrip("/")
    write_key = site.primary_write_key()
    return {
        "base_url": base,
        "script_url": tracker.script_url(base),
        "write_key": write_key.key if write_key else "NO-ACTIVE-WRITE-KEY",
        "site": site,
    }


def tracker_snippet(site: Site, *, base_url: str | None = None) -> str:
    return render_to_string("tracking/snippet.html", _context(site, base_url)).strip()


def drop_ins(site: Site, *, base_url: str | None = None) -> DropIns:
    context = _context(site, base_url)
    return DropIns(
        carma_tag=render_to_string("tracking/snippet_carma.html", context).strip(),
        carma_src=f"{context['base_url']}/carma-scripts/tracking.min.js",
        # Tracktor's own path on Footprint's host: the snippet's host is all that changes.
        tracktor_url_prefix=f"{context['base_url']}/scripts/",
        write_key=context["write_key"],
    )
