"""Create the admin user and the demo site on a fresh database (idempotent)."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracking import services
from tracking.models import Membership, Site

DEMO_SITE_NAME = "Demo shop"


class Command(BaseCommand):
    help = "Ensure an admin user and a demo site exist (used by make run)."

    def handle(self, *args, **options):
        username = os.environ.get("FOOTPRINT_ADMIN_USER", "admin")
        password = os.environ.get("FOOTPRINT_ADMIN_PASSWORD", "admin")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True, "email": f"{username}@localhost"}
        )
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"Created admin user {username!r} with password {password!r}.")
        site = Site.objects.filter(name=DEMO_SITE_NAME).first()
        if site is None:
            site, _ = services.site_create(name=DEMO_SITE_NAME)
            self.stdout.write(f"Created the demo site (id {site.pk}).")
        Membership.objects.get_or_create(user=user, site=site, defaults={"role": Membership.Role.ADMIN})
