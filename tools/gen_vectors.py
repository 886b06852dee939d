"""Write the protocol conformance vectors in protocol/vectors/*.json.

Frames are built here byte by byte from the spec (struct, cbor2, cobs, zlib, hmac),
not with the SDK's encoder, so the vectors check the SDK instead of echoing it.
Run `make vectors` after changing the spec; the files are committed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import cbor2
from cobs import cobs

OUT = Path(__file__).resolve().parents[1] / "protocol" / "vectors"
KEY = bytes(range(0xA0, 0xC0))  # 32 bytes
KEY16 = bytes(range(0x10, 0x20))
OTHER_KEY = bytes(32)
AUTH, HOST = 0x01, 0x02


def body(
    type_: int,
    payload: bytes,
    *,
    session: int,
    seq: int,
    flags: int,
    version: int = 1,
    key: bytes | None = None,
    tag: bytes | None = None,
) -> bytes:
    b = struct.pack(">BBHI", (version << 4) | flags, type_, session, seq) + payload
    if flags & AUTH:
        b += tag if tag is not None else hmac.new(key or KEY, b, hashlib.sha256).digest()[:8]
    return b + zlib.crc32(b).to_bytes(4, "little")


def wire(b: bytes) -> str:
    return cobs.encode(b).hex()


class Book:
    def __init__(self) -> None:
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.names: set[str] = set()

    def add(
        self,
        file: str,
        name: str,
        description: str,
        *,
        receiver: str,
        wire_hex: str,
        verdict: str,
        key: bytes | None = None,
        prior: dict[str, int] | None = None,
        header: dict[str, Any] | None = None,
        message: dict[str, Any] | None = None,
        payload: bytes | None = None,
        then: list[dict[str, str]] | None = None,
    ) -> None:
        assert name not in self.names, name
        self.names.add(name)
        v: dict[str, Any] = {
            "name": name,
            "description": description,
            "receiver": receiver,
            "key": key.hex() if key else None,
            "prior": prior,
            "wire": wire_hex,
            "verdict": verdict,
        }
        if verdict == "ok":
            assert header is not None and message is not None and payload is not None
            v["header"] = header
            v["message"] = message
            v["payload_hex"] = payload.hex()
        if then:
            v["then"] = then
        self.files.setdefault(file, []).append(v)

    def ok(
        self,
        file: str,
        name: str,
        description: str,
        *,
        receiver: str,
        type_: int,
        obj: Any,
        message: dict[str, Any],
        session: int = 7,
        seq: int = 42,
        key: bytes | None = None,
        prior: dict[str, int] | None = None,
        sign: bool | None = None,
    ) -> None:
        payload = cbor2.dumps(obj)
        signed = (key is not None) if sign is None else sign
        flags = (HOST if receiver == "board" else 0) | (AUTH if signed else 0)
        b = body(type_, payload, session=session, seq=seq, flags=flags, key=key)
        header = {
            "type": type_,
            "session": session,
            "seq": seq,
            "authenticated": bool(signed and key),
        }
        self.add(
            file,
            name,
            description,
            receiver=receiver,
            wire_hex=wire(b),
            verdict="ok",
            key=key,
            prior=prior,
            header=header,
            message=message,
            payload=payload,
        )


REPORT = [1234, 3600000, 3200, 312, 298, 1012, 905, 870, 2980, 2801, 2650, 3120, 4250]
REPORT_MSG = {
    "kind": "report",
    "window_seq": 1234,
    "board_time_ms": 3600000,
    "samples": 3200,
    "acc_rms_mg": [312, 298, 1012],
    "acc_peak_mg": [905, 870, 2980],
    "vel_rms_um_s": [2801, 2650, 3120],
    "temperature_cdeg_c": 4250,
    "flags": 0,
}
HELLO = ["mill-07", [0, 1, 0], [1, 0], 0x3F, 65543, 17]
HELLO_MSG = {
    "kind": "hello",
    "board_id": "mill-07",
    "firmware_version": [0, 1, 0],
    "protocol_version": [1, 0],
    "capabilities": 0x3F,
    "boot_counter": 65543,
    "last_host_seq": 17,
}
CONFIG_MSG = {
    "kind": "config",
    "sample_rate_hz": 3200,
    "window_ms": 1000,
    "hop_ms": 500,
    "channels": 15,
    "machine_class": 2,
}


def messages(bk: Book) -> None:
    f = "messages"
    bk.ok(
        f,
        "hello",
        "hello from a board, no key",
        receiver="host",
        type_=1,
        obj=HELLO,
        message=HELLO_MSG,
    )
    bk.ok(
        f,
        "report",
        "full three-axis window report, no key",
        receiver="host",
        type_=2,
        obj=REPORT,
        message=REPORT_MSG,
    )
    bk.ok(
        f,
        "report-mac",
        "full report with a 32-byte key",
        receiver="host",
        type_=2,
        obj=REPORT,
        message=REPORT_MSG,
        key=KEY,
    )
    cold = [*REPORT[:12], -1875]
    bk.ok(
        f,
        "report-negative-temperature",
        "report at -18.75 C",
        receiver="host",
        type_=2,
        obj=cold,
        message={**REPORT_MSG, "temperature_cdeg_c": -1875},
    )
    no_t = [*REPORT[:12], None]
    bk.ok(
        f,
        "report-no-temperature",
        "temperature channel off: null",
        receiver="host",
        type_=2,
        obj=no_t,
        message={**REPORT_MSG, "temperature_cdeg_c": None},
    )
    zero = [1, 1000, 3200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2000]
    bk.ok(
        f,
        "report-small-values",
        "one-byte integers throughout",
        receiver="host",
        type_=2,
        obj=zero,
        message={
            "kind": "report",
            "window_seq": 1,
            "board_time_ms": 1000,
            "samples": 3200,
            "acc_rms_mg": [0, 0, 0],
            "acc_peak_mg": [0, 0, 0],
            "vel_rms_um_s": [0, 0, 0],
            "temperature_cdeg_c": 2000,
            "flags": 0,
        },
    )
    flagged = [*REPORT, 0x11]
    bk.ok(
        f,
        "report-flagged",
        "report flagged settling and velocity saturated: a 14th element, present only when "
        "non-zero",
        receiver="host",
        type_=2,
        obj=flagged,
        message={**REPORT_MSG, "flags": 0x11},
    )
    st = [5000, 3, 0, 61234, 412, 3600000, 3600]
    bk.ok(
        f,
        "status",
        "status statistics",
        receiver="host",
        type_=3,
        obj=st,
        message={
            "kind": "status",
            "frames_sent": 5000,
            "frames_rejected": 3,
            "overruns": 0,
            "free_memory_bytes": 61234,
            "cpu_load_permille": 412,
            "uptime_ms": 3600000,
            "windows": 3600,
        },
    )
    bk.ok(
        f,
        "ack",
        "ack of command seq 18",
        receiver="host",
        type_=4,
        obj=[18],
        message={"kind": "ack", "ref_seq": 18},
    )
    bk.ok(
        f,
        "nack",
        "nack bad_value with detail",
        receiver="host",
        type_=5,
        obj=[19, 3, "rate 1234 unsupported"],
        message={"kind": "nack", "ref_seq": 19, "code": 3, "detail": "rate 1234 unsupported"},
    )
    bk.ok(
        f,
        "log",
        "log line",
        receiver="host",
        type_=6,
        obj=[2, "sensor retry"],
        message={"kind": "log", "level": 2, "text": "sensor retry"},
    )
    cfg = {1: 3200, 2: 1000, 3: 500, 4: 15, 5: 2}
    bk.ok(
        f, "config", "full configuration map", receiver="host", type_=7, obj=cfg, message=CONFIG_MSG
    )
    prior = {"session": 7, "seq": 17}
    for t, name in (
        (0x40, "ping"),
        (0x41, "get_status"),
        (0x45, "clear_key"),
        (0x46, "reboot"),
        (0x48, "get_config"),
    ):
        bk.ok(
            f,
            f"cmd-{name.replace('_', '-')}",
            f"{name} command",
            receiver="board",
            type_=t,
            obj=[],
            message={"kind": name},
            seq=18,
            prior=prior,
        )
    bk.ok(
        f,
        "cmd-hello-request",
        "hello request",
        receiver="board",
        type_=0x47,
        obj=[],
        message={"kind": "hello_request"},
        seq=18,
        prior=prior,
    )
    bk.ok(
        f,
        "cmd-set-config-partial",
        "set only sample rate and hop",
        receiver="board",
        type_=0x42,
        obj={1: 6400, 3: 250},
        message={
            "kind": "set_config",
            "sample_rate_hz": 6400,
            "window_ms": None,
            "hop_ms": 250,
            "channels": None,
            "machine_class": None,
        },
        seq=18,
        prior=prior,
    )
    bk.ok(
        f,
        "cmd-set-output",
        "drive output 5 high",
        receiver="board",
        type_=0x43,
        obj=[5, 1],
        message={"kind": "set_output", "pin": 5, "value": 1},
        seq=18,
        prior=prior,
    )
    bk.ok(
        f,
        "cmd-set-key",
        "provision a 16-byte key",
        receiver="board",
        type_=0x44,
        obj=[KEY16],
        message={"kind": "set_key", "key": KEY16.hex()},
        seq=18,
        prior=prior,
    )
    bk.ok(
        f,
        "cmd-ping-mac",
        "authenticated ping",
        receiver="board",
        type_=0x40,
        obj=[],
        message={"kind": "ping"},
        seq=18,
        prior=prior,
        key=KEY,
    )


def framing(bk: Book) -> None:
    f = "framing"
    good = body(2, cbor2.dumps(REPORT), session=7, seq=42, flags=0)
    enc = cobs.encode(good)
    bk.add(
        f,
        "cobs-code-past-end",
        "first code byte points past the end",
        receiver="host",
        wire_hex=(bytes([0xF0]) + enc[1:]).hex(),
        verdict="cobs",
    )
    bk.add(
        f,
        "cobs-lone-code",
        "a single code byte 0x05 with nothing after it",
        receiver="host",
        wire_hex="05",
        verdict="cobs",
    )
    bk.add(
        f,
        "cobs-zero-inside",
        "a zero byte inside an encoded chunk",
        receiver="host",
        wire_hex=(enc[:5] + b"\0" + enc[6:]).hex(),
        verdict="cobs",
    )
    bk.add(
        f,
        "oversize-body",
        "body of 600 bytes",
        receiver="host",
        wire_hex=wire(body(6, cbor2.dumps([1, "x" * 580]), session=7, seq=42, flags=0)),
        verdict="oversize",
    )
    bk.add(
        f,
        "oversize-chunk",
        "1000 bytes of 0x01 (not even valid COBS)",
        receiver="host",
        wire_hex="01" * 1000,
        verdict="oversize",
    )
    bk.add(
        f,
        "truncated-short",
        "12-byte body",
        receiver="host",
        wire_hex=wire(good[:12]),
        verdict="truncated",
    )
    bk.add(
        f,
        "truncated-one-byte",
        "a lone 0x01 (one empty COBS block)",
        receiver="host",
        wire_hex="01",
        verdict="truncated",
    )
    short = good[:20]
    bk.add(
        f,
        "truncated-cut",
        "report cut after 20 bytes, CRC recomputed over the rest",
        receiver="host",
        wire_hex=wire(short[:-4] + zlib.crc32(short[:-4]).to_bytes(4, "little")),
        verdict="cbor",
    )
    bk.add(
        f,
        "crc-flipped-payload-bit",
        "one payload bit flipped",
        receiver="host",
        wire_hex=wire(good[:10] + bytes([good[10] ^ 0x04]) + good[11:]),
        verdict="crc",
    )
    bk.add(
        f,
        "crc-flipped-crc-bit",
        "one CRC bit flipped",
        receiver="host",
        wire_hex=wire(good[:-1] + bytes([good[-1] ^ 0x80])),
        verdict="crc",
    )
    bk.add(
        f,
        "crc-byte-lost",
        "one payload byte lost",
        receiver="host",
        wire_hex=wire(good[:15] + good[16:]),
        verdict="crc",
    )
    bk.add(
        f,
        "crc-byte-inserted",
        "one byte inserted",
        receiver="host",
        wire_hex=wire(good[:15] + b"\x55" + good[15:]),
        verdict="crc",
    )
    bk.add(
        f,
        "version-2",
        "protocol major version 2",
        receiver="host",
        wire_hex=wire(body(2, cbor2.dumps(REPORT), session=7, seq=42, flags=0, version=2)),
        verdict="version",
    )
    bk.add(
        f,
        "version-0",
        "protocol major version 0",
        receiver="host",
        wire_hex=wire(body(4, cbor2.dumps([1]), session=7, seq=42, flags=0, version=0)),
        verdict="version",
    )
    bk.add(
        f,
        "flags-reserved",
        "reserved flag bit 2 set",
        receiver="host",
        wire_hex=wire(body(4, cbor2.dumps([1]), session=7, seq=42, flags=0x04)),
        verdict="flags",
    )
    bk.add(
        f,
        "direction-host-frame-at-host",
        "a host frame looped back to the host",
        receiver="host",
        wire_hex=wire(body(4, cbor2.dumps([1]), session=7, seq=42, flags=HOST)),
        verdict="direction",
    )
    bk.add(
        f,
        "direction-board-frame-at-board",
        "a board's ack reflected back to it",
        receiver="board",
        wire_hex=wire(body(4, cbor2.dumps([1]), session=7, seq=42, flags=0)),
        verdict="direction",
    )
    bk.add(
        f,
        "truncated-auth-no-room",
        "AUTH set but the body only has room for the tag",
        receiver="host",
        key=KEY,
        wire_hex=wire(
            (lambda b: b + zlib.crc32(b).to_bytes(4, "little"))(
                struct.pack(">BBHI", 0x11, 4, 7, 42) + b"\x00" * 8
            )
        ),
        verdict="truncated",
    )


def auth(bk: Book) -> None:
    f = "auth"
    rep = cbor2.dumps(REPORT)
    bk.ok(
        f,
        "mac-16-byte-key",
        "report with a 16-byte key",
        receiver="host",
        type_=2,
        obj=REPORT,
        message=REPORT_MSG,
        key=KEY16,
    )
    bk.ok(
        f,
        "mac-tag-without-key",
        "tagged frame at a receiver with no key: delivered, not authenticated",
        receiver="host",
        type_=2,
        obj=REPORT,
        message=REPORT_MSG,
        sign=True,
    )
    bk.add(
        f,
        "mac-wrong-key",
        "tag made with another key",
        receiver="host",
        key=KEY,
        wire_hex=wire(body(2, rep, session=7, seq=42, flags=AUTH, key=OTHER_KEY)),
        verdict="mac",
    )
    bk.add(
        f,
        "mac-flipped-tag-bit",
        "one tag bit flipped, CRC recomputed",
        receiver="host",
        key=KEY,
        wire_hex=wire(
            body(
                2,
                rep,
                session=7,
                seq=42,
                flags=AUTH,
                tag=bytes(
                    [
                        hmac.new(
                            KEY, struct.pack(">BBHI", 0x11, 2, 7, 42) + rep, hashlib.sha256
                        ).digest()[0]
                        ^ 1
                    ]
                )
                + hmac.new(
                    KEY, struct.pack(">BBHI", 0x11, 2, 7, 42) + rep, hashlib.sha256
                ).digest()[1:8],
            )
        ),
        verdict="mac",
    )
    tampered = cbor2.dumps([*REPORT[:9], 1, 1, 1, 4250])
    good_tag = hmac.new(KEY, struct.pack(">BBHI", 0x11, 2, 7, 42) + rep, hashlib.sha256).digest()[
        :8
    ]
    bk.add(
        f,
        "mac-tampered-payload",
        "payload changed after tagging, CRC recomputed",
        receiver="host",
        key=KEY,
        wire_hex=wire(body(2, tampered, session=7, seq=42, flags=AUTH, tag=good_tag)),
        verdict="mac",
    )
    bk.add(
        f,
        "mac-tampered-seq",
        "sequence number changed after tagging, CRC recomputed",
        receiver="host",
        key=KEY,
        wire_hex=wire(body(2, rep, session=7, seq=43, flags=AUTH, tag=good_tag)),
        verdict="mac",
    )
    bk.add(
        f,
        "mac-missing",
        "untagged frame at a receiver that holds a key",
        receiver="host",
        key=KEY,
        wire_hex=wire(body(2, rep, session=7, seq=42, flags=0)),
        verdict="unauthenticated",
    )
    bk.add(
        f,
        "mac-missing-command",
        "untagged command at a keyed board",
        receiver="board",
        key=KEY,
        prior={"session": 7, "seq": 17},
        wire_hex=wire(body(0x43, cbor2.dumps([5, 1]), session=7, seq=18, flags=HOST)),
        verdict="unauthenticated",
    )
    bk.add(
        f,
        "mac-direction-flag-flipped",
        "a board's tagged ack with the HOST flag "
        "flipped to pass as a command: the tag covers the flags",
        receiver="board",
        key=KEY,
        prior={"session": 7, "seq": 17},
        wire_hex=wire(
            body(
                4,
                cbor2.dumps([18]),
                session=7,
                seq=18,
                flags=AUTH | HOST,
                tag=hmac.new(
                    KEY, struct.pack(">BBHI", 0x11, 4, 7, 18) + cbor2.dumps([18]), hashlib.sha256
                ).digest()[:8],
            )
        ),
        verdict="mac",
    )


def sequence(bk: Book) -> None:
    f = "sequence"
    ack = [18]
    msg = {"kind": "ack", "ref_seq": 18}
    bk.ok(
        f,
        "seq-next",
        "the next sequence number",
        receiver="host",
        type_=4,
        obj=ack,
        message=msg,
        session=7,
        seq=42,
        prior={"session": 7, "seq": 41},
    )
    bk.ok(
        f,
        "seq-gap",
        "frames 41-99 lost: accepted, counted as a gap",
        receiver="host",
        type_=4,
        obj=ack,
        message=msg,
        session=7,
        seq=100,
        prior={"session": 7, "seq": 40},
    )
    bk.ok(
        f,
        "session-reboot",
        "a newer session: the board rebooted, seq starts again",
        receiver="host",
        type_=1,
        obj=HELLO,
        message=HELLO_MSG,
        session=8,
        seq=1,
        prior={"session": 7, "seq": 5000},
    )
    bk.ok(
        f,
        "session-wrap",
        "session 65535 -> 0 is newer (serial-number arithmetic)",
        receiver="host",
        type_=4,
        obj=ack,
        message=msg,
        session=0,
        seq=1,
        prior={"session": 65535, "seq": 9},
    )
    bk.ok(
        f,
        "session-reboot-mac",
        "a newer session with a key",
        receiver="host",
        type_=4,
        obj=ack,
        message=msg,
        session=8,
        seq=1,
        prior={"session": 7, "seq": 5000},
        key=KEY,
    )
    for name, sess, seq, desc in (
        ("replay-same", 7, 41, "the last accepted frame again"),
        ("replay-backwards", 7, 30, "sequence number went backwards"),
        ("replay-old-session", 6, 9000, "an older session"),
        ("replay-half-circle", 32775, 1, "session 32768 ahead counts as older"),
    ):
        bk.add(
            f,
            name,
            desc,
            receiver="host",
            prior={"session": 7, "seq": 41},
            wire_hex=wire(body(4, cbor2.dumps(ack), session=sess, seq=seq, flags=0)),
            verdict="replay",
        )
    bk.add(
        f,
        "replay-mac",
        "a correctly tagged frame replayed",
        receiver="host",
        key=KEY,
        prior={"session": 7, "seq": 42},
        wire_hex=wire(body(2, cbor2.dumps(REPORT), session=7, seq=42, flags=AUTH, key=KEY)),
        verdict="replay",
    )
    bk.add(
        f,
        "board-replay-command",
        "a command with an old sequence number",
        receiver="board",
        prior={"session": 7, "seq": 18},
        wire_hex=wire(body(0x43, cbor2.dumps([5, 1]), session=7, seq=18, flags=HOST)),
        verdict="replay",
    )
    bk.add(
        f,
        "board-replay-command-mac",
        "a tagged command replayed",
        receiver="board",
        key=KEY,
        prior={"session": 7, "seq": 18},
        wire_hex=wire(
            body(0x43, cbor2.dumps([5, 1]), session=7, seq=17, flags=AUTH | HOST, key=KEY)
        ),
        verdict="replay",
    )
    bk.add(
        f,
        "board-old-session",
        "a command from before the board's reboot",
        receiver="board",
        key=KEY,
        prior={"session": 8, "seq": 0},
        wire_hex=wire(
            body(0x43, cbor2.dumps([5, 1]), session=7, seq=900, flags=AUTH | HOST, key=KEY)
        ),
        verdict="session",
    )
    bk.ok(
        f,
        "board-hello-request-any-session",
        "hello request is answered in any session",
        receiver="board",
        type_=0x47,
        obj=[],
        message={"kind": "hello_request"},
        session=3,
        seq=1,
        prior={"session": 8, "seq": 50},
    )
    bk.add(
        f,
        "board-hello-request-untagged-keyed",
        "hello request without a tag at a keyed board: sessions are exempt, keys are not",
        receiver="board",
        key=KEY,
        prior={"session": 8, "seq": 50},
        wire_hex=wire(body(0x47, cbor2.dumps([]), session=3, seq=1, flags=HOST)),
        verdict="unauthenticated",
    )
    bk.ok(
        f,
        "board-fresh-session",
        "first command after boot",
        receiver="board",
        type_=0x40,
        obj=[],
        message={"kind": "ping"},
        session=8,
        seq=51,
        prior={"session": 8, "seq": 0},
        key=KEY,
    )


def payload(bk: Book) -> None:
    f = "payload"

    def add(
        name: str,
        desc: str,
        type_: int,
        raw: bytes,
        verdict: str,
        receiver: str = "host",
        key: bytes | None = None,
    ) -> None:
        flags = (HOST if receiver == "board" else 0) | (AUTH if key else 0)
        prior = {"session": 7, "seq": 17} if receiver == "board" else None
        bk.add(
            f,
            name,
            desc,
            receiver=receiver,
            key=key,
            prior=prior,
            wire_hex=wire(body(type_, raw, session=7, seq=42, flags=flags, key=key)),
            verdict=verdict,
        )

    rep = cbor2.dumps(REPORT)
    add("type-unknown-board", "type 0x08 is not defined", 0x08, cbor2.dumps([]), "type")
    add("type-command-at-host", "a command type sent by a board", 0x40, cbor2.dumps([]), "type")
    add("type-report-at-board", "a report type sent to a board", 0x02, rep, "type", "board")
    add(
        "type-unknown-command", "type 0x7f is not a command", 0x7F, cbor2.dumps([]), "type", "board"
    )
    add("cbor-truncated", "array of 13 with only 12 items", 2, rep[:-3], "cbor")
    add("cbor-reserved-ai", "additional information 28 is reserved", 2, b"\x1c", "cbor")
    add("cbor-break-alone", "a lone break byte", 4, b"\xff", "cbor")
    add("trailing-byte", "one byte after the report", 2, rep + b"\x00", "trailing")
    add(
        "trailing-item",
        "a second CBOR item after the ack",
        4,
        cbor2.dumps([18]) + b"\x01",
        "trailing",
    )
    add(
        "trailing-mac",
        "trailing bytes in a tagged frame",
        4,
        cbor2.dumps([18]) + b"\xf6",
        "trailing",
        key=KEY,
    )
    bad_reports = {
        "float-in-report": [*REPORT[:3], 312.5, *REPORT[4:]],
        "float-half": None,
        "bool-in-report": [*REPORT[:3], True, *REPORT[4:]],
        "text-in-report": [*REPORT[:3], "312", *REPORT[4:]],
        "negative-rms": [*REPORT[:3], -312, *REPORT[4:]],
        "report-short": REPORT[:12],
        "report-long": [*REPORT, 1, 0],
        "report-flags-zero": [*REPORT, 0],
        "report-flags-too-big": [*REPORT, 65536],
        "report-flags-bool": [*REPORT, True],
        "report-map": {1: 1234},
        "report-out-of-range": [*REPORT[:3], 70000, *REPORT[4:]],
        "report-window-seq-overflow": [2**32, *REPORT[1:]],
        "temperature-float": [*REPORT[:12], 42.5],
        "temperature-too-cold": [*REPORT[:12], -30000],
        "nested-array": [*REPORT[:3], [312], *REPORT[4:]],
    }
    for name, obj in bad_reports.items():
        if obj is None:
            raw = b"\x8d\xf9\x3c\x00" + rep[4:]  # half-float 1.0 in place of 1234
            add(name, "half-precision float as window_seq", 2, raw, "schema")
            continue
        add(name, f"report payload: {name.replace('-', ' ')}", 2, cbor2.dumps(obj), "schema")
    add(
        "tag-in-report",
        "CBOR tag 1 (epoch time) as board_time_ms",
        2,
        b"\x8d" + cbor2.dumps(1234) + b"\xc1" + cbor2.dumps(3600000) + rep[1 + 3 + 5 :],
        "schema",
    )
    add(
        "bignum-out-of-range",
        "a bignum larger than u32 as window_seq",
        2,
        b"\x8d\xc2\x45\x01\x00\x00\x00\x00" + rep[4:],
        "schema",
    )
    add("hello-bad-id", "board id with a space", 1, cbor2.dumps(["mill 07", *HELLO[1:]]), "schema")
    add("hello-empty-id", "empty board id", 1, cbor2.dumps(["", *HELLO[1:]]), "schema")
    # A C receiver that measures the id with strlen() sees "mill-0" and passes it.
    add(
        "hello-nul-in-id",
        "board id with a NUL inside",
        1,
        cbor2.dumps(["mill-0\x00", *HELLO[1:]]),
        "schema",
    )
    add(
        "hello-id-bytes",
        "board id as a byte string",
        1,
        cbor2.dumps([b"mill", *HELLO[1:]]),
        "schema",
    )
    add(
        "status-load-over-1000",
        "cpu load 1001 permille",
        3,
        cbor2.dumps([1, 0, 0, 1000, 1001, 5, 1]),
        "schema",
    )
    add(
        "nack-detail-too-long",
        "nack detail of 65 bytes",
        5,
        cbor2.dumps([1, 3, "x" * 65]),
        "schema",
    )
    add("log-level-5", "log level 5 does not exist", 6, cbor2.dumps([5, "x"]), "schema")
    add(
        "config-missing-key",
        "config without machine_class",
        7,
        cbor2.dumps({1: 3200, 2: 1000, 3: 500, 4: 15}),
        "schema",
    )
    add(
        "config-unknown-key",
        "config map with key 9",
        7,
        cbor2.dumps({1: 3200, 2: 1000, 3: 500, 4: 15, 5: 2, 9: 1}),
        "schema",
    )
    add("set-config-empty", "set_config with no keys", 0x42, cbor2.dumps({}), "schema", "board")
    add(
        "set-config-unordered",
        "set_config keys 3 then 1",
        0x42,
        b"\xa2\x03\x19\x00\xfa\x01\x19\x19\x00",
        "schema",
        "board",
    )
    add(
        "set-config-text-key",
        "set_config with a text key",
        0x42,
        cbor2.dumps({"rate": 3200}),
        "schema",
        "board",
    )
    add("set-config-zero-rate", "sample rate 0", 0x42, cbor2.dumps({1: 0}), "schema", "board")
    add("set-output-value-2", "output value 2", 0x43, cbor2.dumps([5, 2]), "schema", "board")
    add("set-output-pin-256", "output pin 256", 0x43, cbor2.dumps([256, 1]), "schema", "board")
    add("set-key-short", "a 15-byte key", 0x44, cbor2.dumps([bytes(15)]), "schema", "board")
    add("set-key-text", "key as text", 0x44, cbor2.dumps(["0123456789abcdef"]), "schema", "board")
    add(
        "ping-with-args",
        "ping must carry an empty array",
        0x40,
        cbor2.dumps([1]),
        "schema",
        "board",
    )
    add("ping-null", "ping payload null instead of []", 0x40, cbor2.dumps(None), "schema", "board")


def strict(bk: Book) -> None:
    """SPEC.md 4's reason table: `cbor` only for items that are not well-formed,
    `trailing` after a well-formed item, `schema` for well-formed items outside the
    data model. Payloads are written out byte by byte."""
    f = "cbor"
    seq = iter(range(100, 100000, 2))

    def frame(type_: int, raw: bytes, receiver: str, s: int) -> str:
        flags = HOST if receiver == "board" else 0
        return wire(body(type_, raw, session=7, seq=s, flags=flags))

    def add(name: str, desc: str, type_: int, raw: str, verdict: str, board: bool = False) -> None:
        receiver = "board" if board else "host"
        s = next(seq)
        # Each refused frame is followed by a good one the same receiver must deliver:
        # a refusal leaves no state behind (SPEC.md 4).
        good = (0x40, b"\x80") if board else (4, b"\x81\x12")  # ping [] / ack [18]
        bk.add(
            f,
            name,
            desc,
            receiver=receiver,
            prior={"session": 7, "seq": 1} if board else None,
            wire_hex=frame(type_, bytes.fromhex(raw.replace(" ", "")), receiver, s),
            verdict=verdict,
            then=[{"wire": frame(*good, receiver, s + 1), "verdict": "ok"}],
        )

    # Truncated items: not well-formed (`cbor`), and the next frame is unaffected.
    for raw, what in (
        ("81 19 00", "a 2-byte integer cut after 1 byte"),
        ("81 1a 00 00", "a 4-byte integer cut after 2 bytes"),
        ("81 44 01 02 03", "a 4-byte string cut after 3 bytes"),
        ("81 7f 61 61", "an indefinite text string without its break"),
        ("81 9f 01", "an indefinite array without its break"),
        ("81 c2", "a tag with no content"),
        ("98", "an array head cut in its argument"),
    ):
        add(f"truncated-{raw.replace(' ', '')}", f"ack payload {raw}: {what}", 4, raw, "cbor")
    # Other items that are not well-formed (RFC 8949 section 5.3.1, appendix F).
    for raw, what in (
        ("5f 01 ff", "an integer as a chunk of an indefinite byte string"),
        ("5f 5f ff ff", "an indefinite chunk inside an indefinite byte string"),
        ("7f 41 61 ff", "a byte string chunk inside an indefinite text string"),
        ("9f fe ff", "reserved additional information 30 inside an array"),
        ("a1 fe 01", "reserved additional information 30 as a map key"),
        ("1f", "an indefinite-length integer"),
        ("3f", "an indefinite-length negative integer"),
        ("df 01", "an indefinite-length tag"),
        ("9f c1 ff", "a break as the content of a tag"),
        ("bf 01 ff", "a break where a map value is due"),
        ("82 01 ff", "a break inside a definite array"),
        ("f8 16", "a two-byte simple value below 32 (null written long)"),
        ("fc", "reserved additional information 28 in major type 7"),
    ):
        add(f"not-wf-{raw.replace(' ', '')}", f"ack payload {raw}: {what}", 4, raw, "cbor")
    deep = "81" * 480
    add("deep-nesting", "an array nested 480 deep: well-formed, refused", 4, deep + "00", "schema")
    add("deep-nesting-cut", "an array nested 480 deep, cut: not well-formed", 4, deep, "cbor")
    add("deep-nesting-trailing", "480 deep, then a byte", 4, deep + "00 00", "trailing")
    add(
        "tag-then-trailing",
        "a tagged ack then a byte: trailing comes first",
        4,
        "c1 81 12 00",
        "trailing",
    )
    # Well-formed items outside the data model: `schema`.
    for tag, head in (
        (0, "c0"),
        (1, "c1"),
        (2, "c2"),
        (3, "c3"),
        (4, "c4"),
        (5, "c5"),
        (28, "d8 1c"),
        (29, "d8 1d"),
        (30, "d8 1e"),
        (35, "d8 23"),
        (37, "d8 25"),
        (256, "d9 01 00"),
        (260, "d9 01 04"),
        (261, "d9 01 05"),
        (55799, "d9 d9 f7"),
    ):
        add(f"tag-{tag}", f"ack [tag {tag}(18)]", 4, f"81 {head} 12", "schema")
    add(
        "tag-bignum-small",
        "ack [bignum 2(h'05')]: an integer, but tagged",
        4,
        "81 c2 41 05",
        "schema",
    )
    add(
        "tag-self-describe",
        "self-described CBOR (tag 55799) around the ack",
        4,
        "d9 d9 f7 81 12",
        "schema",
    )
    add("indefinite-array", "ack as an indefinite array", 4, "9f 12 ff", "schema")
    add(
        "indefinite-text",
        "nack detail as an indefinite text string",
        5,
        "83 12 03 7f 61 61 61 62 ff",
        "schema",
    )
    add(
        "indefinite-map",
        "set_config as an indefinite map",
        0x42,
        "bf 01 19 0c 80 ff",
        "schema",
        board=True,
    )
    add(
        "indefinite-bytes",
        "set_key with the key as an indefinite byte string",
        0x44,
        "81 5f 48 " + "11" * 8 + " 48 " + "22" * 8 + " ff",
        "schema",
        board=True,
    )
    add(
        "duplicate-key-config",
        "config map with key 1 twice",
        7,
        "a6 01 19 0c 80 01 19 0c 80 02 19 03 e8 03 19 01 f4 04 0f 05 02",
        "schema",
    )
    add(
        "duplicate-key-set-config",
        "set_config {1: 6400, 1: 3200}",
        0x42,
        "a2 01 19 19 00 01 19 0c 80",
        "schema",
        board=True,
    )
    add(
        "unsorted-config",
        "config map with keys 2 then 1",
        7,
        "a5 02 19 03 e8 01 19 0c 80 03 19 01 f4 04 0f 05 02",
        "schema",
    )
    add("invalid-utf8", "log text with a lone continuation byte", 6, "82 02 62 61 80", "schema")
    add("utf8-surrogate", "log text encoding a UTF-16 surrogate", 6, "82 02 63 ed a0 80", "schema")
    add("utf8-overlong", "log text with an overlong '/'", 6, "82 02 62 c0 af", "schema")
    add("simple-value", "ack [simple(0)]", 4, "81 e0", "schema")
    add("simple-value-two-byte", "ack [simple(32)]", 4, "81 f8 20", "schema")
    add("undefined", "ack [undefined]", 4, "81 f7", "schema")
    add("true", "ack [true]", 4, "81 f5", "schema")
    add("float-single", "ack [1.0 as a single]", 4, "81 fa 3f 80 00 00", "schema")
    add("map-key-text", "set_config with a text key", 0x42, "a1 61 31 01", "schema", board=True)
    add("scalar-report", "a report whose payload is the integer 0", 2, "00", "schema")
    # COBS: a zero byte inside a run is not COBS, whatever the code bytes say.
    bk.add(
        "framing",
        "cobs-zero-in-run",
        "05 01 00 00 01: the code byte 05 spans a zero",
        receiver="host",
        wire_hex="0501000001",
        verdict="cobs",
    )
    # COBS: a body whose last zero is followed by exactly 254 non-zero bytes. The
    # encoder writes no final group after the full block (SPEC.md 2); a receiver
    # accepts the chunk with or without it. The log text is too long: `schema`.
    for text_len in range(245, 0, -1):
        b = body(
            6, bytes([0x82, 0x02, 0x78, text_len]) + b"x" * text_len, session=7, seq=42, flags=0
        )
        run = len(b) - b.rindex(b"\0") - 1
        if run == 254:
            break
    else:
        raise SystemExit("no 254-byte run found")
    enc = cobs.encode(b)
    assert enc[-255] == 0xFF and len(enc) == len(b) + 1, enc.hex()
    bk.add(
        "framing",
        "cobs-254-run-at-end",
        "body ends with a 254-byte run: code 0xff, no final group",
        receiver="host",
        wire_hex=enc.hex(),
        verdict="schema",
    )
    bk.add(
        "framing",
        "cobs-254-run-final-group",
        "the same body with a final empty group 0x01 after the full block",
        receiver="host",
        wire_hex=(enc + b"\x01").hex(),
        verdict="schema",
    )


def main() -> int:
    bk = Book()
    for fn in (messages, framing, auth, sequence, payload, strict):
        fn(bk)
    OUT.mkdir(parents=True, exist_ok=True)
    total = neg = 0
    for name, vecs in bk.files.items():
        doc = {"description": f"BPIIoT protocol 1.0 conformance vectors: {name}", "vectors": vecs}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        total += len(vecs)
        neg += sum(v["verdict"] != "ok" for v in vecs)
    print(f"{total} vectors, {neg} negative, in {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
