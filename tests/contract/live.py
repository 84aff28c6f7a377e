"""Real HTTP against pytest-django's live server, for the wire-format contract tests:
send what a vendor's client sends, then read the result back through the management API
(``Authorization: Bearer <secret key>``), as a site's back office would."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from profiles.models import Identity, Profile, ProfileMerge
from tracking.models import Event, MessageDedupe, Session


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class Live:
    base_url: str
    secret_key: str
    default_headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        """``url`` is a path (with its query string, sent exactly as written) or a full URL."""
        if url.startswith("/"):
            url = self.base_url + url
        request = urllib.request.Request(
            url, data=body, method=method, headers={**self.default_headers, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, _lower(error.headers), error.read())

    def get(self, url: str, **headers: str) -> Reply:
        return self.request("GET", url, headers=headers)

    def post_json(self, url: str, payload: Any, **headers: str) -> Reply:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", url, body=raw, headers={"Content-Type": "application/json", **headers})

    # --- the management API --------------------------------------------------------

    def api(self, path: str) -> Reply:
        return self.get("/api/v1/" + path, Authorization=f"Bearer {self.secret_key}")

    def person(self, profile_id: int | str) -> dict[str, Any]:
        reply = self.api(f"people/{profile_id}")
        assert reply.status == 200, reply.text
        return reply.json()

    def person_by(self, key: str, kind: str | None = None) -> dict[str, Any]:
        path = "people/by-identity/" + urllib.parse.quote(key, safe="")
        if kind:
            path += f"?kind={kind}"
        reply = self.api(path)
        assert reply.status == 200, reply.text
        return reply.json()

    def no_person(self, key: str) -> bool:
        return self.api("people/by-identity/" + urllib.parse.quote(key, safe="")).status == 404

    def people_count(self) -> int:
        reply = self.api("people")
        assert reply.status == 200, reply.text
        return reply.json()["count"]


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def identities(person: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["kind"], i["key"]) for i in person["identities"]}


def events(person: dict[str, Any], *, visits: bool = False) -> list[dict[str, Any]]:
    """The person's recent events, oldest first (the API lists the newest first)."""
    found = [e for e in person["recent_events"] if visits or e["type"] != "visited-site"]
    return sorted(found, key=lambda e: (datetime.fromisoformat(e["occurred_at"]), e["id"]))


def stored_counts() -> dict[str, int]:
    """Everything an ingest can write, to show a refused request stored nothing."""
    return {
        "profiles": Profile.objects.count(),
        "identities": Identity.objects.count(),
        "events": Event.objects.count(),
        "sessions": Session.objects.count(),
        "merges": ProfileMerge.objects.count(),
        "dedupe": MessageDedupe.objects.count(),
    }
