"""Access control for the marketer UI: every page under /app/s/<site_id>/ goes through
``site_page``, which 404s for sites the user does not belong to (so another site's pages
are indistinguishable from pages that do not exist)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from tracking.models import Membership, Site

ROLE_RANK = {Membership.Role.VIEWER: 1, Membership.Role.EDITOR: 2, Membership.Role.ADMIN: 3}
LAST_SITE_SESSION_KEY = "footprint_site_id"


def role_for(user, site: Site) -> str | None:
    if user.is_superuser:
        return Membership.Role.ADMIN
    membership = Membership.objects.filter(user=user, site=site).only("role").first()
    return membership.role if membership else None


def can(user, site: Site, role: str) -> bool:
    current = role_for(user, site)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def site_page(view=None, *, role: str = Membership.Role.VIEWER):
    """Load the URL's site among the user's sites; set request.footprint_site."""

    def decorator(func):
        @login_required
        @wraps(func)
        def wrapper(request, site_id: int, *args, **kwargs):
            sites = list(Site.objects.for_user(request.user))
            site = next((s for s in sites if s.pk == site_id), None)
            if site is None:
                raise Http404("No such site.")
            request.footprint_role = role_for(request.user, site)
            if ROLE_RANK[request.footprint_role] < ROLE_RANK[role]:
                raise PermissionDenied(f"This page needs the {role} role on {site}.")
            request.footprint_site = site
            request.footprint_sites = sites
            request.session[LAST_SITE_SESSION_KEY] = site.pk
            return func(request, site, *args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator
