"""The account-wide limit on requests in flight to ElevenLabs, across threads, processes
and (with Redis) machines. Run with REDIS_URL set, the slots are Redis leases; without
it, file locks in DATA_DIR: every test here runs on either."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.elevenlabs import BELLA_ID, FakeElevenLabs
from tests.processes import ROOT, child_env
from voices import concurrency

# A process of the project that renders lines from several threads at the start time given.
RENDERER = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
import django
django.setup()
from voices import speech
start_at, threads, voice_id = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start_at - time.time()))
def render(number):
    speech.synthesize(text=f"Línea {number}", voice_id=voice_id)
with ThreadPoolExecutor(max_workers=threads) as pool:
    list(pool.map(render, range(threads)))
"""

# A process that takes the only slot with a short lease, says so, and hangs until killed.
HOLDER = """
import time
import django
django.setup()
from voices import concurrency
slot = concurrency.acquire(until=time.monotonic() + 10, lease=1.0)
print("held" if slot is not None else "none", flush=True)
time.sleep(60)
"""


def run_python(code: str, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_the_limit_holds_across_processes() -> None:
    # given ElevenLabs allowing 2 requests at once (over that, 429), and three processes
    # of ours, each rendering three lines at the same moment, with a limit of 2
    with FakeElevenLabs(max_concurrent=2, delay=0.2) as fake:
        env = {
            "CALLCENTER_LOCAL_FAKES": "1",
            "ELEVENLABS_API_KEY": "test-key",
            "ELEVENLABS_BASE_URL": fake.url,
            "ELEVENLABS_CONCURRENCY": "2",
            "ELEVENLABS_MAX_RETRIES": "0",  # a 429 would fail the process
        }
        start_at = str(time.time() + 4.0)  # after every process has started Django
        processes = [run_python(RENDERER, start_at, "3", BELLA_ID, **env) for _ in range(3)]
        outputs = [process.communicate(timeout=60) for process in processes]

        # then every line was rendered, never more than 2 at once, and none refused
        for process, (_, stderr) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, stderr.decode()[-2000:]
        assert len(fake.requests_to("/v1/text-to-speech")) == 9
        assert fake.concurrency_rejections == 0
        assert fake.max_in_flight == 2  # the processes did meet: the limit was what held


def test_the_limit_holds_across_threads_of_one_process(settings) -> None:
    settings.ELEVENLABS_CONCURRENCY = 3
    in_flight = peak = 0
    lock = threading.Lock()

    def hold(_: int) -> None:
        nonlocal in_flight, peak
        slot = concurrency.acquire(until=time.monotonic() + 10)
        assert slot is not None
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        slot.release()

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(hold, range(30)))

    assert peak == 3


def test_waiting_for_a_slot_stops_at_the_time_given(settings) -> None:
    settings.ELEVENLABS_CONCURRENCY = 1
    held = concurrency.acquire(until=time.monotonic() + 1)
    started = time.monotonic()

    try:
        assert concurrency.acquire(until=started + 0.2) is None
    finally:
        held.release()

    assert 0.2 <= time.monotonic() - started < 1.5
    again = concurrency.acquire(until=time.monotonic() + 1)  # released: free again
    assert again is not None
    again.release()


@pytest.mark.slow
def test_a_slot_held_by_a_killed_process_comes_back(settings) -> None:
    # given a process holding the only slot (a Redis lease of 1 s, or a file lock)
    settings.ELEVENLABS_CONCURRENCY = 1
    holder = run_python(HOLDER, ELEVENLABS_CONCURRENCY="1")
    try:
        assert holder.stdout.readline().strip() == b"held", holder.stderr.read().decode()
        assert concurrency.acquire(until=time.monotonic() + 0.2) is None

        # when it is killed without releasing it
        holder.kill()
        holder.wait(timeout=10)

        # then the slot comes back: at once for a lock, when its lease expires in Redis
        slot = concurrency.acquire(until=time.monotonic() + 5)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        holder.stdout.close()
        holder.stderr.close()
    assert slot is not None
    slot.release()


def test_a_redis_lease_expires_without_a_release(settings) -> None:
    if not settings.REDIS_URL:
        pytest.skip("file locks have no lease: the kernel frees a dead process's lock")
    settings.ELEVENLABS_CONCURRENCY = 1
    forgotten = concurrency.acquire(until=time.monotonic() + 1, lease=0.5)
    assert forgotten is not None
    started = time.monotonic()

    assert concurrency.acquire(until=started + 0.1) is None
    slot = concurrency.acquire(until=started + 3)

    assert slot is not None and 0.3 <= time.monotonic() - started < 2.5
    slot.release()


def test_no_limit_holds_nothing(settings) -> None:
    settings.ELEVENLABS_CONCURRENCY = 0

    slots = [concurrency.acquire(until=time.monotonic()) for _ in range(100)]

    assert all(slot is not None for slot in slots)
