"""The Uno firmware ELF in simavr (tools/uno/simavr_bridge.c), driven over a pty with
pyserial by the SDK, exactly as a board on a USB port: hello, every command and its
ack or nack, reports, MAC on and off, reboot and persistence, garbage on the link,
report flags, the RAM left for the stack, and `bpiiot conformance`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpiiot
from bpiiot import messages as m
from bpiiot.board import CommandNacked
from bpiiot.conformance import run

from .conftest import ROOT, UnoSim
from .uno_codec import UnoCodec

sys.path.insert(0, str(ROOT / "tests" / "board"))
from fw_link import Client

KEY = bytes(range(0xA0, 0xC0))
RAM_BYTES = 2048


def _short_windows(port: str, key: bytes | None = None) -> None:
    # The suite waits a few wall-clock seconds for two reports; with quarter-second
    # windows a simulator slowed by a loaded machine still delivers them.
    with bpiiot.connect(port, key=key) as board:
        board.configure(window_ms=250, hop_ms=250)


def test_conformance_mac_off_with_reboot(uno: UnoSim) -> None:
    assert uno.port is not None
    _short_windows(uno.port)
    result = run(uno.port, output_pin=2, reboot=True)
    text = result.render()
    assert result.passed, text
    # Everything ran; the one check left out probes a capability the Uno lacks, and
    # it announces every one that check knows how to probe.
    skipped = [c.name for c in result.checks if c.status != "pass"]
    assert skipped == ["a command of a capability not announced: nack unsupported"], text
    names = [c.name for c in result.checks]
    assert any("reboot" in n for n in names) and any("set_key" in n for n in names)
    assert result.frames_checked > 20


def test_conformance_cli_with_mac_on(uno: UnoSim) -> None:
    assert uno.port is not None
    _short_windows(uno.port)
    with bpiiot.connect(uno.port) as board:
        board.set_key(KEY)
    env = {**os.environ, "BPIIOT_LINK_KEY": KEY.hex()}
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "conformance", uno.port, "--json",
         "--output-pin", "3"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and doc["counts"]["fail"] == 0
    assert doc["hello"]["board_id"] == "bpiiot-uno"


def test_sdk_commands_reports_and_persistence(uno: UnoSim) -> None:
    assert uno.port is not None
    with bpiiot.connect(uno.port) as board:
        hello = board.hello
        assert hello is not None and hello.board_id == "bpiiot-uno"
        assert hello.protocol_version == (1, 0) and hello.boot_counter == 1
        caps = m.CAP_AUTH | m.CAP_OUTPUTS | m.CAP_REBOOT | m.CAP_PERSIST | m.CAP_TEMPERATURE
        assert hello.capabilities == caps  # no SLIDING: hop must equal the window
        assert board.get_config() == m.Config(800, 1000, 1000, 15, 2)
        # A rate the Uno cannot run (3200: four conversions a tick take 416 us of the
        # ADC; 1000: no filter row), a window under 8 samples and a sliding window are
        # refused, nothing changes (DSP.md 8).
        for bad in ({"sample_rate_hz": 3200}, {"sample_rate_hz": 1000}, {"window_ms": 5},
                    {"hop_ms": 500}):  # fmt: skip
            with pytest.raises(CommandNacked) as exc:
                board.configure(**bad)
            assert exc.value.code == m.NackCode.BAD_VALUE
        with pytest.raises(CommandNacked) as exc:
            board.set_output(0, 1)  # D0 is the serial line
        assert exc.value.code == m.NackCode.BAD_VALUE
        board.set_output(13, 1)
        cfg = board.configure(window_ms=500, hop_ms=500, channels=0b0111, machine_class=1)
        assert cfg == m.Config(800, 500, 500, 7, 1)
        reports = []
        for r in board.reports(timeout_s=10):
            reports.append(r)
            if len(reports) == 3:
                break
        assert [r.samples for r in reports] == [400, 400, 400]
        seqs = [r.window_seq for r in reports]
        assert seqs == list(range(seqs[0], seqs[0] + 3))
        # The channels switched off: no temperature. The filter restarted with the
        # new window: its first 480 samples (0.6 s) flag two windows as settling,
        # the third is clean (no flags element at all).
        assert all(r.temperature_cdeg_c is None for r in reports)
        assert [r.flags for r in reports] == [m.ReportFlag.SETTLING] * 2 + [0]
        # Still: 0 g on X and Y, 1 g on Z (one ADC step is 14.8 mg).
        assert reports[-1].acc_rms_mg[2] == pytest.approx(1000, abs=15)
        board.set_key(KEY)
        board.ping()
        status = board.get_status()
        assert status.frames_rejected == 0
        assert status.windows >= 3
        # The key goes to EEPROM a byte per loop turn (3.4 ms each, so sampling never
        # stalls): 112 ms of simulated time, which never runs slower than real time.
        time.sleep(0.5)
    # Power-cycle: key, configuration and boot counter survive in EEPROM.
    port = uno.restart()
    with pytest.raises(bpiiot.KeyRequired):
        bpiiot.connect(port, timeout_s=1.0)
    with bpiiot.connect(port, key=KEY) as board:
        assert board.hello is not None and board.hello.boot_counter == 2
        assert board.get_config() == m.Config(800, 500, 500, 7, 1)
        hello = board.reboot()
        assert hello is not None and hello.boot_counter == 3
        board.clear_key()
        board.ping()


def test_garbage_reset_and_the_stack(uno: UnoSim) -> None:
    assert uno.port is not None
    c = Client(uno.port)
    try:
        c.sync()
        # Noise, a chunk longer than any command, a truncated frame, then a good one.
        c.write(bytes(range(1, 256)) + b"\x00" + b"\x07" * 300 + b"\x00" + b"\x05\x11\x00")
        replies, ack = c.command(m.Ping())
        assert isinstance(ack.message, m.Ack)
        assert all(isinstance(r.message, m.Hello) for r in replies)  # a late sync reply
        # MAC on, every command once, so the deepest paths (HMAC inside a nack
        # inside the verifier) have run before the stack is measured.
        _, ack = c.command(m.SetKey(KEY))
        c.set_key(KEY)
        for msg in (m.Ping(), m.GetStatus(), m.GetConfig(), m.SetOutput(4, 1),
                    m.SetConfig(None, 1000, 1000, None, None), m.HelloRequest()):  # fmt: skip
            _, ack = c.command(msg)
            assert isinstance(ack.message, m.Ack), msg
        _, nack = c.command(m.Ping(), key=bytes(32))
        assert isinstance(nack.message, m.Nack)
        assert nack.message.code == m.NackCode.UNAUTHENTICATED
        # A flood of authenticated commands with no pause for their acks: the 64-byte
        # RX ring overflows (the SDK waits for each ack, a flood like this one loses
        # commands, which fail their CRC). Each command costs about 9 ms of HMAC work
        # (three tags; 22 ms before the AVR SHA-256) and the loop serves the line
        # first, yet it is back to the samples within the 40 ms the sample ring holds
        # at 1600 S/s: none is lost and no window is flagged.
        _, ack = c.command(m.SetConfig(sample_rate_hz=1600))
        assert isinstance(ack.message, m.Ack)
        c.recv(3.0, (m.Report,))
        flood = b"".join(c.frame(m.GetStatus.TYPE, b"\x80") for _ in range(12))
        c.write(flood)
        acks = 0
        while c.recv(1.0, (m.Ack,)) is not None:
            acks += 1
        assert acks >= 1
        c.write(b"\x00")  # end the partial chunk the lost bytes left behind
        replies, _ = c.command(m.GetStatus())
        status = replies[0].message
        assert isinstance(status, m.Status)
        assert status.frames_rejected >= 3
        assert status.overruns == 0
        c.recv(3.0, (m.Report,))
        flagged = [r for r in c.reports if r.flags & m.ReportFlag.OVERRUN]
        assert not flagged, [r.flags for r in c.reports]
        # A flood whose replies outrun the line (400 status requests, each answered
        # with a 60-byte status and an ack): the loop serves the line first and waits
        # for room in the TX queue, the sample ring overflows. Lost samples are
        # counted, never hidden, and their window is flagged (then settles again).
        # How many requests survive the 64-byte RX ring depends on how the host's
        # writes reach the simulator, so a flood that happened to leave gaps (the loop
        # then catches up) is sent again, up to four times.
        before = len(c.reports)
        for _ in range(4):
            c.write(b"".join(c.frame(m.GetStatus.TYPE, b"\x80") for _ in range(400)))
            deadline = time.monotonic() + 20
            while c.recv(0.5) is not None and time.monotonic() < deadline:
                pass
            c.write(b"\x00")
            replies, _ = c.command(m.GetStatus())
            after = replies[0].message
            assert isinstance(after, m.Status)
            if after.overruns > 0:
                break
        assert after.overruns > 0
        c.recv(3.0, (m.Report,))
        flagged = [r for r in c.reports[before:] if r.flags & m.ReportFlag.OVERRUN]
        assert flagged, [r.flags for r in c.reports[before:]]
        assert all(r.flags & m.ReportFlag.SETTLING for r in flagged)  # the gap rings
        # Stack painting: RAM the stack never reached, as the firmware counts it...
        assert status.free_memory_bytes >= RAM_BYTES // 4
    finally:
        c.close()
    uno.stop()
    # ...and as the simulator's SRAM dump shows it: the painted run above the
    # static data (__heap_start, from the ELF's symbols).
    nm = subprocess.run(["avr-nm", str(uno.firmware)], capture_output=True, text=True,
                        check=True).stdout  # fmt: skip
    heap = next(int(line.split()[0], 16) for line in nm.splitlines()
                if line.endswith(" __heap_start"))  # fmt: skip
    sram = uno.sram
    start = heap & 0xFFFF
    n = 0
    while sram[start + n] == 0xA5:
        n += 1
    assert n >= RAM_BYTES // 4
    assert abs(n - status.free_memory_bytes) < 64
    assert uno.stats["bytes_dropped"] == 0


def _signal_cycle() -> list[tuple[int, int, int, int]]:
    # One window (800 samples) holding whole periods of every tone: each window then
    # sees the same samples whatever the phase at which acquisition started.
    from uno_sim import TMP36_25C_MV, mg_to_mv, sine

    x, y, z = sine(40, 600), sine(80, 400), sine(160, 300, dc_mg=1000)
    return [(mg_to_mv(x(i / 800)), mg_to_mv(y(i / 800)), mg_to_mv(z(i / 800)),
             TMP36_25C_MV + 100) for i in range(800)]  # fmt: skip


def test_features_match_the_reference(uno_build: Path, uno_codec: UnoCodec, tmp_path: Path) -> None:
    from uno_sim import adc_code, code_to_mg, write_signal

    from bpiiot import iso20816

    rows = _signal_cycle()
    sig = tmp_path / "signal.bin"
    write_signal(sig, rows)
    mg = [[code_to_mg(adc_code(r[a])) for r in rows] for a in range(3)]
    # Acceleration against the reference on the very samples the firmware computed.
    ref = iso20816.reference_features(*(a * 4 for a in mg), rate_hz=1600, window_n=800)[-1]
    with UnoSim(signal_file=sig) as sim, bpiiot.connect(sim.start()) as board:
        got = []
        for r in board.reports(timeout_s=10):
            got.append(r)
            if len(got) == 3:
                break
    last = got[-1]
    assert last.flags == 0
    assert last.acc_rms_mg == ref.acc_rms_mg
    assert last.acc_peak_mg == ref.acc_peak_mg
    tones = ((40, 600), (80, 400), (160, 300))
    for got_v, (f, amp) in zip(last.vel_rms_um_s, tones, strict=True):
        ideal = amp * 9806.65 / (2 * 3.141592653589793 * f) / 2**0.5
        # DSP.md 8: N(f) (1.000 here) within 2 % (plus ADC quantisation, 14.8 mg a step).
        assert abs(got_v - ideal) <= 0.02 * ideal, (got_v, ideal)
    # The ELF's filter (inline AVR multiplies) against the host build of the same
    # source on the very samples: bit for bit, every window.
    host = uno_codec.features(*(a * 3 for a in mg), 800, 800)
    for r, (values, _) in zip(got, host, strict=True):
        assert list(r.acc_rms_mg + r.acc_peak_mg + r.vel_rms_um_s) == values[:9]
    # TMP36 at 850 mV: 35.0 C, within one ADC step (0.49 C).
    assert last.temperature_cdeg_c is not None
    assert abs(last.temperature_cdeg_c - 3500) <= 50


def test_clipping_and_sensor_fault_are_flagged(uno_build: Path, tmp_path: Path) -> None:
    from uno_sim import write_signal

    sig = tmp_path / "clip.bin"
    # X pinned at the ADC's top, the temperature input shorted to ground.
    write_signal(sig, [(5000, 1650, 1980, 0)] * 800)
    with UnoSim(signal_file=sig) as sim, bpiiot.connect(sim.start()) as board:
        r = next(iter(board.reports(timeout_s=10)))
    assert r.flags & m.ReportFlag.CLIPPED
    assert r.flags & m.ReportFlag.SENSOR_FAULT
    assert r.temperature_cdeg_c is None


def test_1600_sps_runs_and_matches_the_host_build(
    uno_build: Path, uno_codec: UnoCodec, tmp_path: Path
) -> None:
    # set_config to 1600 S/s persists; after a power cycle the firmware samples at
    # 1600 S/s from its first tick, in step with the signal file's rows, so its
    # reports are those of the host build on the same samples, bit for bit.
    from uno_sim import adc_code, code_to_mg, mg_to_mv, sine, write_signal

    fs = 1600
    x, y, z = sine(50, 500), sine(400, 800), sine(700, 600, dc_mg=1000)
    rows = [(mg_to_mv(x(i / fs)), mg_to_mv(y(i / fs)), mg_to_mv(z(i / fs)), 850)
            for i in range(fs)]  # fmt: skip
    sig = tmp_path / "signal.bin"
    write_signal(sig, rows)
    mg = [[code_to_mg(adc_code(r[a])) for r in rows] for a in range(3)]
    with UnoSim(signal_file=sig) as sim:
        with bpiiot.connect(sim.start()) as board:
            assert board.configure(sample_rate_hz=fs) == m.Config(fs, 1000, 1000, 15, 2)
            time.sleep(0.5)  # the EEPROM write, a byte per loop turn (some 30 ms simulated)
        with bpiiot.connect(sim.restart()) as board:
            got = []
            for r in board.reports(timeout_s=10):
                got.append(r)
                if len(got) == 3:
                    break
            status = board.get_status()
    assert [r.samples for r in got] == [fs] * 3
    assert [r.flags for r in got] == [m.ReportFlag.SETTLING, 0, 0]
    assert status.overruns == 0
    host = uno_codec.features(*(a * 3 for a in mg), fs, fs)
    for r, (values, _) in zip(got, host, strict=True):
        assert list(r.acc_rms_mg + r.acc_peak_mg + r.vel_rms_um_s) == values[:9]
    # And in DSP.md 8's band at 1600 S/s, up to 700 Hz: N(f) x the true velocity
    # within 2 %, plus the velocity of one ADC step (14.8 mg) at that frequency.
    tones = ((50, 500, 1.0), (400, 800, 0.998), (700, 600, 0.946))
    for got_v, (f, amp, n) in zip(got[-1].vel_rms_um_s, tones, strict=True):
        per_mg = 9806.65 / (2 * math.pi * f)
        ideal = amp * per_mg / math.sqrt(2) * n
        assert abs(got_v - ideal) <= 0.02 * ideal + 15 * per_mg, (f, got_v, ideal)


def test_board_sequence_numbers_never_wrap(uno_build: Path) -> None:
    # SPEC.md 3.1: a board whose next seq would pass 2^32 - 1 reboots first. Years of
    # frames away, so the simulator writes the encoder's seq (the last field of the
    # static `enc`, from the ELF's symbols) to 16 short of the end after boot.
    nm = subprocess.run(["avr-nm", "-S", str(uno_build / "bpiiot_uno.elf")],
                        capture_output=True, text=True, check=True).stdout  # fmt: skip
    addr, size = next((int(p[0], 16) & 0xFFFF, int(p[1], 16))
                      for p in (line.split() for line in nm.splitlines())
                      if p[-1] == "_ZL3enc")  # fmt: skip
    start = 0xFFFFFFFF - 16
    with UnoSim(poke=(addr + size - 4, start.to_bytes(4, "little"))) as sim:
        c = Client(sim.start())
        try:
            first = c.sync()
            seqs: list[int] = []
            hellos: list[m.Hello] = []
            deadline = time.monotonic() + 20
            while not any(h.boot_counter > first.boot_counter for h in hellos):
                assert time.monotonic() < deadline, seqs[-5:]
                c.write(c.frame(m.Ping.TYPE, b"\x80"))
                # The simulated board outruns the wall clock (reports every few ms).
                for _ in range(8):
                    frame = c.recv(0.1)
                    if frame is None:
                        break
                    seqs.append(frame.seq)
                    if isinstance(frame.message, m.Hello):
                        hellos.append(frame.message)
        finally:
            c.close()
    # Every number up to the last went out once, nothing wrapped to 0, and the new
    # session starts at 1 with its hello.
    last = seqs.index(0xFFFFFFFF)
    assert seqs[: last + 1] == list(range(seqs[0], 0xFFFFFFFF + 1)) and seqs[0] > start
    assert seqs[last + 1] == 1 and 0 not in seqs
    assert hellos[-1].boot_counter == first.boot_counter + 1
    assert c.errors == []  # the SBC's verifier took every frame, the reboot included
