"""Suite-wide settings: with BPIIOT_STRICT=1 (CI) a skipped test is a failure."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

STRICT = os.environ.get("BPIIOT_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        # CI must prove the real parts ran: a component missing is a failure there.
        report.outcome = "failed"
        report.longrepr = f"skipped in strict mode (BPIIOT_STRICT=1): {report.longrepr}"
