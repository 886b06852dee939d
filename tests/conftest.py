"""Suite-wide settings: with BPIIOT_STRICT=1 (CI) a skipped test is a failure."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

# tools/ holds the board host harness (firmware in the Unix port) the suites share.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

STRICT = os.environ.get("BPIIOT_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        # CI must prove the real parts ran: a component missing is a failure there.
        report.outcome = "failed"
        report.longrepr = f"skipped in strict mode (BPIIOT_STRICT=1): {report.longrepr}"
