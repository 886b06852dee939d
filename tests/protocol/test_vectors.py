"""The SDK's codec against every conformance vector in protocol/vectors/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cobs import cobs

from bpiiot import messages, wire

from .vectors import VECTORS


def _verifier(v: dict[str, Any]) -> wire.FrameVerifier:
    key = bytes.fromhex(v["key"]) if v["key"] else None
    ver = wire.FrameVerifier(v["receiver"], key)
    if v["prior"]:
        ver.session = v["prior"]["session"]
        ver.seq = v["prior"]["seq"]
    return ver


def test_suite_size_and_balance() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    negative = [v for v in VECTORS if v["verdict"] != "ok"]
    assert len(VECTORS) >= 60
    assert len(negative) * 2 >= len(VECTORS)
    # Every documented reason is exercised by at least one vector.
    assert {v["verdict"] for v in negative} == set(wire.REASONS)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['file']}:{v['name']}")
def test_vector(v: dict[str, Any]) -> None:
    ver = _verifier(v)
    before = (ver.session, ver.seq)
    data = bytes.fromhex(v["wire"])
    if v["verdict"] != "ok":
        with pytest.raises(wire.FrameError) as info:
            ver.verify(data)
        assert info.value.reason == v["verdict"]
        # A refused frame never moves the replay state.
        assert (ver.session, ver.seq) == before
        _then(ver, v)
        return
    frame = ver.verify(data)
    h = v["header"]
    assert (frame.type, frame.session, frame.seq) == (h["type"], h["session"], h["seq"])
    assert frame.authenticated is h["authenticated"]
    assert json.loads(json.dumps(frame.message.to_dict())) == v["message"]
    # Encoding the decoded message gives the payload and the frame byte for byte.
    message = messages.from_dict(v["message"])
    payload = wire.encode_payload(message.to_payload())
    assert payload.hex() == v["payload_hex"]
    key = bytes.fromhex(v["key"]) if v["key"] else None
    if key is not None or not _tagged(data):  # a tag without the key cannot be remade
        enc = wire.FrameEncoder(from_host=v["receiver"] == "board", key=key, session=h["session"])
        assert enc.encode_raw(h["type"], payload, h["seq"]).hex() == v["wire"] + "00"
    if v["receiver"] == "board" and h["type"] == messages.HelloRequest.TYPE:
        assert ver.verify(data).message == message  # answered in any state, by design
        return
    with pytest.raises(wire.FrameError) as again:
        ver.verify(data)
    assert again.value.reason == "replay"


def _then(ver: wire.FrameVerifier, v: dict[str, Any]) -> None:
    # Frames the same receiver verifies next: a refusal must leave nothing behind.
    for nxt in v.get("then", []):
        data = bytes.fromhex(nxt["wire"])
        if nxt["verdict"] == "ok":
            assert ver.verify(data).seq > 0
        else:
            with pytest.raises(wire.FrameError) as info:
                ver.verify(data)
            assert info.value.reason == nxt["verdict"]


def _tagged(data: bytes) -> bool:
    return bool(cobs.decode(data)[0] & wire.FLAG_AUTH)


def test_host_counters_follow_gaps_and_reboots() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    gap = by_name["seq-gap"]
    ver = _verifier(gap)
    ver.verify(bytes.fromhex(gap["wire"]))
    assert ver.gaps == 100 - 40 - 1 and ver.reboots == 0
    reboot = by_name["session-reboot"]
    ver = _verifier(reboot)
    ver.verify(bytes.fromhex(reboot["wire"]))
    assert ver.reboots == 1 and ver.gaps == 0 and (ver.session, ver.seq) == (8, 1)
