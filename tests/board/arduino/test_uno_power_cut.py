"""Power cuts in the middle of the Uno's EEPROM writes, and EEPROM bytes damaged where
no other check looks (board/arduino/bpiiot_uno/store.cpp).

The simulator (tools/uno/simavr_bridge.c, -k) cuts the power a chosen number of cycles
after the n-th EEPROM byte write of a run began, leaving that byte torn when the write
was still going on; the next run boots from what is left. Every promise has the test
that tries to break it:

* a boot is counted before anything of its session leaves: after a cut at any write of
  the count, the next hello is newer than every hello a host ever saw (the SBC's one
  long-lived verifier accepts it, so no replay lock-out);
* set_key and set_config are atomic: after a cut at any write, the board holds the
  old value or the new one, whole (a key that both ends know, a configuration that
  was sent), and from the cut where the new one appears it stays;
* a byte damaged in one copy changes nothing; with both copies lost the defaults
  apply and a log frame after every hello says so until the record is rewritten;
* an EEPROM written by the first layout (0.1.0) is migrated, and a cut during the
  migration leaves it to be done again.

``BPIIOT_POWER_CUT_STRIDE`` (default 4) thins the sweeps over the key and migration
writes (``make soak`` sets 1: every write).
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import time
from pathlib import Path

import serial

from bpiiot import messages as m
from bpiiot import wire

from .conftest import ROOT, UnoSim

sys.path.insert(0, str(ROOT / "tests" / "board"))
from fw_link import Client

KEY1 = bytes(range(0x10, 0x30))
KEY2 = bytes(range(0x61, 0x81))
STRIDE = int(os.environ.get("BPIIOT_POWER_CUT_STRIDE", "4"))
# (cycles after the write began, the torn byte's value): at its start, in its middle,
# and just after it ended (then the next write is the torn one).
CUTS = ((1, 0xFF), (30_000, 0x00), (54_403, 0x5A))
# The layout (store.cpp): magic at 64; records of two slots (generation, data, CRC-32).
A_MAGIC, A_BOOT, BOOT_SLOT = 64, 66, 9
A_KEY, KEY_SLOT = 66 + 2 * 9, 38
A_CONFIG, CONFIG_SLOT = 66 + 2 * 9 + 2 * 38, 13
DEFAULT_CONFIG = (800, 1000, 1000, 15, 2)


class Run:
    """One run of the simulator from an EEPROM image: its port, a client, its frames."""

    def __init__(self, ee: Path, key: bytes | None = None, cut: tuple[int, int, int] | None = None):
        self.sim = UnoSim(eeprom=ee, power_cut=cut)
        self.sim.start()
        assert self.sim.port is not None
        self.client = Client(self.sim.port, key)

    def send(self, msg: m.Message) -> int:
        """Send a command without waiting for its ack; returns its seq."""
        c = self.client
        c.write(c.frame(msg.TYPE, wire.encode_payload(msg.to_payload())))
        return c.enc.seq

    def acked(self, seq: int) -> bool:
        """Whether the ack of seq arrived (before the cut)."""
        return any(isinstance(f.message, m.Ack) and f.message.ref_seq == seq
                   for f in self.client.inbox)  # fmt: skip

    def pump_until_exit(self, timeout: float = 20.0) -> None:
        """Read everything the board sends until the power cut ends the run."""
        deadline = time.monotonic() + timeout
        assert self.sim.proc is not None
        while self.sim.proc.poll() is None and time.monotonic() < deadline:
            try:
                self.client._pump(0.05)
            except serial.SerialException:
                break
        self.sim.wait_power_cut(timeout=max(0.1, deadline - time.monotonic()))

    def chunks(self) -> list[bytes]:
        """Every frame chunk the board sent in this run, in order."""
        return wire.Deframer().feed(bytes(self.client.raw))

    def close(self) -> dict[str, int]:
        self.client.close()
        stats = self.sim.stop()
        self.sim.close()
        return stats


def _cut_boot(ee: Path, cut: tuple[int, int, int]) -> None:
    """Boot from ee with nobody on the port and cut the power as asked; fails if any
    byte reached the line first (a boot's writes all come before its hello)."""
    sim = UnoSim(eeprom=ee, power_cut=cut)
    try:
        sim.start()
        stats = sim.wait_power_cut()
    finally:
        sim.close()
    assert stats["bytes_out"] == 0, f"bytes left before the cut {cut}"


def _first_frames(ee: Path, seconds: float = 0.5) -> list[bytes]:
    """Boot from ee and return the chunks of its first frames (hello, logs)."""
    run = Run(ee)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.client._pump(0.05)
    chunks = run.chunks()
    run.close()
    return chunks


def _key_of(chunks: list[bytes]) -> bytes | None:
    """Which key the board's hello is tagged with: KEY1, KEY2 or None (no key). Fails
    when none of them verifies it (a key no host holds)."""
    hello = next(c for c in chunks if c)  # the first frame of a boot is its hello
    for key in (KEY1, KEY2, None):
        try:
            frame = wire.FrameVerifier("host", key).verify(hello)
        except wire.FrameError:
            continue
        assert isinstance(frame.message, m.Hello)
        # A keyless receiver takes a tagged frame it cannot check: not "no key".
        if key is None and frame.authenticated:
            break
        return key
    raise AssertionError("the hello verifies under no key a host holds")


def _logs(chunks: list[bytes], key: bytes | None) -> list[str]:
    ver = wire.FrameVerifier("host", key)
    out = []
    for c in chunks:
        frame = ver.verify(c)
        if isinstance(frame.message, m.Log):
            out.append(frame.message.text)
    return out


def _config(ee: Path, key: bytes | None) -> tuple[int, ...]:
    run = Run(ee, key)
    try:
        run.client.sync()
        replies, ack = run.client.command(m.GetConfig())
        assert isinstance(ack.message, m.Ack)
        c = replies[0].message
        assert isinstance(c, m.Config)
        return (c.sample_rate_hz, c.window_ms, c.hop_ms, c.channels, c.machine_class)
    finally:
        run.close()


def _settle(run: Run, quiet: float = 0.3) -> int:
    """Wait until the EEPROM writes stop; returns how many this run made."""
    last = -1
    while True:
        n = run.sim.snapshot()["eeprom_writes"]
        if n == last:
            return n
        last = n
        time.sleep(quiet)


def _provisioned(tmp: Path) -> tuple[Path, int]:
    """An EEPROM with KEY1 and the defaults, its writes all done; and how many EEPROM
    writes a boot from it makes (the same number every time: the image decides)."""
    ee = tmp / "base.bin"
    run = Run(ee)
    run.client.sync()
    run.client.command(m.SetKey(KEY1))
    run.client.set_key(KEY1)
    _settle(run)
    run.close()
    return ee, _boot_writes(ee, tmp / "probe.bin", KEY1)


def _boot_writes(src: Path, dst: Path, key: bytes | None) -> int:
    """Copy src to dst and boot it: how many EEPROM writes a boot from src makes (all
    of them come before its hello)."""
    shutil.copy(src, dst)
    run = Run(dst, key)
    try:
        run.client.sync()
        return run.sim.snapshot()["eeprom_writes"]
    finally:
        run.close()


def _writes_of(base: Path, ee: Path, command: m.Message) -> int:
    """Copy base to ee, boot it, send command (acked) and return how many EEPROM
    writes the run made once they stopped (the boot's and the command's)."""
    shutil.copy(base, ee)
    run = Run(ee, KEY1)
    try:
        run.client.sync()
        _, ack = run.client.command(command)
        assert isinstance(ack.message, m.Ack)
        return _settle(run)
    finally:
        run.close()


def test_a_power_cut_while_counting_a_boot_never_reuses_a_session(
    uno_build: Path, tmp_path: Path
) -> None:
    ee = tmp_path / "ee.bin"
    host = wire.FrameVerifier("host", None)  # the SBC's replay state, across every boot
    boots: list[int] = []

    def see(chunks: list[bytes]) -> None:
        for c in chunks:
            frame = host.verify(c)  # FrameError("replay") if a session came back
            if isinstance(frame.message, m.Hello):
                assert not boots or frame.message.boot_counter > boots[-1]
                boots.append(frame.message.boot_counter)

    see(_first_frames(ee))
    cuts = 0
    n = 1
    while True:
        # How many writes the next boot makes, from a copy of the image as it stands.
        if n > _boot_writes(ee, tmp_path / "probe.bin", None):
            break
        # Every kind of cut at every write with `make soak`; one kind each otherwise.
        for cycles, value in CUTS if STRIDE == 1 else CUTS[n % 3 : n % 3 + 1]:
            _cut_boot(ee, (n, cycles, value))
            cuts += 1
            chunks = _first_frames(ee)
            see(chunks)
            assert _logs(chunks, None) == []  # one torn copy is not a loss
        n += 1
    assert n > 10  # both copies of the count (generation, count bytes, CRC-32)
    assert len(boots) == cuts + 1


def test_a_power_cut_during_set_key_leaves_the_old_key_or_the_new(
    uno_build: Path, tmp_path: Path
) -> None:
    base, boot_writes = _provisioned(tmp_path)
    ee = tmp_path / "ee.bin"
    key_writes = _writes_of(base, ee, m.SetKey(KEY2)) - boot_writes
    assert _key_of(_first_frames(ee)) == KEY2
    assert key_writes >= 2 * 34  # the key's 32 bytes and the CRC-32 change in each copy
    held: list[bytes | None] = []
    acks: list[bool] = []
    points = sorted({*range(1, key_writes + 1, STRIDE), key_writes})
    for i, k in enumerate(points):
        shutil.copy(base, ee)
        cycles, value = CUTS[i % len(CUTS)]
        run = Run(ee, KEY1, cut=(boot_writes + k, cycles, value))
        run.client.sync()
        seq = run.send(m.SetKey(KEY2))
        run.pump_until_exit()
        acked = run.acked(seq)
        run.close()
        chunks = _first_frames(ee)
        key = _key_of(chunks)
        assert key in (KEY1, KEY2)
        assert _logs(chunks, key) == []
        # An ack means the new key is stored: a host that saw it is never locked out.
        assert key == KEY2 or not acked, f"acked, yet the old key after cut {k}"
        held.append(key)
        acks.append(acked)
    # The new key appears at one write, the one that completes its first copy, and stays.
    switch = held.index(KEY2)
    assert held[:switch] == [KEY1] * switch and held[switch:] == [KEY2] * (len(held) - switch)
    assert 0 < switch < len(held)
    assert any(acks) and not all(acks)
    # And the key the board holds works both ways: a command with it is acked.
    run = Run(ee, KEY2)
    run.client.sync()
    _, ack = run.client.command(m.Ping())
    assert isinstance(ack.message, m.Ack) and ack.authenticated
    run.close()


def test_a_power_cut_during_set_config_leaves_one_whole_config(
    uno_build: Path, tmp_path: Path
) -> None:
    base, boot_writes = _provisioned(tmp_path)
    new = (1600, 500, 500, 7, 3)
    change = m.SetConfig(*new)
    ee = tmp_path / "ee.bin"
    writes = _writes_of(base, ee, change) - boot_writes
    assert _config(ee, KEY1) == new
    seen = []
    for k in range(1, writes + 1):
        shutil.copy(base, ee)
        cycles, value = CUTS[k % len(CUTS)]
        run = Run(ee, KEY1, cut=(boot_writes + k, cycles, value))
        run.client.sync()
        run.send(change)
        run.pump_until_exit()
        run.close()
        got = _config(ee, KEY1)
        assert got in (DEFAULT_CONFIG, new), f"a mixed configuration after cut {k}: {got}"
        seen.append(got)
    switch = seen.index(new)
    assert 0 < switch and seen[switch:] == [new] * (len(seen) - switch)


def _flip(ee: Path, address: int) -> None:
    data = bytearray(ee.read_bytes())
    data[address] ^= 0x10
    ee.write_bytes(bytes(data))


def test_a_byte_damaged_in_one_copy_changes_nothing_in_both_is_told(
    uno_build: Path, tmp_path: Path
) -> None:
    base, _ = _provisioned(tmp_path)
    ee = tmp_path / "ee.bin"
    shutil.copy(base, ee)
    _config(ee, KEY1)  # one more boot: every record now has two equal copies
    boot_before = _hello(_first_frames(ee), KEY1).boot_counter
    # One copy of each record damaged (a data byte of slot 0, the CRC of slot 1).
    for address in (A_BOOT + 2, A_KEY + 5, A_CONFIG + 1 + CONFIG_SLOT):
        _flip(ee, address)
    chunks = _first_frames(ee)
    assert _key_of(chunks) == KEY1 and _logs(chunks, KEY1) == []
    assert _hello(chunks, KEY1).boot_counter == boot_before + 1
    assert _config(ee, KEY1) == DEFAULT_CONFIG

    # Both copies of the configuration: the defaults, and a log after every hello...
    run = Run(ee, KEY1)
    run.client.sync()
    _, ack = run.client.command(m.SetConfig(window_ms=500, hop_ms=500))
    assert isinstance(ack.message, m.Ack)
    _settle(run)
    run.close()
    assert _config(ee, KEY1) == (800, 500, 500, 15, 2)
    _flip(ee, A_CONFIG + 3)
    _flip(ee, A_CONFIG + CONFIG_SLOT + 3)
    run = Run(ee, KEY1)
    run.client.sync()
    run.client.sync()  # a hello request: told again
    lost = "EEPROM config lost: defaults used"
    assert [x.text for x in run.client.logs].count(lost) >= 2
    replies, _ = run.client.command(m.GetConfig())
    c = replies[0].message
    assert isinstance(c, m.Config) and c.window_ms == 1000  # the defaults
    # ...until the record is rewritten, even with the values it already has.
    _, ack = run.client.command(m.SetConfig(window_ms=1000, hop_ms=1000))
    assert isinstance(ack.message, m.Ack)
    run.client.logs.clear()
    run.client.sync()
    assert lost not in [x.text for x in run.client.logs]
    _settle(run)
    run.close()
    assert lost not in _logs(_first_frames(ee), KEY1)

    # Both copies of the key: no key, told (an SBC holding KEY1 sees frames fail
    # `unauthenticated` and the log says why).
    _flip(ee, A_KEY + 7)
    _flip(ee, A_KEY + KEY_SLOT + 7)
    chunks = _first_frames(ee)
    assert _key_of(chunks) is None
    assert "EEPROM key lost: running without a key" in _logs(chunks, None)

    # Both copies of the boot counter: it starts again, and says so (SPEC.md 3.1: the
    # SBC refuses the old session until an operator calls forget_session()).
    _flip(ee, A_BOOT + 1)
    _flip(ee, A_BOOT + BOOT_SLOT + 1)
    chunks = _first_frames(ee)
    assert _hello(chunks, None).boot_counter == 1
    assert "EEPROM boot counter lost: counting from 0" in _logs(chunks, None)


def _hello(chunks: list[bytes], key: bytes | None) -> m.Hello:
    frame = wire.FrameVerifier("host", key).verify(chunks[0])
    assert isinstance(frame.message, m.Hello)
    return frame.message


def _layout1(path: Path, boot: int, key: bytes, config: tuple[int, ...]) -> None:
    # Firmware 0.1.0's EEPROM: magic 0xB105 at 0, boot counter at 2, key length at 6,
    # key at 7, config at 40 (little-endian, as avr-libc stores words).
    data = bytearray(b"\xff" * 1024)
    struct.pack_into("<HIB", data, 0, 0xB105, boot, len(key))
    data[7 : 7 + len(key)] = key
    struct.pack_into("<HHHBB", data, 40, *config)
    path.write_bytes(bytes(data))


def test_the_first_layout_is_migrated_even_across_a_power_cut(
    uno_build: Path, tmp_path: Path
) -> None:
    old = (1600, 500, 500, 7, 1)
    v1 = tmp_path / "v1.bin"
    _layout1(v1, 41, KEY1, old)
    ee = tmp_path / "ee.bin"
    writes = _boot_writes(v1, ee, KEY1)
    assert writes > 2 * (KEY_SLOT + CONFIG_SLOT)
    assert ee.read_bytes()[:64] == v1.read_bytes()[:64]  # the old layout is left alone
    chunks = _first_frames(ee)
    assert _key_of(chunks) == KEY1 and _hello(chunks, KEY1).boot_counter == 43
    assert _config(ee, KEY1) == old
    for i, k in enumerate(sorted({*range(1, writes + 1, STRIDE * 4), writes})):
        shutil.copy(v1, ee)
        cycles, value = CUTS[i % len(CUTS)]
        _cut_boot(ee, (k, cycles, value))
        chunks = _first_frames(ee)
        assert _key_of(chunks) == KEY1, k
        # The migration is done again, or it was done: either way the count grows.
        assert _hello(chunks, KEY1).boot_counter in (42, 43), k
        assert _logs(chunks, KEY1) == []


def test_a_key_change_is_acked_once_stored_and_refuses_another_meanwhile(
    uno_build: Path, tmp_path: Path
) -> None:
    run = Run(tmp_path / "ee.bin")
    try:
        run.client.sync()
        first = run.send(m.SetKey(KEY1))
        second = run.send(m.SetKey(KEY2))  # not waiting for the first's ack
        reboot = run.send(m.Reboot())
        answers = []
        while True:
            frame = run.client.recv(5.0, (m.Ack, m.Nack))
            assert frame is not None, answers
            answers.append(frame.message)
            if frame.message.ref_seq == first:
                break
        # Both refused with busy (nothing changed), before the first's ack, which
        # comes once the key is stored, under no key (the old one).
        assert [(type(a).__name__, a.ref_seq) for a in answers] == [
            ("Nack", second), ("Nack", reboot), ("Ack", first)]  # fmt: skip
        assert all(a.code == m.NackCode.BUSY for a in answers[:2] if isinstance(a, m.Nack))
        run.client.set_key(KEY1)
        _, ack = run.client.command(m.Ping())
        assert isinstance(ack.message, m.Ack) and ack.authenticated
    finally:
        run.close()
