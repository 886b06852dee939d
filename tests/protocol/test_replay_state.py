"""Replay state (SPEC.md 3.1): only frames that pass every check move it, in the SDK's verifiers."""

from __future__ import annotations

import pytest

from bpiiot import messages as m
from bpiiot import wire

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def _host_frame(type_: int, *, session: int, seq: int, key: bytes | None) -> bytes:
    enc = wire.FrameEncoder(from_host=True, key=key, session=session)
    return enc.encode_raw(type_, wire.encode_payload([]), seq)[:-1]


def _board_verifier(session: int, seq: int, key: bytes | None = KEY) -> wire.FrameVerifier:
    v = wire.FrameVerifier("board", key)
    v.session, v.seq = session, seq
    return v


def test_a_frame_failing_the_mac_does_not_move_the_board_side_state() -> None:
    v = _board_verifier(5, 10)
    with pytest.raises(wire.FrameError) as e:
        v.verify(_host_frame(m.Ping.TYPE, session=5, seq=1000, key=OTHER))
    assert e.value.reason == "mac"
    assert v.verify(_host_frame(m.Ping.TYPE, session=5, seq=11, key=KEY)).seq == 11


def test_a_hello_request_from_another_session_is_answered_but_moves_nothing() -> None:
    v = _board_verifier(5, 10)
    frame = v.verify(_host_frame(m.HelloRequest.TYPE, session=6, seq=1000, key=KEY))
    assert frame.session == 6 and (v.session, v.seq) == (5, 10)
    # An old seq in the board's session is answered too, and moves nothing either.
    v.verify(_host_frame(m.HelloRequest.TYPE, session=5, seq=3, key=KEY))
    assert v.seq == 10
    assert v.verify(_host_frame(m.Ping.TYPE, session=5, seq=11, key=KEY)).seq == 11
    # In the board's session with a greater seq it counts like any command.
    v.verify(_host_frame(m.HelloRequest.TYPE, session=5, seq=20, key=KEY))
    assert v.seq == 20


def test_a_host_side_frame_failing_the_mac_does_not_move_the_state() -> None:
    v = wire.FrameVerifier("host", KEY)
    v.session, v.seq = 5, 10
    bad = wire.FrameEncoder(from_host=False, key=OTHER, session=9).encode(m.Ack(1))[:-1]
    with pytest.raises(wire.FrameError, match="mac"):
        v.verify(bad)
    good = wire.FrameEncoder(from_host=False, key=KEY, session=5, seq=10).encode(m.Ack(1))[:-1]
    assert v.verify(good).seq == 11 and (v.session, v.seq) == (5, 11)
