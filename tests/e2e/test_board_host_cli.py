"""tools/board_host.py on the command line: signal parameters, and cleanup on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import bpiiot

ROOT = Path(__file__).resolve().parents[2]


def test_signal_parameters_reach_the_firmware_and_sigterm_removes_temp_files() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools/board_host.py"), "--signal", "bearing",
         "--wear-s", "30", "--temp-start-c", "50", "--temp-rise-c", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        port = proc.stdout.readline().strip()
        where = proc.stderr.readline()
        fs = Path(where.split("board filesystem: ")[1].split(";")[0])
        cfg = json.loads((fs / "bpiiot.json").read_text())
        assert cfg["sensor"]["signal"] == {"kind": "bearing", "seed": 1, "life_s": 30}
        assert (cfg["sensor"]["cdeg"], cfg["sensor"]["rise_cdeg"]) == (5000, 3000)
        with bpiiot.connect(port) as board:
            report = next(board.reports(timeout_s=10))
        assert report.temperature_cdeg_c is not None and report.temperature_cdeg_c >= 5000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not fs.exists() and not fs.parent.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
