"""The serverless broker writes each message whole before a worker can take it
(config/broker.py): kombu's own filesystem transport let a worker read an empty file
and stop (JSONDecodeError, kombu issue #1551)."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from kombu import Connection, Queue

from config import broker


@pytest.fixture
def options(tmp_path):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "store_processed": False,
        "control_folder": str(folders["control"]),
    }


def connect(options) -> Connection:
    return Connection("filesystem://", transport="config.broker:Transport", transport_options=options)


def test_a_message_appears_under_its_queue_name_only_once_written(options, monkeypatch):
    seen_before_rename = []
    rename = os.replace

    def watch(src, dst):
        seen_before_rename.append(sorted(os.listdir(options["data_folder_out"])))
        assert os.path.getsize(src) > 0
        rename(src, dst)

    monkeypatch.setattr(broker.os, "replace", watch)
    with connect(options) as connection:
        connection.Producer(serializer="json").publish({"n": 1}, routing_key="celery", declare=[Queue("celery")])
        [listing] = seen_before_rename
        assert not [name for name in listing if name.endswith(".celery.msg")]  # only the .part
        message = connection.SimpleQueue("celery").get(timeout=1)
        assert message.payload == {"n": 1}
        message.ack()


def _produce(options, count):
    with connect(options) as connection:
        producer = connection.Producer(serializer="json")
        for n in range(count):
            producer.publish({"n": n}, routing_key="celery", declare=[Queue("celery")])


def test_a_consumer_never_reads_a_message_being_written(options):
    # Two writer processes and a reader, as web, beat and worker are: the stock transport
    # failed this within a few hundred to a few thousand messages.
    count = 1500
    writers = [multiprocessing.get_context("fork").Process(target=_produce, args=(options, count)) for _ in range(2)]
    for writer in writers:
        writer.start()
    received = []
    with connect(options) as connection:
        queue = connection.SimpleQueue("celery")
        while len(received) < 2 * count:
            try:
                message = queue.get(timeout=10)
            except queue.Empty:
                break
            received.append(message.payload["n"])  # the stock transport: JSONDecodeError here
            message.ack()
    for writer in writers:
        writer.join()
    assert sorted(received) == sorted(list(range(count)) * 2)


def test_filesystem_urls_use_it_once_the_settings_say_so():
    from kombu.transport import resolve_transport

    broker.use_whole_message_files()
    assert resolve_transport("filesystem") is broker.Transport
