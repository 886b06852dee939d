"""Test helpers: a board in the Unix port (tools/board_host.py) and a raw SBC client
built on the SDK's wire module, with full control over seq, session, key and bytes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import serial

from bpiiot import messages as m
from bpiiot import wire

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from board_host import BoardHost  # noqa: E402

__all__ = ["BoardHost", "Client"]


class Client:
    """The SBC end of one pty, speaking frames through bpiiot.wire.

    Every byte received is kept in ``raw`` (to prove no text ever reaches the
    stream); frames that fail verification are kept in ``errors``.
    """

    def __init__(self, port: str, key: bytes | None = None) -> None:
        self.ser = serial.Serial(port, 115200, timeout=0.02)
        self.enc = wire.FrameEncoder(from_host=True, key=key)
        self.ver = wire.FrameVerifier("host", key)
        self.deframer = wire.Deframer()
        self.raw = bytearray()
        self.inbox: list[wire.Frame] = []
        self.errors: list[str] = []
        self.reports: list[m.Report] = []
        self.logs: list[m.Log] = []

    def close(self) -> None:
        """Close the port."""
        self.ser.close()

    def set_key(self, key: bytes | None) -> None:
        """Use key both ways from now on."""
        self.enc.set_key(key)
        self.ver.set_key(key)

    def write(self, data: bytes) -> None:
        """Write raw bytes."""
        self.ser.write(data)

    def _pump(self, timeout: float) -> None:
        data = self.ser.read(4096) if timeout > 0 else b""
        if not data:
            return
        self.raw += data
        for chunk in self.deframer.feed(data):
            try:
                frame = self.ver.verify(chunk)
            except wire.FrameError as exc:
                self.errors.append(exc.reason)
                continue
            if isinstance(frame.message, m.Report):
                self.reports.append(frame.message)
            elif isinstance(frame.message, m.Log):
                self.logs.append(frame.message)
            self.inbox.append(frame)

    def recv(
        self, timeout: float = 3.0, kinds: tuple[type[m.Message], ...] = ()
    ) -> wire.Frame | None:
        """Next frame (of one of ``kinds`` if given; others are skipped), or None."""
        deadline = time.monotonic() + timeout
        while True:
            while self.inbox:
                frame = self.inbox.pop(0)
                if not kinds or isinstance(frame.message, kinds):
                    return frame
            if time.monotonic() > deadline:
                return None
            self._pump(deadline - time.monotonic())

    def frame(self, type_: int, payload: bytes, **kw: Any) -> bytes:
        """A host frame with the next seq (or kw seq/session/key)."""
        seq = kw.get("seq")
        if seq is None:
            self.enc.seq += 1
            seq = self.enc.seq
        enc = self.enc
        if "key" in kw:
            enc = wire.FrameEncoder(from_host=True, key=kw["key"], session=self.enc.session)
        return enc.encode_raw(type_, payload, seq, kw.get("session"))

    def exchange(self, data: bytes, timeout: float = 3.0) -> tuple[list[wire.Frame], wire.Frame]:
        """Send a frame; return (replies before the ack/nack, the ack/nack)."""
        body = wire.cobs.decode(data[:-1])
        ref = int.from_bytes(body[4:8], "big")
        self.write(data)
        before: list[wire.Frame] = []
        while True:
            frame = self.recv(timeout)
            assert frame is not None, f"no ack/nack for seq {ref}; errors {self.errors}"
            msg = frame.message
            if isinstance(msg, (m.Ack, m.Nack)) and msg.ref_seq == ref:
                return before, frame
            if not isinstance(msg, (m.Report, m.Log)):
                before.append(frame)

    def command(self, msg: m.Message, **kw: Any) -> tuple[list[wire.Frame], wire.Frame]:
        """Send a typed command; return (replies before the ack/nack, the ack/nack)."""
        return self.exchange(self.frame(msg.TYPE, wire.encode_payload(msg.to_payload()), **kw))

    def sync(self, timeout: float = 5.0) -> m.Hello:
        """Flush the board's partial frame, ask for hello, adopt its session."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.write(b"\0")
            self.enc.seq += 1
            frame_bytes = self.enc.encode_raw(m.HelloRequest.TYPE, b"\x80", self.enc.seq)
            self.write(frame_bytes)
            got = self.recv(1.0, (m.Hello,))
            if got is not None:
                assert isinstance(got.message, m.Hello)
                self.enc.session = got.session
                self.enc.seq = max(self.enc.seq, got.message.last_host_seq)
                # Drain the ack of this hello request.
                self.recv(0.5, (m.Ack,))
                return got.message
        raise AssertionError(f"no hello; errors {self.errors}; raw {bytes(self.raw[-200:])!r}")
