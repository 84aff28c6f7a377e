from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tracking import keys


def _default_signing_secret() -> str:
    return keys.new_signing_secret()


class SiteQuerySet(models.QuerySet):
    def for_user(self, user) -> SiteQuerySet:
        """Sites a user may see: all for superusers, their memberships otherwise."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(memberships__user=user).distinct()


class Site(models.Model):
    """An application or workspace. Owns all data; nothing crosses sites."""

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    signing_secret = models.CharField(
        max_length=128,
        default=_default_signing_secret,
        help_text="Secure mode: sites sign a person's identity with HMAC-SHA256(secret, id), hex.",
    )
    only_signed_data = models.BooleanField(
        default=False,
        help_text="Reject (401) any identify or event naming an identified person without a valid signature.",
    )
    session_timeout_minutes = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)]
    )
    anonymous_retention_days = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    cart_abandon_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(30 * 24 * 60)]
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Origins allowed to send browser events, e.g. ["https://shop.example"]; empty allows any.',
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    raptor_mapping = models.JSONField(
        default=dict,
        blank=True,
        help_text='Raptor parameters to fields, e.g. {"p1": "event_type", "p2": "product_id"}.',
    )
    auto_event_rules = models.JSONField(
        default=list,
        blank=True,
        help_text='Tracker page-view and click rules: [{"kind": "page"|"click", "match": URL pattern or CSS selector, "event": name}].',
    )
    respect_do_not_track = models.BooleanField(
        default=False,
        help_text="The tracker sends nothing for visitors whose browser asks not to be tracked (Do Not Track, Global Privacy Control).",
    )

    objects = SiteQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def regenerate_signing_secret(self) -> str:
        self.signing_secret = keys.new_signing_secret()
        self.save(update_fields=["signing_secret"])
        return self.signing_secret

    def primary_write_key(self) -> WriteKey | None:
        return self.write_keys.active().order_by("-created_at").first()


class WriteKeyQuerySet(models.QuerySet):
    def active(self) -> WriteKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class WriteKey(models.Model):
    """Public key embedded in pages; may only send events for its site.

    Rotation issues a new key and gives the old ones a grace period, so several
    keys are active while pages are redeployed.
    """

    ROTATION_GRACE = timedelta(hours=24)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="write_keys")
    key = models.CharField(max_length=64, unique=True, default=keys.new_write_key, editable=False)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = WriteKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key[:12]}… ({self.site})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class SecretKeyQuerySet(models.QuerySet):
    def active(self) -> SecretKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class SecretKey(models.Model):
    """Server-side key for privileged calls. Only its digest is stored."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="secret_keys")
    lookup = models.CharField(max_length=keys.LOOKUP_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SecretKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{keys.SECRET_KEY_PREFIX}{self.lookup}_… ({self.site})"

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(self.digest, keys.digest(key))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class Membership(models.Model):
    """A marketer's access to a site."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        EDITOR = "editor", "Editor"
        ADMIN = "admin", "Admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="site_memberships"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "site"], name="membership_user_site_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.site} ({self.role})"


class Heartbeat(models.Model):
    """Last time each periodic component proved it was alive (shown by /healthz)."""

    name = models.CharField(max_length=50, primary_key=True)
    at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class Session(models.Model):
    """A visit: starts when the client says so or after the site's inactivity timeout."""

    # Sessions are found by person or by client id (site_external); a site's are only
    # deleted with it (Django cascades), so no index and no constraint check of their
    # own: each costs every ingest.
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    # Indexed by session_profile_last (profile, -last_event_at); no second index.
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="sessions", db_index=False
    )
    external_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="the client's session id, when it sends one"
    )
    started_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    event_count = models.PositiveIntegerField(default=0)
    context = models.JSONField(default=dict, blank=True, help_text="landing page, referrer, campaign")

    class Meta:
        indexes = [
            models.Index(fields=["profile", "-last_event_at"], name="session_profile_last"),
            models.Index(
                fields=["site", "external_id"],
                name="session_site_external",
                condition=models.Q(external_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.pk}"


class Event(models.Model):
    """One thing a person did. The table is created by migration 0003 in raw SQL:
    range-partitioned by month on ``occurred_at``, primary key (occurred_at, id), no
    foreign keys (checks would cost every insert; deletes are explicit)."""

    id = models.BigAutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.DO_NOTHING, db_constraint=False, related_name="events"
    )
    session = models.ForeignKey(
        Session, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="events"
    )
    type = models.CharField(max_length=255)
    properties = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    message_id = models.CharField(max_length=255, null=True)

    class Meta:
        managed = False
        db_table = "tracking_event"

    def __str__(self) -> str:
        return f"{self.type} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class MessageDedupe(models.Model):
    """Message ids seen in the dedupe horizon (7 days). The events table cannot hold a
    unique (site, message_id) index: a partitioned table's unique keys must contain the
    partition key, and a retry may carry a different timestamp."""

    pk = models.CompositePrimaryKey("site_id", "message_id")
    # The key's first column; no constraint check on each of the million rows a day
    # (Django cascades a site's deletion).
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    message_id = models.CharField(max_length=255)
    first_seen = models.DateTimeField()

    class Meta:
        # For the prune (tracking.tasks): the oldest ids first, wherever they lie. A BRIN
        # was cheaper to write but decayed once freed pages took new ids (migration 0011).
        indexes = [models.Index(fields=["first_seen"], name="dedupe_first_seen")]


class PendingWork(models.Model):
    """Real-time work an ingest left for Celery, written in the ingest transaction.

    A task processes it after commit; the sweep re-enqueues rows whose task never
    finished (broker down, worker killed). Each handler records a receipt in its own
    transaction, so it takes effect once however often the work is delivered."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    event_ids = ArrayField(models.BigIntegerField())
    profile_ids = ArrayField(models.BigIntegerField())
    occurred_from = models.DateTimeField()
    occurred_to = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"], name="pending_open", condition=models.Q(completed_at__isnull=True)
            )
        ]


class HandlerReceipt(models.Model):
    """Handler H has taken effect for pending work W (unique: the exactly-once claim)."""

    work = models.ForeignKey(PendingWork, on_delete=models.CASCADE, related_name="receipts")
    handler = models.CharField(max_length=100)
    done_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["work", "handler"], name="receipt_work_handler")
        ]


class InboxBatch(models.Model):
    """One accepted tracking request, validated and waiting for the ingestion core.

    The Segment endpoints answer once this row is committed (one INSERT), and Celery
    drains the inbox in chunks of thousands of messages through ``ingest_batch``'s
    store step, deleting the rows in the same transaction: a message is stored exactly
    once, or it is still here. A row that fails on its own is kept with its error
    (``failed_at``) for an operator to look at and retry in the admin."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    received_at = models.DateTimeField()
    actor = models.CharField(max_length=300)  # who sent it, for merge records ("write key …")
    message_count = models.PositiveIntegerField()
    # Which drain stores it (mod INGEST_DRAINS): the messages of a person go to one lane,
    # so drains side by side do not wait on each other's profiles (tracking.inbox).
    lane = models.PositiveSmallIntegerField(default=0)
    # Profile ids reserved for people the request names that were not known yet: the
    # answer promised them, and the profiles made for them take them.
    reserved = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Messages in the queued form of ``tracking.ingest.schema.to_wire``, as JSON text
    # (text, not jsonb: nothing queries inside it, and jsonb would parse it twice).
    messages = models.TextField()
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "queued request"
        indexes = [
            models.Index(fields=["failed_at"], name="inbox_failed", condition=models.Q(failed_at__isnull=False))
        ]

    def __str__(self) -> str:
        return f"{self.message_count} messages received {self.received_at:%Y-%m-%d %H:%M:%S}"
