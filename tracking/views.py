"""Public endpoints of the tracking app (wire formats are added beside these)."""

from __future__ import annotations

from django.db import connection
from django.http import HttpResponsePermanentRedirect, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.http import require_safe

from config.celery import app as celery_app
from tracking import services, tracker
from tracking.models import Heartbeat


def _database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "down" to a load balancer
        return {"ok": False, "error": exc.__class__.__name__}


def _broker_status() -> dict:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            transport = conn.transport_cls
        return {"ok": True, "transport": str(transport)}
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}


def _worker_status() -> dict:
    beat = Heartbeat.objects.filter(name="worker").first()
    if beat is None:
        return {"ok": False, "last_seen": None}
    age = (timezone.now() - beat.at).total_seconds()
    return {"ok": age < 180, "last_seen": beat.at.isoformat(), "seconds_ago": round(age)}


@require_safe
def favicon(request):
    # Asked for by browsers on pages with no icon link of their own (the admin, the API
    # docs); resolved per request, as a manifest storage knows the file's name only then.
    return HttpResponsePermanentRedirect(static("app/favicon.svg"))


@require_safe
def healthz(request):
    """200 when the database answers, 503 when it does not; broker and worker as info."""
    database = _database_status()
    body = {"database": database, "broker": _broker_status()}
    if database["ok"]:
        body["worker"] = _worker_status()
    body["status"] = "ok" if database["ok"] else "unavailable"
    return JsonResponse(body, status=200 if database["ok"] else 503)


@require_safe
def tracker_config(request, write_key: str):
    """GET /v1/tracker-config/<write key>: what the JS tracker needs at start (session
    timeout, do-not-track, auto-event rules). Public: write keys sit in every page."""
    site = services.site_for_write_key(write_key)
    if site is None:
        response = JsonResponse({"code": "not_found", "message": "Unknown write key"}, status=404)
    else:
        response = JsonResponse(tracker.tracker_config(site))
        response["Cache-Control"] = "public, max-age=60"
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_safe
def tracker_script(request, write_key: str = ""):
    """GET /tracker/<write key>.js: the tracker, for snippets that put the key in the
    script URL (Tracktor's; also under its own path, /scripts/<key>.js). The tracker reads
    the key back from its own src, or from the tag (Carma's data-token)."""
    return _short_lived_redirect(tracker.script_url())


@require_safe
def tracker_version(request, version: str):
    """An older tracker version's URL (whitenoise serves the current one itself)."""
    current = tracker.current_script()
    if version == current.version:
        return JsonResponse({"code": "not_found", "message": "The tracker is not built"}, status=404)
    return _short_lived_redirect(tracker.script_url())


def _short_lived_redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "public, max-age=300"
    return response
