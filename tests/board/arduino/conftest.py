"""Builds the Uno firmware, its host codec and the simavr bridge once per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .uno_codec import UnoCodec

ROOT_TOOLS = Path(__file__).resolve().parents[3] / "tools"
sys.path.insert(0, str(ROOT_TOOLS))

from uno_sim import UnoSim  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "build" / "uno"


@pytest.fixture(scope="session")
def uno_build() -> Path:
    """`make uno` (incremental: outputs cached under build/uno/); returns build/uno."""
    subprocess.run(["make", "-s", "uno"], cwd=ROOT, check=True, capture_output=True)
    return OUT


@pytest.fixture(scope="session")
def uno_codec() -> UnoCodec:
    """The firmware's C++ codec compiled for the host (`make uno-host`)."""
    subprocess.run(["make", "-s", "uno-host"], cwd=ROOT, check=True, capture_output=True)
    return UnoCodec(OUT / "host" / "libuno_codec.so")


@pytest.fixture
def uno(uno_build: Path) -> Iterator[UnoSim]:
    """A fresh simulated Uno (blank EEPROM) running the firmware ELF; stopped by PID."""
    sim = UnoSim()
    sim.start()
    try:
        yield sim
    finally:
        sim.close()
