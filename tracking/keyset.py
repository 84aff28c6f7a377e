"""Keyset ("seek") pagination over a (timestamp, id) order.

A page ends at a (value, id) pair and the next one starts strictly after it, so page 1,000
costs what page 1 costs (no OFFSET) and rows written meanwhile never shift a page. The
cursor is opaque to clients: base64 of the pair plus the direction.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    at: datetime
    id: int
    backwards: bool = False

    def encode(self) -> str:
        raw = f"{'b' if self.backwards else 'f'}|{self.at.isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            direction, at, pk = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
            if direction not in ("f", "b"):
                raise ValueError(direction)
            moment = datetime.fromisoformat(at)
            if moment.tzinfo is None:
                raise ValueError("naive time")
            # In UTC, as this server writes them: PostgreSQL refuses offsets past ±15:59,
            # and a time that leaves Python's years in UTC is no time a row holds.
            moment = moment.astimezone(UTC)
            return cls(at=moment, id=int(pk), backwards=direction == "b")
        except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidCursor("Not a cursor this server issued.") from exc

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        """``decode`` for optional input; raises InvalidCursor on garbage."""
        return cls.decode(token) if token else None


@dataclass
class Page:
    items: list[Any]
    next: Cursor | None
    previous: Cursor | None


def keyset_page(
    queryset: QuerySet, *, field: str, descending: bool, cursor: Cursor | None, limit: int
) -> Page:
    """One page of ``queryset`` ordered by (field, id), after/before ``cursor``.

    The bound is written as ``field <= v AND (field < v OR id < i)``: the first term is
    what lets PostgreSQL start an index range scan on ``field``; the OR alone would not.
    """
    qs, order = _bounded(queryset, field=field, descending=descending, cursor=cursor)
    return _page(list(qs.order_by(*order)[: limit + 1]), field=field, cursor=cursor, limit=limit)


def keyset_page_of_union(
    querysets: list[QuerySet], *, field: str, descending: bool, cursor: Cursor | None, limit: int
) -> Page:
    """``keyset_page`` of the rows of several querysets of one model (disjoint), each
    read by its own index range, in one statement (UNION ALL of the bounded reads, then
    the page of those): one snapshot, so a row that moves from one queryset to another
    meanwhile is read once, where a read of each in turn could miss it or read it twice."""
    arms = []
    for queryset in querysets:
        qs, order = _bounded(queryset, field=field, descending=descending, cursor=cursor)
        arms.append(qs.order_by(*order)[: limit + 1])
    rows = list(arms[0].union(*arms[1:], all=True).order_by(*order)[: limit + 1])
    return _page(rows, field=field, cursor=cursor, limit=limit)


def _bounded(
    queryset: QuerySet, *, field: str, descending: bool, cursor: Cursor | None
) -> tuple[QuerySet, tuple[str, str]]:
    backwards = cursor is not None and cursor.backwards
    scan_descending = descending != backwards
    qs = queryset
    if cursor is not None:
        at, pk = cursor.at, cursor.id
        if scan_descending:
            qs = qs.filter(**{f"{field}__lte": at}).filter(
                Q(**{f"{field}__lt": at}) | Q(**{field: at, "id__lt": pk})
            )
        else:
            qs = qs.filter(**{f"{field}__gte": at}).filter(
                Q(**{f"{field}__gt": at}) | Q(**{field: at, "id__gt": pk})
            )
    return qs, ((f"-{field}", "-id") if scan_descending else (field, "id"))


def _page(rows: list[Any], *, field: str, cursor: Cursor | None, limit: int) -> Page:
    backwards = cursor is not None and cursor.backwards
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, cursor is not None
    if not rows:
        return Page(items=[], next=None, previous=None)
    first, last = rows[0], rows[-1]
    return Page(
        items=rows,
        next=Cursor(getattr(last, field), last.id) if has_next else None,
        previous=Cursor(getattr(first, field), first.id, backwards=True) if has_previous else None,
    )
