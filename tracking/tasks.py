import socket

from celery import shared_task
from django.utils import timezone

from tracking.models import Heartbeat


@shared_task(ignore_result=True)
def heartbeat_task(name: str = "worker") -> None:
    """Record that a worker ran a task (beat sends it every minute; /healthz reads it)."""
    Heartbeat.objects.update_or_create(
        name=name, defaults={"at": timezone.now(), "hostname": socket.gethostname()}
    )
