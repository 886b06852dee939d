"""Builds the Uno firmware, its host codec and the simavr bridge once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .uno_codec import UnoCodec

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
