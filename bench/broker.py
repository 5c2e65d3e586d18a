"""The embedded broker under load from several processes, as web, worker and beat use it.

    .venv/bin/python -m bench.broker [ROUNDS]

Publishers (web and beat sending tasks), consumers (workers) and a process that binds and
unbinds queues on a fanout exchange (workers starting and stopping: Celery's broadcast and
event queues) share one broker folder. Each round runs kombu's own filesystem transport and
then ours (callcenter/broker.py) and prints what each delivered: messages sent, delivered,
delivered twice, never delivered, and the errors that stopped a process. kombu's stops its
consumers with JSONDecodeError, most rounds; ours must deliver every message exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from queue import Empty

from kombu import Connection, Consumer, Exchange, Producer, Queue

TRANSPORTS = {
    "kombu": "kombu.transport.filesystem:Transport",
    "callcenter": "callcenter.broker:Transport",
}
TASKS = Queue("tasks", Exchange("tasks", type="direct"), routing_key="tasks")
BROADCAST = Exchange("broadcast", type="fanout")


def _connection(transport: str, folder: Path) -> Connection:
    return Connection(
        "filesystem://localhost/",
        transport=TRANSPORTS[transport],
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    )


def _publish(transport: str, folder: Path, name: str, count: int, report) -> None:
    try:
        with _connection(transport, folder) as connection:
            producer = Producer(connection.default_channel)
            for number in range(count):
                producer.publish(
                    {"id": f"{name}-{number}"},
                    exchange=TASKS.exchange,
                    routing_key="tasks",
                    declare=[TASKS],
                    serializer="json",
                )
                # A broadcast too (routed through the exchange table the binder rewrites).
                producer.publish({"ping": number}, exchange=BROADCAST, serializer="json")
    except Exception:  # noqa: BLE001 - what stopped the process is the measure
        report.put(("error", name, traceback.format_exc(limit=-3)))


def _consume(transport: str, folder: Path, name: str, stop, report) -> None:
    received: list[str] = []

    def on_message(body: dict, message) -> None:
        received.append(body["id"])
        message.ack()

    try:
        with _connection(transport, folder) as connection:
            connection.transport.polling_interval = 0.01
            with Consumer(connection, [TASKS], callbacks=[on_message], accept=["json"]):
                quiet_since = None
                while True:
                    try:
                        connection.drain_events(timeout=0.2)
                        quiet_since = None
                    except TimeoutError:
                        if not stop.is_set():
                            continue
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > 2:
                            break
    except Exception:  # noqa: BLE001 - what stopped the process is the measure
        report.put(("error", name, traceback.format_exc(limit=-3)))
    finally:
        report.put(("received", name, received))


def _bind_and_unbind(transport: str, folder: Path, name: str, stop, report) -> None:
    try:
        with _connection(transport, folder) as connection:
            channel = connection.default_channel
            number = 0
            while not stop.is_set():
                queue = Queue(f"{name}-{number}", BROADCAST, auto_delete=True)
                queue(channel).declare()
                queue(channel).delete()
                number += 1
    except Exception:  # noqa: BLE001 - what stopped the process is the measure
        report.put(("error", name, traceback.format_exc(limit=-3)))


def stress(transport: str, *, publishers: int = 4, messages: int = 300, consumers: int = 2):
    """Run the load once on ``transport`` ("kombu" or "callcenter"); returns the counts."""
    folder = Path(tempfile.mkdtemp(prefix="callcenter-broker-"))
    for name in ("queue", "control"):  # as settings.py makes them
        (folder / name).mkdir()
    report = multiprocessing.Queue()
    stop = multiprocessing.Event()
    started = time.monotonic()
    background = [
        multiprocessing.Process(target=_consume, args=(transport, folder, f"c{n}", stop, report))
        for n in range(consumers)
    ]
    background.append(
        multiprocessing.Process(
            target=_bind_and_unbind, args=(transport, folder, "b", stop, report)
        )
    )
    senders = [
        multiprocessing.Process(
            target=_publish, args=(transport, folder, f"p{n}", messages, report)
        )
        for n in range(publishers)
    ]
    for process in [*background, *senders]:
        process.start()
    for process in senders:
        process.join()
    stop.set()
    received: list[str] = []
    errors: list[str] = []
    reports = 0
    while reports < consumers:
        try:
            kind, name, value = report.get(timeout=60)
        except Empty:
            break
        if kind == "received":
            reports += 1
            received += value
        else:
            errors.append(f"{name}: {value.strip().splitlines()[-1]}")
    for process in background:
        process.join(timeout=10)
    while not report.empty():
        kind, name, value = report.get()
        if kind == "error":
            errors.append(f"{name}: {value.strip().splitlines()[-1]}")
    shutil.rmtree(folder, ignore_errors=True)
    sent = {f"p{p}-{n}" for p in range(publishers) for n in range(messages)}
    counts = Counter(received)
    return {
        "transport": transport,
        "sent": len(sent),
        "delivered": len(counts),
        "delivered_twice": sum(1 for count in counts.values() if count > 1),
        "undelivered": len(sent - counts.keys()),
        "errors": errors,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    failed = 0
    for number in range(1, rounds + 1):
        for transport in TRANSPORTS:
            result = stress(transport)
            errors = Counter(error for error in result.pop("errors"))
            print(f"round {number}: {result} errors: {dict(errors)}")
            if transport == "callcenter":
                failed += bool(errors or result["undelivered"] or result["delivered_twice"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
