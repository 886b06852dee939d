"""Wire format: frames on a byte stream (protocol/SPEC.md, sections 2-4).

Pure functions and small stateful objects over bytes, usable without a port:

* :func:`split_stream` / :class:`Deframer` cut a byte stream at 0x00 delimiters,
* :class:`FrameEncoder` turns a message into wire bytes (header, CBOR payload,
  optional truncated HMAC-SHA256 tag, CRC-32, COBS, delimiter),
* :class:`FrameVerifier` checks one received frame and returns a :class:`Frame`
  or raises :class:`FrameError` whose ``reason`` is one of :data:`REASONS`.

A frame that fails any check is never returned: the caller counts the reason and
moves on to the next delimiter, which is how the link resynchronises.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cobs import cobs

from bpiiot import messages
from bpiiot.errors import BpiiotError
from bpiiot.messages import Message, SchemaError

PROTOCOL_MAJOR: Final = 1
PROTOCOL_MINOR: Final = 0

FLAG_AUTH: Final = 0x01
"""The frame carries an 8-byte truncated HMAC-SHA256 tag."""
FLAG_HOST: Final = 0x02
"""The frame was sent by the SBC (host), not by the board."""
_FLAGS_RESERVED: Final = 0x0F & ~(FLAG_AUTH | FLAG_HOST)

HEADER: Final = struct.Struct(">BBHI")
HEADER_LEN: Final = HEADER.size  # 8: version/flags, type, session, seq
TAG_LEN: Final = 8
CRC_LEN: Final = 4
MIN_BODY: Final = HEADER_LEN + 1 + CRC_LEN
CRC_RESIDUE: Final = 0x2144DF1C
"""zlib's CRC-32 of any body whose CRC is appended least significant byte first."""
MAX_BODY: Final = 512
# COBS adds one byte per 254 of body, plus one; the delimiter is not counted here.
MAX_ENCODED: Final = MAX_BODY + MAX_BODY // 254 + 1
KEY_MIN: Final = 16
KEY_MAX: Final = 32
U16: Final = 0xFFFF
U32: Final = 0xFFFFFFFF

REASONS: Final = (
    "oversize",
    "cobs",
    "truncated",
    "crc",
    "version",
    "flags",
    "direction",
    "unauthenticated",
    "mac",
    "replay",
    "session",
    "type",
    "cbor",
    "trailing",
    "schema",
)
"""Every reason a frame can be dropped for, in the order the checks run."""


_cobs_decode = cobs.decode
_CobsError = cobs.DecodeError
_crc32 = zlib.crc32
_unpack_header = HEADER.unpack_from


class FrameError(BpiiotError):
    """A received frame failed a check; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidKey(BpiiotError):
    """A MAC key has the wrong type or length (16 to 32 bytes are allowed)."""


@dataclass(slots=True)
class Frame:
    """One verified frame: its header fields and the typed message it carries."""

    type: int
    session: int
    seq: int
    authenticated: bool
    from_host: bool
    message: Message
    payload: bytes = b""
    """The payload bytes as received (for schema checks and logs)."""


def check_key(key: bytes | None) -> bytes | None:
    """Return ``key`` as bytes after checking its length, or None for no key."""
    if key is None:
        return None
    if not isinstance(key, bytes | bytearray):
        raise InvalidKey("MAC key must be bytes")
    if not KEY_MIN <= len(key) <= KEY_MAX:
        raise InvalidKey(f"MAC key must be {KEY_MIN} to {KEY_MAX} bytes, got {len(key)}")
    return bytes(key)


class _Hmac:
    """HMAC-SHA256 with the key schedule done once: two hash copies per frame."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # keys are at most 32 bytes, never hashed down
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(self, data: bytes | memoryview) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_LEN]


def newer(session: int, seq: int, last_session: int, last_seq: int) -> bool:
    """True when (session, seq) comes after (last_session, last_seq).

    Sessions are 16-bit boot counters compared in serial-number arithmetic
    (RFC 1982), so a counter that wraps from 65535 to 0 still counts as newer.
    """
    if session == last_session:
        return seq > last_seq
    return 0 < ((session - last_session) & U16) < 0x8000


def encode_payload(payload: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 4.2.1) of a payload made of ints, text, bytes, lists
    and small-int-keyed maps in ascending key order, as every implementation writes it."""
    return cbor2.dumps(payload)


class FrameEncoder:
    """Builds wire frames for one direction of one link.

    ``from_host`` selects the direction flag; ``session`` is the board's boot
    session (the host writes the board's current session, learned from hello).
    ``seq`` is the last sequence number used; :meth:`encode` increments it first.
    """

    def __init__(
        self, *, from_host: bool, key: bytes | None = None, session: int = 0, seq: int = 0
    ) -> None:
        self.from_host = from_host
        self.session = session
        self.seq = seq
        self._hmac: _Hmac | None = None
        self.set_key(key)

    def set_key(self, key: bytes | None) -> None:
        """Start (or, with None, stop) authenticating frames from now on."""
        key = check_key(key)
        self._hmac = _Hmac(key) if key else None

    @property
    def authenticated(self) -> bool:
        """True when frames carry a tag."""
        return self._hmac is not None

    def encode(self, message: Message) -> bytes:
        """Return the wire bytes of ``message`` with the next sequence number."""
        self.seq = (self.seq + 1) & U32
        return self.encode_raw(message.TYPE, encode_payload(message.to_payload()), self.seq)

    def encode_raw(self, type_: int, payload: bytes, seq: int, session: int | None = None) -> bytes:
        """Frame an already-encoded payload with explicit header values (tests, tools)."""
        flags = (FLAG_HOST if self.from_host else 0) | (FLAG_AUTH if self._hmac else 0)
        sess = self.session if session is None else session
        body = HEADER.pack((PROTOCOL_MAJOR << 4) | flags, type_, sess & U16, seq & U32) + payload
        if self._hmac is not None:
            body += self._hmac.tag(body)
        body += zlib.crc32(body).to_bytes(4, "little")
        if len(body) > MAX_BODY:
            raise FrameError("oversize", f"{len(body)} bytes > {MAX_BODY}")
        encoded: bytes = cobs.encode(body)
        return encoded + b"\0"


class FrameVerifier:
    """Verifies frames arriving at one end of a link and keeps its replay state.

    ``receiver`` is ``"host"`` (frames from the board) or ``"board"`` (commands
    from the host). With a key, untagged frames are refused; without one, a tag
    is not checked and the frame is delivered with ``authenticated=False``.

    Host side: (session, seq) must grow; a newer session means the board
    rebooted, a jump in seq means frames were lost. Board side: the session must
    be the board's own and seq must grow, except for hello requests.
    """

    def __init__(self, receiver: str, key: bytes | None = None) -> None:
        if receiver not in ("host", "board"):
            raise ValueError("receiver must be 'host' or 'board'")
        self.receiver = receiver
        self._want_host_flag = FLAG_HOST if receiver == "board" else 0
        self._types = messages.TO_BOARD if receiver == "board" else messages.TO_HOST
        self._hmac: _Hmac | None = None
        self.set_key(key)
        self.session: int | None = None
        self.seq = 0
        self.reboots = 0
        self.gaps = 0
        self._board_side = receiver == "board"
        self._buf = io.BytesIO()
        self._decode = cbor2.CBORDecoder(self._buf).decode

    def set_key(self, key: bytes | None) -> None:
        """Require (or, with None, stop requiring) tags from now on."""
        key = check_key(key)
        self._hmac = _Hmac(key) if key else None

    def forget(self) -> None:
        """Forget the replay state, e.g. after a board's boot counter was erased."""
        self.session = None
        self.seq = 0

    def verify(self, encoded: bytes | memoryview) -> Frame:
        """Check one frame (COBS-encoded, without its delimiter) and return it.

        Raises :class:`FrameError` for any failed check; the replay state only
        advances for frames that pass every check.
        """
        # This is the SDK's hot path: locals over attributes, no helper calls for the
        # common case (see tools/bench/bench_wire.py).
        if len(encoded) > MAX_ENCODED:
            raise FrameError("oversize", f"{len(encoded)} encoded bytes")
        try:
            body = _cobs_decode(encoded)
        except _CobsError as exc:
            raise FrameError("cobs", str(exc)) from None
        n = len(body)
        if n > MAX_BODY:
            raise FrameError("oversize", f"{n} bytes")
        if n < MIN_BODY:
            raise FrameError("truncated", f"{n} bytes < {MIN_BODY}")
        if _crc32(body) != CRC_RESIDUE:
            raise FrameError("crc")
        vf, type_, session, seq = _unpack_header(body)
        if vf >> 4 != PROTOCOL_MAJOR:
            raise FrameError("version", f"major version {vf >> 4}")
        if vf & _FLAGS_RESERVED:
            raise FrameError("flags", f"reserved flag bits 0x{vf & 0x0F:x}")
        if vf & FLAG_HOST != self._want_host_flag:
            raise FrameError("direction")
        end = n - CRC_LEN
        hm = self._hmac
        if vf & FLAG_AUTH:
            end -= TAG_LEN
            if end <= HEADER_LEN:
                raise FrameError("truncated", "no room for payload and tag")
            if hm is not None:
                inner = hm._inner.copy()
                inner.update(body[:end])
                outer = hm._outer.copy()
                outer.update(inner.digest())
                if outer.digest()[:TAG_LEN] != body[end : end + TAG_LEN]:
                    raise FrameError("mac")
        elif hm is not None:
            raise FrameError("unauthenticated", "a key is set and the frame has no tag")
        last = self.session
        if self._board_side:
            self._check_board_order(type_, session, seq)
        elif last is not None and not (
            seq > self.seq if session == last else 0 < ((session - last) & U16) < 0x8000
        ):
            raise FrameError("replay", f"({session}, {seq}) not after ({last}, {self.seq})")
        cls = self._types.get(type_)
        if cls is None:
            raise FrameError("type", f"unknown message type 0x{type_:02x}")
        # The decoder reads from a reused buffer; stale bytes past the payload are
        # harmless because the position after the item must equal the payload length.
        buf = self._buf
        buf.seek(0)
        payload = body[HEADER_LEN:end]
        plen = buf.write(payload)
        buf.seek(0)
        try:
            obj = self._decode()
        except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError) as exc:
            raise FrameError("cbor", str(exc)) from None
        pos = buf.tell()
        if pos != plen:
            if pos > plen:
                raise FrameError("cbor", "the item runs past the end of the payload")
            raise FrameError("trailing", f"{plen - pos} bytes after the item")
        try:
            message = cls.from_payload(obj)
        except SchemaError as exc:
            raise FrameError("schema", f"{cls.NAME}: {exc}") from None
        # Every check passed: only now does the replay state move.
        if self._board_side:
            # A hello_request from another session is answered but moves nothing.
            if seq > self.seq and (last is None or session == last):
                self.seq = seq
        else:
            if last is None:
                pass
            elif session != last:
                self.reboots += 1
            elif seq > self.seq + 1:
                self.gaps += seq - self.seq - 1
            self.session = session
            self.seq = seq
        return Frame(
            type_,
            session,
            seq,
            hm is not None and bool(vf & FLAG_AUTH),
            bool(vf & FLAG_HOST),
            message,
            payload,
        )

    def _check_board_order(self, type_: int, session: int, seq: int) -> None:
        # Hello requests are how the host learns the session: always answered.
        if type_ == messages.HelloRequest.TYPE:
            return
        last = self.session
        if last is not None and session != last:
            raise FrameError("session", f"session {session}, the board's is {last}")
        if seq <= self.seq:
            raise FrameError("replay", f"seq {seq} <= last {self.seq}")


def split_stream(data: bytes) -> Iterator[bytes]:
    """Yield the non-empty chunks between 0x00 delimiters of a complete byte string."""
    for chunk in data.split(b"\0"):
        if chunk:
            yield chunk


class Deframer:
    """Incremental splitter: feed bytes, get COBS-encoded frames without delimiters.

    A chunk longer than :data:`MAX_ENCODED` is discarded up to the next
    delimiter without being held in memory, and counted in :attr:`oversize`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.oversize = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frames they finish."""
        out: list[bytes] = []
        start = 0
        while True:
            i = data.find(b"\0", start)
            if i < 0:
                rest = data[start:]
                if self._discarding:
                    return out
                if len(self._buf) + len(rest) > MAX_ENCODED:
                    self._buf.clear()
                    self._discarding = True
                    self.oversize += 1
                else:
                    self._buf += rest
                return out
            piece = data[start:i]
            start = i + 1
            if self._discarding:
                self._discarding = False
                continue
            if self._buf:
                self._buf += piece
                piece = bytes(self._buf)
                self._buf.clear()
            if len(piece) > MAX_ENCODED:
                self.oversize += 1
            elif piece:
                out.append(piece)
