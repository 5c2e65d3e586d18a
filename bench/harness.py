"""What the benchmarks share: figures, and local fake vendors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.test import override_settings

from tests.fakes.elevenlabs import BELLA_ID, FakeElevenLabs


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


class BenchElevenLabs(FakeElevenLabs):
    voice_id = BELLA_ID


@contextmanager
def fake_elevenlabs() -> Iterator[BenchElevenLabs]:
    """The fake ElevenLabs on loopback, with settings pointing at it."""
    with (
        BenchElevenLabs(api_key="bench-key") as server,
        override_settings(ELEVENLABS_BASE_URL=server.url, ELEVENLABS_API_KEY="bench-key"),
    ):
        yield server
