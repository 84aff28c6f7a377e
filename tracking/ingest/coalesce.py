"""Group commit: concurrent ingest requests of one web worker share one transaction.

A /v1/track request costs about a dozen statements and a commit whatever its size, so
under load most of its time is fixed overhead. Here each request thread hands its parsed
messages to the process's ``Coalescer`` and waits. The first waiting thread for a
(site, write key) becomes the leader: it takes every request queued by then (up to
``INGEST_COALESCE_MAX_MESSAGES`` messages), renumbers ``Message.index`` so indexes are
unique across them, calls ``ingest_batch`` once, and splits the ``IngestResult`` back
per request. Requests that arrive while a leader is in the database queue up for the
next group, so the busier the worker, the larger the groups; a lone request never waits.
While other ingest requests of the worker are still being parsed, a leader waits up to
``INGEST_COALESCE_MS`` for them.

The contract does not change: every request still gets its answer after its messages
are committed, its own profile ids and per-message errors, and exactly-once storage
(``ingest_batch`` dedupes within a batch too: the first message with a messageId wins,
a second one is a duplicate and gets the same profile id). Requests that must stand
alone are never grouped: strict mode (all or nothing) and requests whose signatures
would be refused. If the combined call raises anything, every request of the group runs
``ingest_batch`` on its own, in its own thread, and gets its own answer.

Events of a group are stored with the group's earliest ``received_at``.
``INGEST_COALESCE_MS = 0`` turns all of this off (``ingest_batch`` is called directly).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from tracking.ingest.core import IngestResult, check_signatures, ingest_batch
from tracking.ingest.schema import FieldError, Message, RequestRejected
from tracking.models import Site


@dataclass(eq=False)
class _Request:
    site: Site
    messages: list[Message]
    received_at: datetime
    result: IngestResult | None = None
    alone: bool = False  # the group failed: run ingest_batch yourself
    lead: bool = False  # promoted to leader of the next group
    done: bool = False
    error: BaseException | None = None  # what ingest_batch raised for this request alone
    indexes: list[int] = field(default_factory=list)  # the messages' own indexes


class Coalescer:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[tuple[int, str], list[_Request]] = {}
        self._leading: set[tuple[int, str]] = set()
        self._arriving = 0  # ingest requests of this process still being read and parsed
        self._local = threading.local()

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a whole ingest request, so that leaders know who may still join."""
        with self._cond:
            self._arriving += 1
        self._local.arriving = True
        try:
            yield
        finally:
            self._arrived()

    def _arrived(self) -> None:
        if getattr(self._local, "arriving", False):
            self._local.arriving = False
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    def ingest(
        self,
        site: Site,
        messages: list[Message],
        *,
        received_at: datetime | None = None,
        actor: str = "write key",
        strict: bool = False,
    ) -> IngestResult:
        self._arrived()
        received_at = received_at or timezone.now()
        window = getattr(settings, "INGEST_COALESCE_MS", 0) / 1000
        if window <= 0 or strict or not messages or not _signatures_pass(site, messages):
            return ingest_batch(site, messages, received_at=received_at, actor=actor, strict=strict)
        key = (site.pk, actor)
        me = _Request(site, messages, received_at)
        with self._cond:
            self._queues.setdefault(key, []).append(me)
            if key in self._leading:
                while not (me.done or me.lead):
                    self._cond.wait()
            else:
                self._leading.add(key)
                me.lead = True
        if me.lead:
            self._lead(key, actor, window)
        if me.error is not None:
            raise me.error
        if me.alone:
            _restore(me)
            return ingest_batch(site, messages, received_at=received_at, actor=actor)
        assert me.result is not None
        return me.result

    def _lead(self, key: tuple[int, str], actor: str, window: float) -> None:
        cap = getattr(settings, "INGEST_COALESCE_MAX_MESSAGES", 1000)
        with self._cond:
            queue = self._queues[key]
            deadline = time.monotonic() + window
            # Wait for requests of this worker that are still being parsed, not longer.
            while self._arriving > 0 and sum(len(r.messages) for r in queue) < cap:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            group, size = [], 0
            while queue and (not group or size + len(queue[0].messages) <= cap):
                request = queue.pop(0)
                group.append(request)
                size += len(request.messages)
        try:
            self._run(group, actor)
        finally:
            with self._cond:
                for request in group:
                    request.done = True
                if queue:
                    queue[0].lead = True  # it runs the next group
                else:
                    self._leading.discard(key)
                    del self._queues[key]
                self._cond.notify_all()

    def _run(self, group: list[_Request], actor: str) -> None:
        if len(group) == 1:
            # Run it here, still leading: requests arriving meanwhile form the next group.
            request = group[0]
            try:
                request.result = ingest_batch(
                    request.site, request.messages, received_at=request.received_at, actor=actor
                )
            except BaseException as exc:
                request.error = exc
            return
        combined: list[Message] = []
        offsets: list[int] = []
        offset = 0
        for request in group:
            request.indexes = [m.index for m in request.messages]
            offsets.append(offset)
            for m in request.messages:
                m.index += offset
            combined.extend(request.messages)
            offset += max(request.indexes) + 1
        try:
            result = ingest_batch(
                group[0].site,
                combined,
                received_at=min(r.received_at for r in group),
                actor=actor,
            )
        except BaseException:
            for request in group:
                request.alone = True
            return
        bounds = [*offsets[1:], offset]
        for request, start, end in zip(group, offsets, bounds, strict=True):
            request.result = _part(result, start, end)
            _restore(request)


def _part(result: IngestResult, start: int, end: int) -> IngestResult:
    """The share of one request (combined indexes ``start`` to ``end``), renumbered."""

    def mine(index: int | None) -> bool:
        return index is not None and start <= index < end

    return IngestResult(
        accepted=[i - start for i in result.accepted if mine(i)],
        duplicates=[i - start for i in result.duplicates if mine(i)],
        errors=[FieldError(e.index - start, e.field, e.reason) for e in result.errors if mine(e.index)],
        profile_ids={i - start: pid for i, pid in result.profile_ids.items() if mine(i)},
    )


def _restore(request: _Request) -> None:
    if request.indexes:
        for m, index in zip(request.messages, request.indexes, strict=True):
            m.index = index


def _signatures_pass(site: Site, messages: list[Message]) -> bool:
    """Whether the request passes secure mode's checks (else it goes alone, and
    ``ingest_batch`` gives it its 401)."""
    if not site.only_signed_data and not any(m.signature for m in messages):
        return True
    try:
        check_signatures(site, messages, privileged=False)
    except RequestRejected:
        return False
    return True


coalescer = Coalescer()
