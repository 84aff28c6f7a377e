"""The dedupe table's prune reads a btree on first_seen, not a BRIN.

The prune deleted at most 1M message ids every 6 hours (about 46 a second) through the
BRIN: each batch's bitmap scan re-read the pages earlier batches had emptied until a
vacuum, and once vacuumed, new ids filled the freed pages all over the table, so every
range's summary widened to the whole horizon and the BRIN stopped narrowing anything.
Past that rate the table grew without end. A btree finds the oldest ids wherever they
lie, and a run goes on from the last one it deleted (``tracking.tasks``). Built
concurrently: the table takes every ingested message id.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tracking", "0010_inbox_no_vacuum_truncate")]

    operations = [
        AddIndexConcurrently(
            model_name="messagededupe",
            index=models.Index(fields=["first_seen"], name="dedupe_first_seen"),
        ),
        RemoveIndexConcurrently(model_name="messagededupe", name="dedupe_first_seen_brin"),
    ]
