"""Display helpers for people pages: JSON values, one-line event summaries, merged URLs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import template

register = template.Library()

# Properties worth a glance in a one-line summary, in order of preference.
_SUMMARY_KEYS = ("name", "title", "product", "product_id", "category", "query", "total", "revenue", "value")


@register.filter
def json_value(value: Any) -> str:
    """A property value as people read it: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@register.filter
def entries(value: Any) -> list[tuple[Any, Any]]:
    """A JSON object's (key, value) pairs. ``{% for k, v in obj.items %}`` reads a key
    named "items" first, when the data has one (any sender can name a trait so)."""
    return list(value.items()) if isinstance(value, dict) else []


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def event_url(event) -> str:
    """The page an event happened on, when the tracker said."""
    context = event.context or {}
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    props = event.properties or {}
    for value in (page.get("url"), context.get("url"), props.get("url"), page.get("path"), props.get("path")):
        if isinstance(value, str) and value:
            return value
    return ""


@register.filter
def event_summary(event, limit: int = 3) -> str:
    """A few properties of an event on one line: ``product=Shoe · price=20``."""
    props = event.properties or {}
    if not isinstance(props, dict):
        return ""
    keys = [k for k in _SUMMARY_KEYS if k in props] + sorted(
        k for k in props if k not in _SUMMARY_KEYS and k not in ("url", "path")
    )
    parts = []
    for key in keys[:limit]:
        text = json_value(props[key])
        parts.append(f"{key}={text[:60]}{'…' if len(text) > 60 else ''}")
    more = len(keys) - limit
    if more > 0:
        parts.append(f"+{more}")
    return " · ".join(parts)


@register.filter
def identity_keys(profile, limit: int = 3) -> list:
    """The first identities of a profile (prefetched), for lists."""
    return list(profile.identities.all())[:limit]


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (None drops one)."""
    request = context["request"]
    params = request.GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    return "?" + urlencode(sorted(params.items())) if params else "?"
