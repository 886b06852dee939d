"""Board-side codec of the BPIIoT link protocol (protocol/SPEC.md, sections 2-5).

COBS framing, CRC-32, HMAC-SHA256 truncated to 8 bytes, a deterministic CBOR
encoder/decoder for exactly the subset the spec allows, header build/parse,
payload schemas and a frame verifier for either end of the link. It produces
byte-identical frames to the SDK (sbc/bpiiot/wire.py) and is judged by the same
vectors (protocol/vectors/*.json).

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
    crc32 = None

VERSION_MAJOR = const(1)
VERSION_MINOR = const(0)
FLAG_AUTH = const(0x01)
FLAG_HOST = const(0x02)
HEADER_LEN = const(8)
TAG_LEN = const(8)
CRC_LEN = const(4)
MIN_BODY = const(13)
MAX_BODY = const(512)
MAX_ENCODED = const(515)
KEY_MIN = const(16)
KEY_MAX = const(32)

# Message types (SPEC.md 5).
T_HELLO = const(0x01)
T_REPORT = const(0x02)
T_STATUS = const(0x03)
T_ACK = const(0x04)
T_NACK = const(0x05)
T_LOG = const(0x06)
T_CONFIG = const(0x07)
T_PING = const(0x40)
T_GET_STATUS = const(0x41)
T_SET_CONFIG = const(0x42)
T_SET_OUTPUT = const(0x43)
T_SET_KEY = const(0x44)
T_CLEAR_KEY = const(0x45)
T_REBOOT = const(0x46)
T_HELLO_REQUEST = const(0x47)
T_GET_CONFIG = const(0x48)

# Nack codes (SPEC.md 5.4).
E_UNKNOWN_TYPE = const(1)
E_BAD_ARGS = const(2)
E_BAD_VALUE = const(3)
E_UNAUTHENTICATED = const(4)
E_BAD_SESSION = const(5)
E_UNSUPPORTED = const(6)
E_BUSY = const(7)
E_INTERNAL = const(8)
E_REPLAY = const(9)

# Which nack a refused host frame earns (SPEC.md 3.3); reasons not here are silent.
NACK_FOR = {
    "unauthenticated": E_UNAUTHENTICATED,
    "mac": E_UNAUTHENTICATED,
    "replay": E_REPLAY,
    "session": E_BAD_SESSION,
    "type": E_UNKNOWN_TYPE,
    "cbor": E_BAD_ARGS,
    "trailing": E_BAD_ARGS,
    "schema": E_BAD_ARGS,
}

_HEADER = ">BBHI"
_U16 = const(0xFFFF)
_U32 = const(0xFFFFFFFF)


class FrameError(Exception):
    """A frame failed a check: ``reason`` as in SPEC.md 3.3, ``seq`` once it is known."""

    def __init__(self, reason, seq=None, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.detail = detail


class CborError(Exception):
    """Malformed CBOR, or a value the encoder refuses (floats, booleans)."""


class SchemaError(Exception):
    """A decoded payload does not match its message's schema."""


# --- CRC-32 ----------------------------------------------------------------------

_crc_table = None


def _crc32_table(data, crc=0):
    # Fallback for ports without binascii.crc32; the table is built on first use.
    global _crc_table
    if _crc_table is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            t.append(c)
        _crc_table = t
    t = _crc_table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


if crc32 is None:
    crc32 = _crc32_table


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
    """Decode one COBS chunk (no delimiter); raise FrameError('cobs') if invalid."""
    n = len(src)
    out = bytearray(n)
    o = 0
    i = 0
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


class Hmac:
    """HMAC-SHA256 truncated to 8 bytes, with the padded key blocks computed once.

    MicroPython's sha256 objects cannot be copied, so each tag hashes the 64-byte
    ipad/opad blocks again: two extra compression rounds, no allocation per key byte.
    """

    def __init__(self, key):
        block = bytearray(64)
        block[: len(key)] = key
        self._ipad = bytes(b ^ 0x36 for b in block)
        self._opad = bytes(b ^ 0x5C for b in block)

    def tag(self, data):
        """The first 8 bytes of HMAC-SHA256(key, data)."""
        h = hashlib.sha256(self._ipad)
        h.update(data)
        o = hashlib.sha256(self._opad)
        o.update(h.digest())
        return o.digest()[:TAG_LEN]


def check_key(key):
    """Return key as bytes if it is 16-32 bytes (None stays None); ValueError otherwise."""
    if key is None:
        return None
    if type(key) not in (bytes, bytearray) or not KEY_MIN <= len(key) <= KEY_MAX:
        raise ValueError("key must be 16-32 bytes")
    return bytes(key)


# --- CBOR ------------------------------------------------------------------------


class _Odd:
    """A CBOR item the protocol never allows (float, tag, boolean, simple value).

    Decoded into a placeholder so that well-formed CBOR is refused by the schema
    check (`schema`), as the SDK does, rather than as malformed (`cbor`).
    """

    def __init__(self, what):
        self.what = what

    def __repr__(self):
        return "<" + self.what + ">"


class CMap:
    """A decoded CBOR map: its (key, value) pairs in wire order.

    MicroPython dicts do not keep insertion order, and the schema must see the
    order (keys must ascend). A repeated key keeps its first position and its last
    value, as the SDK's decoder does.
    """

    def __init__(self):
        self.pairs = []

    def put(self, k, v):
        """Add a pair, or replace the value of an existing key."""
        for i, p in enumerate(self.pairs):
            if type(p[0]) is type(k) and p[0] == k:
                self.pairs[i] = (k, v)
                return
        self.pairs.append((k, v))

    def to_dict(self):
        """The pairs as a dict."""
        return dict(self.pairs)

    def __eq__(self, other):
        if isinstance(other, CMap):
            return self.pairs == other.pairs
        return isinstance(other, dict) and self.to_dict() == other and len(other) == len(self.pairs)

    def __repr__(self):
        return "CMap(%r)" % (self.pairs,)


def _head(out, major, n):
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(m | 26)
        out.extend(struct.pack(">I", n))
    elif n < 0x10000000000000000:
        out.append(m | 27)
        out.extend(struct.pack(">I", n >> 32))
        out.extend(struct.pack(">I", n & 0xFFFFFFFF))
    else:
        raise CborError("integer out of range")


def cbor_encode(obj, out=None):
    """Append the deterministic CBOR of obj to out (a bytearray) and return out.

    Allowed: int, str, bytes, list/tuple, dict (or CMap) with int keys (written in
    ascending order), None. Floats, booleans and anything else raise CborError.
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
    elif t is dict or t is CMap:
        d = obj.to_dict() if t is CMap else obj
        keys = sorted(d)
        for k in keys:
            if type(k) is not int or k < 0:
                raise CborError("map keys must be unsigned integers")
        _head(out, 5, len(keys))
        for k in keys:
            _head(out, 0, k)
            cbor_encode(d[k], out)
    elif obj is None:
        out.append(0xF6)
    else:
        raise CborError("cannot encode " + t.__name__)
    return out


_BREAK = _Odd("break")
_MAX_DEPTH = const(4)  # deeper than any schema: decoded as a placeholder, still checked


def _arg(buf, pos, ai):
    # Returns (value, new position) of a head's argument; None value = indefinite.
    if ai < 24:
        return ai, pos
    if ai == 24:
        if pos + 1 > len(buf):
            raise CborError("truncated")
        return buf[pos], pos + 1
    if ai == 25:
        if pos + 2 > len(buf):
            raise CborError("truncated")
        return (buf[pos] << 8) | buf[pos + 1], pos + 2
    if ai == 26:
        if pos + 4 > len(buf):
            raise CborError("truncated")
        return struct.unpack_from(">I", buf, pos)[0], pos + 4
    if ai == 27:
        if pos + 8 > len(buf):
            raise CborError("truncated")
        hi, lo = struct.unpack_from(">II", buf, pos)
        return (hi << 32) | lo, pos + 8
    if ai == 31:
        return None, pos
    raise CborError("reserved additional information")


def _utf8_ok(b):
    # MicroPython's decoder lets surrogates and overlong forms through: check here.
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


def _string(buf, pos, major, n):
    # Definite: n bytes; indefinite (n None): definite chunks of the same major type.
    if n is not None:
        end = pos + n
        if end > len(buf):
            raise CborError("truncated string")
        return bytes(buf[pos:end]), end
    parts = []
    while True:
        if pos >= len(buf):
            raise CborError("truncated string")
        ib = buf[pos]
        pos += 1
        if ib == 0xFF:
            break
        if ib >> 5 != major:
            raise CborError("bad chunk in indefinite string")
        m, pos = _arg(buf, pos, ib & 31)
        if m is None:
            raise CborError("nested indefinite string")
        p, pos = _string(buf, pos, major, m)
        parts.append(p)
    return b"".join(parts), pos


def _item(buf, pos, depth):
    """Decode one item at pos; return (value, new position)."""
    if pos >= len(buf):
        raise CborError("truncated")
    ib = buf[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 31
    if major == 7:
        if ai == 22:
            return None, pos
        if ai == 31:
            return _BREAK, pos
        if ai < 24:
            return _Odd("simple"), pos
        if ai == 24:
            if pos >= len(buf):
                raise CborError("truncated")
            if buf[pos] < 32:
                raise CborError("invalid simple value")
            return _Odd("simple"), pos + 1
        if 25 <= ai <= 27:
            size = 1 << (ai - 24)
            if pos + size > len(buf):
                raise CborError("truncated float")
            return _Odd("float"), pos + size
        raise CborError("reserved additional information")
    n, pos = _arg(buf, pos, ai)
    if major == 0:
        if n is None:
            raise CborError("indefinite integer")
        return n, pos
    if major == 1:
        if n is None:
            raise CborError("indefinite integer")
        return -1 - n, pos
    if major == 2 or major == 3:
        s, pos = _string(buf, pos, major, n)
        if major == 3:
            if not _utf8_ok(s):
                raise CborError("invalid UTF-8")
            s = s.decode()
        return s, pos
    if major == 6:
        if n is None:
            raise CborError("indefinite tag")
        v, pos = _item(buf, pos, depth + 1)
        if v is _BREAK:
            raise CborError("break after tag")
        return _Odd("tag"), pos
    # Arrays and maps; nesting beyond any schema is checked but not kept.
    keep = depth < _MAX_DEPTH
    if major == 4:
        arr = [] if keep else None
        i = 0
        while n is None or i < n:
            v, pos = _item(buf, pos, depth + 1)
            if v is _BREAK:
                if n is None:
                    break
                raise CborError("unexpected break")
            if keep:
                arr.append(v)
            i += 1
        return (arr if keep else _Odd("deep")), pos
    m = CMap() if keep else None
    i = 0
    while n is None or i < n:
        k, pos = _item(buf, pos, depth + 1)
        if k is _BREAK:
            if n is None:
                break
            raise CborError("unexpected break")
        v, pos = _item(buf, pos, depth + 1)
        if v is _BREAK:
            raise CborError("break in place of a map value")
        if keep:
            if type(k) is list or type(k) is CMap or isinstance(k, _Odd):
                k = _Odd("key")  # unhashable or odd: never valid in a schema
            m.put(k, v)
        i += 1
    return (m if keep else _Odd("deep")), pos


def cbor_decode(buf, pos=0):
    """Decode one CBOR item from buf at pos; return (value, end). Raises CborError.

    Maps come back as :class:`CMap`; floats, tags and simple values as placeholders
    that no schema accepts.
    """
    try:
        v, end = _item(buf, pos, 0)
    except RuntimeError:  # recursion limit on deeply nested input
        raise CborError("nesting too deep")
    if v is _BREAK:
        raise CborError("break where an item was expected")
    return v, end


# --- schemas (SPEC.md 5, bpiiot.cddl) --------------------------------------------


def _uint(v, hi=_U32, lo=0):
    if type(v) is not int or not lo <= v <= hi:
        raise SchemaError("integer out of range")
    return v


def _arr(obj, n):
    if type(obj) is not list or len(obj) != n:
        raise SchemaError("array of %d expected" % n)
    return obj


def _text(v, maxlen):
    if type(v) is not str or len(v.encode()) > maxlen:
        raise SchemaError("text too long")
    return v


def _id_ok(s):
    if not 1 <= len(s) <= 32:
        return False
    for c in s:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "._-"):
            return False
    return True


# key: (lo, hi); SPEC.md 5.3 and the cddl's set-config/config rules.
CONFIG_RANGES = {1: (1, 0xFFFF), 2: (1, 60000), 3: (1, 60000), 4: (0, 15), 5: (0, 3)}


def _config(obj, complete):
    if type(obj) is not CMap and type(obj) is not dict:
        raise SchemaError("map expected")
    pairs = obj.pairs if type(obj) is CMap else sorted(obj.items())
    if not pairs:
        raise SchemaError("at least one key")
    last = 0
    out = {}
    for k, v in pairs:
        if type(k) is not int or k not in CONFIG_RANGES:
            raise SchemaError("unknown key")
        if k <= last:
            raise SchemaError("keys must ascend")
        last = k
        lo, hi = CONFIG_RANGES[k]
        out[k] = _uint(v, hi, lo)
    if complete and len(out) != 5:
        raise SchemaError("every key 1..5")
    return out


def check_payload(type_, obj):
    """Validate a decoded payload for message type_ and return it normalised.

    Maps come back as dicts; everything else as decoded. Raises SchemaError.
    """
    if type_ == T_REPORT:
        a = _arr(obj, 13)
        for i in range(3):
            _uint(a[i])
        for i in range(3, 12):
            _uint(a[i], _U16)
        t = a[12]
        if t is not None:
            _uint(t, 100000, -27315)
        return a
    if type_ == T_ACK:
        _uint(_arr(obj, 1)[0])
        return obj
    if type_ >= T_PING:
        if type_ == T_SET_CONFIG:
            return _config(obj, False)
        if type_ == T_SET_OUTPUT:
            a = _arr(obj, 2)
            _uint(a[0], 0xFF)
            _uint(a[1], 1)
            return a
        if type_ == T_SET_KEY:
            a = _arr(obj, 1)
            if type(a[0]) is not bytes or not KEY_MIN <= len(a[0]) <= KEY_MAX:
                raise SchemaError("key must be 16-32 bytes")
            return a
        _arr(obj, 0)
        return obj
    if type_ == T_HELLO:
        a = _arr(obj, 6)
        if type(a[0]) is not str or not _id_ok(a[0]):
            raise SchemaError("bad board id")
        for v in _arr(a[1], 3):
            _uint(v, _U16)
        for v in _arr(a[2], 2):
            _uint(v, 0xFF)
        for i in range(3, 6):
            _uint(a[i])
        return a
    if type_ == T_STATUS:
        a = _arr(obj, 7)
        for v in a:
            _uint(v)
        _uint(a[4], 1000)
        return a
    if type_ == T_NACK:
        a = _arr(obj, 3)
        _uint(a[0])
        _uint(a[1], 0xFF)
        _text(a[2], 64)
        return a
    if type_ == T_LOG:
        a = _arr(obj, 2)
        _uint(a[0], 4)
        _text(a[1], 200)
        return a
    if type_ == T_CONFIG:
        return _config(obj, True)
    raise SchemaError("unknown type")


# --- frames ----------------------------------------------------------------------


def newer(session, seq, last_session, last_seq):
    """True when (session, seq) comes after (last_session, last_seq) (RFC 1982 sessions)."""
    if session == last_session:
        return seq > last_seq
    return 0 < ((session - last_session) & _U16) < 0x8000


class Encoder:
    """Builds wire frames for one direction: board (default) or host."""

    def __init__(self, from_host=False, key=None, session=0, seq=0):
        self.from_host = from_host
        self.session = session
        self.seq = seq
        self.hmac = None
        self.set_key(key)

    def set_key(self, key):
        """Tag frames with key from now on (None: stop tagging)."""
        key = check_key(key)
        self.hmac = Hmac(key) if key else None

    def encode(self, type_, payload_obj):
        """Wire bytes (COBS + delimiter) of a message with the next sequence number."""
        self.seq = (self.seq + 1) & _U32
        return self.frame(type_, cbor_encode(payload_obj), self.seq)

    def frame(self, type_, payload, seq, session=None):
        """Frame an encoded payload with explicit header values."""
        flags = (FLAG_HOST if self.from_host else 0) | (FLAG_AUTH if self.hmac else 0)
        sess = self.session if session is None else session
        body = bytearray(
            struct.pack(_HEADER, (VERSION_MAJOR << 4) | flags, type_, sess & _U16, seq & _U32)
        )
        body.extend(payload)
        if self.hmac is not None:
            body.extend(self.hmac.tag(body))
        body.extend(struct.pack("<I", crc32(body) & _U32))
        if len(body) > MAX_BODY:
            raise FrameError("oversize", seq)
        out = cobs_encode(body)
        out.append(0)
        return out


class Verifier:
    """Checks frames arriving at one end of the link, in the order of SPEC.md 3.3.

    ``board=True`` for the board's receiver (commands from the host): the session
    must equal the board's own (``session``; None accepts any) and seq must grow,
    hello requests excepted. ``board=False`` for the host's receiver. The replay
    state advances only for frames that pass every check.
    """

    def __init__(self, board=True, key=None, session=None, seq=0):
        self.board = board
        self.session = session
        self.seq = seq
        self.hmac = None
        self.set_key(key)

    def set_key(self, key):
        """Require tags made with key from now on (None: stop requiring them)."""
        key = check_key(key)
        self.hmac = Hmac(key) if key else None

    def verify(self, chunk):
        """Check one COBS chunk (no delimiter).

        Returns (type, session, seq, authenticated, payload) with the payload
        validated by :func:`check_payload`; raises FrameError otherwise.
        """
        if len(chunk) > MAX_ENCODED:
            raise FrameError("oversize")
        body = cobs_decode(chunk)
        n = len(body)
        if n > MAX_BODY:
            raise FrameError("oversize")
        if n < MIN_BODY:
            raise FrameError("truncated")
        end = n - CRC_LEN
        mv = memoryview(body)
        if crc32(mv[:end]) & _U32 != struct.unpack_from("<I", body, end)[0]:
            raise FrameError("crc")
        vf, type_, session, seq = struct.unpack_from(_HEADER, body, 0)
        if vf >> 4 != VERSION_MAJOR:
            raise FrameError("version")
        flags = vf & 0x0F
        if flags & ~(FLAG_AUTH | FLAG_HOST):
            raise FrameError("flags")
        if (flags & FLAG_HOST) != (FLAG_HOST if self.board else 0):
            raise FrameError("direction")
        if flags & FLAG_AUTH:
            end -= TAG_LEN
            if end <= HEADER_LEN:
                raise FrameError("truncated")
            if self.hmac is not None and self.hmac.tag(mv[:end]) != bytes(mv[end : end + TAG_LEN]):
                raise FrameError("mac", seq)
        elif self.hmac is not None:
            raise FrameError("unauthenticated", seq)
        authenticated = bool(flags & FLAG_AUTH) and self.hmac is not None
        self._check_order(type_, session, seq)
        if not (
            (T_PING <= type_ <= T_GET_CONFIG) if self.board else (T_HELLO <= type_ <= T_CONFIG)
        ):
            raise FrameError("type", seq)
        try:
            obj, pos = cbor_decode(mv[HEADER_LEN:end])
        except CborError as exc:
            raise FrameError("cbor", seq, str(exc))
        if pos != end - HEADER_LEN:
            raise FrameError("trailing", seq)
        try:
            obj = check_payload(type_, obj)
        except SchemaError as exc:
            raise FrameError("schema", seq, str(exc))
        self._advance(session, seq)
        return type_, session, seq, authenticated, obj

    def _check_order(self, type_, session, seq):
        last = self.session
        if self.board:
            # Hello requests are how the host learns the session: always answered.
            if type_ == T_HELLO_REQUEST:
                return
            if last is not None and session != last:
                raise FrameError("session", seq)
            if seq <= self.seq:
                raise FrameError("replay", seq)
        elif last is not None and not newer(session, seq, last, self.seq):
            raise FrameError("replay", seq)

    def _advance(self, session, seq):
        if self.board:
            if seq > self.seq:
                self.seq = seq
            return
        self.session = session
        self.seq = seq


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
                    if len(self.buf) + len(rest) > MAX_ENCODED:
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
            if len(piece) > MAX_ENCODED:
                self.oversize += 1
            elif piece:
                out.append(piece)
        return out
