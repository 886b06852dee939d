"""Board-side codec of the BPIIoT link protocol (protocol/SPEC.md, sections 2-5).

COBS framing, CRC-32, HMAC-SHA256 truncated to 8 bytes, a deterministic CBOR
encoder/decoder for exactly the subset the spec allows, header build/parse, the
command schemas and a frame verifier. It produces byte-identical frames to the SDK
(sbc/bpiiot/wire.py) and is judged by the same vectors (protocol/vectors/*.json).

What only the host end of the link needs (the schemas of the board's messages, the
host's replay rule) lives in ``codec_host``, imported on first use by a host-side
:class:`Verifier` or :func:`check_payload`: a board never loads it. A port without
``binascii.crc32`` loads the pure-Python ``crc32`` module instead.

Runs on MicroPython (boards and the Unix port) and on CPython.
"""

import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython, for tools and tests

    def const(x):
        return x


try:
    from binascii import crc32
except ImportError:  # ports built without binascii.crc32
    from bpiiot_fw.crc32 import crc32

_VERSION_MAJOR = const(1)
_VERSION_MINOR = const(0)
FLAG_AUTH = const(0x01)
_FLAG_HOST = const(0x02)
_HEADER_LEN = const(8)
_TAG_LEN = const(8)
_CRC_LEN = const(4)
_MIN_BODY = const(13)
_MAX_BODY = const(512)
_MAX_ENCODED = const(515)
_KEY_MIN = const(16)
_KEY_MAX = const(32)

# Message types (SPEC.md 5). Private (underscore) constants are compiled away and
# cost no RAM; app.py, commands.py, reports.py and codec_host.py hold copies, checked by
# tests/board/test_fw_app.py.
_T_HELLO = const(0x01)
_T_REPORT = const(0x02)
_T_STATUS = const(0x03)
_T_ACK = const(0x04)
_T_NACK = const(0x05)
_T_LOG = const(0x06)
_T_CONFIG = const(0x07)
_T_PING = const(0x40)
_T_GET_STATUS = const(0x41)
_T_SET_CONFIG = const(0x42)
_T_SET_OUTPUT = const(0x43)
_T_SET_KEY = const(0x44)
_T_CLEAR_KEY = const(0x45)
_T_REBOOT = const(0x46)
_T_HELLO_REQUEST = const(0x47)
_T_GET_CONFIG = const(0x48)

# Nack codes (SPEC.md 5.4).
_E_UNKNOWN_TYPE = const(1)
_E_BAD_ARGS = const(2)
_E_BAD_VALUE = const(3)
_E_UNAUTHENTICATED = const(4)
_E_BAD_SESSION = const(5)
_E_UNSUPPORTED = const(6)
_E_BUSY = const(7)
_E_INTERNAL = const(8)
_E_REPLAY = const(9)

# Which nack a refused host frame earns (SPEC.md 3.3); reasons not here are silent.
NACK_FOR = {
    "unauthenticated": _E_UNAUTHENTICATED,
    "mac": _E_UNAUTHENTICATED,
    "replay": _E_REPLAY,
    "session": _E_BAD_SESSION,
    "type": _E_UNKNOWN_TYPE,
    "cbor": _E_BAD_ARGS,
    "trailing": _E_BAD_ARGS,
    "schema": _E_BAD_ARGS,
}

_U16 = const(0xFFFF)
_U32 = const(0xFFFFFFFF)


class FrameError(Exception):
    """A frame failed a check: ``reason`` as in SPEC.md 3.3, ``seq`` once it is known.

    The CBOR decoder and the schemas raise it too (reasons ``cbor`` and ``schema``,
    ``detail`` saying what is wrong); the verifier then fills in ``seq``.
    """

    def __init__(self, reason, seq=None, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.detail = detail


# --- COBS ------------------------------------------------------------------------


def cobs_encode(src):
    """Return COBS(src) (without the 0x00 delimiter), as the SDK's `cobs` package does."""
    n = len(src)
    out = bytearray(n + n // 254 + 1)
    code_i = 0
    o = 1
    code = 1
    i = 0
    while i < n:
        b = src[i]
        i += 1
        if b == 0:
            out[code_i] = code
            code_i = o
            o += 1
            code = 1
        else:
            out[o] = b
            o += 1
            code += 1
            # A full block ends without an implied zero; a new one starts only if
            # input follows (the reference encoder adds no trailing 0x01).
            if code == 0xFF and i < n:
                out[code_i] = code
                code_i = o
                o += 1
                code = 1
    out[code_i] = code
    return out if o == len(out) else out[:o]


def cobs_decode(src):
    """Decode one COBS chunk (no delimiter; bytes or bytearray, as the Deframer gives
    them); raise FrameError('cobs') if invalid, including a zero byte anywhere."""
    n = len(src)
    out = bytearray(n)
    o = 0
    i = 0
    if b"\x00" in src:
        raise FrameError("cobs", None, "zero byte in chunk")
    while i < n:
        code = src[i]
        if code == 0:
            raise FrameError("cobs", None, "zero byte in chunk")
        i += 1
        end = i + code - 1
        if end > n:
            raise FrameError("cobs", None, "code points past the end")
        out[o : o + code - 1] = src[i:end]
        o += code - 1
        i = end
        if code < 0xFF and i < n:
            out[o] = 0
            o += 1
    return out[:o]


# --- HMAC-SHA256/64 --------------------------------------------------------------


def _pads(key):
    # The key's HMAC ipad and opad blocks, computed once per key (None: no key).
    # Returns (ipad, opad), or None; ValueError unless key is 16-32 bytes.
    if key is None:
        return None
    if type(key) not in (bytes, bytearray) or not _KEY_MIN <= len(key) <= _KEY_MAX:
        raise ValueError("key must be 16-32 bytes")
    block = bytearray(64)
    block[: len(key)] = key
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def _tag(key, data):
    # The first 8 bytes of HMAC-SHA256(key, data), key given as its (ipad, opad)
    # blocks (_pads). MicroPython's sha256 objects cannot be copied, so each tag
    # hashes the 64-byte pad blocks again.
    h = hashlib.sha256(key[0])
    h.update(data)
    o = hashlib.sha256(key[1])
    o.update(h.digest())
    return o.digest()[:_TAG_LEN]


# --- CBOR ------------------------------------------------------------------------


def _head(out, major, n):
    m = major << 5
    if n < 24:
        out.append(m | n)
        return
    for ai in (24, 25, 26, 27):  # 1, 2, 4 or 8 argument bytes
        size = 1 << (ai - 24)
        if n < 1 << (8 * size):
            out.append(m | ai)
            out.extend(n.to_bytes(size, "big"))
            return
    raise FrameError("cbor", None, "integer out of range")


def cbor_encode(obj, out=None):
    """Append the deterministic CBOR of obj to out (a bytearray) and return out.

    Allowed: int, str, bytes, list/tuple, dict with int keys (written in ascending
    order), None. Floats, booleans and anything else raise FrameError('cbor').
    """
    if out is None:
        out = bytearray()
    t = type(obj)
    if t is int:
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif t is str:
        b = obj.encode()
        _head(out, 3, len(b))
        out.extend(b)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 2, len(obj))
        out.extend(obj)
    elif t is list or t is tuple:
        _head(out, 4, len(obj))
        for v in obj:
            cbor_encode(v, out)
    elif t is dict:
        keys = sorted(obj)
        for k in keys:
            if type(k) is not int or k < 0:
                raise FrameError("cbor", None, "map keys must be unsigned integers")
        _head(out, 5, len(keys))
        for k in keys:
            _head(out, 0, k)
            cbor_encode(obj[k], out)
    elif obj is None:
        out.append(0xF6)
    else:
        raise FrameError("cbor", None, "cannot encode " + t.__name__)
    return out


# Reasons for a refused payload (SPEC.md 4): `cbor` when it does not start with one
# well-formed item, `trailing` when bytes follow it, `schema` for any well-formed
# item the protocol does not allow (tags, floats, simple values, indefinite lengths,
# invalid UTF-8, map keys not ascending unsigned integers, nesting deeper than
# _MAX_DEPTH) or that does not match its message. Well-formedness is judged first,
# without recursion, so deep nesting costs no stack.
_MAX_DEPTH = const(4)


def _arg(buf, pos, ai):
    # Returns (value, new position) of a head's argument (ai 0..27).
    if ai < 24:
        return ai, pos
    if ai > 27:
        raise FrameError("cbor", None, "reserved additional information")
    size = 1 << (ai - 24)
    if pos + size > len(buf):
        raise FrameError("cbor", None, "truncated")
    v = 0
    for i in range(pos, pos + size):
        v = (v << 8) | buf[i]
    return v, pos + size


def item_end(buf):
    """Offset just past the well-formed CBOR item at the start of buf; FrameError('cbor')."""
    n = len(buf)
    pos = 0
    # Open containers: items still due (definite), -1 indefinite array, -2/-3
    # indefinite map awaiting a key/a value.
    due = []
    tagged = False
    while True:
        if pos >= n:
            raise FrameError("cbor", None, "truncated")
        ib = buf[pos]
        pos += 1
        major = ib >> 5
        ai = ib & 31
        if ai == 31:
            if major == 7:
                if tagged or not due or due[-1] >= 0 or due[-1] == -3:
                    raise FrameError("cbor", None, "unexpected break")
                due.pop()
            elif major == 2 or major == 3:
                while True:
                    if pos >= n:
                        raise FrameError("cbor", None, "truncated")
                    cb = buf[pos]
                    pos += 1
                    if cb == 0xFF:
                        break
                    if cb >> 5 != major or cb & 31 == 31:
                        raise FrameError("cbor", None, "bad chunk in indefinite string")
                    m, pos = _arg(buf, pos, cb & 31)
                    pos += m
                    if pos > n:
                        raise FrameError("cbor", None, "truncated")
            elif major == 4 or major == 5:
                due.append(-1 if major == 4 else -2)
                tagged = False
                continue
            else:
                raise FrameError("cbor", None, "indefinite integer or tag")
        else:
            v, pos = _arg(buf, pos, ai)
            if major == 2 or major == 3:
                pos += v
                if pos > n:
                    raise FrameError("cbor", None, "truncated")
            elif major == 4 or major == 5:
                if v:
                    due.append(v if major == 4 else 2 * v)
                    tagged = False
                    continue
            elif major == 6:
                tagged = True
                continue
            elif major == 7 and ai == 24 and v < 32:
                raise FrameError("cbor", None, "invalid simple value")
        tagged = False
        while due:
            d = due[-1]
            if d > 1:
                due[-1] = d - 1
                break
            if d == 1:
                due.pop()
                continue
            if d != -1:
                due[-1] = -5 - d
            break
        else:
            return pos


def _utf8_ok(buf):
    # MicroPython's decoder lets surrogates and overlong forms through: check here.
    b = buf
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            k, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            k, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= c <= 0xEC or 0xEE <= c <= 0xEF:
            k, lo, hi = 2, 0x80, 0xBF
        elif c == 0xED:
            k, lo, hi = 2, 0x80, 0x9F
        elif c == 0xF0:
            k, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            k, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            k, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if i + k >= n:
            return False
        if not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += k + 1
    return True


def _item(buf, pos, depth):
    # Decode one well-formed item at pos; return (value, new position). Refuses what
    # SPEC.md 4 does not allow as `schema`. Maps come back as a tuple of (key, value)
    # pairs in wire order (MicroPython dicts do not keep insertion order).
    ib = buf[pos]
    major = ib >> 5
    ai = ib & 31
    if ai == 31:
        raise FrameError("schema", None, "indefinite length")
    if major == 6:
        raise FrameError("schema", None, "tag")
    if major == 7:
        if ai == 22:
            return None, pos + 1
        raise FrameError("schema", None, "float or simple value")
    n, pos = _arg(buf, pos + 1, ai)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major < 4:
        s = bytes(buf[pos : pos + n])
        if major == 3:
            if not _utf8_ok(s):
                raise FrameError("schema", None, "invalid UTF-8")
            s = s.decode()
        return s, pos + n
    if depth >= _MAX_DEPTH:
        raise FrameError("schema", None, "nested too deep")
    out = []
    last = -1
    for _ in range(n):
        v, pos = _item(buf, pos, depth + 1)
        if major == 5:
            if type(v) is not int or v <= last:
                raise FrameError("schema", None, "map keys must ascend")
            last = v
            w, pos = _item(buf, pos, depth + 1)
            v = (v, w)
        out.append(v)
    return (tuple(out) if major == 5 else out), pos


def cbor_decode(buf, pos=0):
    """Decode the payload buf[pos:] as SPEC.md 4 says; return (value, end).

    Raises FrameError: 'cbor' (not one well-formed item), 'trailing' (bytes after
    it) or 'schema' (outside the protocol's data model). Maps come back as tuples of
    (key, value) pairs in wire order.
    """
    if pos:
        buf = memoryview(buf)[pos:]
    end = item_end(buf)
    if end != len(buf):
        raise FrameError("trailing")
    return _item(buf, 0, 0)[0], pos + end


# --- schemas (SPEC.md 5, bpiiot.cddl) --------------------------------------------


def uint(v, hi=_U32, lo=0):
    """v if it is an int in lo..hi; FrameError('schema') otherwise."""
    if type(v) is not int or not lo <= v <= hi:
        raise FrameError("schema", None, "integer out of range")
    return v


def arr(obj, n):
    """obj if it is an array of n items; FrameError('schema') otherwise."""
    if type(obj) is not list or len(obj) != n:
        raise FrameError("schema", None, "array of %d expected" % n)
    return obj


def config_map(obj, complete):
    """A set_config (or, complete, a config) map as a dict {1..5: value}.

    Keys must ascend, values lie in the ranges of SPEC.md 5.3: sample rate 1-65535,
    window and hop 1-60000 ms, channels 0-15, machine class 0-3.
    """
    if type(obj) is dict:
        obj = sorted(obj.items())
    elif type(obj) is not tuple:
        raise FrameError("schema", None, "map expected")
    if not obj:
        raise FrameError("schema", None, "at least one key")
    last = 0
    out = {}
    for k, v in obj:
        if type(k) is not int or not 1 <= k <= 5:
            raise FrameError("schema", None, "unknown key")
        if k <= last:
            raise FrameError("schema", None, "keys must ascend")
        last = k
        out[k] = uint(v, (0xFFFF, 60000, 60000, 15, 3)[k - 1], 0 if k > 3 else 1)
    if complete and len(out) != 5:
        raise FrameError("schema", None, "every key 1..5")
    return out


def check_payload(type_, obj):
    """Validate a decoded payload for message type_ and return it normalised.

    Maps come back as dicts; everything else as decoded. Raises FrameError('schema').
    The board's own messages are checked by ``codec_host`` (loaded on first use).
    """
    if type_ < _T_PING:
        from bpiiot_fw import codec_host

        return codec_host.check_board_payload(type_, obj)
    if type_ == _T_SET_CONFIG:
        return config_map(obj, False)
    if type_ == _T_SET_OUTPUT:
        a = arr(obj, 2)
        uint(a[0], 0xFF)
        uint(a[1], 1)
        return a
    if type_ == _T_SET_KEY:
        a = arr(obj, 1)
        if type(a[0]) is not bytes or not _KEY_MIN <= len(a[0]) <= _KEY_MAX:
            raise FrameError("schema", None, "key must be 16-32 bytes")
        return a
    return arr(obj, 0)


# --- frames ----------------------------------------------------------------------


class Encoder:
    """Builds wire frames for one direction: board (default) or host."""

    def __init__(self, from_host=False, key=None, session=0, seq=0):
        self.from_host = from_host
        self.session = session
        self.seq = seq
        self.set_key(key)

    def set_key(self, key):
        """Tag frames with key (16-32 bytes) from now on (None: stop tagging)."""
        self._pads = _pads(key)

    def encode(self, type_, payload):
        """Wire bytes (COBS + delimiter) of a message with the next sequence number."""
        self.seq = (self.seq + 1) & _U32
        return self.frame(type_, cbor_encode(payload), self.seq)

    def frame(self, type_, payload, seq, session=None):
        """Frame an encoded payload with explicit header values."""
        flags = (_FLAG_HOST if self.from_host else 0) | (FLAG_AUTH if self._pads else 0)
        sess = self.session if session is None else session
        body = bytearray(
            struct.pack(">BBHI", (_VERSION_MAJOR << 4) | flags, type_, sess & _U16, seq & _U32)
        )
        body.extend(payload)
        if self._pads is not None:
            body.extend(_tag(self._pads, body))
        body.extend((crc32(body) & _U32).to_bytes(4, "little"))
        if len(body) > _MAX_BODY:
            raise FrameError("oversize", seq)
        out = cobs_encode(body)
        out.append(0)
        return out


class Verifier:
    """Checks frames arriving at one end of the link, in the order of SPEC.md 3.3.

    ``board=True`` for the board's receiver (commands from the host): the session
    must equal the board's own (``session``; None accepts any) and seq must grow,
    hello requests excepted. ``board=False`` for the host's receiver (conformance
    tests; loads ``codec_host``). The replay state advances only for frames that
    pass every check.
    """

    def __init__(self, board=True, key=None, session=None, seq=0):
        self.board = board
        self.session = session
        self.seq = seq
        self.set_key(key)

    def set_key(self, key):
        """Require tags made with key (16-32 bytes) from now on (None: stop requiring them)."""
        self._pads = _pads(key)

    def verify(self, chunk):
        """Check one COBS chunk (no delimiter).

        Returns (type, session, seq, authenticated, payload) with the payload
        validated by :func:`check_payload`; raises FrameError otherwise.
        """
        if len(chunk) > _MAX_ENCODED:
            raise FrameError("oversize")
        body = cobs_decode(chunk)
        n = len(body)
        if n > _MAX_BODY:
            raise FrameError("oversize")
        if n < _MIN_BODY:
            raise FrameError("truncated")
        end = n - _CRC_LEN
        mv = memoryview(body)
        if crc32(mv[:end]) & _U32 != int.from_bytes(body[end:], "little"):
            raise FrameError("crc")
        vf, type_, session, seq = struct.unpack_from(">BBHI", body, 0)
        if vf >> 4 != _VERSION_MAJOR:
            raise FrameError("version")
        flags = vf & 0x0F
        if flags & ~(FLAG_AUTH | _FLAG_HOST):
            raise FrameError("flags")
        board = self.board
        if (flags & _FLAG_HOST) != (_FLAG_HOST if board else 0):
            raise FrameError("direction")
        pads = self._pads
        if flags & FLAG_AUTH:
            end -= _TAG_LEN
            if end <= _HEADER_LEN:
                raise FrameError("truncated")
            if pads is not None and _tag(pads, mv[:end]) != bytes(mv[end : end + _TAG_LEN]):
                raise FrameError("mac", seq)
        elif pads is not None:
            raise FrameError("unauthenticated", seq)
        last = self.session
        if board:
            # Hello requests are how the host learns the session: always answered.
            if type_ != _T_HELLO_REQUEST:
                if last is not None and session != last:
                    raise FrameError("session", seq)
                if seq <= self.seq:
                    raise FrameError("replay", seq)
            if not _T_PING <= type_ <= _T_GET_CONFIG:
                raise FrameError("type", seq)
        else:
            from bpiiot_fw import codec_host

            if last is not None and not codec_host.newer(session, seq, last, self.seq):
                raise FrameError("replay", seq)
            if not _T_HELLO <= type_ <= _T_CONFIG:
                raise FrameError("type", seq)
        try:
            obj = check_payload(type_, cbor_decode(mv[_HEADER_LEN:end])[0])
        except FrameError as exc:
            exc.seq = seq
            raise
        if board:
            # A hello_request from another session is answered but moves nothing.
            if seq > self.seq and (last is None or session == last):
                self.seq = seq
        else:
            self.session = session
            self.seq = seq
        return type_, session, seq, bool(flags & FLAG_AUTH) and pads is not None, obj


class Deframer:
    """Splits a byte stream at 0x00; chunks over 515 bytes are dropped unbuffered.

    ``feed`` returns complete chunks; ``oversize`` counts dropped ones.
    """

    def __init__(self):
        self.buf = bytearray()
        self.discarding = False
        self.oversize = 0

    def feed(self, data):
        """Add received bytes; return the list of chunks they complete."""
        out = []
        start = 0
        n = len(data)
        while start <= n:
            i = data.find(b"\x00", start)
            if i < 0:
                rest = data[start:]
                if not self.discarding:
                    if len(self.buf) + len(rest) > _MAX_ENCODED:
                        self.buf = bytearray()
                        self.discarding = True
                        self.oversize += 1
                    else:
                        self.buf.extend(rest)
                return out
            piece = data[start:i]
            start = i + 1
            if self.discarding:
                self.discarding = False
                continue
            if self.buf:
                self.buf.extend(piece)
                piece = bytes(self.buf)
                self.buf = bytearray()
            if len(piece) > _MAX_ENCODED:
                self.oversize += 1
            elif piece:
                out.append(piece)
        return out
