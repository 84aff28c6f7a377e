"""Load-generating clients for the HTTP bench: one OS process each, standard library only.

Requests are pre-rendered bytes on a raw socket (HTTP/1.1, kept alive when the server
allows, reconnected when it closes), so the clients spend their CPU on the wire rather
than on an HTTP library: on a 2-core machine they share the cores with the server.

Traffic (``Traffic``): a batch is 100 messages, identities mixed 70% known people (the
generated identified people, by ``vocabulary`` numbering), 20% anonymous visitors of this
run (half new, half returning), 10% identify calls (a returning visitor of this run
signs in as a known person, which merges the visitor into them). A visit has several
events: with ``STICKY`` odds a message comes from the same person as the one before it
of its kind (mean visit 2.5 events; the generated data's is 5). Every message has a
unique ``messageId`` starting with the run's prefix, so the bench can count in the
database what was stored.

Modes: ``closed`` (send the next request as soon as the answer arrives) and ``paced``
(open loop at a fixed rate; latency is measured from the planned send time, so a slow
server is not hidden by a client that waits for it).
"""

from __future__ import annotations

import base64
import json
import random
import socket
import sys
import time
from datetime import UTC, datetime

from tracking.benchmarks import vocabulary as vocab

KNOWN, ANONYMOUS = 0.70, 0.90  # cumulative shares; the rest are identify calls
STICKY = 0.6


class Traffic:
    def __init__(self, *, people: int, prefix: str, seed: int):
        self.rng = random.Random(seed)
        self.people = max(people, 1)
        self.prefix = prefix  # unique per run and process: "<run>-<process>"
        self.pools = vocab.build_pools(7)
        self.sent = 0
        self.visitors = 0
        self.last_known: int | None = None
        self.last_visitor: str | None = None

    def _known(self) -> int:
        while True:
            i = self.rng.randrange(self.people)
            if vocab.is_identified(i):
                return i

    def _visitor(self, returning: bool) -> str:
        if returning and self.visitors:
            k = self.rng.randrange(self.visitors)
        else:
            k = self.visitors
            self.visitors += 1
        return f"{self.prefix}-v{k}"

    def message(self, now: str, *, mix: bool = True) -> str:
        """One Segment message as JSON text."""
        rng = self.rng
        self.sent += 1
        message_id = f"{self.prefix}-{self.sent}"
        roll = rng.random() if mix else rng.random() * ANONYMOUS
        if roll >= ANONYMOUS:
            i = self._known()
            traits = vocab.render_properties(self.pools.properties["identify"][rng.getrandbits(8)], "")
            return (
                f'{{"type":"identify","userId":"{vocab.user_key(i)}","anonymousId":"{self._visitor(True)}",'
                f'"messageId":"{message_id}","timestamp":"{now}","traits":{traits}}}'
            )
        # A visit is several events: a message often comes from the same person as the
        # one before it (as in Segment batches from a server library).
        same = rng.random() < STICKY
        if roll < KNOWN:
            if not (same and self.last_known is not None):
                self.last_known = self._known()
            i = self.last_known
            who = f'"userId":"{vocab.user_key(i)}","anonymousId":"{vocab.anonymous_key(i)}"'
            cart = f"k{i}"
        else:
            if not (same and self.last_visitor is not None):
                self.last_visitor = self._visitor(rng.random() < 0.5)
            visitor = self.last_visitor
            who = f'"anonymousId":"{visitor}"'
            cart = visitor
        kind = rng.choices(vocab.EVENT_TYPES, cum_weights=vocab.CUM_WEIGHTS)[0]
        if kind == "identify":
            kind = "Product Viewed"
        properties = vocab.render_properties(self.pools.properties[kind][rng.getrandbits(8)], cart)
        context = self.pools.contexts[rng.getrandbits(8)]
        if kind == vocab.PAGE_TYPE:
            head = '"type":"page","name":"Shop"'
        else:
            head = f'"type":"track","event":"{kind}"'
        return (
            f'{{{head},{who},"messageId":"{message_id}","timestamp":"{now}",'
            f'"properties":{properties},"context":{context}}}'
        )

    def batch_body(self, size: int) -> bytes:
        now = _now()
        messages = ",".join(self.message(now) for _ in range(size))
        return f'{{"batch":[{messages}],"sentAt":"{now}"}}'.encode()

    def track_body(self) -> bytes:
        # A single /v1/track call: a track event of a known person or a visitor.
        while True:
            text = self.message(_now(), mix=False)
            if '"type":"track"' in text:
                return text.encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_bytes(host: str, port: int, path: str, write_key: str, body: bytes) -> bytes:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Connection:
    """One HTTP/1.1 connection on a raw socket; reconnects when the server closed it."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> tuple[int, bytes]:
        # A kept-alive socket may have been closed by the server meanwhile; a request
        # that got no answer is sent again (its messageIds make a repeat harmless).
        for attempt in (1, 2):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection(self.address, timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffer = b""
            try:
                self.sock.sendall(data)
                return self._response()
            except (ConnectionError, _Closed):
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed
        return chunk

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            rest += self._recv()
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body


class _Closed(Exception):
    pass


SLOW_MS = 50.0  # the latency target: requests at or over it are kept with their send time
MAX_SLOW = 5000


def main() -> None:
    """``python -m tracking.benchmarks.client`` with the spec as JSON on stdin; prints the
    stats as JSON. A plain process, not multiprocessing: nothing of the parent (Django,
    its database connections, its ``__main__``) is imported or inherited."""
    spec = json.loads(sys.stdin.read())
    try:
        stats = run(spec)
    except Exception as exc:  # reported, not raised: the parent collects every process
        stats = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(stats))


def run(spec: dict) -> dict:
    host, port, key = spec["host"], spec["port"], spec["write_key"]
    traffic = Traffic(people=spec["people"], prefix=spec["prefix"], seed=spec["seed"])
    batch_size = spec.get("batch_size", 0)
    path = "/v1/batch" if batch_size else "/v1/track"
    connection = Connection(host, port)
    latencies: list[float] = []
    slow: list[tuple[float, float]] = []  # (seconds into the run, ms) of each slow request
    stats = {"requests": 0, "events_sent": 0, "events_accepted": 0, "failed": 0, "statuses": {}, "samples": []}
    interval = 1.0 / spec["rate"] if spec.get("rate") else 0.0
    while time.time() < spec["start_at"]:
        time.sleep(0.001)
    started = time.perf_counter()
    deadline = started + spec["duration"]
    planned = started
    while True:
        if interval:
            planned += interval
            wait = planned - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        body = traffic.batch_body(batch_size) if batch_size else traffic.track_body()
        if time.perf_counter() >= deadline:
            break
        begin = planned if interval else time.perf_counter()
        try:
            status, answer = connection.request(request_bytes(host, port, path, key, body))
        except OSError as exc:
            stats["failed"] += 1
            stats["statuses"]["error"] = stats["statuses"].get("error", 0) + 1
            if len(stats["samples"]) < 3:
                stats["samples"].append(repr(exc))
            connection.close()
            continue
        latency = (time.perf_counter() - begin) * 1000
        latencies.append(latency)
        if latency >= SLOW_MS and len(slow) < MAX_SLOW:
            slow.append((round(begin - started, 3), round(latency, 1)))
        stats["requests"] += 1
        sent = batch_size or 1
        stats["events_sent"] += sent
        stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
        if status == 200:
            errors = (json.loads(answer).get("errors") or []) if batch_size else []
            stats["events_accepted"] += sent - len({e.get("index") for e in errors})
        else:
            stats["failed"] += 1
            if len(stats["samples"]) < 3:
                stats["samples"].append(f"{status} {answer[:300]!r}")
    stats["elapsed"] = time.perf_counter() - started
    stats["latencies"] = latencies
    stats["slow"] = slow
    connection.close()
    return stats


if __name__ == "__main__":
    main()
