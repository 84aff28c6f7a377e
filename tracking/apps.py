from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking: sites and keys"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from tracking import db

        connection_created.connect(db.use_fast_timestamps, dispatch_uid="tracking.db.use_fast_timestamps")
