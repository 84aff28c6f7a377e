from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst

from tracking import services
from tracking.admin_forms import SiteAdminForm
from tracking.format_examples import format_examples
from tracking.models import InboxBatch, Membership, SecretKey, Site, WriteKey
from tracking.snippet import tracker_snippet


class LabelledTabularInline(admin.TabularInline):
    """A tabular inline whose inputs have names: Django heads each column with a <th>
    but renders the inputs below with no label, so a screen reader read "edit text" or
    "combo box" and nothing more (axe: label, select-name). Each input is named after its
    column (the "Delete?" checkbox too)."""

    def get_formset(self, request, obj=None, **kwargs):
        class LabelledFormSet(super().get_formset(request, obj, **kwargs)):
            def add_fields(self, form, index):
                super().add_fields(form, index)
                for field in form.fields.values():
                    if field.label:
                        field.widget.attrs.setdefault("aria-label", capfirst(field.label))

        return LabelledFormSet


class WriteKeyInline(LabelledTabularInline):
    model = WriteKey
    extra = 0
    can_delete = False
    fields = ["key", "label", "created_at", "expires_at", "revoked_at", "status"]
    # Expiry and revocation are set by rotating and revoking, never edited back.
    readonly_fields = ["key", "created_at", "expires_at", "revoked_at", "status"]

    @admin.display(description="status")
    def status(self, obj: WriteKey) -> str:
        return "active" if obj.pk and obj.is_active else "inactive"

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # issued with the "Issue write key" button


class SecretKeyInline(LabelledTabularInline):
    model = SecretKey
    extra = 0
    can_delete = False
    fields = ["masked", "label", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["masked", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="key")
    def masked(self, obj: SecretKey) -> str:
        return str(obj).split(" ")[0]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # issued with the "Issue secret key" button, shown once


class MembershipInline(LabelledTabularInline):
    model = Membership
    extra = 1
    raw_id_fields = ["user"]
    fk_name = "site"


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at", "only_signed_data", "active_write_keys"]
    search_fields = ["name"]
    inlines = [WriteKeyInline, SecretKeyInline, MembershipInline]
    form = SiteAdminForm
    readonly_fields = ["snippet", "signing_secret_display", "signing_secret_withheld", "format_examples_panel"]
    fieldsets = [
        (None, {"fields": ["name", "time_zone"]}),
        ("Tracker snippet", {"fields": ["snippet"]}),
        ("How to call each format", {"fields": ["format_examples_panel"], "classes": ["collapse"]}),
        (
            "Secure mode",
            {"fields": ["signing_secret_display", "only_signed_data"]},
        ),
        (
            "Behaviour",
            {
                "fields": [
                    "session_timeout_minutes",
                    "anonymous_retention_days",
                    "cart_abandon_minutes",
                    "allowed_origins",
                    "respect_do_not_track",
                ]
            },
        ),
        ("Integrations", {"fields": ["raptor_mapping", "auto_event_rules"], "classes": ["collapse"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        # The signing secret signs any user id (secure mode): a credential, shown only to
        # those who may change the site (superusers included), not to view-only staff.
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        return [
            (name, {**options, "fields": [
                "signing_secret_withheld" if f == "signing_secret_display" else f for f in options["fields"]
            ]})
            for name, options in fieldsets
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # On the page itself (a GET): a message added while saving would show on the
        # page the save redirects to, which is this one again.
        if request.method == "GET":
            site = self.get_object(request, object_id)
            warning = services.write_key_warning(site) if site is not None else None
            if warning:
                messages.warning(request, warning)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request):
        # The list's key count in the same query, not one more per site.
        now = timezone.now()
        active = Q(write_keys__revoked_at__isnull=True) & (
            Q(write_keys__expires_at__isnull=True) | Q(write_keys__expires_at__gt=now)
        )  # WriteKey.objects.active(), through the join
        return super().get_queryset(request).annotate(active_key_count=Count("write_keys", filter=active))

    @admin.display(description="active write keys", ordering="active_key_count")
    def active_write_keys(self, obj: Site) -> int:
        return obj.active_key_count

    @admin.display(description="snippet (paste before </head>)")
    def snippet(self, obj: Site) -> str:
        if not obj.pk:
            return "Save the site to get its snippet."
        return format_html('<pre class="footprint-snippet">{}</pre>', tracker_snippet(obj))

    @admin.display(description="calls")
    def format_examples_panel(self, obj: Site) -> str:
        if not obj.pk:
            return "Save the site to see how to call it."
        return render_to_string("admin/tracking/site/format_examples.html", {"examples": format_examples(obj)})

    @admin.display(description="signing secret")
    def signing_secret_display(self, obj: Site) -> str:
        if not obj.pk:
            return "Generated when the site is saved."
        return format_html("<code class=\"signing-secret\">{}</code>", obj.signing_secret)

    @admin.display(description="signing secret")
    def signing_secret_withheld(self, obj: Site) -> str:
        return "Shown to those who may change the site."

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            services.write_key_issue(site=obj, label="default")

    def get_urls(self):
        own = [
            path("<int:site_id>/issue-write-key/", self.admin_site.admin_view(self.issue_write_key), name="tracking_site_issue_write_key"),
            path("<int:site_id>/rotate-write-keys/", self.admin_site.admin_view(self.rotate_write_keys), name="tracking_site_rotate_write_keys"),
            path("<int:site_id>/issue-secret-key/", self.admin_site.admin_view(self.issue_secret_key), name="tracking_site_issue_secret_key"),
            path("<int:site_id>/regenerate-signing-secret/", self.admin_site.admin_view(self.regenerate_signing_secret), name="tracking_site_regenerate_signing_secret"),
        ]
        return own + super().get_urls()

    def _site_for_post(self, request, site_id: int) -> Site:
        site = get_object_or_404(Site, pk=site_id)
        if not self.has_change_permission(request, site):
            raise PermissionDenied
        return site

    def _back(self, site: Site):
        return redirect(reverse("admin:tracking_site_change", args=[site.pk]))

    def issue_write_key(self, request, site_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        site = self._site_for_post(request, site_id)
        key = services.write_key_issue(site=site, label="issued in admin")
        messages.success(request, f"New write key issued: {key.key}")
        return self._back(site)

    def rotate_write_keys(self, request, site_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        site = self._site_for_post(request, site_id)
        key = services.write_key_rotate(site=site)
        messages.success(
            request,
            f"New write key {key.key}; the previous keys stop working in 24 hours.",
        )
        return self._back(site)

    def issue_secret_key(self, request, site_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        site = self._site_for_post(request, site_id)
        issued = services.secret_key_issue(site=site, label=request.POST.get("label", "")[:100])
        context = {
            **self.admin_site.each_context(request),
            "title": "Secret key issued",
            "site": site,
            "secret_key": issued.key,
            "opts": self.model._meta,
        }
        # Shown once: only the digest is stored.
        return TemplateResponse(request, "admin/tracking/site/secret_key_issued.html", context)

    def regenerate_signing_secret(self, request, site_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        site = self._site_for_post(request, site_id)
        site.regenerate_signing_secret()
        messages.warning(request, "Signing secret regenerated: signatures made with the old one no longer verify.")
        return self._back(site)


def _revoke_action(kind: str):
    # Admin actions are open to whoever may view the list unless they name a permission.
    @admin.action(description=f"Revoke selected {kind} keys", permissions=["change"])
    def revoke(modeladmin, request, queryset):
        keys_ = list(queryset.filter(revoked_at__isnull=True))
        for key in keys_:
            key.revoke()
        already = queryset.count() - len(keys_)
        messages.success(
            request, f"Revoked {len(keys_)} {kind} key(s)." + (f" {already} already revoked." if already else "")
        )

    return revoke


@admin.register(WriteKey)
class WriteKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "site", "label", "created_at", "expires_at", "revoked_at"]
    list_filter = ["site"]
    list_select_related = ["site"]
    search_fields = ["key", "label", "site__name"]
    readonly_fields = ["key", "created_at"]
    raw_id_fields = ["site"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # An issued key stays with its site, and revoking cannot be undone by an edit.
        return [*self.readonly_fields, "site", "expires_at", "revoked_at"] if obj else self.readonly_fields

    revoke = _revoke_action("write")


@admin.register(SecretKey)
class SecretKeyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "site", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["site"]
    list_select_related = ["site"]
    readonly_fields = ["lookup", "site", "created_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # issued from the site page, shown once

    revoke = _revoke_action("secret")


class InboxStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("queued", "Queued"), ("failed", "Set aside (failed)")]

    def queryset(self, request, queryset):
        if self.value() == "queued":
            return queryset.filter(failed_at__isnull=True)
        if self.value() == "failed":
            return queryset.filter(failed_at__isnull=False)
        return queryset


@admin.register(InboxBatch)
class InboxBatchAdmin(admin.ModelAdmin):
    """Queued tracking requests: normally gone within a second; a row that failed to
    store stays here with its error until an operator retries it."""

    list_display = ["id", "site", "received_at", "message_count", "attempts", "failed_at"]
    list_filter = [InboxStateFilter, "site"]
    list_select_related = ["site"]
    readonly_fields = [f.name for f in InboxBatch._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        # The model's change permission (its fields stay read-only here for everyone):
        # staff who may only view the inbox must not be able to store requests again.
        return request.user.has_perm("tracking.change_inboxbatch")

    @admin.action(description="Queue the selected failed requests again", permissions=["retry"])
    def retry(self, request, queryset):
        from tracking import inbox

        count = inbox.retry_failed(list(queryset.values_list("pk", flat=True)))
        inbox.wake_drain()
        self.message_user(request, f"{count} request(s) queued again.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "site", "role", "created_at"]
    list_filter = ["role", "site"]
    list_select_related = ["user", "site"]
    raw_id_fields = ["user", "site"]


class UserMembershipInline(LabelledTabularInline):
    model = Membership
    extra = 1
    fk_name = "user"
    raw_id_fields = ["site"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class FootprintUserAdmin(UserAdmin):
    inlines = [UserMembershipInline]


admin.site.site_header = "Footprint administration"
admin.site.site_title = "Footprint admin"
admin.site.index_title = "Sites, keys and users"
