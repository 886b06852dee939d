"""Fixtures: the real firmware in the MicroPython Unix port behind a pty."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from board_host import BoardHost  # noqa: E402


@pytest.fixture
def board_host() -> Iterator[BoardHost]:
    """A freshly flashed board (temporary filesystem), stopped by PID afterwards."""
    host = BoardHost()
    host.start()
    try:
        yield host
    finally:
        host.stop()


# The cloud bridge's fixtures: a real Mosquitto, and the firmware streaming reports.
from .mqtt_broker import broker, firmware, streaming_board  # noqa: E402, F401
