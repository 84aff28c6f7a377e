"""Demo data for `make run`: a few thousand shoppers over the last 90 days, sent to the
demo site through the ingestion service (``tracking.demo`` plays the traffic)."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from tracking.demo import demo_traffic
from tracking.ingest.core import ingest_batch
from tracking.management.commands.bootstrap import DEMO_SITE_NAME
from tracking.models import Event, Site
from tracking.partitions import ensure_event_partitions


class Command(BaseCommand):
    help = "Load demo traffic into the demo site through the ingestion service."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the demo site has events")
        parser.add_argument("--people", type=int, default=3000)
        parser.add_argument("--days", type=int, default=90)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--batch-size", type=int, default=500, help="messages per ingest_batch call")

    def handle(self, *args, if_empty: bool, people: int, days: int, seed: int, batch_size: int, **options):
        call_command("bootstrap")
        site = Site.objects.get(name=DEMO_SITE_NAME)
        if if_empty and Event.objects.filter(site=site).exists():
            self.stdout.write("The demo site has events already; no demo data loaded.")
            return
        ensure_event_partitions(months_back=days // 28 + 1, months_ahead=3)
        now = timezone.now()
        batch: list = []
        sent = stored = errors = 0
        with tqdm(total=people, unit="people", desc="Demo traffic", disable=None) as progress:
            # People stay whole and in time order within a batch, and batches go in
            # order, so the ingestion service sees each person's calls as they happened.
            for messages in demo_traffic(seed=seed, people=people, days=days, now=now):
                batch.extend(messages)
                progress.update(1)
                if len(batch) >= batch_size:
                    sent, stored, errors = self._send(site, batch, sent, stored, errors, now)
                    batch = []
            if batch:
                sent, stored, errors = self._send(site, batch, sent, stored, errors, now)
        self.stdout.write(
            f"Demo site {site.name!r}: {people} people, {sent} calls, {stored} stored"
            + (f", {errors} refused" if errors else "")
            + "."
        )

    @staticmethod
    def _send(site, batch, sent, stored, errors, now):
        for index, message in enumerate(batch):
            message.index = index
        result = ingest_batch(site, batch, received_at=now, actor="load_demo")
        return sent + len(batch), stored + len(result.accepted), errors + len(result.errors)
