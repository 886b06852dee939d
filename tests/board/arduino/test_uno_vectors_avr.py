"""The conformance vectors against the Uno codec as avr-gcc compiles it (16-bit int,
8-bit core), run in simavr: tools/uno/vector_runner.cpp answers over the simulated
UART. Board-bound vectors go through the firmware's receiver; the board frames of
the ok vectors are rebuilt by its writers, byte for byte."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import serial
from cobs import cobs

from .conftest import UnoSim
from .test_uno_codec_vectors import BOARD, HOST_OK, NACKABLE
from .uno_codec import REASONS, encode_args


class Runner:
    """The vector runner's request/answer protocol over the pty."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 115200, timeout=10)

    def _read(self, n: int) -> bytes:
        data = self.ser.read(n)
        if len(data) != n:
            raise TimeoutError(f"the AVR vector runner sent {len(data)} of {n} bytes")
        return data

    def verify(
        self, v: dict[str, Any], host_side: bool = False
    ) -> tuple[str, tuple[int, ...], bytes]:
        key = bytes.fromhex(v["key"]) if v["key"] else b""
        prior = v["prior"]
        wire = bytes.fromhex(v["wire"])
        req = b"V" + bytes([len(key)]) + key + bytes([prior is not None])
        req += struct.pack("<HIBH", prior["session"] if prior else 0,
                           prior["seq"] if prior else 0, host_side, len(wire)) + wire  # fmt: skip
        self.ser.write(req)
        assert self._read(1) == b"R"
        reason = self._read(1)[0]
        hdr = struct.unpack("<7I", self._read(28))
        (n,) = struct.unpack("<H", self._read(2))
        return REASONS[reason], hdr, self._read(n)

    def encode(self, msg: dict[str, Any], key: bytes, session: int, seq: int) -> bytes:
        type_, fields, text = encode_args(msg)
        req = b"E" + bytes([type_]) + struct.pack("<16q", *fields, *[0] * (16 - len(fields)))
        req += bytes([len(text)]) + text + bytes([len(key)]) + key
        req += struct.pack("<HI", session, seq)
        self.ser.write(req)
        assert self._read(1) == b"R"
        (n,) = struct.unpack("<h", self._read(2))
        assert n > 0, msg
        return self._read(n)


def test_vectors_on_the_avr(uno_build: Path) -> None:
    with UnoSim(firmware=uno_build / "vector_runner.elf") as sim:
        runner = Runner(sim.start())
        try:
            for v in BOARD:
                reason, hdr, payload = runner.verify(v)
                assert reason == v["verdict"], v["name"]
                if reason != "ok":
                    assert bool(hdr[5]) == (reason in NACKABLE), v["name"]
                    continue
                h = v["header"]
                assert hdr[:4] == (h["type"], h["session"], h["seq"], h["authenticated"])
                assert payload.hex() == v["payload_hex"], v["name"]
            for v in HOST_OK:
                key = bytes.fromhex(v["key"]) if v["key"] else b""
                h = v["header"]
                wire = runner.encode(v["message"], key, h["session"], h["seq"])
                theirs = cobs.decode(bytes.fromhex(v["wire"]))
                if v["key"] is None and theirs[0] & 0x01:
                    # Tagged by a sender whose key the vector does not give: the
                    # header after the flags byte and the payload must still match.
                    ours = cobs.decode(wire)
                    assert ours[1:8] == theirs[1:8] and ours[8:-4] == theirs[8:-12], v["name"]
                    continue
                assert wire.hex() == v["wire"], v["name"]
        finally:
            runner.ser.close()
    assert len(BOARD) >= 30 and len(HOST_OK) >= 10
