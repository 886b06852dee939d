"""Fuzzing the decoder: random and mutated streams never crash it or get through."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpiiot import messages as m
from bpiiot import wire

KEY = bytes(range(32))
GOOD = [
    wire.FrameEncoder(from_host=False, key=KEY, session=5, seq=i).encode(
        m.Report(i, i * 1000, 3200, (i, 2, 3), (4, 5, 6), (7, 8, 9), 2500)
    )
    for i in range(8)
]


def feed_all(data: bytes, key: bytes | None) -> list[wire.Frame]:
    df = wire.Deframer()
    ver = wire.FrameVerifier("host", key)
    out = []
    for chunk in df.feed(data):
        try:
            out.append(ver.verify(chunk))
        except wire.FrameError as exc:  # the only documented error
            assert exc.reason in wire.REASONS
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(data: bytes) -> None:
    for frame in feed_all(data, None):
        # Anything that got through random bytes is still a well-typed message.
        assert type(frame.message) in m.TO_HOST.values()
    assert feed_all(data, KEY) == []  # and nothing random carries a valid tag


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(GOOD) - 1),
    st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 255), st.sampled_from("fid")),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_frames_are_never_delivered_changed(
    i: int, edits: list[tuple[int, int, str]]
) -> None:
    frame = bytearray(GOOD[i][:-1])
    for pos, val, op in edits:
        pos %= len(frame) + 1
        if op == "f" and pos < len(frame):
            frame[pos] ^= val or 1
        elif op == "i":
            frame.insert(pos, val)
        elif op == "d" and pos < len(frame):
            del frame[pos]
    data = bytes(frame) + b"\0"
    delivered = feed_all(data, KEY)
    if bytes(frame) != GOOD[i][:-1]:
        # With a key, a changed frame never gets through; without one the CRC-32 guards.
        assert delivered == [] or delivered[0].message == feed_all(GOOD[i], KEY)[0].message
    for f in feed_all(data, None):
        assert type(f.message) in m.TO_HOST.values()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 255), st.integers(0, 0xFFFFFFFF))
def test_valid_crc_random_payload_is_checked_by_schema(
    payload: bytes, type_: int, seq: int
) -> None:
    # Frames with a correct CRC but arbitrary content exercise the CBOR and schema layers.
    enc = wire.FrameEncoder(from_host=False, session=1)
    try:
        data = enc.encode_raw(type_, payload, seq)
    except wire.FrameError:
        return
    for f in feed_all(data, None):
        assert type(f.message) is m.TO_HOST[type_]
        # What was accepted re-encodes to a payload the schema accepts again.
        again = wire.encode_payload(f.message.to_payload())
        assert type(f.message).from_payload(__import__("cbor2").loads(again)) == f.message
