"""Demo data for `make run`: a few thousand shoppers over the last 90 days, sent to the
demo site through the ingestion service (``tracking.demo`` plays the traffic)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from tracking.demo import demo_traffic
from tracking.ingest.core import ingest_batch
from tracking.ingest.schema import Kind, Message
from tracking.management.commands.bootstrap import DEMO_SITE_NAME
from tracking.models import Event, Site
from tracking.partitions import ensure_event_partitions

ARRIVAL_DELAY = timedelta(milliseconds=300)  # from a shopper's browser to the tracking API


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
        sent = stored = errors = 0
        with tqdm(total=people, unit="people", desc="Demo traffic", disable=None) as progress:
            for batch in _batches(demo_traffic(seed=seed, people=people, days=days, now=now), batch_size, progress):
                for index, message in enumerate(batch):
                    message.index = index
                    # Each call arrived as it was made (Live events and the people's
                    # timelines show it then); the batch's own time (now) only dates
                    # its message ids for the dedupe.
                    message.received_at = message.timestamp + ARRIVAL_DELAY
                result = ingest_batch(site, batch, received_at=now, actor="load_demo")
                sent, stored, errors = sent + len(batch), stored + len(result.accepted), errors + len(result.errors)
        self.stdout.write(
            f"Demo site {site.name!r}: {people} people, {sent} calls, {stored} stored"
            + (f", {errors} refused" if errors else "")
            + "."
        )


def _batches(traffic: Iterable[list[Message]], size: int, progress: tqdm) -> Iterator[list[Message]]:
    """People's calls in batches of about ``size``: people stay in time order within a
    batch, and batches go in order, so the ingestion service sees each person's calls as
    they happened. Except where that differs from calls sent one by one: a person who
    logs in on a device they browsed anonymously in this batch has that browsing sent
    first, so the identify merges a stored anonymous profile (recorded, as from a real
    tracker) rather than one the batch would have made and merged unseen."""
    batch: list[Message] = []
    users: set[str] = set()  # user ids of calls sent or batched
    anonymous: set[str] = set()  # devices with calls in the batch that named no user
    for messages in traffic:
        for m in messages:
            if m.kind is Kind.IDENTIFY and m.user_id in users and m.anonymous_id in anonymous:
                yield batch
                batch, anonymous = [], set()
            batch.append(m)
            if m.user_id:
                users.add(m.user_id)
            elif m.anonymous_id:
                anonymous.add(m.anonymous_id)
        progress.update(1)
        if len(batch) >= size:
            yield batch
            batch, anonymous = [], set()
    if batch:
        yield batch
