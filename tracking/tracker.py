"""The JS tracker as Footprint serves it: its versioned URL and the site config it loads.

``make install`` minifies ``static/footprint.js`` into ``build/static/`` and records the
current version in ``build/tracker.json`` (tracking/build_tracker.mjs). The snippet points
at ``/static/tracker/<version>/footprint.js``, which whitenoise serves as immutable
(cached for a year); a page still carrying an older version's URL is redirected to the
current one (``tracking.views.tracker_version``). Without a build (a checkout where
``make install`` has not run) the unminified source is served as ``footprint.js?v=<hash>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from tracking.models import Site

SOURCE = Path(settings.BASE_DIR) / "static" / "footprint.js"


@dataclass(frozen=True, slots=True)
class Script:
    version: str
    path: str  # relative to STATIC_URL, query string included
    built: bool


_cache: dict[tuple[Path, float], Script] = {}


def current_script() -> Script:
    """The tracker version to serve: the build's when there is one, else the source's."""
    manifest = Path(settings.TRACKER_BUILD_DIR) / "tracker.json"
    origin = manifest if manifest.exists() else SOURCE
    key = (origin, origin.stat().st_mtime)
    script = _cache.get(key)
    if script is None:
        if origin is manifest:
            data = json.loads(manifest.read_text())
            script = Script(version=data["version"], path=data["path"], built=True)
        else:
            version = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
            script = Script(version=version, path=f"footprint.js?v={version}", built=False)
        _cache.clear()
        _cache[key] = script
    return script


def script_url(base_url: str = "") -> str:
    """The versioned URL of the tracker, absolute when ``base_url`` is given."""
    static_url = settings.STATIC_URL
    if static_url.startswith(("http://", "https://", "//")):
        base_url = ""  # static files live on their own host (a CDN)
    return base_url.rstrip("/") + static_url + current_script().path


def tracker_config(site: Site) -> dict[str, Any]:
    """What the tracker fetches at start (GET /v1/tracker-config/<write key>) and caches."""
    rules = site.auto_event_rules if isinstance(site.auto_event_rules, list) else []
    return {
        "sessionTimeout": site.session_timeout_minutes * 60,
        "respectDoNotTrack": site.respect_do_not_track,
        "pageRules": [
            {"match": r["match"], "event": r["event"]} for r in rules if _usable(r, "page")
        ],
        "clickRules": [
            {"match": r["match"], "event": r["event"]} for r in rules if _usable(r, "click")
        ],
    }


def _usable(rule: Any, kind: str) -> bool:
    return (
        isinstance(rule, dict)
        and rule.get("kind") == kind
        and isinstance(rule.get("match"), str)
        and isinstance(rule.get("event"), str)
        and bool(rule["match"] and rule["event"])
    )
