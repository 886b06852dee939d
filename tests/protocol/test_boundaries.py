"""Boundaries of the wire layer and the schemas: each value just inside and just outside
its range, defaults, counters, labels and the messages a user reads (issue 7)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cbor2
import pytest

from bpiiot import messages as m
from bpiiot import wire

SPEC = Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md"
REPORT = [1234, 3600000, 3200, 312, 298, 1012, 905, 870, 2980, 2801, 2650, 3120, 4250]
HELLO = ["mill-07", [0, 1, 0], [1, 0], 0x3F, 65543, 17]


def host_verdict(type_: int, obj: Any) -> str:
    """The host verifier's verdict on a payload (encoded by cbor2, not by the SDK)."""
    enc = wire.FrameEncoder(from_host=False, session=1)
    try:
        wire.FrameVerifier("host").verify(enc.encode_raw(type_, cbor2.dumps(obj), 1)[:-1])
    except wire.FrameError as exc:
        return exc.reason
    return "ok"


def board_verdict(type_: int, obj: Any) -> str:
    enc = wire.FrameEncoder(from_host=True, session=1)
    try:
        wire.FrameVerifier("board").verify(enc.encode_raw(type_, cbor2.dumps(obj), 1)[:-1])
    except wire.FrameError as exc:
        return exc.reason
    return "ok"


def with_(base: list[Any], i: int, v: Any) -> list[Any]:
    out = list(base)
    out[i] = v
    return out


@pytest.mark.parametrize(
    ("temperature", "verdict"),
    [(-27315, "ok"), (-27316, "schema"), (100000, "ok"), (100001, "schema"), (None, "ok")],
)
def test_temperature_range(temperature: int | None, verdict: str) -> None:
    assert host_verdict(2, with_(REPORT, 12, temperature)) == verdict
    # The slow path (a field that forces it) gives the same verdict.
    assert host_verdict(2, with_(with_(REPORT, 0, 2**32 - 1), 12, temperature)) == verdict


@pytest.mark.parametrize("i", range(12))
def test_report_integer_bounds(i: int) -> None:
    hi = 2**32 - 1 if i < 3 else 65535
    assert host_verdict(2, with_(REPORT, i, hi)) == "ok"
    assert host_verdict(2, with_(REPORT, i, hi + 1)) == "schema"
    assert host_verdict(2, with_(REPORT, i, 0)) == "ok"
    assert host_verdict(2, with_(REPORT, i, -1)) == "schema"
    assert host_verdict(2, with_(REPORT, i, True)) == "schema"


def test_report_flags_bounds() -> None:
    assert host_verdict(2, [*REPORT, 1]) == "ok"
    assert host_verdict(2, [*REPORT, 65535]) == "ok"
    assert host_verdict(2, [*REPORT, 0]) == "schema"  # zero flags are never sent
    assert host_verdict(2, [*REPORT, 65536]) == "schema"
    assert host_verdict(2, [*REPORT, 1, 1]) == "schema"
    assert host_verdict(2, REPORT[:12]) == "schema"
    assert host_verdict(2, 0) == "schema"


@pytest.mark.parametrize(
    ("where", "hi"),
    [((1, 0), 65535), ((1, 2), 65535), ((2, 0), 255), ((2, 1), 255)],
)
def test_hello_version_bounds(where: tuple[int, int], hi: int) -> None:
    outer, inner = where
    ok = [list(x) if isinstance(x, list) else x for x in HELLO]
    ok[outer][inner] = hi
    assert host_verdict(1, ok) == "ok"
    ok[outer][inner] = hi + 1
    assert host_verdict(1, ok) == "schema"


def test_hello_id_and_u32_bounds() -> None:
    assert host_verdict(1, with_(HELLO, 0, "a" * 32)) == "ok"
    assert host_verdict(1, with_(HELLO, 0, "a" * 33)) == "schema"
    assert host_verdict(1, with_(HELLO, 0, "a")) == "ok"
    for i in (3, 4, 5):
        assert host_verdict(1, with_(HELLO, i, 2**32 - 1)) == "ok"
        assert host_verdict(1, with_(HELLO, i, 2**32)) == "schema"


def test_nack_log_status_bounds() -> None:
    assert host_verdict(5, [1, 255, "x" * 64]) == "ok"
    assert host_verdict(5, [1, 256, "x"]) == "schema"
    assert host_verdict(5, [1, 3, "x" * 65]) == "schema"
    assert host_verdict(5, [1, 3, "é" * 32]) == "ok"  # 64 bytes of UTF-8
    assert host_verdict(5, [1, 3, "é" * 32 + "x"]) == "schema"
    assert host_verdict(6, [4, "critical"]) == "ok"
    assert host_verdict(6, [5, "x"]) == "schema"
    assert host_verdict(6, [0, "x" * 200]) == "ok"
    assert host_verdict(6, [0, "x" * 201]) == "schema"
    assert host_verdict(3, [1, 0, 0, 1000, 1000, 5, 1]) == "ok"
    assert host_verdict(3, [1, 0, 0, 1000, 1001, 5, 1]) == "schema"
    assert host_verdict(4, [2**32 - 1]) == "ok"
    assert host_verdict(4, [2**32]) == "schema"


@pytest.mark.parametrize(
    ("key", "lo", "hi"),
    [(1, 1, 65535), (2, 1, 60000), (3, 1, 60000), (4, 0, 15), (5, 0, 3)],
)
def test_config_bounds(key: int, lo: int, hi: int) -> None:
    full = {1: 3200, 2: 1000, 3: 500, 4: 15, 5: 2}
    assert host_verdict(7, {**full, key: lo}) == "ok"
    assert host_verdict(7, {**full, key: hi}) == "ok"
    assert host_verdict(7, {**full, key: hi + 1}) == "schema"
    assert host_verdict(7, {**full, key: lo - 1}) == "schema"
    assert board_verdict(0x42, {key: hi}) == "ok"
    assert board_verdict(0x42, {key: hi + 1}) == "schema"


def test_command_bounds() -> None:
    assert board_verdict(0x43, [255, 1]) == "ok"
    assert board_verdict(0x43, [256, 1]) == "schema"
    assert board_verdict(0x43, [0, 2]) == "schema"
    for n, verdict in ((15, "schema"), (16, "ok"), (32, "ok"), (33, "schema")):
        assert board_verdict(0x44, [bytes(n)]) == verdict, n


@pytest.mark.parametrize(("n", "ok"), [(15, False), (16, True), (32, True), (33, False)])
def test_key_lengths(n: int, ok: bool) -> None:
    if ok:
        assert wire.check_key(bytes(n)) == bytes(n)
        assert wire.check_key(bytearray(n)) == bytes(n)
        wire.FrameEncoder(from_host=True, key=bytes(n))
        return
    with pytest.raises(wire.InvalidKey, match=f"16 to 32 bytes, got {n}"):
        wire.check_key(bytes(n))
    with pytest.raises(wire.InvalidKey):
        wire.FrameVerifier("host", bytes(n))


def test_key_type_and_receiver_messages() -> None:
    assert wire.check_key(None) is None
    with pytest.raises(wire.InvalidKey) as info:
        wire.check_key("0" * 32)  # type: ignore[arg-type]
    assert str(info.value) == "MAC key must be bytes"
    with pytest.raises(ValueError) as err:
        wire.FrameVerifier("sbc")
    assert str(err.value) == "receiver must be 'host' or 'board'"
    assert wire.FrameVerifier("board").receiver == "board"


def _body_frame(body_len: int, key: bytes | None = None) -> tuple[wire.FrameEncoder, bytes]:
    # A log frame whose body is exactly body_len bytes (log text is not length-checked
    # by the encoder, only by the receiver's schema).
    enc = wire.FrameEncoder(from_host=False, key=key, session=1)
    overhead = wire.HEADER_LEN + wire.CRC_LEN + (wire.TAG_LEN if key else 0) + 5
    payload = bytes([0x82, 0x02, 0x79]) + (body_len - overhead).to_bytes(2, "big")
    payload += b"x" * (body_len - overhead)
    return enc, payload


def test_512_byte_body_passes_and_513_is_oversize() -> None:
    for key in (None, bytes(32)):
        enc, payload = _body_frame(512, key)
        frame = enc.encode_raw(6, payload, 1)
        assert len(wire.cobs.decode(frame[:-1])) == 512
        with pytest.raises(wire.FrameError) as info:  # past size: the log schema refuses it
            wire.FrameVerifier("host", key).verify(frame[:-1])
        assert info.value.reason == "schema"
        enc, payload = _body_frame(513, key)
        with pytest.raises(wire.FrameError, match="513 bytes > 512") as info:
            enc.encode_raw(6, payload, 1)
        assert info.value.reason == "oversize"
    # A 513-byte body that someone else encoded: refused after the COBS decode.
    body = bytes([0x10, 6, 0, 1, 0, 0, 0, 1]) + b"\x01" * 501
    body += wire.zlib.crc32(body).to_bytes(4, "little")
    chunk = wire.cobs.encode(body)
    assert len(chunk) <= wire.MAX_ENCODED
    with pytest.raises(wire.FrameError, match="513 bytes") as info:
        wire.FrameVerifier("host").verify(chunk)
    assert info.value.reason == "oversize"
    with pytest.raises(wire.FrameError, match="516 encoded bytes"):
        wire.FrameVerifier("host").verify(b"\x01" * 516)


def test_encoder_defaults_and_wrap() -> None:
    enc = wire.FrameEncoder(from_host=True)
    assert (enc.session, enc.seq, enc.authenticated) == (0, 0, False)
    frame = wire.FrameVerifier("board").verify(enc.encode(m.Ping())[:-1])
    assert (frame.session, frame.seq, frame.from_host, frame.authenticated) == (0, 1, True, False)
    assert frame.payload == b"\x80"
    enc = wire.FrameEncoder(from_host=False, session=70000, seq=2**32 - 1)
    ver = wire.FrameVerifier("host")
    frame = ver.verify(enc.encode(m.Ack(1))[:-1])
    assert (frame.session, frame.seq, frame.from_host) == (70000 & 0xFFFF, 0, False)
    assert frame.payload == b"\x81\x01"
    raw = enc.encode_raw(4, b"\x81\x02", 5, session=4465)
    assert ver.verify(raw[:-1]).session == 4465
    enc.session, enc.seq = 4465, 5
    enc.set_key(bytes(16))
    assert enc.authenticated and ver.verify(enc.encode(m.Ack(2))[:-1]).authenticated is False
    enc.set_key(None)
    assert not enc.authenticated


def test_host_counts_gaps_and_reboots() -> None:
    enc = wire.FrameEncoder(from_host=False, session=4)
    ver = wire.FrameVerifier("host")
    assert (ver.session, ver.seq, ver.gaps, ver.reboots) == (None, 0, 0, 0)
    ver.verify(enc.encode_raw(4, b"\x81\x01", 10)[:-1])
    assert (ver.session, ver.seq, ver.gaps, ver.reboots) == (4, 10, 0, 0)  # first: no gap
    ver.verify(enc.encode_raw(4, b"\x81\x01", 11)[:-1])
    assert ver.gaps == 0
    ver.verify(enc.encode_raw(4, b"\x81\x01", 15)[:-1])
    assert ver.gaps == 3
    ver.verify(enc.encode_raw(4, b"\x81\x01", 1, session=5)[:-1])
    assert (ver.session, ver.seq, ver.gaps, ver.reboots) == (5, 1, 3, 1)
    with pytest.raises(wire.FrameError, match=r"\(4, 99\) not after \(5, 1\)"):
        ver.verify(enc.encode_raw(4, b"\x81\x01", 99, session=4)[:-1])
    ver.forget()
    assert (ver.session, ver.seq) == (None, 0)
    ver.verify(enc.encode_raw(4, b"\x81\x01", 2, session=4)[:-1])
    assert (ver.session, ver.seq, ver.reboots) == (4, 2, 1)  # forgotten: no reboot counted


def test_fresh_board_verifier_and_forget() -> None:
    enc = wire.FrameEncoder(from_host=True, session=300)
    ver = wire.FrameVerifier("board")
    assert ver.session is None
    frame = ver.verify(enc.encode_raw(0x40, b"\x80", 1)[:-1])  # any session at first
    assert (frame.from_host, frame.seq, ver.seq) == (True, 1, 1)
    assert ver.session is None  # the board side learns its session from its own boot
    ver.session = 300
    with pytest.raises(wire.FrameError, match="session 301, the board's is 300") as info:
        ver.verify(enc.encode_raw(0x40, b"\x80", 2, session=301)[:-1])
    assert info.value.reason == "session"
    with pytest.raises(wire.FrameError, match="seq 1 <= last 1") as info:
        ver.verify(enc.encode_raw(0x40, b"\x80", 1)[:-1])
    assert info.value.reason == "replay"
    # Hello requests are answered whatever their session and seq, without moving state.
    assert ver.verify(enc.encode_raw(0x47, b"\x80", 1, session=7)[:-1]).type == 0x47
    assert ver.seq == 1
    ver.verify(enc.encode_raw(0x40, b"\x80", 2)[:-1])
    assert ver.seq == 2
    ver.forget()
    assert (ver.session, ver.seq) == (None, 0)
    assert ver.verify(enc.encode_raw(0x40, b"\x80", 1, session=5)[:-1]).seq == 1


def test_drop_reason_labels_match_the_spec() -> None:
    # The labels are normative (SPEC.md 3.3): same names, same order of checks.
    table = SPEC.read_text().split("### 3.3", 1)[1].split("## 4.", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (`[a-z]+`(?: / `[a-z]+`)?) \|", table, re.M)
    assert [int(n) for n, _ in rows] == list(range(1, 16))
    from_spec: list[str] = []
    for _, cell in rows:
        for name in re.findall(r"`([a-z]+)`", cell):
            if name not in from_spec:
                from_spec.append(name)
    assert tuple(from_spec) == wire.REASONS
    assert wire.REASONS[:3] == ("oversize", "cobs", "truncated")
    assert wire.REASONS[-3:] == ("cbor", "trailing", "schema")
    assert len(set(wire.REASONS)) == 15


def test_frame_error_text() -> None:
    exc = wire.FrameError("crc")
    assert (str(exc), exc.reason, exc.detail) == ("crc", "crc", "")
    exc = wire.FrameError("schema", "report: temperature_cdeg_c=100001 out of range")
    assert str(exc) == "schema: report: temperature_cdeg_c=100001 out of range"


def test_schema_messages_name_the_field() -> None:
    cases = [
        (m.Report, with_(REPORT, 12, 100001), "temperature_cdeg_c=100001 out of range"),
        (m.Report, with_(REPORT, 0, 2**32), "window_seq=4294967296 out of range 0..4294967295"),
        (m.Report, with_(REPORT, 4, 70000), "feature[1]=70000 out of range 0..65535"),
        (m.Report, with_(REPORT, 3, 70000), "feature[0]=70000 out of range 0..65535"),
        (m.Report, with_(REPORT, 1, "1"), "board_time_ms must be an integer, got str"),
        (m.Report, REPORT[:5], "13 elements (14 with flags), got 5"),
        (m.Report, "x", "report payload must be an array, got str"),
        (m.Report, [*REPORT, 0], "flags=0 out of range 1..65535"),
        (m.Hello, with_(HELLO, 0, "a b"), "board_id must be 1-32 characters"),
        (m.Nack, [1, 2, 3], "detail must be text, got int"),
        (m.Log, [9, "x"], "level=9 out of range 0..4"),
        (m.Log, [0, "x" * 201], "text longer than 200 bytes"),
        (m.Config, {1: 1}, "config must carry every key 1..5"),
        (m.SetConfig, {}, "set_config needs at least one key"),
        (m.SetConfig, {2: 1, 1: 1}, "set_config: keys must be in ascending order"),
        (m.SetConfig, {9: 1}, "set_config: unknown key 9"),
        (m.SetConfig, [1], "set_config payload must be a map, got list"),
        (m.SetKey, [b"short"], "key must be a byte string of 16 to 32 bytes"),
        (m.Ping, [1], "ping payload must have 0 elements, got 1"),
        (m.Status, [1, 2, 3, 4, 1001, 6, 7], "cpu_load_permille=1001 out of range 0..1000"),
    ]
    for cls, obj, text in cases:
        with pytest.raises(m.SchemaError, match=re.escape(text)):
            cls.from_payload(obj)


def test_set_key_never_shows_its_key() -> None:
    key = bytes(range(0xA0, 0xB0))
    msg = m.SetKey(key)
    assert repr(msg) == "SetKey(key=<redacted>)"
    assert str(msg) == "SetKey(key=<redacted>)"
    enc = wire.FrameEncoder(from_host=True)
    frame = wire.FrameVerifier("board").verify(enc.encode(msg)[:-1])
    assert frame.message == msg and key in frame.payload
    for text in (repr(frame), str(frame)):
        assert key.hex() not in text and repr(key)[2:-1] not in text and "<redacted>" in text


def test_nack_code_names() -> None:
    assert m.Nack(1, 9, "").code_name == "replay"
    assert m.Nack(1, 1, "").code_name == "unknown_type"
    assert m.Nack(1, 200, "").code_name == "unknown"
    assert m.NackCode.NAMES[m.NackCode.BAD_ARGS] == "bad_args"


def test_deframer_oversize_count() -> None:
    df = wire.Deframer()
    assert df.feed(b"\x01" * wire.MAX_ENCODED + b"\0") == [b"\x01" * 515]
    assert df.oversize == 0
    assert df.feed(b"\x01" * 516 + b"\0") == []
    assert df.oversize == 1
    # Spread over reads: counted once, nothing buffered, the next frame is intact.
    assert df.feed(b"\x02" * 300) == []
    assert df.feed(b"\x02" * 300) == []
    assert df.oversize == 2 and len(df._buf) == 0
    assert df.feed(b"\x02" * 300 + b"\0\x05\x01\x02\x03\x04\0") == [b"\x05\x01\x02\x03\x04"]
    assert df.oversize == 2
    assert df.feed(b"\0\0\0") == []  # empty chunks are not frames, nor errors
    assert df.oversize == 2
    assert list(wire.split_stream(b"\0ab\0\0cd")) == [b"ab", b"cd"]


def test_deframer_limits_across_reads() -> None:
    df = wire.Deframer()
    # Exactly 515 bytes held across reads is still a frame, not an oversize chunk.
    assert df.feed(b"\x03" * wire.MAX_ENCODED) == []
    assert df.feed(b"\0") == [b"\x03" * 515]
    assert df.oversize == 0
    # Two oversize chunks completed in one read: both counted.
    assert df.feed(b"\x04" * 600 + b"\0" + b"\x05" * 600 + b"\0\x06\0") == [b"\x06"]
    assert df.oversize == 2
    # 516 bytes arriving in two reads: dropped, counted once, nothing kept.
    assert df.feed(b"\x07" * 300) == [] and df.feed(b"\x07" * 216) == []
    assert df.oversize == 3 and len(df._buf) == 0
    assert df.feed(b"\0\x08\0") == [b"\x08"]


@pytest.mark.parametrize(
    ("cls", "obj", "text"),
    [
        (m.Hello, "x", "hello payload must be an array, got str"),
        (m.Hello, HELLO[:5], "hello payload must have 6 elements, got 5"),
        (m.Hello, with_(HELLO, 0, 5), "board_id must be text, got int"),
        (m.Hello, with_(HELLO, 0, "a" * 33), "board_id longer than 32 bytes"),
        (m.Hello, with_(HELLO, 0, "a b"), "board_id must be 1-32 characters of A-Z a-z 0-9 . _ -"),
        (m.Hello, with_(HELLO, 1, [1, 2]), "firmware_version payload must have 3 elements, got 2"),
        (
            m.Hello,
            with_(HELLO, 1, [1, 2, 65536]),
            "firmware_version[2]=65536 out of range 0..65535",
        ),
        (m.Hello, with_(HELLO, 1, "x"), "firmware_version payload must be an array, got str"),
        (m.Hello, with_(HELLO, 2, [1, 256]), "protocol_version[1]=256 out of range 0..255"),
        (m.Hello, with_(HELLO, 2, [1]), "protocol_version payload must have 2 elements, got 1"),
        (m.Hello, with_(HELLO, 3, -1), "capabilities=-1 out of range 0..4294967295"),
        (m.Hello, with_(HELLO, 4, 2**32), "boot_counter=4294967296 out of range 0..4294967295"),
        (m.Hello, with_(HELLO, 5, "1"), "last_host_seq must be an integer, got str"),
        (m.Status, [1], "status payload must have 7 elements, got 1"),
        (m.Status, [1, 2, 3, 4, 5, 6, -7], "status[6]=-7 out of range 0..4294967295"),
        (m.Status, "x", "status payload must be an array, got str"),
        (m.Ack, [], "ack payload must have 1 elements, got 0"),
        (m.Ack, [-1], "ack[0]=-1 out of range 0..4294967295"),
        (m.Ack, {}, "ack payload must be an array, got dict"),
        (m.Nack, [1, 2], "nack payload must have 3 elements, got 2"),
        (m.Nack, [-1, 2, "x"], "ref_seq=-1 out of range 0..4294967295"),
        (m.Nack, [1, 256, "x"], "code=256 out of range 0..255"),
        (m.Nack, [1, 2, b"x"], "detail must be text, got bytes"),
        (m.Nack, [1, 2, "x" * 65], "detail longer than 64 bytes"),
        (m.Log, [1], "log payload must have 2 elements, got 1"),
        (m.Log, [True, "x"], "level must be an integer, got bool"),
        (m.Log, [1, 5], "text must be text, got int"),
        (m.Config, {1: 0, 2: 1, 3: 1, 4: 1, 5: 1}, "sample_rate_hz=0 out of range 1..65535"),
        (m.Config, {1: 1, 2: 60001, 3: 1, 4: 1, 5: 1}, "window_ms=60001 out of range 1..60000"),
        (m.Config, {1: 1, 2: 1, 3: 0, 4: 1, 5: 1}, "hop_ms=0 out of range 1..60000"),
        (m.Config, {1: 1, 2: 1, 3: 1, 4: 16, 5: 1}, "channels=16 out of range 0..15"),
        (m.Config, {1: 1, 2: 1, 3: 1, 4: 1, 5: 4}, "machine_class=4 out of range 0..3"),
        (m.Config, {"a": 1}, "config: unknown key 'a'"),
        (m.SetConfig, {1: "x"}, "sample_rate_hz must be an integer, got str"),
        (m.SetConfig, {3: 1, 2: 1}, "set_config: keys must be in ascending order"),
        (m.SetOutput, [1], "set_output payload must have 2 elements, got 1"),
        (m.SetOutput, [256, 1], "pin=256 out of range 0..255"),
        (m.SetOutput, [1, 2], "value=2 out of range 0..1"),
        (m.SetOutput, ["1", 1], "pin must be an integer, got str"),
        (m.SetKey, [], "set_key payload must have 1 elements, got 0"),
        (m.SetKey, ["x" * 16], "key must be a byte string of 16 to 32 bytes"),
        (m.SetKey, [bytes(33)], "key must be a byte string of 16 to 32 bytes"),
        (m.GetStatus, None, "get_status payload must be an array, got NoneType"),
        (m.Reboot, [1, 2], "reboot payload must have 0 elements, got 2"),
        (
            m.Report,
            with_(REPORT, 12, -27316),
            "temperature_cdeg_c=-27316 out of range -27315..100000",
        ),
        (m.Report, with_(REPORT, 12, "x"), "temperature_cdeg_c must be an integer, got str"),
        (m.Report, with_(REPORT, 2, -1), "samples=-1 out of range 0..4294967295"),
        (m.Report, with_(REPORT, 11, 65536), "feature[8]=65536 out of range 0..65535"),
        (m.Report, [*REPORT, 65536], "flags=65536 out of range 1..65535"),
        (m.Report, [*REPORT, "x"], "flags must be an integer, got str"),
        (m.Report, [*REPORT, 1, 2], "report payload must have 13 elements (14 with flags), got 15"),
    ],
)
def test_schema_error_text_is_exact(cls: type[m.Message], obj: Any, text: str) -> None:
    # What a user reads in a log when a board sends something wrong.
    with pytest.raises(m.SchemaError) as info:
        cls.from_payload(obj)
    assert str(info.value) == text


def test_small_helpers() -> None:
    assert m.ReportFlag.names(0) == []
    assert m.ReportFlag.names(0x21) == ["settling", "acc_saturated"]
    assert m.ReportFlag.names(0x8040) == ["bit6", "bit15"]
    assert m.ReportFlag.names(0x10000) == []  # flags are 16 bits on the wire
    assert m.ReportFlag.names(0x3F) == [
        "settling",
        "overrun",
        "sensor_fault",
        "clipped",
        "vel_saturated",
        "acc_saturated",
    ]
    rep = m.Report.from_payload(REPORT)
    assert rep.axis_names() == ("x", "y", "z")
    assert rep.representative and not m.Report.from_payload([*REPORT, 2]).representative
    assert repr(m.Ping()) == "Ping()" and repr(m.HelloRequest()) == "HelloRequest()"
    assert m.Ping() == m.Ping() and m.Ping() != m.Reboot() and hash(m.Ping()) == 0x40
    assert m.Ping().to_dict() == {"kind": "ping"}
    assert m.SetKey(bytes(16)).to_dict() == {"kind": "set_key", "key": "00" * 16}
    assert m.from_dict(m.SetKey(bytes(16)).to_dict()) == m.SetKey(bytes(16))
    assert m.from_dict(rep.to_dict()) == rep


def _chunk(body: bytes) -> bytes:
    return bytes(wire.cobs.encode(body + wire.zlib.crc32(body).to_bytes(4, "little")))


def test_verify_error_text() -> None:
    # The text a user reads for each refusal (`bpiiot monitor`, logs).
    key = bytes(16)
    cases: list[tuple[wire.FrameVerifier, bytes, str]] = [
        (wire.FrameVerifier("host"), b"\x01" * 600, "oversize: 600 encoded bytes"),
        (wire.FrameVerifier("host"), b"\x05\x01", "cobs: not enough input bytes for length code"),
        (wire.FrameVerifier("host"), _chunk(b"\x10\x04\x00"), "truncated: 7 bytes < 13"),
        (wire.FrameVerifier("host"), b"\x03\x10\x04", "truncated: 2 bytes < 13"),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x20, 4, 0, 1, 0, 0, 0, 1, 0x81, 1])),
            "version: major version 2",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x1C, 4, 0, 1, 0, 0, 0, 1, 0x81, 1])),
            "flags: reserved flag bits 0xc",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x12, 4, 0, 1, 0, 0, 0, 1, 0x81, 1])),
            "direction",
        ),
        (
            wire.FrameVerifier("host", key),
            _chunk(bytes([0x11, 4, 0, 1, 0, 0, 0, 1]) + bytes(8)),
            "truncated: no room for payload and tag",
        ),
        (
            wire.FrameVerifier("host", key),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 1])),
            "unauthenticated: a key is set and the frame has no tag",
        ),
        (
            wire.FrameVerifier("host", key),
            _chunk(bytes([0x11, 4, 0, 1, 0, 0, 0, 1, 0x81, 1]) + bytes(8)),
            "mac",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 9, 0, 1, 0, 0, 0, 1, 0x81, 1])),
            "type: unknown message type 0x09",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 0xC1, 1])),
            "schema: a CBOR tag",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 0xDA, 0, 1, 0x11, 0x70, 1])),
            "schema: a CBOR tag",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1]) + b"\x81" * 6 + b"\x00"),
            "schema: nested deeper than 4",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 0x19, 0])),
            "cbor: the item runs past the end of the payload",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 1, 0, 0])),
            "trailing: 2 bytes after the item",
        ),
        (
            wire.FrameVerifier("host"),
            _chunk(bytes([0x10, 4, 0, 1, 0, 0, 0, 1, 0x81, 0x20])),
            "schema: ack: ack[0]=-1 out of range 0..4294967295",
        ),
    ]
    for ver, chunk, text in cases:
        with pytest.raises(wire.FrameError) as info:
            ver.verify(chunk)
        assert str(info.value) == text


def test_valid_frames_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The strict decoder judges only what cbor2 refuses or leaves in doubt: a good
    # frame never costs a pure-Python decode, even right after a bad one.
    calls: list[bytes] = []
    strict = wire.decode_payload

    def counting(payload: bytes) -> Any:
        calls.append(payload)
        return strict(payload)

    monkeypatch.setattr(wire, "decode_payload", counting)
    enc = wire.FrameEncoder(from_host=False, key=bytes(16), session=1)
    ver = wire.FrameVerifier("host", bytes(16))
    assert ver.receiver == "host"
    for i in range(5):
        ver.verify(enc.encode(m.Report.from_payload(with_(REPORT, 0, i)))[:-1])
    assert calls == []
    # A truncated item (cbor2 reads stale bytes past it) and a tag (cbor2 raises and its
    # decoder is replaced): each judged once by the strict decoder, then fast again.
    for bad in (b"\x81\x19\x00", b"\x81\xc1\x01"):
        enc.seq += 1
        with pytest.raises(wire.FrameError):
            ver.verify(enc.encode_raw(4, bad, enc.seq)[:-1])
        assert calls[-1] == bad
        for _ in range(5):
            ver.verify(enc.encode(m.Ack(1))[:-1])
    assert len(calls) == 2


def test_reboots_count_every_new_session() -> None:
    ver = wire.FrameVerifier("host")
    for session in (1, 2, 3, 3):
        enc = wire.FrameEncoder(
            from_host=False, session=session, seq=ver.seq if session == 3 else 0
        )
        ver.verify(enc.encode(m.Ack(1))[:-1])
    assert (ver.reboots, ver.gaps) == (2, 0)


def test_deframer_marks_the_chunk_before_the_first_delimiter() -> None:
    # Joined mid-stream: the first chunk may be a frame's tail; the deframer says which.
    df = wire.Deframer()
    assert df.feed(b"\x11\x12") == [] and not df.head_returned  # nothing returned yet
    assert df.feed(b"\x13\0\x05\x06\0") == [b"\x11\x12\x13", b"\x05\x06"]
    assert df.head_returned
    assert df.feed(b"\x07\0") == [b"\x07"] and not df.head_returned
    # A stream that starts on a delimiter has no head: its first chunk is whole.
    df = wire.Deframer()
    assert df.feed(b"\0\x08\0") == [b"\x08"] and not df.head_returned
    # An oversize head is dropped as oversize, and what follows is no head either.
    df = wire.Deframer()
    assert df.feed(b"\x09" * 600 + b"\0\x0a\0") == [b"\x0a"] and not df.head_returned
    assert df.oversize == 1
