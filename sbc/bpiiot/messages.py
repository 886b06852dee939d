"""Typed protocol messages and their CBOR payload schemas (protocol/SPEC.md, section 5).

Every message is a small dataclass whose field names carry their units. A payload
is a CBOR array (or, for configuration, a map with small integer keys in ascending
order) holding integers, short text and byte strings only: no floats on the wire.
``from_payload`` validates a decoded payload and raises :class:`SchemaError`;
``to_payload`` returns what the deterministic encoder writes.
"""

from __future__ import annotations

import re
import struct
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Final, Self

from bpiiot.errors import BpiiotError

U8: Final = 0xFF
U16: Final = 0xFFFF
U32: Final = 0xFFFFFFFF

CAP_AUTH: Final = 0x01
"""Capability bit: the board can authenticate frames (set/clear key)."""
CAP_OUTPUTS: Final = 0x02
"""Capability bit: the board drives digital outputs (set output)."""
CAP_REBOOT: Final = 0x04
"""Capability bit: the board reboots on command."""
CAP_PERSIST: Final = 0x08
"""Capability bit: configuration and key survive a reboot."""
CAP_SLIDING: Final = 0x10
"""Capability bit: windows may overlap (hop shorter than the window)."""
CAP_TEMPERATURE: Final = 0x20
"""Capability bit: reports carry a temperature."""

CH_X: Final = 0x01
CH_Y: Final = 0x02
CH_Z: Final = 0x04
CH_TEMP: Final = 0x08
CH_ALL: Final = CH_X | CH_Y | CH_Z | CH_TEMP

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

# Packing a report's integers checks their ranges: 3 x u32, then 9 x u16.
_REPORT_RANGES: Final = struct.Struct(">3I9H")

_BOARD_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


class NackCode:
    """Error codes a board puts in a nack (SPEC.md 5.4)."""

    UNKNOWN_TYPE: Final = 1
    BAD_ARGS: Final = 2
    BAD_VALUE: Final = 3
    UNAUTHENTICATED: Final = 4
    BAD_SESSION: Final = 5
    UNSUPPORTED: Final = 6
    BUSY: Final = 7
    INTERNAL: Final = 8
    REPLAY: Final = 9

    NAMES: Final = {
        1: "unknown_type",
        2: "bad_args",
        3: "bad_value",
        4: "unauthenticated",
        5: "bad_session",
        6: "unsupported",
        7: "busy",
        8: "internal",
        9: "replay",
    }


class ReportFlag:
    """Bits of a report's ``flags`` (SPEC.md 5.2): why a window is not representative.

    A flagged window still carries its features, but the board's alarm output and the
    SBC's rules ignore it.
    """

    SETTLING: Final = 0x01
    """The filters are still settling after boot or a configuration change."""
    OVERRUN: Final = 0x02
    """Samples were lost in this window."""
    SENSOR_FAULT: Final = 0x04
    """The sensor failed to answer or gave an impossible value."""
    CLIPPED: Final = 0x08
    """A sample sat at the sensor's range limit."""
    VEL_SATURATED: Final = 0x10
    """A velocity RMS was above 65,535 um/s and is sent as 65,535."""
    ACC_SATURATED: Final = 0x20
    """An acceleration feature was above 65,535 mg and is sent as 65,535."""

    NAMES: Final = {
        0x01: "settling",
        0x02: "overrun",
        0x04: "sensor_fault",
        0x08: "clipped",
        0x10: "vel_saturated",
        0x20: "acc_saturated",
    }

    @classmethod
    def names(cls, flags: int) -> list[str]:
        """The names of the bits set in ``flags`` (unknown bits as ``bit<N>``)."""
        return [cls.NAMES.get(1 << i, f"bit{i}") for i in range(16) if flags & (1 << i)]


class SchemaError(BpiiotError):
    """A decoded payload does not match its message's schema."""


def _uint(v: Any, name: str, hi: int = U32, lo: int = 0) -> int:
    # bool is an int subclass in Python; CBOR true/false are not integers.
    if type(v) is not int:
        raise SchemaError(f"{name} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise SchemaError(f"{name}={v} out of range {lo}..{hi}")
    return v


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    return _uint(v, name, hi, lo)


def _text(v: Any, name: str, maxlen: int) -> str:
    if type(v) is not str:
        raise SchemaError(f"{name} must be text, got {type(v).__name__}")
    if len(v.encode()) > maxlen:
        raise SchemaError(f"{name} longer than {maxlen} bytes")
    return v


def _array(obj: Any, n: int, name: str) -> list[Any]:
    if type(obj) is not list:
        raise SchemaError(f"{name} payload must be an array, got {type(obj).__name__}")
    if len(obj) != n:
        raise SchemaError(f"{name} payload must have {n} elements, got {len(obj)}")
    return obj


def _uints(obj: Any, n: int, name: str, hi: int = U32) -> list[int]:
    arr = _array(obj, n, name)
    for i, v in enumerate(arr):
        _uint(v, f"{name}[{i}]", hi)
    return arr


class Message(ABC):
    """Base of every message: a type code, a name and a payload codec."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]

    @abstractmethod
    def to_payload(self) -> Any:
        """Return the payload as the deterministic encoder writes it."""

    @classmethod
    @abstractmethod
    def from_payload(cls, obj: Any) -> Self:
        """Validate a decoded payload and return the message."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-friendly dict (bytes as hex), with ``kind``."""
        out: dict[str, Any] = {"kind": self.NAME}
        for k, v in asdict(self).items():  # type: ignore[call-overload]
            out[k] = v.hex() if isinstance(v, bytes) else v
        return out


class _Empty(Message):
    """A command with an empty array as payload."""

    def to_payload(self) -> Any:
        return []

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        _array(obj, 0, cls.NAME)
        return cls()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return self.TYPE

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.NAME}


# --- board -> host ---------------------------------------------------------------


@dataclass(slots=True)
class Hello(Message):
    """Sent by the board at boot and on request: who it is and what it can do."""

    TYPE: ClassVar[int] = 0x01
    NAME: ClassVar[str] = "hello"
    board_id: str
    firmware_version: tuple[int, int, int]
    protocol_version: tuple[int, int]
    capabilities: int
    boot_counter: int
    last_host_seq: int

    def to_payload(self) -> Any:
        return [
            self.board_id,
            list(self.firmware_version),
            list(self.protocol_version),
            self.capabilities,
            self.boot_counter,
            self.last_host_seq,
        ]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _array(obj, 6, cls.NAME)
        board_id = _text(a[0], "board_id", 32)
        if not _BOARD_ID.fullmatch(board_id):
            raise SchemaError("board_id must be 1-32 characters of A-Z a-z 0-9 . _ -")
        fw = _uints(a[1], 3, "firmware_version", U16)
        pv = _uints(a[2], 2, "protocol_version", U8)
        return cls(
            board_id,
            (fw[0], fw[1], fw[2]),
            (pv[0], pv[1]),
            _uint(a[3], "capabilities"),
            _uint(a[4], "boot_counter"),
            _uint(a[5], "last_host_seq"),
        )


@dataclass(slots=True)
class Report(Message):
    """One window of vibration features and the temperature (SPEC.md 5.2).

    Per-axis tuples are (x, y, z); a disabled axis reads 0. ``temperature_cdeg_c``
    is None when the temperature channel is off.
    """

    TYPE: ClassVar[int] = 0x02
    NAME: ClassVar[str] = "report"
    window_seq: int
    board_time_ms: int
    samples: int
    acc_rms_mg: tuple[int, int, int]
    acc_peak_mg: tuple[int, int, int]
    vel_rms_um_s: tuple[int, int, int]
    temperature_cdeg_c: int | None
    flags: int = 0
    """:class:`ReportFlag` bits; 0 for a representative window (sent only when non-zero)."""

    @property
    def representative(self) -> bool:
        """True when no flag marks the window as unfit for alarms and rules."""
        return self.flags == 0

    def to_payload(self) -> Any:
        payload = [
            self.window_seq,
            self.board_time_ms,
            self.samples,
            *self.acc_rms_mg,
            *self.acc_peak_mg,
            *self.vel_rms_um_s,
            self.temperature_cdeg_c,
        ]
        if self.flags:
            payload.append(self.flags)
        return payload

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        flags = 0
        if type(obj) is not list or len(obj) != 13:
            if type(obj) is list and len(obj) == 14:
                # Flags travel only when non-zero: a zero would be a second encoding.
                flags = _int(obj[13], "flags", 1, U16)
                obj = obj[:13]
            elif type(obj) is list:
                raise SchemaError(
                    f"report payload must have 13 elements (14 with flags), got {len(obj)}"
                )
            else:
                _array(obj, 13, cls.NAME)
        # Fast path, all in C: the type count rules out bools and floats, the struct
        # packs range-check every field. The slow path names the offending field.
        head = obj[:12]
        t = obj[12]
        if list(map(type, head)).count(int) == 12 and (
            t is None or (type(t) is int and -27315 <= t <= 100000)
        ):
            try:
                _REPORT_RANGES.pack(*head)
            except struct.error:
                pass
            else:
                return cls(
                    obj[0],
                    obj[1],
                    obj[2],
                    (obj[3], obj[4], obj[5]),
                    (obj[6], obj[7], obj[8]),
                    (obj[9], obj[10], obj[11]),
                    t,
                    flags,
                )
        for i, name in enumerate(("window_seq", "board_time_ms", "samples")):
            _uint(obj[i], name)
        for i in range(3, 12):
            _uint(obj[i], f"feature[{i - 3}]", U16)
        _int(t, "temperature_cdeg_c", -27315, 100000)
        raise SchemaError("invalid report")  # unreachable: one of the checks above raised

    def axis_names(self) -> tuple[str, str, str]:
        """The axis labels, in the order of the per-axis tuples."""
        return ("x", "y", "z")


@dataclass(slots=True)
class Status(Message):
    """Board statistics, sent on request (SPEC.md 5.3)."""

    TYPE: ClassVar[int] = 0x03
    NAME: ClassVar[str] = "status"
    frames_sent: int
    frames_rejected: int
    overruns: int
    free_memory_bytes: int
    cpu_load_permille: int
    uptime_ms: int
    windows: int

    def to_payload(self) -> Any:
        return [
            self.frames_sent,
            self.frames_rejected,
            self.overruns,
            self.free_memory_bytes,
            self.cpu_load_permille,
            self.uptime_ms,
            self.windows,
        ]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _uints(obj, 7, cls.NAME)
        _uint(a[4], "cpu_load_permille", 1000)
        return cls(*a)


@dataclass(slots=True)
class Ack(Message):
    """The command with sequence number ``ref_seq`` was carried out."""

    TYPE: ClassVar[int] = 0x04
    NAME: ClassVar[str] = "ack"
    ref_seq: int

    def to_payload(self) -> Any:
        return [self.ref_seq]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        return cls(*_uints(obj, 1, cls.NAME))


@dataclass(slots=True)
class Nack(Message):
    """The command with sequence number ``ref_seq`` was refused with ``code``."""

    TYPE: ClassVar[int] = 0x05
    NAME: ClassVar[str] = "nack"
    ref_seq: int
    code: int
    detail: str

    @property
    def code_name(self) -> str:
        """The symbolic name of ``code`` (``unknown`` for codes this SDK does not know)."""
        return NackCode.NAMES.get(self.code, "unknown")

    def to_payload(self) -> Any:
        return [self.ref_seq, self.code, self.detail]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _array(obj, 3, cls.NAME)
        return cls(_uint(a[0], "ref_seq"), _uint(a[1], "code", U8), _text(a[2], "detail", 64))


@dataclass(slots=True)
class Log(Message):
    """A line of text from the board: level 0-4 (debug .. critical)."""

    TYPE: ClassVar[int] = 0x06
    NAME: ClassVar[str] = "log"
    level: int
    text: str

    def to_payload(self) -> Any:
        return [self.level, self.text]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _array(obj, 2, cls.NAME)
        return cls(_uint(a[0], "level", len(LOG_LEVELS) - 1), _text(a[1], "text", 200))


_CONFIG_KEYS: Final = {
    1: ("sample_rate_hz", 1, U16),
    2: ("window_ms", 1, 60000),
    3: ("hop_ms", 1, 60000),
    4: ("channels", 0, CH_ALL),
    5: ("machine_class", 0, 3),
}


def _config_map(obj: Any, name: str, *, complete: bool) -> dict[str, int]:
    if type(obj) is not dict:
        raise SchemaError(f"{name} payload must be a map, got {type(obj).__name__}")
    if not obj:
        raise SchemaError(f"{name} needs at least one key")
    out: dict[str, int] = {}
    last = 0
    for k, v in obj.items():
        if type(k) is not int or k not in _CONFIG_KEYS:
            raise SchemaError(f"{name}: unknown key {k!r}")
        if k <= last:
            raise SchemaError(f"{name}: keys must be in ascending order")
        last = k
        field, lo, hi = _CONFIG_KEYS[k]
        out[field] = _int(v, field, lo, hi)
    if complete and len(out) != len(_CONFIG_KEYS):
        raise SchemaError(f"{name} must carry every key 1..{len(_CONFIG_KEYS)}")
    return out


def _config_payload(values: dict[str, int | None]) -> dict[int, int]:
    return {
        k: v for k, (field, _, _) in _CONFIG_KEYS.items() if (v := values.get(field)) is not None
    }


@dataclass(slots=True)
class Config(Message):
    """The board's acquisition settings, sent on request and after a change."""

    TYPE: ClassVar[int] = 0x07
    NAME: ClassVar[str] = "config"
    sample_rate_hz: int
    window_ms: int
    hop_ms: int
    channels: int
    machine_class: int

    def to_payload(self) -> Any:
        return _config_payload(asdict(self))

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        return cls(**_config_map(obj, cls.NAME, complete=True))


# --- host -> board ---------------------------------------------------------------


class Ping(_Empty):
    """Ask the board to ack: a liveness check."""

    TYPE: ClassVar[int] = 0x40
    NAME: ClassVar[str] = "ping"


class GetStatus(_Empty):
    """Ask for a :class:`Status`; the board sends it, then the ack."""

    TYPE: ClassVar[int] = 0x41
    NAME: ClassVar[str] = "get_status"


@dataclass(slots=True)
class SetConfig(Message):
    """Change acquisition settings; fields left None are unchanged."""

    TYPE: ClassVar[int] = 0x42
    NAME: ClassVar[str] = "set_config"
    sample_rate_hz: int | None = None
    window_ms: int | None = None
    hop_ms: int | None = None
    channels: int | None = None
    machine_class: int | None = None

    def to_payload(self) -> Any:
        return _config_payload(asdict(self))

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        return cls(**_config_map(obj, cls.NAME, complete=False))


@dataclass(slots=True)
class SetOutput(Message):
    """Drive digital output ``pin`` low (0) or high (1)."""

    TYPE: ClassVar[int] = 0x43
    NAME: ClassVar[str] = "set_output"
    pin: int
    value: int

    def to_payload(self) -> Any:
        return [self.pin, self.value]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _array(obj, 2, cls.NAME)
        return cls(_uint(a[0], "pin", U8), _uint(a[1], "value", 1))


@dataclass(slots=True)
class SetKey(Message):
    """Provision a 16-32 byte MAC key; the ack still goes out under the old key."""

    TYPE: ClassVar[int] = 0x44
    NAME: ClassVar[str] = "set_key"
    key: bytes

    def __repr__(self) -> str:
        return "SetKey(key=<redacted>)"

    def to_payload(self) -> Any:
        return [self.key]

    @classmethod
    def from_payload(cls, obj: Any) -> Self:
        a = _array(obj, 1, cls.NAME)
        if type(a[0]) is not bytes or not 16 <= len(a[0]) <= 32:
            raise SchemaError("key must be a byte string of 16 to 32 bytes")
        return cls(a[0])


class ClearKey(_Empty):
    """Stop authenticating frames; the ack goes out under the old key."""

    TYPE: ClassVar[int] = 0x45
    NAME: ClassVar[str] = "clear_key"


class Reboot(_Empty):
    """Reboot the board after acking; it comes back with a new session and a hello."""

    TYPE: ClassVar[int] = 0x46
    NAME: ClassVar[str] = "reboot"


class HelloRequest(_Empty):
    """Ask for a :class:`Hello`; answered in any session (a keyed board wants a tag)."""

    TYPE: ClassVar[int] = 0x47
    NAME: ClassVar[str] = "hello_request"


class GetConfig(_Empty):
    """Ask for the :class:`Config`; the board sends it, then the ack."""

    TYPE: ClassVar[int] = 0x48
    NAME: ClassVar[str] = "get_config"


TO_HOST: Final[dict[int, type[Message]]] = {
    c.TYPE: c for c in (Hello, Report, Status, Ack, Nack, Log, Config)
}
"""Message classes a board sends, by type code."""
TO_BOARD: Final[dict[int, type[Message]]] = {
    c.TYPE: c
    for c in (
        Ping,
        GetStatus,
        SetConfig,
        SetOutput,
        SetKey,
        ClearKey,
        Reboot,
        HelloRequest,
        GetConfig,
    )
}
"""Message classes a host sends, by type code."""
BY_NAME: Final[dict[str, type[Message]]] = {
    c.NAME: c for c in (*TO_HOST.values(), *TO_BOARD.values())
}
"""Every message class, by its name in the spec and the vectors."""


def from_dict(d: dict[str, Any]) -> Message:
    """Build a message from :meth:`Message.to_dict` output (as found in the vectors)."""
    cls = BY_NAME[d["kind"]]
    fields = {k: v for k, v in d.items() if k != "kind"}
    if cls is SetKey:
        fields["key"] = bytes.fromhex(fields["key"])
    for k, v in fields.items():
        if isinstance(v, list):
            fields[k] = tuple(v)
    return cls(**fields)
