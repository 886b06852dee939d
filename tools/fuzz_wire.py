"""Fuzz the wire where hostile payloads hide: CBOR payloads inside valid frames.

Every input is a random, mutated or grammar-built CBOR payload framed with a correct
CRC and HMAC tag, so it reaches the payload checks (SPEC.md 3.3, checks 12-15). The
inputs go, in order and each followed by a good frame, to:

* one long-lived host-side and one long-lived board-side SDK ``FrameVerifier``: every
  good frame must be delivered whatever came before it, and the verdict must equal
  the SDK's strict reference decoder's (``wire.decode_payload`` and the schema),
  so cbor2's fast path never decides differently;
* one long-lived ``Link`` (its ``feed``, as its read thread calls it): it must
  deliver exactly the frames the verifier accepts and count no internal error;
* the firmware codec (board/micropython/bpiiot_fw/codec.py) in the MicroPython Unix
  port, long-lived verifiers again, in batches: same verdict and reason as the SDK
  on every frame;
* with ``--uno``, the Uno firmware's C++ verifier (board/arduino/bpiiot_uno/codec.cpp)
  built for the host under AddressSanitizer and UBSan (``make uno-fuzz``), on the same
  batches: same verdict as the SDK, and a memory or undefined-behaviour error stops it.

Usage: python tools/fuzz_wire.py [--inputs N] [--seed S] [--batch B] [--jobs J] [--uno]
Prints a summary, up to 20 disagreements, and `BENCH fuzz.inputs_per_s N inputs/s`;
exits 1 on any disagreement or undelivered good frame.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bpiiot import link as link_mod
from bpiiot import messages as m
from bpiiot import wire

ROOT = Path(__file__).resolve().parents[1]
FW_DIR = ROOT / "board" / "micropython"
FW_RUNNER = Path(__file__).with_name("fuzz_wire_fw.py")
UNO_RUNNER = ROOT / "build" / "uno" / "host" / "uno_fuzz_runner"
KEY = bytes(range(0x40, 0x60))
SESSION = 7
MAX_PAYLOAD = wire.MAX_BODY - wire.HEADER_LEN - wire.TAG_LEN - wire.CRC_LEN
CODES = {"ok": ".", **{r: chr(ord("a") + i) for i, r in enumerate(wire.REASONS)}}
"""One character per verdict, as tools/fuzz_wire_fw.py prints them."""
VERDICTS = {c: v for v, c in CODES.items()}
HOST, BOARD = 0, 1

SEED_MESSAGES: tuple[m.Message, ...] = (
    m.Hello("mill-07", (0, 1, 0), (1, 0), 0x3F, 65543, 17),
    m.Report(1234, 3_600_000, 3200, (312, 298, 1012), (905, 870, 2980), (2801, 2650, 3120), 4250),
    m.Report(1, 1000, 64, (0, 0, 0), (0, 0, 0), (0, 0, 0), None, 0x11),
    m.Report(2**32 - 1, 0, 65535, (65535,) * 3, (1, 2, 3), (24, 255, 256), -27315),
    m.Status(5000, 3, 0, 61234, 412, 3_600_000, 3600),
    m.Ack(18),
    m.Nack(19, 3, "rate 1234 unsupported"),
    m.Log(2, "sensor retry é"),
    m.Config(3200, 1000, 500, 15, 2),
    m.Ping(),
    m.SetConfig(sample_rate_hz=6400, hop_ms=250),
    m.SetConfig(1, 2, 3, 4, 3),
    m.SetOutput(5, 1),
    m.SetKey(bytes(range(16, 48))),
    m.HelloRequest(),
)
# Bytes that change a CBOR head's meaning: argument sizes, reserved and indefinite
# additional information, tags, simple values, floats, break.
INTERESTING = bytes.fromhex(
    "0001171819 1a1b1c1f20 383f404158 5f6061787f 80818d989f a0a1b8bfc0"
    "c1c2c3d8d9 dbdfe0f4f5 f6f7f8f9fa fbfcffed"
)


def _receiver(msg: m.Message) -> int:
    return BOARD if msg.TYPE >= 0x40 else HOST


SEEDS: tuple[tuple[int, int, bytes], ...] = tuple(
    (_receiver(x), x.TYPE, wire.encode_payload(x.to_payload())) for x in SEED_MESSAGES
)
HOST_TYPES = tuple(sorted(m.TO_HOST))
BOARD_TYPES = tuple(sorted(m.TO_BOARD))


# --- generators ----------------------------------------------------------------------


def _head(major: int, n: int, r: random.Random) -> bytes:
    # A head with argument n, sometimes in a longer (non-shortest) form.
    if n < 24 and r.random() < 0.9:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size) and (r.random() < 0.8 or ai == 27):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _item(r: random.Random, depth: int) -> bytes:
    # One CBOR item, mostly in the protocol's data model, sometimes not.
    k = r.random()
    if k < 0.30:
        return _head(0, r.choice([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]), r)
    if k < 0.36:
        return _head(1, r.choice([0, 1, 27314, 27315, 27316, 2**32]), r)
    if k < 0.44:
        text = r.choice([b"", b"mill-07", b"x" * r.randrange(0, 70), b"\xc3\xa9", b"\xed\xa0\x80"])
        text = text if r.random() < 0.9 else text + bytes([r.choice([0x80, 0xC0, 0xFF])])
        if r.random() < 0.05:
            return b"\x7f" + _head(3, len(text), r) + text + b"\xff"
        return _head(3, len(text), r) + text
    if k < 0.50:
        data = bytes(r.randrange(256) for _ in range(r.choice([0, 1, 15, 16, 32, 33])))
        if r.random() < 0.05:
            return b"\x5f" + _head(2, len(data), r) + data + b"\xff"
        return _head(2, len(data), r) + data
    if k < 0.53:
        return b"\xf6"
    if k < 0.58:
        return r.choice([b"\xf4", b"\xf5", b"\xf7", b"\xe0", b"\xf8\x20", b"\xf9\x3c\x00"])
    if k < 0.63:
        tag = r.choice([0, 1, 2, 3, 4, 5, 28, 29, 30, 35, 37, 256, 258, 260, 261, 55799, 70000])
        return _head(6, tag, r) + _item(r, depth + 1)
    if depth > 3:
        return b"\x00"
    if k < 0.85:
        n = r.choice([0, 1, 2, 3, 6, 7, 12, 13, 14, 15])
        items = b"".join(_item(r, depth + 1) for _ in range(n))
        if r.random() < 0.05:
            return b"\x9f" + items + b"\xff"
        return _head(4, n, r) + items
    n = r.choice([0, 1, 2, 4, 5, 6])
    keys = sorted(r.sample(range(0, 10), n))
    if r.random() < 0.2 and keys:
        keys.append(r.choice(keys))  # a repeated key
    if r.random() < 0.1:
        r.shuffle(keys)
    pairs = b"".join(_head(0, k2, r) + _item(r, depth + 1) for k2 in keys)
    if r.random() < 0.05:
        return b"\xbf" + pairs + b"\xff"
    return _head(5, len(keys), r) + pairs


def _mutate(payload: bytes, r: random.Random) -> bytes:
    b = bytearray(payload)
    for _ in range(r.randrange(1, 5)):
        op = r.randrange(7)
        pos = r.randrange(len(b) + 1)
        if op == 0 and b:
            b[pos % len(b)] ^= 1 << r.randrange(8)
        elif op == 1 and b:
            b[pos % len(b)] = r.choice(INTERESTING)
        elif op == 2:
            b.insert(pos, r.choice(INTERESTING))
        elif op == 3 and b:
            del b[pos % len(b)]
        elif op == 4:
            del b[pos:]
        elif op == 5 and b:
            start = r.randrange(len(b))
            b[pos:pos] = b[start : start + r.randrange(1, 8)]
        else:
            b[pos:pos] = r.choice(SEEDS)[2][: r.randrange(1, 20)]
    return bytes(b)


def generate(r: random.Random) -> tuple[int, int, bytes]:
    """One fuzz input: (receiver, message type, payload)."""
    k = r.random()
    if k < 0.45:
        rx, type_, base = r.choice(SEEDS)
        payload = _mutate(base, r)
    elif k < 0.80:
        rx = r.randrange(2)
        type_ = r.choice(BOARD_TYPES if rx else HOST_TYPES)
        payload = _item(r, 0)
        if r.random() < 0.25 and payload:
            payload = payload[: r.randrange(len(payload))]  # truncated
        elif r.random() < 0.05:
            payload += _item(r, 3)  # trailing
    elif k < 0.95:
        rx = r.randrange(2)
        type_ = r.choice(BOARD_TYPES if rx else HOST_TYPES)
        payload = bytes(
            r.choice(INTERESTING) if r.random() < 0.5 else r.randrange(256)
            for _ in range(r.randrange(1, 12))
        )
    else:
        rx = r.randrange(2)
        type_ = r.choice(BOARD_TYPES if rx else HOST_TYPES)
        depth = r.choice([5, 6, 100, 480])
        opener = r.choice([b"\x81", b"\x9f", b"\xa1\x01", b"\xd8\x1c\x81"])
        payload = opener * (depth // len(opener)) + b"\x00"
        if r.random() < 0.5:
            payload = payload[: r.randrange(len(payload))]
    if r.random() < 0.01:
        type_ = r.randrange(256)
    return rx, type_, payload[:MAX_PAYLOAD] or b"\x00"


# --- judges --------------------------------------------------------------------------


def reference(rx: int, type_: int, payload: bytes) -> str:
    """The verdict SPEC.md 4 gives a payload, from the SDK's strict decoder alone."""
    cls = (m.TO_BOARD if rx == BOARD else m.TO_HOST).get(type_)
    if cls is None:
        return "type"
    try:
        cls.from_payload(wire.decode_payload(payload))
    except wire.FrameError as exc:
        return exc.reason
    except m.SchemaError:
        return "schema"
    return "ok"


@dataclass
class Result:
    """What one fuzz run found."""

    inputs: int = 0
    frames: int = 0
    seconds: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    disagreements: list[str] = field(default_factory=list)
    undelivered: int = 0
    link_errors: dict[str, int] = field(default_factory=dict)
    firmware_checked: int = 0
    uno_checked: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing disagreed and every good frame was delivered."""
        return not self.disagreements and not self.undelivered and not self.link_errors

    def note(self, text: str) -> None:
        if len(self.disagreements) < 1000:
            self.disagreements.append(text)


class Campaign:
    """One long-lived set of receivers fed batch after batch."""

    def __init__(self, seed: int, firmware: bool = True) -> None:
        self.rng = random.Random(seed)
        self.firmware = firmware
        self.encoders = (
            wire.FrameEncoder(from_host=False, key=KEY, session=SESSION),
            wire.FrameEncoder(from_host=True, key=KEY, session=SESSION),
        )
        board = wire.FrameVerifier("board", KEY)
        board.session = SESSION
        self.verifiers = (wire.FrameVerifier("host", KEY), board)
        self.link = link_mod.Link("loop://", key=KEY)
        self.delivered: list[int] = []
        self.link.subscribe(lambda f: self.delivered.append(f.seq))
        self.seq = [0, 0]
        self.result = Result()

    def batch(self, n: int) -> tuple[list[tuple[int, bytes]], list[str], list[str]]:
        """Make and judge n inputs in the SDK and the Link; return the frames for
        the firmware with the SDK's verdict on each, and a description of each."""
        records: list[tuple[int, bytes]] = []
        verdicts: list[str] = []
        labels: list[str] = []
        res = self.result
        link_bytes = bytearray()
        expect_link: list[int] = []
        for _ in range(n):
            rx, type_, payload = generate(self.rng)
            good_type, good_payload = (0x40, b"\x80") if rx == BOARD else (4, b"\x81\x12")
            for is_good, t, p in ((False, type_, payload), (True, good_type, good_payload)):
                self.seq[rx] += 1
                seq = self.seq[rx]
                chunk = self.encoders[rx].encode_raw(t, p, seq)[:-1]
                try:
                    self.verifiers[rx].verify(chunk)
                    verdict = "ok"
                except wire.FrameError as exc:
                    verdict = exc.reason
                label = f"{'board' if rx else 'host'} type 0x{t:02x} payload {p.hex()}"
                if is_good:
                    if verdict != "ok":
                        res.undelivered += 1
                        res.note(f"good frame refused ({verdict}) after: {labels[-1]}")
                else:
                    res.verdicts[verdict] += 1
                    want = reference(rx, t, p)
                    if want != verdict:
                        res.note(f"SDK {verdict}, reference {want}: {label}")
                if rx == HOST:
                    link_bytes += chunk + b"\0"
                    if verdict == "ok":
                        expect_link.append(seq)
                records.append((rx, chunk))
                verdicts.append(verdict)
                labels.append(label)
        # The Link gets the same frames as its read thread would: in arbitrary pieces.
        self.delivered.clear()
        pos = 0
        while pos < len(link_bytes):
            step = self.rng.randrange(1, 4096)
            self.link.feed(bytes(link_bytes[pos : pos + step]))
            pos += step
        if self.delivered != expect_link:
            res.undelivered += 1
            res.note(f"Link delivered {len(self.delivered)} frames, expected {len(expect_link)}")
        if self.link.stats.internal_errors or self.link.stats.subscriber_errors:
            res.link_errors = dict(self.link.stats.internal_errors)
        res.inputs += n
        res.frames += len(records)
        return records, verdicts, labels


def _write_batch(path: Path, records: list[tuple[int, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(bytes([len(KEY)]) + KEY)
        for rx, chunk in records:
            f.write(struct.pack(">BH", rx, len(chunk)) + chunk)


def _start_firmware(path: Path) -> subprocess.Popen[str]:
    mp = Path(sys.executable).with_name("micropython")
    env = dict(os.environ, MICROPYPATH=str(FW_DIR))
    return subprocess.Popen(
        [str(mp), "-X", "heapsize=32M", str(FW_RUNNER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _start_uno(path: Path) -> subprocess.Popen[str]:
    # halt_on_error: the first sanitizer report ends the run with a non-zero status.
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0")
    return subprocess.Popen(
        [str(UNO_RUNNER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _compare_firmware(
    proc: subprocess.Popen[str],
    verdicts: list[str],
    labels: list[str],
    res: Result,
    name: str = "firmware",
) -> None:
    out, err = proc.communicate()
    lines = out.split()
    if proc.returncode != 0 or not lines or lines[-2:-1] != ["DONE"] or err.strip():
        res.note(f"{name} runner failed ({proc.returncode}): {err[-1500:]} {out[-200:]}")
        return
    got = "".join(lines[:-2])
    if len(got) != len(verdicts):
        res.note(f"{name} judged {len(got)} frames of {len(verdicts)}")
        return
    for code, want, label in zip(got, verdicts, labels, strict=True):
        fw = VERDICTS.get(code, f"crash {code!r}")
        if fw != want:
            res.note(f"{name} {fw}, SDK {want}: {label}")
    if name == "uno":
        res.uno_checked += len(verdicts)
    else:
        res.firmware_checked += len(verdicts)


def run(
    inputs: int,
    seed: int = 1,
    batch: int = 20000,
    jobs: int = 2,
    firmware: bool = True,
    uno: bool = False,
) -> Result:
    """Fuzz ``inputs`` payloads (each followed by a good frame); see the module docstring.
    ``uno`` needs ``make uno-fuzz`` first (the runner under build/uno/host/)."""
    if uno and not UNO_RUNNER.exists():
        raise FileNotFoundError(f"{UNO_RUNNER} is missing: run `make uno-fuzz` first")
    camp = Campaign(seed, firmware)
    res = camp.result
    t0 = time.perf_counter()
    judges = [(name, start) for name, start, on in (
        ("firmware", _start_firmware, firmware), ("uno", _start_uno, uno)) if on]  # fmt: skip
    pending: list[tuple[subprocess.Popen[str], list[str], list[str], str]] = []
    with tempfile.TemporaryDirectory(prefix="bpiiot-fuzz-") as tmp:
        done = 0
        k = 0
        while done < inputs:
            n = min(batch, inputs - done)
            records, verdicts, labels = camp.batch(n)
            done += n
            if judges:
                path = Path(tmp) / f"batch{k}.bin"
                k += 1
                _write_batch(path, records)
                for name, start in judges:
                    while len(pending) >= jobs:
                        proc, v, lab, who = pending.pop(0)
                        _compare_firmware(proc, v, lab, res, who)
                    pending.append((start(path), verdicts, labels, name))
        for proc, v, lab, who in pending:
            _compare_firmware(proc, v, lab, res, who)
    res.seconds = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=2, help="firmware processes at once")
    ap.add_argument("--no-firmware", action="store_true", help="no MicroPython firmware codec")
    ap.add_argument("--uno", action="store_true", help="also the Uno's verifier (make uno-fuzz)")
    args = ap.parse_args(argv)
    if args.inputs < 1 or args.batch < 1 or args.jobs < 1:
        ap.error("--inputs, --batch and --jobs must be at least 1")
    res = run(args.inputs, args.seed, args.batch, args.jobs, not args.no_firmware, args.uno)
    print(
        f"{res.inputs} inputs ({res.frames} frames with the good ones) in {res.seconds:.1f} s; "
        f"firmware checked {res.firmware_checked} frames, Uno {res.uno_checked}; "
        f"verdicts {dict(res.verdicts)}"
    )
    for line in res.disagreements[:20]:
        print("  " + line)
    if res.link_errors:
        print(f"  Link internal errors: {res.link_errors}")
    print(f"BENCH fuzz.inputs_per_s {res.inputs / res.seconds:.0f} inputs/s")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
