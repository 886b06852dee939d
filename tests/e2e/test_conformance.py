"""`bpiiot conformance` against the real MicroPython firmware, MAC off and on."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tty

import bpiiot
from bpiiot.conformance import run

KEY = bytes(range(100, 132))


def test_conformance_mac_off_with_reboot(board_host) -> None:
    result = run(board_host.port, output_pin=2, reboot=True)
    text = result.render()
    assert result.passed, text
    names = [c.name for c in result.checks]
    # Every area of the suite ran: the firmware announces every command's capability,
    # so only the missing-capability check does not apply.
    not_passed = [c.name for c in result.checks if c.status != "pass"]
    assert not_passed == ["a command of a capability not announced: nack unsupported"], text
    assert result.check("reboot: acked, hello with seq 1 unasked, boot counter + 1, counters reset")
    assert any("reboot" in n for n in names) and any("MAC" in n or "set_key" in n for n in names)
    assert result.frames_checked > 20


def test_conformance_mac_on_leaves_the_key_in_place(board_host) -> None:
    with bpiiot.connect(board_host.port) as board:
        board.set_key(KEY)
    result = run(board_host.port, key=KEY, output_pin=2)
    assert result.passed, result.render()
    # The board still wants the key afterwards: a keyless link gets no answer...
    with bpiiot.connect(board_host.port, key=KEY) as board:
        board.ping()
        assert board.stats.frames_dropped == 0
    # ...and a link without it is told so, not left waiting.
    try:
        bpiiot.connect(board_host.port, timeout_s=1.0)
    except bpiiot.KeyRequired as exc:
        assert "MAC key" in str(exc)
    else:
        raise AssertionError("a keyed board answered a keyless link")


def test_conformance_cli_reports_and_exit_code(board_host, tmp_path) -> None:
    env = {**os.environ, "BPIIOT_LINK_KEY": ""}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bpiiot.cli",
            "conformance",
            board_host.port,
            "--json",
            "--output-pin",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and doc["counts"]["fail"] == 0
    assert doc["hello"]["protocol_version"] == [1, 0]


def test_conformance_fails_cleanly_without_a_board(tmp_path) -> None:
    result = run(str(tmp_path / "no-such-tty"))
    assert not result.passed
    assert result.checks[0].name == "open port"
    assert "cannot open" in result.checks[0].detail


def test_a_silent_port_fails_every_closing_check_and_reports_the_rest_not_run() -> None:
    master, slave = pty.openpty()  # nothing answers on the other side
    try:
        tty.setraw(slave)
        result = run(os.ttyname(slave), timeout_s=0.3)
    finally:
        os.close(master)
        os.close(slave)
    assert not result.passed
    by_status: dict[str, list[str]] = {}
    for c in result.checks:
        by_status.setdefault(c.status, []).append(c.name)
    assert by_status["fail"][0] == "hello on request, protocol 1.x"
    closing = [c for c in result.checks if c.name.startswith(("every ", "no board", "board seq"))]
    assert len(closing) == 5
    assert all(c.status == "fail" and "no board frame was seen" in c.detail for c in closing)
    assert len(by_status["not run"]) > 40
    assert all(
        c.detail == "no hello from the board" for c in result.checks if c.status == "not run"
    )
