"""The MicroPython firmware in the Unix port over a pty, driven with the SDK's wire
module: hello, every command, nack codes, MAC on and off, persistence across
reboots, garbage, and no crash text ever in the stream."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from board_host import micropython_binary, run_script
from fw_link import BoardHost, Client

from bpiiot import flash as flash_mod
from bpiiot import messages as m
from bpiiot import wire

KEY = bytes(range(0xA0, 0xC0))
OTHER_KEY = bytes(range(16))


@pytest.fixture
def board() -> Iterator[tuple[BoardHost, Client]]:
    host = BoardHost()
    port = host.start()
    client = Client(port)
    try:
        yield host, client
    finally:
        client.close()
        host.stop()
    # Whatever happened, no text (a traceback, a REPL banner) reached the stream.
    assert b"Traceback" not in client.raw
    assert b"MicroPython" not in client.raw


def _status(client: Client) -> m.Status:
    replies, ack = client.command(m.GetStatus())
    assert isinstance(ack.message, m.Ack)
    assert len(replies) == 1 and isinstance(replies[0].message, m.Status)
    return replies[0].message


def _output_becomes(fs: Path, pin: int, want: int, timeout: float = 3.0) -> bool:
    """True once outputs.json records pin at want.

    The firmware writes files from its main loop after draining the sample ring, not
    while answering a command, so the record may lag the ack by a loop turn.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json.loads((fs / "outputs.json").read_text()).get(str(pin)) == want:
                return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _saved_becomes(fs: Path, field: str, want: object, timeout: float = 3.0) -> bool:
    """True once the saved configuration holds want in field (written from the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json.loads((fs / "bpiiot.json").read_text()).get(field, "?") == want:
                return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _config(client: Client) -> m.Config:
    replies, ack = client.command(m.GetConfig())
    assert isinstance(ack.message, m.Ack)
    assert isinstance(replies[0].message, m.Config)
    return replies[0].message


def test_hello_every_command_and_reports(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    hello = c.sync()
    assert hello.board_id == "bpiiot-mp"
    assert hello.protocol_version == (1, 0)
    assert hello.firmware_version == (0, 1, 0)
    caps = m.CAP_AUTH | m.CAP_OUTPUTS | m.CAP_REBOOT | m.CAP_PERSIST | m.CAP_SLIDING
    assert hello.capabilities & caps == caps
    assert hello.boot_counter == 1

    replies, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack) and not replies

    status = _status(c)
    assert status.frames_sent >= 3 and 0 < status.free_memory_bytes < 192 * 1024
    assert status.frames_rejected == 0

    assert _config(c) == m.Config(3200, 1000, 1000, 15, 2)

    # hello_request: hello first, then the ack.
    replies, ack = c.command(m.HelloRequest())
    assert isinstance(ack.message, m.Ack) and isinstance(replies[0].message, m.Hello)
    assert replies[0].message.last_host_seq == c.enc.seq

    # set_config: config then ack; windows of 500 ms at 3200 S/s carry 1600 samples.
    replies, ack = c.command(m.SetConfig(window_ms=500, hop_ms=250, channels=0b0011))
    assert isinstance(ack.message, m.Ack), ack.message
    assert replies[0].message == m.Config(3200, 500, 250, 3, 2)
    c.reports.clear()
    deadline = time.monotonic() + 5
    while len(c.reports) < 3 and time.monotonic() < deadline:
        c.recv(0.2)
    assert len(c.reports) >= 3
    r = c.reports[-1]
    assert r.samples == 1600
    assert r.acc_rms_mg[2] == 0 and r.acc_peak_mg[2] == 0 and r.vel_rms_um_s[2] == 0  # z off
    assert r.acc_rms_mg[0] > 0 and r.temperature_cdeg_c is None  # temperature off
    assert c.reports[-1].window_seq == c.reports[-2].window_seq + 1
    # Sliding: 250 ms hop, so about 4 reports per second, not 2.
    t0 = time.monotonic()
    n0 = len(c.reports)
    while time.monotonic() - t0 < 1.5:
        c.recv(0.1)
    assert len(c.reports) - n0 >= 4

    # set_output: ack, and the host driver records the state.
    replies, ack = c.command(m.SetOutput(2, 1))
    assert isinstance(ack.message, m.Ack)
    assert _output_becomes(host.fs_dir, 2, 1)
    replies, ack = c.command(m.SetOutput(2, 0))
    assert _output_becomes(host.fs_dir, 2, 0)

    status = _status(c)
    assert status.windows >= 3 and status.overruns == 0
    assert 0 <= status.cpu_load_permille <= 1000


def test_nack_codes(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    c.sync()
    ping = b"\x80"

    def nack(data: bytes) -> m.Nack:
        _, reply = c.exchange(data)
        assert isinstance(reply.message, m.Nack), reply.message
        return reply.message

    assert nack(c.frame(0x50, ping)).code == m.NackCode.UNKNOWN_TYPE
    assert nack(c.frame(0x7F, ping)).code == m.NackCode.UNKNOWN_TYPE
    assert nack(c.frame(m.Ping.TYPE, b"\xff")).code == m.NackCode.BAD_ARGS  # not CBOR
    assert nack(c.frame(m.Ping.TYPE, b"\x80\x00")).code == m.NackCode.BAD_ARGS  # trailing
    assert nack(c.frame(m.Ping.TYPE, b"\xf6")).code == m.NackCode.BAD_ARGS  # null
    assert nack(c.frame(m.SetOutput.TYPE, b"\x82\x01\x02")).code == m.NackCode.BAD_ARGS
    assert nack(c.frame(m.SetOutput.TYPE, b"\x82\x01\xf9\x3c\x00")).code == m.NackCode.BAD_ARGS
    assert nack(c.frame(m.SetConfig.TYPE, b"\xa1\x01\xf5")).code == m.NackCode.BAD_ARGS  # true
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack)
    seq = c.enc.seq  # the last accepted seq (refused frames do not count)
    # Replay: the same seq again; and an older one.
    assert nack(c.frame(m.Ping.TYPE, ping, seq=seq)).code == m.NackCode.REPLAY
    assert nack(c.frame(m.Ping.TYPE, ping, seq=1)).code == m.NackCode.REPLAY
    wrong = (c.enc.session + 1) & 0xFFFF
    assert nack(c.frame(m.Ping.TYPE, ping, session=wrong)).code == m.NackCode.BAD_SESSION
    # The refused frames did not advance the replay state: the next seq works.
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack)

    # Well-formed but impossible values: bad_value, and nothing changes.
    for cmd in (
        m.SetConfig(sample_rate_hz=1000),
        m.SetConfig(window_ms=500, hop_ms=1000),
        m.SetConfig(window_ms=1000, hop_ms=300),
        m.SetConfig(sample_rate_hz=1600, window_ms=1001),  # not a whole number of samples
        m.SetOutput(99, 1),
    ):
        replies, reply = c.command(cmd)
        assert isinstance(reply.message, m.Nack), cmd
        assert reply.message.code == m.NackCode.BAD_VALUE, cmd
        assert not replies
    assert _config(c) == m.Config(3200, 1000, 1000, 15, 2)
    assert not (host.fs_dir / "outputs.json").read_text().count('"99"')

    # Checks 1-7 are silent: a bad CRC, a board-direction frame; then counted.
    before = _status(c).frames_rejected
    good = bytearray(wire.cobs.decode(c.frame(m.Ping.TYPE, ping)[:-1]))
    good[-1] ^= 1
    c.write(wire.cobs.encode(bytes(good)) + b"\0")
    board_enc = wire.FrameEncoder(from_host=False, session=c.enc.session)
    c.write(board_enc.encode_raw(m.Ping.TYPE, ping, c.enc.seq + 5))
    assert c.recv(0.5, (m.Ack, m.Nack)) is None
    after = _status(c).frames_rejected
    assert after - before == 2
    # Every nack above was counted too (10 so far + the 2 silent ones).
    assert after >= 12


def test_mac_on_and_off(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    c.sync()
    # set_key: the ack still goes out under the old (no) key.
    _, ack = c.command(m.SetKey(KEY))
    assert isinstance(ack.message, m.Ack) and not ack.authenticated
    assert "key" in json.loads((host.fs_dir / "bpiiot.json").read_text())
    c.set_key(KEY)
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack) and ack.authenticated
    # Untagged and wrongly tagged commands: nack unauthenticated (tagged with the key).
    _, nack = c.exchange(c.frame(m.Ping.TYPE, b"\x80", key=None))
    assert isinstance(nack.message, m.Nack) and nack.authenticated
    assert nack.message.code == m.NackCode.UNAUTHENTICATED
    _, nack = c.exchange(c.frame(m.Ping.TYPE, b"\x80", key=OTHER_KEY))
    assert isinstance(nack.message, m.Nack)
    assert nack.message.code == m.NackCode.UNAUTHENTICATED
    # Re-keying needs the old key: an untagged set_key is refused.
    _, nack = c.exchange(c.frame(m.SetKey.TYPE, wire.encode_payload([OTHER_KEY]), key=None))
    assert isinstance(nack.message, m.Nack)
    # The key survives a reboot: the new session's hello is tagged.
    _, ack = c.command(m.Reboot())
    assert isinstance(ack.message, m.Ack)
    assert host.wait_boots(2)
    hello = c.sync()
    assert hello.boot_counter == 2
    _, ack = c.command(m.Ping())
    assert ack.authenticated and isinstance(ack.message, m.Ack)
    # clear_key: acked under the key, then plain frames work again.
    _, ack = c.command(m.ClearKey())
    assert isinstance(ack.message, m.Ack) and ack.authenticated
    c.set_key(None)
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack) and not ack.authenticated
    assert _saved_becomes(host.fs_dir, "key", None)


def test_a_key_change_is_acked_only_once_saved(board: tuple[BoardHost, Client]) -> None:
    # SPEC.md 5.3: an ack means the key is in the file, so a power cut after it
    # cannot bring the old key back. A write that fails is refused, the old key kept.
    host, c = board
    c.sync()
    tmp = host.fs_dir / "bpiiot.json.tmp"
    tmp.mkdir()  # the atomic write's temporary file cannot be created (even as root)
    _, nack = c.command(m.SetKey(KEY))
    assert isinstance(nack.message, m.Nack) and nack.message.code == m.NackCode.INTERNAL
    assert any("not saved" in log.text for log in c.logs)
    _, ack = c.command(m.Ping())  # still no key, both ways
    assert isinstance(ack.message, m.Ack) and not ack.authenticated
    assert json.loads((host.fs_dir / "bpiiot.json").read_text()).get("key") is None
    tmp.rmdir()
    # A second key change or a reboot before the first is acked: busy, nothing done.
    first = c.frame(m.SetKey.TYPE, wire.encode_payload([KEY]))
    second = c.frame(m.SetKey.TYPE, wire.encode_payload([OTHER_KEY]))
    reboot = c.frame(m.Reboot.TYPE, b"\x80")
    c.write(first + second + reboot)
    answers = []
    while len(answers) < 3:
        frame = c.recv(3.0, (m.Ack, m.Nack))
        assert frame is not None, answers
        answers.append(frame.message)
    seqs = [wire.cobs.decode(f[:-1])[4:8] for f in (first, second, reboot)]
    first_seq, second_seq, reboot_seq = (int.from_bytes(x, "big") for x in seqs)
    assert [(type(a).__name__, a.ref_seq) for a in answers] == [
        ("Nack", second_seq), ("Nack", reboot_seq), ("Ack", first_seq)]  # fmt: skip
    assert all(a.code == m.NackCode.BUSY for a in answers if isinstance(a, m.Nack))
    # The ack came after the write: the file already holds the key.
    assert json.loads((host.fs_dir / "bpiiot.json").read_text())["key"] == KEY.hex()
    c.set_key(KEY)
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack) and ack.authenticated


def test_persistence_boot_counter_and_session(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    h1 = c.sync()
    s1 = c.enc.session
    _, ack = c.command(m.SetConfig(sample_rate_hz=3200, window_ms=500, hop_ms=500, machine_class=1))
    assert isinstance(ack.message, m.Ack)
    _, ack = c.command(m.Reboot())
    assert isinstance(ack.message, m.Ack)
    assert host.wait_boots(2)
    h2 = c.sync()
    assert h2.boot_counter == h1.boot_counter + 1
    assert c.enc.session == (s1 + 1) & 0xFFFF
    # A fresh session: the board forgot the last host seq, and the config survived.
    assert h2.last_host_seq <= 1
    assert _config(c) == m.Config(3200, 500, 500, 15, 1)
    # A frame naming the old session is refused.
    _, nack = c.exchange(c.frame(m.Ping.TYPE, b"\x80", session=s1))
    assert isinstance(nack.message, m.Nack) and nack.message.code == m.NackCode.BAD_SESSION
    # Power cut: killed mid-run, the next boot still counts.
    host.kill_firmware()
    assert host.wait_boots(3)
    h3 = c.sync()
    assert h3.boot_counter == 3
    assert json.loads((host.fs_dir / "bpiiot.json").read_text())["boot"] == 3
    assert not (host.fs_dir / "bpiiot.json.tmp").exists()


def test_garbage_and_mid_frame_restart(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    c.sync()
    rnd = bytes((i * 7919 + 13) % 256 for i in range(3000)).replace(b"\r\x03\r\x01", b"")
    c.write(rnd)
    frame = c.frame(m.Ping.TYPE, b"\x80")
    c.write(frame[: len(frame) // 2])  # a frame cut in half, then a restart
    c.write(b"\x11" * 2000)  # an oversize chunk, dropped without buffering
    c.write(b"\0")
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack)
    status = _status(c)
    assert status.frames_rejected >= 3
    assert host.boots == 1  # it never restarted


def test_corrupt_config_falls_back_to_defaults() -> None:
    host = BoardHost()
    (host.fs_dir / "bpiiot.json").write_text('{"board_id": "x", "boot": 41, "channels": ')
    port = host.start()
    c = Client(port)
    try:
        hello = c.sync()
        assert hello.board_id == "bpiiot-mp"
        # The counter was unreadable in the damaged file: counting restarts at 1.
        assert hello.boot_counter == 1
        log = c.recv(2.0, (m.Log,))
        assert log is not None and "corrupt" in log.message.text
        assert log.message.level == 2
        assert _config(c) == m.Config(3200, 1000, 1000, 15, 2)
        assert json.loads((host.fs_dir / "bpiiot.json").read_text())["boot"] == 1
    finally:
        c.close()
        host.stop()


def test_bad_sensor_config_keeps_the_link_up() -> None:
    host = BoardHost()
    cfg = {"board_id": "press-3", "sensor": {"accel": "no-such-sensor"}}
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))
    port = host.start()
    c = Client(port)
    try:
        hello = c.sync()
        assert hello.board_id == "press-3"
        _, ack = c.command(m.Ping())
        assert isinstance(ack.message, m.Ack)
        assert _status(c).windows == 0
        assert "no-such-sensor" in host.read_log()
    finally:
        c.close()
        host.stop()
    assert b"Traceback" not in c.raw


def test_crashes_go_to_stderr_never_into_the_stream() -> None:
    host = BoardHost()
    # A sensor that fails mid-run: the app stops acquisition, logs it, keeps answering.
    sensors = host.fs_dir / "bpiiot_fw" / "sensors_signal.py"
    sensors.write_text(
        sensors.read_text()
        + "\n_orig = SignalSource.read\n"
        + "def _boom(self, *a):\n    raise OSError(5, 'sensor gone')\n"
        + "SignalSource.read = _boom\n"
    )
    port = host.start()
    c = Client(port)
    try:
        c.sync()
        deadline = time.monotonic() + 3
        while not any("acquisition stopped" in lg.text for lg in c.logs):
            assert time.monotonic() < deadline, c.logs
            c.recv(0.2)
        _, ack = c.command(m.Ping())
        assert isinstance(ack.message, m.Ack)
    finally:
        c.close()
        host.stop()
    # The failure travelled as a log frame; every byte on the line was part of a frame.
    assert b"Traceback" not in c.raw and not c.errors
    assert "sensor gone" in host.read_log()

    # The app itself crashing at import: main.py catches it; traceback on stderr only.
    host = BoardHost(restart=False)
    (host.fs_dir / "bpiiot_fw" / "app.py").write_text("raise RuntimeError('app broken')\n")
    port = host.start()
    c = Client(port)
    try:
        deadline = time.monotonic() + 5
        while not host.exit_codes and time.monotonic() < deadline:
            c._pump(0.1)
        assert host.exit_codes == [1]
        c._pump(0.2)
    finally:
        c.close()
        host.stop()
    assert b"Traceback" not in c.raw and b"app broken" not in c.raw
    assert "app broken" in host.read_log() and "Traceback" in host.read_log()


def test_mpremote_escape_stops_the_app_and_frames_do_not(board: tuple[BoardHost, Client]) -> None:
    host, c = board
    c.sync()
    # The escape bytes inside a frame that continues at once: not an escape.
    c.write(b"\r\x03\r\x01" + b"garbage\0")
    _, ack = c.command(m.Ping())
    assert isinstance(ack.message, m.Ack)
    assert host.boots == 1 and host.repl_runs == 0
    # mpremote's Ctrl-C, Ctrl-A then silence: the app leaves for the REPL (exit 76).
    c.write(b"\r\x03\r\x01")
    deadline = time.monotonic() + 3
    while host.repl_runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert host.exit_codes[:1] == [76] and host.repl_runs == 1
    c.write(b"\r\x01")
    out = bytearray()
    deadline = time.monotonic() + 3
    while b"raw REPL; CTRL-B to exit" not in out and time.monotonic() < deadline:
        out += c.ser.read(256)
    assert b"raw REPL; CTRL-B to exit" in out
    # Leaving the REPL (a soft reset) boots the firmware again.
    c.write(b"import sys\nsys.exit(0)\x04")
    assert host.wait_boots(2)
    assert host.exit_codes[1:] == [0]
    # The REPL's own text was expected up to here; from now on, frames only.
    time.sleep(0.2)
    c.ser.reset_input_buffer()
    c.raw.clear()
    c.deframer = wire.Deframer()
    hello = c.sync()
    assert hello.boot_counter == 2


def test_host_stops_every_process(tmp_path: Path) -> None:
    host = BoardHost(tmp_path / "fs", source=None)
    assert host.fs_dir == tmp_path / "fs"
    host.start()
    deadline = time.monotonic() + 3
    while host.pid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = host.pid
    assert pid is not None and host.repl_runs == 1  # no main.py: a bare REPL
    host.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_zone_d_drives_the_alarm_output() -> None:
    # 500 mg at 100 Hz on x: 5.5 mm/s RMS, zone D for group 2 rigid (above 4.5 mm/s),
    # zone B for group 1 flexible (3.5 / 7.1 / 11 mm/s boundaries).
    host = BoardHost()
    sensor = {"accel": "signal", "signal": {"kind": "sine", "x": [[100, 500]]}}
    cfg = {"alarm_pin": 3, "machine_class": 2, "sensor": sensor}
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))
    port = host.start()
    c = Client(port)
    try:
        c.sync()
        deadline = time.monotonic() + 20
        while not [r for r in c.reports if not r.flags] and time.monotonic() < deadline:
            c.recv(0.2)
        # The first window after boot is flagged (settling) and leaves the alarm alone.
        assert c.reports[0].flags & m.ReportFlag.SETTLING
        assert c.reports[-1].flags == 0 and max(c.reports[-1].vel_rms_um_s) > 4500
        assert _output_becomes(host.fs_dir, 3, 1)
        _, ack = c.command(m.SetConfig(machine_class=1))
        assert isinstance(ack.message, m.Ack)
        c.reports.clear()
        deadline = time.monotonic() + 20
        while not [r for r in c.reports if not r.flags] and time.monotonic() < deadline:
            c.recv(0.2)
        assert c.reports[0].flags & m.ReportFlag.SETTLING
        assert c.reports[-1].flags == 0 and 4500 < c.reports[-1].vel_rms_um_s[0] < 7100
        assert _output_becomes(host.fs_dir, 3, 0)
    finally:
        c.close()
        host.stop()


def test_private_protocol_constants_agree() -> None:
    """app.py, commands.py, reports.py and codec_host.py copy codec.py's private
    (RAM-free) protocol constants: every copy must carry codec's value, and the message
    types the SDK's."""
    fw = Path(__file__).resolve().parents[2] / "board" / "micropython" / "bpiiot_fw"
    pattern = re.compile(r"^_((?:T|E|VERSION)_[A-Z_]+) = const\((0x[0-9A-Fa-f]+|\d+)\)", re.M)

    def consts(name: str) -> dict[str, int]:
        return {k: int(v, 0) for k, v in pattern.findall((fw / name).read_text())}

    codec = consts("codec.py")
    assert len([k for k in codec if k.startswith("T_")]) == 16
    for copy in ("app.py", "commands.py", "reports.py", "codec_host.py"):
        theirs = consts(copy)
        assert theirs, copy
        assert {k: codec[k] for k in theirs} == theirs, copy
    for k, v in codec.items():
        if k.startswith("T_"):
            cls = "".join(p.capitalize() for p in k[2:].split("_"))
            assert getattr(m, cls).TYPE == v, k


# What this figure stands for. Copied as .mpy files (`bpiiot flash`), every name the
# firmware's modules use (module names and paths, attributes, globals, arguments; not
# locals, not private const() names, not names MicroPython's image already holds such
# as "flags" or "flush") is interned into RAM at import, in pools that double in size.
# The fifth pool is taken at the 301st name: about 3.6 KiB in one piece on the 64-bit
# Unix port (about 2 KiB on a 32-bit board), which is the margin between the
# benchmark's 60 KiB heap surviving or not (board.heap_peak_bytes,
# tools/bench/bench_board_fw.py). On a board with the firmware frozen into its image
# (board/micropython/manifest.py) these names live in flash and this limit does not
# apply. Keep names readable: drop a name only where another is as clear.
QSTR_POOL_LIMIT = 300


def _interned_names_under_load(fs: Path, boot: int) -> tuple[int, int]:
    """(interned names, reports) of the compiled firmware in fs after 2 s of the
    benchmark's load: MAC on, 3200 S/s, 1 s windows every 250 ms, commands between.

    stdin and stdout are pipes: closing stdin ends the app, then main.py (with a
    line added) prints ``micropython.qstr_info()``. boot 1: a fresh filesystem (the
    key is set here); later boots find the saved configuration (startup checks it).
    """
    proc = subprocess.Popen(
        [micropython_binary(), "main.py"],
        cwd=fs,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, MICROPYPATH=str(fs)),
    )
    assert proc.stdin is not None
    enc = wire.FrameEncoder(from_host=True, key=None if boot == 1 else KEY, session=boot)

    def send(msg: m.Message) -> None:
        assert proc.stdin is not None
        proc.stdin.write(enc.encode(msg))
        proc.stdin.flush()

    if boot == 1:
        send(m.SetKey(KEY))
        enc.set_key(KEY)
    send(m.SetConfig(sample_rate_hz=3200, window_ms=1000, hop_ms=250, channels=15))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for msg in (m.Ping(), m.GetStatus(), m.GetConfig(), m.HelloRequest()):
            send(msg)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode(errors="replace")
    found = re.search(rb"n_qstr=(\d+)", out)
    assert found, out[-300:]
    ver = wire.FrameVerifier("host", KEY)
    reports = 0
    for chunk in wire.Deframer().feed(out[: found.start()]):
        try:
            reports += isinstance(ver.verify(chunk).message, m.Report)
        except wire.FrameError:
            pass
    return int(found[1]), reports


def test_interned_names_stay_below_a_fifth_qstr_pool(tmp_path: Path) -> None:
    """Under load, first boot and a boot with a saved configuration, the firmware
    makes at most 300 interned names (see QSTR_POOL_LIMIT)."""
    fs = tmp_path / "fs"
    files = flash_mod.build(flash_mod.default_source(), fs, "x64")
    main = files[0][1].read_text()
    (fs / "main.py").write_text(main + "\nimport micropython\nmicropython.qstr_info()\n")
    for boot in (1, 2):
        names, reports = _interned_names_under_load(fs, boot)
        assert reports >= 4, boot  # the load really ran: sliding windows were reported
        assert names <= QSTR_POOL_LIMIT, (boot, names)


def test_boot_only_modules_are_unloaded(tmp_path: Path) -> None:
    """startup (configuration checks, boot counter, link set-up) and the sensor factory
    run once at boot and are dropped from sys.modules before the main loop: kept
    loaded, startup alone measured 2,720 bytes more live heap in the benchmark
    (board.heap_live_bytes 57,728 instead of 55,008), past the 60 KiB heap."""
    fs = tmp_path / "fs"
    files = flash_mod.build(flash_mod.default_source(), fs, "x64")
    probe = "\nprint('MODULES', *sorted(k for k in sys.modules if k.startswith('bpiiot_fw')))\n"
    (fs / "main.py").write_text(files[0][1].read_text() + probe)
    for boot in (1, 2):  # no configuration file yet, then the one boot 1 saved
        proc = subprocess.run(
            [micropython_binary(), "main.py"],
            cwd=fs,
            input=wire.FrameEncoder(from_host=True, key=None, session=boot).encode(m.Ping()),
            capture_output=True,
            timeout=20,
            env=dict(os.environ, MICROPYPATH=str(fs)),
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        found = re.search(rb"MODULES ([^\n]*)", proc.stdout)
        assert found, proc.stdout[-300:]
        resident = set(found[1].decode().split())
        # The run went through boot into the main loop: the roles it uses are loaded.
        assert {"bpiiot_fw.app", "bpiiot_fw.commands", "bpiiot_fw.acquire"} <= resident
        assert "bpiiot_fw.reports" in resident and "bpiiot_fw.dsp" in resident
        assert "bpiiot_fw.startup" not in resident and "bpiiot_fw.sensors" not in resident
        assert _saved_becomes(fs, "boot", boot, timeout=0)


SEQ_SCRIPT = """
import os
import sys
from bpiiot_fw import app as app_mod
from bpiiot_fw.store import Store


class Line:
    closed = False

    def __init__(self):
        self.out = []

    def write(self, data):
        self.out.append(bytes(data))


os.chdir(sys.argv[1])  # the Unix port's files (config, outputs) go there
line = Line()
a = app_mod.App(stream=line, store=Store("bpiiot.json"))
a.enc.seq = 0xFFFFFFFE
a.send(0x04, [1])
print("LAST", line.out[-1].hex())
a.send(0x04, [2])
print("WRAPPED", line.out[-1].hex())
"""


def test_board_sequence_numbers_never_wrap(tmp_path: Path) -> None:
    # SPEC.md 3.1: the frame with seq 2^32 - 1 goes out; the next send reboots the
    # board (exit status 75 in the Unix port) instead of wrapping to 0.
    with pytest.raises(RuntimeError) as err:
        run_script(SEQ_SCRIPT, str(tmp_path))
    text = str(err.value)
    assert "micropython exited 75" in text and "WRAPPED" not in text
    last = bytes.fromhex(text.split("LAST ")[1].split()[0])
    frame = wire.FrameVerifier("host", None).verify(last[:-1])
    assert frame.seq == wire.U32 and isinstance(frame.message, m.Ack)
