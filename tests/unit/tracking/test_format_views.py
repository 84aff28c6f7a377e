"""Request details the format views handle before any adapter runs."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from tracking.format_views import _query_string
from tracking.ingest.wire import RequestRejected


def test_unescaped_utf8_in_the_query_string_is_read_as_utf8():
    # WSGI servers hand the raw bytes over decoded as Latin-1.
    request = RequestFactory().get("/set", QUERY_STRING="id=caf\u00c3\u00a9&data={a:1}")
    assert _query_string(request) == "id=café&data={a:1}"


def test_bytes_that_are_not_utf8_are_refused():
    request = RequestFactory().get("/set", QUERY_STRING="id=caf\u00e9")
    with pytest.raises(RequestRejected) as caught:
        _query_string(request)
    assert caught.value.status == 400
