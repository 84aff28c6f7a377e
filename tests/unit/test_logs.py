"""The worker and beat logs: routine tasks that did nothing leave no lines."""

import logging

from celery import beat
from celery.app import trace
from celery.worker import strategy

import config.celery  # noqa: F401  (attaches the filter, as the worker and beat do)

DRAIN = "tracking.tasks.drain_inbox_task"


def _task(name: str, **more) -> dict:
    return {"id": "5d1c", "name": name, "args": "()", "kwargs": "{}", **more}


def test_it_drops_the_idle_drain_lines_and_keeps_the_rest(caplog):
    with caplog.at_level(logging.INFO):
        # As Celery itself logs them (celery/beat.py, worker/strategy.py, app/trace.py).
        beat.logger.info("Scheduler: Sending due task %s (%s)", "drain-inbox", DRAIN)
        strategy.logger.info(trace.LOG_RECEIVED, _task(DRAIN))
        trace.logger.info(trace.LOG_SUCCESS, _task(DRAIN, return_value="0", runtime=0.01))
        trace.logger.info(trace.LOG_SUCCESS, _task(DRAIN, return_value="5000", runtime=0.9))
        beat.logger.info("Scheduler: Sending due task %s (%s)", "purge-anonymous-profiles", "p.t")
        strategy.logger.info(trace.LOG_RECEIVED, _task("profiles.tasks.purge_anonymous_profiles_task"))
        trace.logger.info(
            trace.LOG_SUCCESS, _task("profiles.tasks.purge_anonymous_profiles_task", return_value="0", runtime=1)
        )
        trace.logger.warning("Task %(name)s[%(id)s] retry: %(exc)s", _task(DRAIN, exc="broker down"))
    assert [r.getMessage() for r in caplog.records] == [
        f"Task {DRAIN}[5d1c] succeeded in 0.9s: 5000",
        "Scheduler: Sending due task purge-anonymous-profiles (p.t)",
        "Task profiles.tasks.purge_anonymous_profiles_task[5d1c] received",
        "Task profiles.tasks.purge_anonymous_profiles_task[5d1c] succeeded in 1s: 0",
        f"Task {DRAIN}[5d1c] retry: broker down",
    ]
