from __future__ import annotations

from django.db import models


class Profile(models.Model):
    """One person on one site.

    A merged profile stays as a tombstone (``merged_into`` set, no identities, no
    events) so ids handed to clients earlier (Tracardi keeps ours) still resolve.
    """

    # No index of its own on site: every index below starts with it, and each index is
    # written again on each profile update (last_seen changes, so updates are not HOT).
    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="profiles", db_index=False)
    properties = models.JSONField(default=dict, blank=True)
    # When each property was last set or deleted: key -> [the call's arrival in
    # microseconds since the epoch, its place in its request] (profiles.identity). The
    # inbox's lanes store a person's calls out of arrival order at times; a call older
    # than the property's last write does not overwrite it. Null: none recorded yet.
    property_stamps = models.JSONField(null=True, blank=True, editable=False)
    is_identified = models.BooleanField(default=False)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        indexes = [
            # People list (newest first) and the anonymous purge (oldest first, filtered):
            # one index, because every ingest rewrites last_seen and each index costs.
            models.Index(
                fields=["site", "-last_seen"],
                name="profile_site_last_seen",
                condition=models.Q(merged_into__isnull=True),
            ),
            # Tombstones only: live profiles (nearly all) have no entry to rewrite.
            models.Index(
                fields=["merged_into"],
                name="profile_merged_into",
                condition=models.Q(merged_into__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"profile {self.pk}"

    @property
    def display_name(self) -> str:
        props = self.properties or {}
        for key in ("name", "full_name", "email"):
            if props.get(key):
                return str(props[key])
        first, last = props.get("first_name"), props.get("last_name")
        if first or last:
            return " ".join(str(p) for p in (first, last) if p)
        return f"Anonymous {self.pk}" if not self.is_identified else f"Person {self.pk}"


class Identity(models.Model):
    """A key that names a profile: the site's user id, our anonymous id, an email…"""

    class Kind(models.TextChoices):
        ANONYMOUS = "anonymous"
        USER = "user"
        COOKIE = "cookie"
        EMAIL = "email"
        EXTERNAL = "external"

    # Indexed as the first column of identity_site_key and identity_site_kind_key.
    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="+", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "kind", "key"], name="identity_site_kind_key")
        ]
        indexes = [
            # Batch resolution: every key of a batch at once (the FK indexes profile).
            models.Index(fields=["site", "key"], name="identity_site_key"),
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


class ProfileMerge(models.Model):
    """Every merge, recorded: who asked, when, which ids. Merges are irreversible."""

    class Reason(models.TextChoices):
        IDENTIFY = "identify"
        ALIAS = "alias"

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="+")
    source_id = models.BigIntegerField(help_text="the profile merged away")
    target_id = models.BigIntegerField(db_index=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    identities = models.JSONField(default=dict, help_text="the ids named by the call")
    actor = models.CharField(max_length=100, help_text="write key, secret key or user")
    merged_at = models.DateTimeField(auto_now_add=True)
    # Large histories are re-pointed in background batches; null until done.
    repointed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["site", "source_id"], name="merge_site_source")]


class Company(models.Model):
    """A company (Segment group) people belong to, with its own properties."""

    site = models.ForeignKey("tracking.Site", on_delete=models.CASCADE, related_name="companies")
    key = models.CharField(max_length=255, help_text="the site's group id")
    properties = models.JSONField(default=dict, blank=True)
    # When each property was last set or deleted, as Profile.property_stamps: a company is
    # shared by its people, whose group calls the inbox's lanes store out of arrival order
    # at times; a call older than the property's last write does not overwrite it.
    property_stamps = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    members = models.ManyToManyField(Profile, through="CompanyMembership", related_name="companies")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "key"], name="company_site_key")]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return str(self.properties.get("name") or self.key)


class CompanyMembership(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["company", "profile"], name="company_membership_unique")
        ]
