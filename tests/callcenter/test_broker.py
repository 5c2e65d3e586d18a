"""The embedded default's broker (callcenter/broker.py): messages and exchange tables that
several processes write and read at once are never seen half written."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from kombu.exceptions import ChannelError

from bench.broker import stress
from callcenter import broker


def connection(folder: Path) -> Connection:
    for name in ("queue", "control"):
        (folder / name).mkdir(exist_ok=True)
    return Connection(
        "filesystem://localhost/",
        transport="callcenter.broker:Transport",
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
        },
    )


def test_broker_delivers_every_message_once_to_consumers_in_other_processes() -> None:
    # given publishers, consumers and a process binding and unbinding broadcast queues,
    # each a process of its own (kombu's transport stops its consumers here, most runs)
    result = stress("callcenter", publishers=3, messages=150, consumers=2)

    assert result["errors"] == []
    assert (result["delivered"], result["undelivered"], result["delivered_twice"]) == (450, 0, 0)


def test_broker_sets_aside_a_half_written_message_and_delivers_the_next(tmp_path, caplog) -> None:
    # given an empty message file, as kombu's transport leaves one when its process stops
    # between creating the file and writing it, queued before a whole message
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        (tmp_path / "queue" / "0_left-empty.tasks.msg").write_bytes(b"")
        channel._put("tasks", {"body": "whole"})

        # when a worker takes the next message
        with caplog.at_level(logging.WARNING, logger="callcenter.broker"):
            message = channel._get("tasks")

    # then it gets the whole one; the empty file is kept aside, named in the log
    assert message == {"body": "whole"}
    assert os.listdir(tmp_path / "unreadable") == ["0_left-empty.tasks.msg"]
    assert os.listdir(tmp_path / "queue") == []
    assert "0_left-empty.tasks.msg" in caplog.text


def test_broker_leaves_no_message_file_when_writing_it_fails(tmp_path, monkeypatch) -> None:
    class FullDisk:
        def __init__(self, descriptor: int, mode: str) -> None:
            self.file = open(descriptor, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            self.file.close()

        def write(self, data: bytes) -> None:
            self.file.write(data[:10])
            raise OSError(28, "No space left on device")

    with connection(tmp_path) as conn:
        channel = conn.default_channel
        monkeypatch.setattr(broker.os, "fdopen", FullDisk)

        with pytest.raises(ChannelError):
            channel._put("tasks", {"body": "x" * 100})

    # neither a message a worker would read nor the partial file is left
    assert os.listdir(tmp_path / "queue") == []


def test_broker_takes_an_unreadable_exchange_table_as_empty_and_writes_it_anew(
    tmp_path, caplog
) -> None:
    broadcast = Exchange("broadcast", type="fanout")
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        (tmp_path / "control" / "broadcast.exchange").write_bytes(b'[["", "", "wor')

        with caplog.at_level(logging.WARNING, logger="callcenter.broker"):
            assert channel.get_table("broadcast") == []
        Queue("worker-1", broadcast)(channel).declare()

        assert [binding.queue for binding in channel.get_table("broadcast")] == ["worker-1"]
    assert "broadcast.exchange" in caplog.text


def _bind(folder: str, name: str, barrier) -> None:
    with connection(Path(folder)) as conn:
        for number in range(25):
            exchange = Exchange(f"broadcast-{number}", type="fanout")
            barrier.wait(timeout=30)  # all four bind to this exchange at the same moment
            Queue(name, exchange)(conn.default_channel).declare()


def test_broker_keeps_every_binding_made_by_processes_at_once(tmp_path) -> None:
    # given four processes binding a queue each to the same new exchanges at the same time
    barrier = multiprocessing.Barrier(4)
    processes = [
        multiprocessing.Process(target=_bind, args=(str(tmp_path), f"worker-{n}", barrier))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)

    # then each exchange's table holds all four (read, change and write under one lock)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    with connection(tmp_path) as conn:
        tables = [conn.default_channel.get_table(f"broadcast-{n}") for n in range(25)]
    assert [sorted(binding.queue for binding in table) for table in tables] == [
        [f"worker-{n}" for n in range(4)]
    ] * 25
