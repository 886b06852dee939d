"""Framing: resynchronisation after garbage, split reads, oversize chunks."""

from __future__ import annotations

import random

from bpiiot import messages as m
from bpiiot import wire

REPORT = m.Report(1, 1000, 3200, (10, 20, 30), (40, 50, 60), (70, 80, 90), 2500)


def board_stream(n: int, key: bytes | None = None) -> tuple[list[bytes], wire.FrameEncoder]:
    enc = wire.FrameEncoder(from_host=False, key=key, session=3)
    return [enc.encode(REPORT) for _ in range(n)], enc


def verify_all(data: bytes, key: bytes | None = None, chunk: int | None = None) -> tuple[int, dict]:
    df = wire.Deframer()
    ver = wire.FrameVerifier("host", key)
    ok = 0
    dropped: dict[str, int] = {}
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        for c in df.feed(piece):
            try:
                ver.verify(c)
                ok += 1
            except wire.FrameError as exc:
                dropped[exc.reason] = dropped.get(exc.reason, 0) + 1
    if df.oversize:
        dropped["oversize"] = dropped.get("oversize", 0) + df.oversize
    return ok, dropped


def test_byte_at_a_time_equals_all_at_once() -> None:
    frames, _ = board_stream(20)
    data = b"".join(frames)
    assert verify_all(data) == (20, {})
    assert verify_all(data, chunk=1) == (20, {})
    assert verify_all(data, chunk=7) == (20, {})


def test_garbage_between_frames_costs_no_frame() -> None:
    frames, _ = board_stream(10)
    rng = random.Random(1)
    data = b"".join(bytes(rng.randrange(1, 256) for _ in range(13)) + b"\0" + f for f in frames)
    ok, dropped = verify_all(data)
    assert ok == 10
    assert sum(dropped.values()) == 10  # each garbage run is one dropped chunk


def test_inserted_or_lost_byte_costs_only_its_frame() -> None:
    key = bytes(16)
    frames, _ = board_stream(30, key)
    damaged = list(frames)
    damaged[5] = damaged[5][:9] + damaged[5][10:]  # a byte lost
    damaged[12] = damaged[12][:20] + b"\x42" + damaged[12][20:]  # a byte inserted
    damaged[20] = damaged[20][:-1]  # the delimiter lost: two frames merge into one chunk
    ok, dropped = verify_all(b"".join(damaged), key)
    assert ok == 30 - 4
    assert sum(dropped.values()) == 3


def test_oversize_chunk_is_dropped_without_buffering() -> None:
    frames, _ = board_stream(2)
    df = wire.Deframer()
    out = df.feed(b"\x01" * 3000)
    assert out == [] and df.oversize == 1
    out = df.feed(b"\x01" * 3000 + b"\0" + frames[0])
    assert out == [frames[0][:-1]] and df.oversize == 1
    assert len(df._buf) == 0


def test_encoder_refuses_oversize_and_bad_keys() -> None:
    enc = wire.FrameEncoder(from_host=False)
    try:
        enc.encode(m.Log(1, "x" * 600))
    except wire.FrameError as exc:
        assert exc.reason == "oversize"
    else:
        raise AssertionError("a 600-byte frame was encoded")
    for bad in (b"short", bytes(33)):
        try:
            wire.FrameEncoder(from_host=True, key=bad)
        except wire.InvalidKey as exc:
            assert "16 to 32" in str(exc)
        else:
            raise AssertionError("bad key accepted")


def test_report_size_on_the_wire() -> None:
    # The size goals of the spec: 64 bytes with a tag, 56 without, for a full report.
    big = m.Report(
        1234, 3600000, 3200, (312, 298, 1012), (905, 870, 2980), (2801, 2650, 3120), 4250
    )
    assert len(wire.FrameEncoder(from_host=False, key=bytes(32)).encode(big)) == 64
    assert len(wire.FrameEncoder(from_host=False).encode(big)) == 56


def test_serial_number_arithmetic() -> None:
    assert wire.newer(8, 1, 7, 100)
    assert wire.newer(0, 1, 65535, 5)
    assert not wire.newer(7, 100, 7, 100)
    assert not wire.newer(6, 1000, 7, 1)
    assert not wire.newer(7 + 0x8000, 1, 7, 1)
