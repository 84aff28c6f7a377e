"""The Celery app a hand-off test's worker runs: Footprint's app with the probe handler
registered (``celery -A tests.integration.handoff_worker worker``)."""

import django

from config.celery import app  # sets DJANGO_SETTINGS_MODULE

django.setup()

from tests.integration import handoff_probe  # noqa: E402
from tracking import handoff  # noqa: E402

handoff.register(handoff_probe.NAME, handoff_probe.record)

__all__ = ["app"]
