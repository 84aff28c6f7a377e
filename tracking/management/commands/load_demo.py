"""Demo data for `make run`. The ingestion pipeline fills the demo site with people and
events; until a site has traffic this only makes sure the demo site exists."""

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Load demo data into the demo site."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when demo data exists")

    def handle(self, *args, if_empty: bool = False, **options):
        call_command("bootstrap")
