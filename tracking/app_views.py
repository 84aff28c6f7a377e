"""The marketer UI shell: home redirect and the Settings page."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from tracking import services
from tracking.access import LAST_SITE_SESSION_KEY, can, site_page
from tracking.forms import SiteSettingsForm, auto_event_rules_formset
from tracking.models import Membership, Site
from tracking.snippet import drop_ins, tracker_snippet


@login_required
def home(request):
    sites = Site.objects.for_user(request.user)
    last = request.session.get(LAST_SITE_SESSION_KEY)
    site = sites.filter(pk=last).first() if last else None
    site = site or sites.first()
    if site is None:
        return render(request, "app/no_sites.html", status=200)
    return redirect("app:people", site_id=site.pk)


@site_page
def site_settings(request, site: Site):
    editable = can(request.user, site, Membership.Role.ADMIN)
    # A copy: a refused form has already put what was typed on its instance, and the
    # page's heading and site switcher show ``site`` as saved.
    form = SiteSettingsForm(request.POST or None, instance=copy.copy(site))
    rules = auto_event_rules_formset(site, request.POST or None)
    if request.method == "POST":
        if not editable:
            messages.error(request, "Only site admins can change settings.")
            return redirect("app:settings", site_id=site.pk)
        # Both are validated so every error shows at once.
        if all([form.is_valid(), not rules.is_bound or rules.is_valid()]):
            changed = [form.fields[name].label or name for name in form.changed_data]
            if rules.is_bound and rules.rules() != site.auto_event_rules:
                form.instance.auto_event_rules = rules.rules()
                changed.append("Auto-event rules")
            form.save()
            _log_change(request.user, form.instance, changed)
            messages.success(request, "Settings saved.")
            return redirect("app:settings", site_id=site.pk)
    if not editable:
        for each in [form, *rules.forms]:
            for field in each.fields.values():
                field.disabled = True
    base_url = request.build_absolute_uri("/")
    return render(
        request,
        "app/settings.html",
        {
            "form": form,
            "rules": rules,
            "editable": editable,
            "snippet": tracker_snippet(site, base_url=base_url),
            "drop_ins": drop_ins(site, base_url=base_url),
            "write_keys": site.write_keys.active(),
            "write_key_warning": services.write_key_warning(site),
            "section": "settings",
            "title": "Settings",
        },
    )


def _log_change(user, site: Site, fields: list[str]) -> None:
    """Record a save in the site's admin History, as the admin's own change form does
    (who, when, which fields), so a change made here is not a change no one made."""
    if fields:
        LogEntry.objects.log_actions(
            user.pk, [site], CHANGE, change_message=[{"changed": {"fields": fields}}], single_object=True
        )


SECTIONS = {
    "segments": (
        "Segments",
        "No segments yet.",
        "Segments group people by their properties and what they did; they are built from tracked people and events.",
    ),
    "funnels": (
        "Funnels",
        "No funnels yet.",
        "Funnels show how many people go through a sequence of events; they need tracked events.",
    ),
    "metrics": (
        "Metrics",
        "No metrics yet.",
        "Metrics chart daily counts, conversions and property values; they need tracked events.",
    ),
    "campaigns": (
        "Campaigns",
        "No campaigns yet.",
        "Campaigns react in real time to events, segment changes and abandoned carts.",
    ),
}


@site_page
def section(request, site: Site, name: str):
    title, empty, explanation = SECTIONS[name]
    return render(
        request,
        "app/section_empty.html",
        {"section": name, "title": title, "empty": empty, "explanation": explanation},
    )
