"""Vendors that fail on schedule: every n-th request to a fake gets the next of a cycle of
faults (error statuses, answers held past the client's timeout), the rest are served as
usual. A schedule, not a dice: which request fails depends only on the order they come in.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Scripted


class PeriodicFaults:
    """Mixin for a LocalFakeServer: with ``fault_every`` n, every n-th request (counted
    from 1, among those ``faulty(request)`` accepts) is answered with the next fault of
    ``faults``; ``faults_played`` says which, on what."""

    def __init__(
        self, *args: Any, fault_every: int = 0, faults: Sequence[Scripted] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fault_every = fault_every
        self.faults_played: list[str] = []
        self._fault_cycle = itertools.cycle(faults) if faults else None
        self._counted = itertools.count(1)

    def faulty(self, request: Any) -> bool:
        return True

    def _record(self, request: Any) -> tuple[Scripted | None, list[str]]:
        scripted, problems = super()._record(request)  # type: ignore[misc]
        if (
            scripted is None
            and self._fault_cycle is not None
            and self.fault_every
            and self.faulty(request)
            and next(self._counted) % self.fault_every == 0
        ):
            with self._lock:  # type: ignore[attr-defined]
                scripted = next(self._fault_cycle)
                kind = f"HTTP {scripted.status}" if scripted.status else f"{scripted.delay} s"
                self.faults_played.append(f"{kind}: {request.method} {request.path}")
        return scripted, problems


def error(status: int, body: Any) -> Scripted:
    return Scripted(status=status, body=body)


def timeout(seconds: float) -> Scripted:
    """Held ``seconds`` (longer than the client waits), then served as usual."""
    return Scripted(status=None, delay=seconds)


class FaultyOpenAI(PeriodicFaults, FakeOpenAI):
    """The fake model; only its chat requests fail."""

    def faulty(self, request: Any) -> bool:
        return request.method == "POST" and request.path.endswith("/chat/completions")


class FaultyElevenLabs(PeriodicFaults, FakeElevenLabs):
    """The fake speech service; only its text-to-speech requests fail."""

    def faulty(self, request: Any) -> bool:
        return request.method == "POST" and "/text-to-speech/" in request.path
