"""Quiet routine task lines in the worker's and beat's logs.

Beat sends ``drain_inbox_task`` every 5 s (and two more tasks each minute); at INFO, an
idle stack logged three lines for each of them ("Sending due task", "received",
"succeeded … : 0"), about 2,000 lines an hour that said nothing and buried the ones that
do. Those lines are dropped for the routine tasks unless the run did something (a
drain that stored messages, a sweep that re-ran work still logs its count); warnings and
errors always pass.
"""

from __future__ import annotations

import logging

ROUTINE_TASKS = frozenset(
    {
        "tracking.tasks.drain_inbox_task",
        "tracking.tasks.heartbeat_task",
        "tracking.tasks.sweep_pending_work_task",
    }
)
ROUTINE_NAMES = frozenset({"drain-inbox", "worker-heartbeat", "sweep-pending-work"})  # beat entries
IDLE_RESULTS = frozenset({"0", "None", "[]", "{}"})
LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class QuietRoutineTasks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = record.args
        if isinstance(args, dict):  # the worker: "received" and "succeeded" lines
            if args.get("name") not in ROUTINE_TASKS:
                return True
            # "received" has no return value; a success keeps its line when it did work.
            return "return_value" in args and str(args["return_value"]) not in IDLE_RESULTS
        if isinstance(args, tuple) and args and record.msg.startswith("Scheduler: Sending due task"):
            return args[0] not in ROUTINE_NAMES
        return True


def quiet_routine_tasks() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietRoutineTasks) for f in logger.filters):
            logger.addFilter(QuietRoutineTasks())
