"""config.memory: web and worker processes freeze what startup made, after collecting
its garbage, so the cyclic collector stops walking it."""

from __future__ import annotations

import gc

import pytest

from config.celery import freeze_worker_startup
from config.memory import freeze_startup_objects


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self):
        self.me = self


def test_startup_objects_are_frozen_and_startup_garbage_is_not(unfrozen):
    import weakref

    garbage = Cycle()
    gone = weakref.ref(garbage)
    del garbage  # unreachable, but a cycle: only the collector frees it

    freeze_startup_objects()

    assert gone() is None  # collected before the freeze, not kept forever
    assert gc.get_freeze_count() > 10_000  # Django and the apps


def test_each_celery_pool_process_freezes_on_start(unfrozen):
    assert gc.get_freeze_count() == 0
    freeze_worker_startup(sender=None)
    assert gc.get_freeze_count() > 10_000


def test_a_web_worker_freezes_once_the_application_is_loaded():
    import subprocess
    import sys

    from django.conf import settings

    out = subprocess.run(
        [sys.executable, "-c", "import gc, config.wsgi; print(gc.get_freeze_count())"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, check=True,
    ).stdout
    assert int(out.split()[-1]) > 10_000
