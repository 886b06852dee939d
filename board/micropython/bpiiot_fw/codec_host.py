"""The host end of the link protocol: what a board never needs, so never loads.

The schemas of the board's messages (hello, report, status, ack, nack, log, config;
SPEC.md 5.2-5.3) and the host's replay rule (section 3.1). ``codec.Verifier`` with
``board=False`` and ``codec.check_payload`` import this module on first use; the
conformance vectors judge both ends of the firmware codec through them.
"""

from bpiiot_fw.codec import FrameError, arr, config_map, uint

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# The board's message types (copies of codec's private constants).
_T_ACK = const(0x04)
_T_CONFIG = const(0x07)
_T_HELLO = const(0x01)
_T_LOG = const(0x06)
_T_NACK = const(0x05)
_T_REPORT = const(0x02)
_T_STATUS = const(0x03)

_U16 = 0xFFFF


def newer(session, seq, last_session, last_seq):
    """True when (session, seq) comes after (last_session, last_seq) (RFC 1982 sessions)."""
    if session == last_session:
        return seq > last_seq
    return 0 < ((session - last_session) & _U16) < 0x8000


def _text(v, maxlen):
    if type(v) is not str or len(v.encode()) > maxlen:
        raise FrameError("schema", None, "text too long")
    return v


def _id_ok(s):
    if not 1 <= len(s) <= 32:
        return False
    for c in s:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "._-"):
            return False
    return True


def check_board_payload(type_, obj):
    """Validate the decoded payload of a board message (types 0x01-0x07).

    Returns it normalised (a config map as a dict); raises FrameError('schema').
    """
    if type_ == _T_REPORT:
        a = obj
        if type(obj) is list and len(obj) == 14:
            # flags travel only when non-zero (a zero would be a second encoding)
            uint(obj[13], _U16, 1)
            a = obj[:13]
        arr(a, 13)
        for i in range(3):
            uint(a[i])
        for i in range(3, 12):
            uint(a[i], _U16)
        t = a[12]
        if t is not None:
            uint(t, 100000, -27315)
        return obj
    if type_ == _T_ACK:
        uint(arr(obj, 1)[0])
        return obj
    if type_ == _T_HELLO:
        a = arr(obj, 6)
        if type(a[0]) is not str or not _id_ok(a[0]):
            raise FrameError("schema", None, "bad board id")
        for v in arr(a[1], 3):
            uint(v, _U16)
        for v in arr(a[2], 2):
            uint(v, 0xFF)
        for i in range(3, 6):
            uint(a[i])
        return a
    if type_ == _T_STATUS:
        a = arr(obj, 7)
        for v in a:
            uint(v)
        uint(a[4], 1000)
        return a
    if type_ == _T_NACK:
        a = arr(obj, 3)
        uint(a[0])
        uint(a[1], 0xFF)
        _text(a[2], 64)
        return a
    if type_ == _T_LOG:
        a = arr(obj, 2)
        uint(a[0], 4)
        _text(a[1], 200)
        return a
    if type_ == _T_CONFIG:
        return config_map(obj, True)
    raise FrameError("schema", None, "unknown type")
