"""tracking.benchmarks.profiling: py-spy samples of the web workers sorted into where the
time went, under granian (the default server) and gunicorn alike."""

from __future__ import annotations

from tracking.benchmarks import profiling

GRANIAN = "application (config/wsgi.py:48);__call__ (django/core/handlers/wsgi.py:124)"
GUNICORN = "handle_request (gunicorn/workers/gthread.py:300);__call__ (django/core/handlers/wsgi.py:124)"
VIEW = "track (tracking/segment_views.py:60)"


def category(*frames: str) -> str:
    return profiling._category(";".join(frames).split(";"))


def test_samples_outside_a_request_are_idle():
    assert category("run (threading.py:982)", "wait (threading.py:320)") == profiling.CATEGORIES[7]


def test_a_request_is_recognised_under_either_server():
    for server in (GRANIAN, GUNICORN):
        leaf = "JsonResponse.__init__ (django/http/response.py:746)"
        assert category(server, VIEW, leaf) == profiling.CATEGORIES[6]
        # Before the view (middleware): still a request, not idle.
        assert category(server, "__call__ (django/middleware/common.py:50)") == profiling.CATEGORIES[6]


def test_waiting_on_postgresql_and_the_inbox_accept_step_are_told_apart():
    wait = "Connection.wait (psycopg/connection.py:495)"
    accept = "submit (tracking/inbox.py:85)"
    assert category(GRANIAN, VIEW, accept, "execute (tracking/db.py:30)", wait) == profiling.CATEGORIES[0]
    promise = "_promise_profiles (tracking/inbox.py:160)"
    assert category(GRANIAN, VIEW, accept, promise) == profiling.CATEGORIES[3]
    assert category(GRANIAN, VIEW, "parse_request (tracking/ingest/segment.py:203)") == profiling.CATEGORIES[2]
