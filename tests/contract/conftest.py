"""Fixtures every wire-format contract test uses: the live server as a client sees it,
and the site's write key."""

import pytest

from tests.contract.live import Live


@pytest.fixture
def live(live_server, secret_key) -> Live:
    return Live(live_server.url, secret_key)


@pytest.fixture
def key(site) -> str:
    return site.primary_write_key().key
