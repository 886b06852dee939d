"""Loading the conformance vectors of protocol/vectors/ for the test suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTOR_DIR = ROOT / "protocol" / "vectors"
CDDL = ROOT / "protocol" / "bpiiot.cddl"


def load() -> list[dict[str, Any]]:
    """Every vector of every file, each with a ``file`` key added."""
    out = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        for v in json.loads(path.read_text())["vectors"]:
            out.append({**v, "file": path.stem})
    return out


VECTORS = load()
