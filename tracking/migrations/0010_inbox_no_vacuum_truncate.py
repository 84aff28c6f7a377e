"""VACUUM never truncates the inbox.

The inbox is a queue: once drained it is empty, and a VACUUM (the drain's every 10 s, or
autovacuum) then cut the table back, which takes an ACCESS EXCLUSIVE lock on it, so every
/v1/* request's INSERT waited until the truncation ended. Sampled under paced /v1/track
load: inserts waiting on Lock:relation while ``VACUUM (SKIP_LOCKED) tracking_inboxbatch``
was in IO:DataFileTruncate. The pages it gave back were needed again by the next requests.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tracking", "0009_inbox_lanes")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE tracking_inboxbatch SET (vacuum_truncate = false)",
            "ALTER TABLE tracking_inboxbatch RESET (vacuum_truncate)",
        )
    ]
