"""`bpiiot flash` against the MicroPython Unix port on a pty, for real: mpy-cross,
mpremote over the pty, hash-checked copies, config merge, reset and hello; and the
failure paths with their messages."""

from __future__ import annotations

import json
import os
import pty
import shutil
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from fw_link import BoardHost, Client

from bpiiot import cli_flash
from bpiiot import flash as flash_mod
from bpiiot import messages as m

KEY = bytes(range(0x40, 0x60))
SOURCE = flash_mod.default_source()


@pytest.fixture
def bare_board() -> Iterator[BoardHost]:
    # A board with MicroPython and an empty filesystem: its REPL runs on the pty.
    host = BoardHost(source=None)
    host.start()
    try:
        yield host
    finally:
        host.stop()


def test_flash_then_reflash_only_what_changed(bare_board: BoardHost) -> None:
    host = bare_board
    events: list[flash_mod.Progress] = []
    result = flash_mod.flash(
        host.port,
        arch="unix",
        resume=True,
        board_id="lathe-07",
        key=KEY,
        sample_rate_hz=3200,
        progress=events.append,
    )
    fw = sorted(n[:-3] for n in flash_mod.shipped_modules(SOURCE))
    assert result.arch == "x64"
    assert sorted(result.copied) == sorted(["main.py", *(f"bpiiot_fw/{n}.mpy" for n in fw)])
    assert result.config_written and not result.unchanged
    assert result.hello is not None and result.hello.board_id == "lathe-07"
    assert result.hello.firmware_version == flash_mod.firmware_version(SOURCE)
    # Only compiled modules on the board, no sources to shadow them.
    assert sorted(p.name for p in (host.fs_dir / "bpiiot_fw").iterdir()) == [f"{n}.mpy" for n in fw]
    cfg = json.loads((host.fs_dir / "bpiiot.json").read_text())
    assert cfg["key"] == KEY.hex() and cfg["sample_rate_hz"] == 3200 and cfg["boot"] == 1
    assert cfg.get("wdt_ms", 0) == 0  # no watchdog by default on the Unix port
    # Progress: every copied file reported its bytes up to its full size.
    done = {e.path for e in events if e.step == "copy" and e.done == e.total > 0}
    assert done == set(result.copied)
    # The board is asked what it loads before anything is built for it.
    assert [e.step for e in events if e.step in ("build", "connect", "reset", "hello")] == [
        "connect",
        "build",
        "reset",
        "hello",
    ]

    # The compiled firmware works: authenticated, configured, and computing windows.
    c = Client(host.port, KEY)
    try:
        hello = c.sync()
        assert hello.board_id == "lathe-07"
        replies, ack = c.command(m.GetConfig())
        assert ack.authenticated and replies[0].message.sample_rate_hz == 3200
        deadline = time.monotonic() + 4
        while not c.reports and time.monotonic() < deadline:
            c.recv(0.2)
        assert c.reports and c.reports[0].samples == 3200
    finally:
        c.close()

    # Again, with nothing changed: the running app is stopped, nothing is copied, the
    # boot counter (kept in the merged config) still grows.
    again = flash_mod.flash(host.port, arch="unix", resume=True, key=KEY, wdt_ms=5000)
    assert again.copied == [] and sorted(again.unchanged) == sorted(result.copied)
    assert again.hello is not None and again.hello.boot_counter == 2
    cfg = json.loads((host.fs_dir / "bpiiot.json").read_text())
    assert cfg["board_id"] == "lathe-07" and cfg["wdt_ms"] == 5000 and again.config_written


def test_flash_over_running_source_firmware_removes_stale_sources() -> None:
    host = BoardHost()  # the .py firmware is running
    host.start()
    try:
        result = flash_mod.flash(host.port, arch="unix", resume=True)
        # Every source goes: shadowing ones and host-only ones (codec_host) alike.
        assert sorted(result.removed) == sorted(
            f"bpiiot_fw/{p.name}" for p in (SOURCE / "bpiiot_fw").glob("*.py")
        )
        assert not list((host.fs_dir / "bpiiot_fw").glob("*.py"))
        shipped = sorted(p.name for p in (host.fs_dir / "bpiiot_fw").iterdir())
        assert shipped == [n[:-3] + ".mpy" for n in flash_mod.shipped_modules(SOURCE)]
        assert result.hello is not None and result.hello.boot_counter == 2
        assert 76 in host.exit_codes  # the app left for the REPL on mpremote's escape
        assert not result.config_written
    finally:
        host.stop()


def test_cli_never_prints_the_key(
    bare_board: BoardHost, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOARD_KEY", KEY.hex())
    code = cli_flash.main(
        ["flash", bare_board.port, "--arch", "unix", "--resume", "--key-env", "BOARD_KEY"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "copy bpiiot_fw/codec.mpy" in out and "(key set)" in out
    assert "board bpiiot-mp runs firmware 0.1.0" in out
    for text in (out, err):
        assert KEY.hex() not in text and KEY.hex().upper() not in text


def test_no_such_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(flash_mod.NoSuchPort, match="no such port"):
        flash_mod.flash("/dev/ttyNOSUCH9", arch="unix")
    assert cli_flash.main(["flash", "/dev/ttyNOSUCH9"]) == 1
    assert "error: /dev/ttyNOSUCH9: no such port" in capsys.readouterr().err


def test_real_boards_get_a_watchdog_by_default() -> None:
    for arch in ("rp2040", "esp32", "stm32f4"):
        assert flash_mod.watchdog_ms(flash_mod.resolve_arch(arch), None) == 8000
    assert flash_mod.watchdog_ms(flash_mod.resolve_arch("unix"), None) == 0
    assert flash_mod.watchdog_ms("armv6m", 0) == 0
    with pytest.raises(flash_mod.FlashError, match="watchdog timeout"):
        flash_mod.flash("/dev/null", arch="rp2040", wdt_ms=-1)


def test_bad_arguments_are_refused_before_touching_the_port() -> None:
    with pytest.raises(flash_mod.FlashError, match="unknown architecture"):
        flash_mod.flash("/dev/null", arch="z80")
    with pytest.raises(flash_mod.FlashError, match="16 to 32 bytes"):
        flash_mod.flash("/dev/null", arch="unix", key=b"short")
    with pytest.raises(flash_mod.FlashError, match="board id"):
        flash_mod.flash("/dev/null", arch="unix", board_id="has space")


def test_wrong_port_is_not_a_micropython_board() -> None:
    # A GPS-like device: talks NMEA, ignores what it is sent.
    master, slave = pty.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def gps() -> None:
        while not stop.is_set():
            try:
                os.write(master, b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M*47\r\n")
            except OSError:
                return
            time.sleep(0.1)

    t = threading.Thread(target=gps, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(flash_mod.NotMicroPython, match="no MicroPython REPL answers here"):
            flash_mod.flash(os.ttyname(slave), arch="unix", resume=True)
        assert time.monotonic() - t0 < 10
    finally:
        stop.set()
        t.join(2)
        os.close(master)
        os.close(slave)


def test_board_not_answering(tmp_path: Path, bare_board: BoardHost) -> None:
    # Firmware whose main.py never says hello.
    src = tmp_path / "fw"
    shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "main.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    with pytest.raises(flash_mod.BoardNotAnswering, match="no hello from the firmware"):
        flash_mod.flash(bare_board.port, arch="unix", resume=True, source=src, timeout_s=2)
    assert bare_board.boots == 1  # it was reset and started the silent main.py


def test_only_what_runs_is_shipped(tmp_path: Path) -> None:
    names = flash_mod.shipped_modules(SOURCE)
    assert "codec_host.py" not in names and "dsp_ref.py" not in names
    # Everything else in the package is shipped (a new module must be listed).
    assert set(names) == {p.name for p in (SOURCE / "bpiiot_fw").glob("*.py")} - {"codec_host.py"}
    files = flash_mod.build(SOURCE, tmp_path, "armv6m")
    assert [r for r, _ in files] == ["main.py", *(f"bpiiot_fw/{n[:-3]}.mpy" for n in names)]


def test_mpy_compatibility_is_read_from_sys_implementation() -> None:
    def mpy(ver: int, sub: int, arch: str) -> int:
        return ver | sub << 8 | flash_mod.MPY_ARCHES.index(arch) << 10

    assert flash_mod.check_board_mpy(2822, (6, 3)) == "x64"  # this Unix port: 0xb06
    assert flash_mod.check_board_mpy(mpy(6, 3, "armv6m"), (6, 3)) == "armv6m"
    assert flash_mod.check_board_mpy(mpy(6, 3, "xtensawin"), (6, 3)) == "xtensawin"
    for bad, says in (
        (mpy(6, 2, "armv6m"), "runs MicroPython 1.22 (.mpy v6.2)"),
        (mpy(6, 3, "rv32imc"), "no native code emitter"),
        (None, "no sys.implementation._mpy"),
    ):
        with pytest.raises(flash_mod.IncompatibleMicroPython) as err:
            flash_mod.check_board_mpy(bad, (6, 3))
        text = str(err.value)
        assert says in text and "install MicroPython 1.23 or later" in text
        assert "\n" not in text  # one line


def test_an_incompatible_board_is_refused_before_anything_is_copied(
    bare_board: BoardHost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real board (Unix port, .mpy v6.3) against an mpy-cross that would emit v6.4.
    monkeypatch.setattr(flash_mod, "emitted_mpy_version", lambda: (6, 4))
    with pytest.raises(flash_mod.IncompatibleMicroPython, match=r"v6\.3.*needs \.mpy v6\.4"):
        flash_mod.flash(bare_board.port, arch="unix", resume=True)
    # The command line says it in one line and fails.
    code = cli_flash.main(["flash", bare_board.port, "--arch", "unix", "--resume", "-q"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: the board runs MicroPython 1.23")
    assert "install MicroPython" in err
    assert not (bare_board.fs_dir / "bpiiot_fw").exists()
    assert not (bare_board.fs_dir / "main.py").exists()
