"""The serverless broker (no ``CELERY_BROKER_URL``): kombu's filesystem transport, with
each message written whole before it can be taken.

kombu's own ``_put`` creates the message file under its final name and then writes it,
and ``_get`` moves and reads files without the writer's lock, so a worker could read an
empty file: ``JSONDecodeError`` in the worker's consumer, an unrecoverable error that
stopped the worker (and ``make run`` with it; kombu issue #1551). Here a message is
written under a name ``_get`` skips (it takes only ``<queue>.msg``) and renamed into
place, which is atomic within a directory.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def use_whole_message_files() -> None:
    """Make ``filesystem://`` this transport, in every process that loads the settings
    (web, worker, beat) before any of them connects."""
    TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"
