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
from dataclasses import dataclass, field
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
    payload: bytes = field(default=b"", repr=False)
    """The payload bytes as received (for schema checks); left out of ``repr`` because a
    ``set_key`` payload holds the key."""


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
    and maps with unsigned integer keys, as every implementation writes it.

    Map keys are written in ascending order whatever order the caller's dict has
    (cbor2's canonical order, length first, is the same as 4.2.1's for unsigned keys).
    """
    return cbor2.dumps(payload, canonical=True)


# --- strict payload decoding (SPEC.md section 4) -----------------------------------
#
# The reason a payload is refused is normative: `cbor` when it does not start with
# one well-formed CBOR item (RFC 8949 section 5.3.1), `trailing` when bytes follow
# that item, `schema` for every well-formed item the protocol does not allow (tags,
# floats, simple values, indefinite lengths, invalid UTF-8, map keys that are not
# ascending unsigned integers, nesting deeper than any message) or that does not
# match its message. cbor2 decides the common case fast; whatever it refuses or
# leaves in doubt is judged again by the pure-Python functions below.

MAX_DEPTH: Final = 4
"""Arrays and maps nested deeper than this are refused (`schema`); messages nest 2."""


def _argument(data: bytes, pos: int, ai: int) -> tuple[int, int]:
    # The argument of a head whose additional information is ai (0..27), and the
    # position after it.
    if ai < 24:
        return ai, pos
    if ai > 27:
        raise FrameError("cbor", f"reserved additional information {ai} at byte {pos - 1}")
    size = 1 << (ai - 24)
    end = pos + size
    if end > len(data):
        raise FrameError("cbor", "the item runs past the end of the payload")
    return int.from_bytes(data[pos:end], "big"), end


def item_end(data: bytes) -> int:
    """The offset just past the well-formed CBOR item at the start of ``data``.

    Raises :class:`FrameError` ``cbor`` when there is none (truncated, reserved
    additional information, a misplaced break, a bad indefinite-length chunk, an
    indefinite integer or tag, a two-byte simple value below 32). Iterative, so any
    nesting depth is judged without recursion.
    """
    n = len(data)
    pos = 0
    # Open containers: items still due for definite ones; -1 for an indefinite
    # array, -2 for an indefinite map awaiting a key, -3 awaiting a value.
    open_: list[int] = []
    tagged = False
    while True:
        if pos >= n:
            raise FrameError("cbor", "the item runs past the end of the payload")
        ib = data[pos]
        pos += 1
        major = ib >> 5
        ai = ib & 0x1F
        if ai == 31:
            if major == 7:
                if tagged or not open_ or open_[-1] >= 0 or open_[-1] == -3:
                    raise FrameError("cbor", f"unexpected break at byte {pos - 1}")
                open_.pop()
            elif major == 2 or major == 3:
                while True:
                    if pos >= n:
                        raise FrameError("cbor", "the item runs past the end of the payload")
                    cb = data[pos]
                    pos += 1
                    if cb == 0xFF:
                        break
                    if cb >> 5 != major or cb & 0x1F == 31:
                        raise FrameError("cbor", f"bad indefinite-length chunk at byte {pos - 1}")
                    length, pos = _argument(data, pos, cb & 0x1F)
                    pos += length
                    if pos > n:
                        raise FrameError("cbor", "the item runs past the end of the payload")
            elif major == 4 or major == 5:
                open_.append(-1 if major == 4 else -2)
                tagged = False
                continue
            else:
                raise FrameError("cbor", f"indefinite length for major type {major}")
        else:
            arg, pos = _argument(data, pos, ai)
            if major == 2 or major == 3:
                pos += arg
                if pos > n:
                    raise FrameError("cbor", "the item runs past the end of the payload")
            elif major == 4 or major == 5:
                if arg:
                    open_.append(arg if major == 4 else 2 * arg)
                    tagged = False
                    continue
            elif major == 6:
                tagged = True
                continue
            elif major == 7 and ai == 24 and arg < 32:
                raise FrameError("cbor", f"two-byte simple value {arg} below 32")
        tagged = False
        # One item is complete: count it in the containers that hold it.
        while open_:
            due = open_[-1]
            if due > 1:
                open_[-1] = due - 1
                break
            if due == 1:
                open_.pop()
                continue
            if due != -1:
                open_[-1] = -5 - due  # -2 <-> -3: key, then value
            break
        else:
            return pos


def _strict_item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    # Decode one item known to be well-formed, refusing what SPEC.md 4 does not allow.
    ib = data[pos]
    major = ib >> 5
    ai = ib & 0x1F
    if ai == 31:
        raise FrameError("schema", "indefinite length")
    if major == 6:
        raise FrameError("schema", "a CBOR tag")
    if major == 7:
        if ai == 22:
            return None, pos + 1
        raise FrameError("schema", "a float, boolean or simple value")
    arg, pos = _argument(data, pos + 1, ai)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        return bytes(data[pos : pos + arg]), pos + arg
    if major == 3:
        try:
            return bytes(data[pos : pos + arg]).decode("utf-8"), pos + arg
        except UnicodeDecodeError:
            raise FrameError("schema", "invalid UTF-8 in a text string") from None
    if depth >= MAX_DEPTH:
        raise FrameError("schema", f"nested deeper than {MAX_DEPTH}")
    if major == 4:
        out = []
        for _ in range(arg):
            v, pos = _strict_item(data, pos, depth + 1)
            out.append(v)
        return out, pos
    obj: dict[int, Any] = {}
    last = -1
    for _ in range(arg):
        kb = data[pos]
        if kb >> 5 != 0 or kb & 0x1F > 27:
            raise FrameError("schema", "map keys must be unsigned integers in ascending order")
        k, pos = _argument(data, pos + 1, kb & 0x1F)
        if k <= last:
            raise FrameError("schema", "map keys must be unsigned integers in ascending order")
        last = k
        obj[k], pos = _strict_item(data, pos, depth + 1)
    return obj, pos


def decode_payload(payload: bytes) -> Any:
    """Decode a payload as SPEC.md section 4 says, or raise :class:`FrameError`.

    The reason is ``cbor`` (not one well-formed item), ``trailing`` (bytes after it)
    or ``schema`` (a well-formed item outside the protocol's data model). This is
    the reference the verifier's fast path must agree with.
    """
    end = item_end(payload)
    if end != len(payload):
        raise FrameError("trailing", f"{len(payload) - end} bytes after the item")
    return _strict_item(payload, 0, 0)[0]


class _RefuseTag(Exception):
    """Raised inside cbor2 for any tag, so that the strict decoder judges it."""


def _refuse_tag(*_: Any) -> Any:
    raise _RefuseTag


# cbor2 decodes these tags itself (tag_hook only sees the others): all are refused.
_SEMANTIC_REFUSED: Final = dict.fromkeys((*range(0, 300), 55799, 55800, 55801), _refuse_tag)
_NOT_ERRORS: Final = (KeyboardInterrupt, SystemExit)


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
        self._decode = self._new_decoder()

    def _new_decoder(self) -> Any:
        # A cbor2 decoder that failed is never used again: after a truncated item
        # cbor2 6 leaves it mid-state (the next good payload fails) or panicking.
        return cbor2.CBORDecoder(
            self._buf,
            tag_hook=_refuse_tag,
            semantic_decoders=_SEMANTIC_REFUSED,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=MAX_DEPTH,
        ).decode

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
        # Fast path: a reused cbor2 decoder over a reused buffer. It accepts only plain
        # definite items without tags or repeated keys; whatever it refuses, and an item
        # that does not end exactly at the payload's end (stale bytes of an earlier,
        # longer payload may follow it in the buffer), goes to the strict decoder,
        # which names the normative reason (SPEC.md 4).
        buf = self._buf
        buf.seek(0)
        payload = body[HEADER_LEN:end]
        plen = buf.write(payload)
        buf.seek(0)
        try:
            obj = self._decode()
            fast = buf.tell() == plen
        except BaseException as exc:  # cbor2 6 panics with a BaseException
            self._decode = self._new_decoder()
            if isinstance(exc, _NOT_ERRORS):
                raise
            fast = False
        if not fast:
            obj = decode_payload(payload)
        try:
            message = cls.from_payload(obj)
        except SchemaError as exc:
            raise FrameError("schema", f"{cls.NAME}: {exc}") from None
        except Exception as exc:  # a schema bug must not kill the reader: still a refusal
            raise FrameError("schema", f"{cls.NAME}: {type(exc).__name__}: {exc}") from None
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

    A receiver that starts listening mid-stream (a port just opened) cannot know
    whether its first bytes began a frame: after a :meth:`feed`,
    :attr:`head_returned` is true when the first chunk it returned is the one that
    ended at the first delimiter ever seen, so a caller can tell the tail of a frame
    sent before it listened from a damaged frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self._synced = False
        self.oversize = 0
        self.head_returned = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frames they finish."""
        out: list[bytes] = []
        self.head_returned = False
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
            head, self._synced = not self._synced, True
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
                self.head_returned |= head
                out.append(piece)
