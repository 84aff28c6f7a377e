import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from config.logs import quiet_routine_tasks
from config.memory import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("footprint")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
quiet_routine_tasks()


@worker_ready.connect
def announce_worker(sender, **kwargs):
    # /healthz shows a worker as soon as one starts, not a beat interval later.
    sender.app.send_task("tracking.tasks.heartbeat_task")


@worker_process_init.connect
def freeze_worker_startup(**kwargs):
    # Each pool process, once forked with the tasks imported (config.memory).
    freeze_startup_objects()
