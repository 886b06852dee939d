"""The Uno firmware's C++ codec, built for the host (g++), through ctypes."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpiiot import wire

# The C++ codes are 1-based in protocol/constants.json's order, which is wire.REASONS
# (tests/protocol/test_constants.py keeps the generated header and the SDK in step).
REASONS = ("ok", *wire.REASONS)
TYPES = {"hello": 1, "report": 2, "status": 3, "ack": 4, "nack": 5, "log": 6, "config": 7}


@dataclass
class Verdict:
    """What the C++ verifier said about one chunk."""

    reason: str
    type: int
    session: int
    seq: int
    authenticated: bool
    payload: bytes
    seq_known: bool
    last_seq: int


class UnoCodec:
    """ctypes front of build/uno/host/libuno_codec.so (tools/uno/codec_host.cpp)."""

    def __init__(self, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        self.lib.uno_verify.restype = ctypes.c_int
        self.lib.uno_encode.restype = ctypes.c_int

    def verify(
        self,
        wire: bytes,
        key: bytes | None,
        prior: dict[str, int] | None,
        host_side: bool = False,
    ) -> Verdict:
        """Verify a chunk as the Uno's receiver (or, host_side, as the host's)."""
        chunk = ctypes.create_string_buffer(wire, len(wire) + 1)
        out = ctypes.create_string_buffer(600)
        hdr = (ctypes.c_uint32 * 7)()
        k = key or b""
        r = self.lib.uno_verify(
            k,
            len(k),
            int(prior is not None),
            prior["session"] if prior else 0,
            ctypes.c_uint32(prior["seq"] if prior else 0),
            chunk,
            len(wire),
            out,
            len(out),
            hdr,
            int(host_side),
        )
        return Verdict(REASONS[r], hdr[0], hdr[1], hdr[2], bool(hdr[3]), out.raw[: hdr[4]],
                       bool(hdr[5]), hdr[6])  # fmt: skip

    def encode(self, msg: dict[str, Any], key: bytes | None, session: int, seq: int) -> bytes:
        """The wire chunk (no delimiter) the Uno builds for a board message dict."""
        type_, f, text = encode_args(msg)
        fields = (ctypes.c_longlong * 16)(*f)
        out = ctypes.create_string_buffer(600)
        k = key or b""
        n = self.lib.uno_encode(type_, fields, text + b"\0", k, len(k), session,
                                ctypes.c_uint32(seq), out, len(out))  # fmt: skip
        if n < 0:
            raise ValueError(f"the Uno codec could not encode {msg['kind']}")
        return out.raw[:n]

    def features(
        self, x: list[int], y: list[int], z: list[int], rate: int, window: int
    ) -> list[tuple[list[int], int]]:
        """The Uno's window features at ``rate`` S/s (9 values: rms, peak, vel per
        axis; and flags)."""
        n = len(x)
        axes = [(ctypes.c_int16 * n)(*a) for a in (x, y, z)]
        out = (ctypes.c_uint32 * (10 * (n // window) + 10))()
        w = self.lib.uno_features(*axes, n, rate, window, out)
        if w < 0:
            raise ValueError(f"the Uno has no filter for {rate} S/s")
        return [(list(out[10 * i : 10 * i + 9]), out[10 * i + 9]) for i in range(w)]


def encode_args(msg: dict[str, Any]) -> tuple[int, list[int], bytes]:
    """(type, integer fields, text) of a board message dict, as uno_encode takes them."""
    kind = msg["kind"]
    text = b""
    if kind == "hello":
        f = [*msg["firmware_version"], msg["capabilities"], msg["boot_counter"],
             msg["last_host_seq"]]  # fmt: skip
        text = msg["board_id"].encode()
        if tuple(msg["protocol_version"]) != (1, 0):
            raise ValueError("the Uno speaks protocol 1.0 only")
    elif kind == "report":
        t = msg["temperature_cdeg_c"]
        f = [msg["window_seq"], msg["board_time_ms"], msg["samples"], *msg["acc_rms_mg"],
             *msg["acc_peak_mg"], *msg["vel_rms_um_s"], int(t is not None), t or 0,
             msg.get("flags", 0)]  # fmt: skip
    elif kind == "status":
        f = [msg[k] for k in ("frames_sent", "frames_rejected", "overruns",
                              "free_memory_bytes", "cpu_load_permille", "uptime_ms",
                              "windows")]  # fmt: skip
    elif kind == "ack":
        f = [msg["ref_seq"]]
    elif kind == "nack":
        f = [msg["ref_seq"], msg["code"]]
        text = msg["detail"].encode()
    elif kind == "log":
        f = [msg["level"]]
        text = msg["text"].encode()
    else:
        f = [msg[k] for k in ("sample_rate_hz", "window_ms", "hop_ms", "channels",
                              "machine_class")]  # fmt: skip
    return TYPES[kind], f, text
