"""`bpiiot monitor` against the real firmware."""

from __future__ import annotations

import json
import subprocess
import sys


def test_monitor_json_prints_verified_reports_and_counters(board_host) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "monitor", board_host.port, "--json", "--count", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    reports = [x for x in lines if x.get("kind") == "report"]
    assert len(reports) == 2
    assert reports[1]["window_seq"] == reports[0]["window_seq"] + 1
    assert len(reports[0]["vel_rms_um_s"]) == 3
    link = lines[-1]["link"]
    assert link["frames_ok"] >= 4 and link["frames_dropped"] == 0


def test_monitor_text_mode(board_host) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "monitor", board_host.port, "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("board bpiiot-mp firmware") and "protocol 1.0" in first
    assert any(" report " in line and "vel_rms_um_s=" in line for line in proc.stdout.splitlines())
