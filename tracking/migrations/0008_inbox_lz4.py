"""Queued requests compressed with lz4 and kept in the row, where the server has lz4.

A batch of 100 messages is about 30 KB of queued text. Stored uncompressed out of line
(0006), each request wrote some 15 TOAST rows and index entries and its bytes to the WAL
twice over. lz4 shrinks it about 4x (to ~8 KB, kept in the row: STORAGE MAIN) for little
CPU (pglz cost the web request more than the write, so 0006 did not compress). In the
bench's /v1/batch phase, stored events/s rose 7,960-7,976 -> 8,686-8,960 (alternating
runs). A server built without lz4 (the embedded PostgreSQL of `make run`) keeps 0006's
uncompressed out-of-line storage.
"""

from django.db import migrations

LZ4 = "ALTER TABLE tracking_inboxbatch ALTER COLUMN messages SET STORAGE MAIN, ALTER COLUMN messages SET COMPRESSION lz4"
PLAIN = "ALTER TABLE tracking_inboxbatch ALTER COLUMN messages SET STORAGE EXTERNAL, ALTER COLUMN messages SET COMPRESSION DEFAULT"


def has_lz4(cursor) -> bool:
    cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    row = cursor.fetchone()
    return bool(row and row[0])


def compress(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if has_lz4(cursor):
            cursor.execute(LZ4)


def uncompress(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PLAIN)


class Migration(migrations.Migration):
    dependencies = [("tracking", "0007_write_lean_indexes")]

    operations = [migrations.RunPython(compress, uncompress)]
