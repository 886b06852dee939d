"""Sparkplug B (Eclipse Sparkplug 3.0) for the bridge: births, deaths, bdSeq, seq, typed metrics.

The SBC is the edge node ``spBv1.0/<group_id>/.../<edge_node_id>``; each board is a device
named after it in the service's config. Payloads are Eclipse Tahu's protobuf binding
(``tahutils.tahu.sparkplug_b_pb2``), topics come from ``tahutils.SpbTopic``.

- On every connection: the NDEATH will carries a new ``bdSeq`` (kept in the queue file, so it
  grows across restarts), NBIRTH repeats it with ``seq`` 0 and declares the node's metrics,
  then a DBIRTH for each board the queue knows. A board seen for the first time gets its
  DBIRTH just before its first DDATA; a board that disconnects gets a DDEATH.
- ``seq`` counts every message of the node after NBIRTH, modulo 256.
- Reports are DDATA with metrics in their wire units and types (``Report/vel_rms_um_s/x``
  UInt16...); service events are NDATA (or DDATA for a board) under ``Event/<kind>/<field>``.
  Every message has ``qseq`` (and, for frames, the board's ``session`` and ``seq``);
  a message sent after it was queued on an earlier connection has its metrics marked
  ``is_historical``.
- Commands: DCMD metrics ``Outputs/<pin>`` (Boolean), ``Config/<setting>`` (UInt32),
  ``Commands/ping``, ``Commands/get_status``, ``Commands/reboot`` (Boolean true); NCMD
  ``Node Control/Rebirth`` and ``Node Control/Replay From`` (a qseq).

Unlike the specification, which asks for QoS 0 on NDATA/DDATA, data messages go with QoS 1:
the broker's PUBACK is what lets the queue forget a message. Clean session is on, as the
specification requires; the on-disk queue, not the broker session, carries what is unsent.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Final

from tahutils import SpbTopic
from tahutils.tahu import sparkplug_b_pb2 as pb

from bpiiot import messages as m
from bpiiot.bridge.commands import CommandRequest
from bpiiot.bridge.errors import CommandRefused
from bpiiot.bridge.queue import MessageQueue, QueuedMessage

NAMESPACE: Final = "spBv1.0"

# Datatype codes of the Sparkplug B specification (Tahu's DataType enum).
INT64: Final = int(pb.Int64)
UINT16: Final = int(pb.UInt16)
UINT32: Final = int(pb.UInt32)
UINT64: Final = int(pb.UInt64)
FLOAT: Final = int(pb.Float)
DOUBLE: Final = int(pb.Double)
BOOLEAN: Final = int(pb.Boolean)
STRING: Final = int(pb.String)

_AXES = ("x", "y", "z")

REPORT_METRICS: Final[dict[str, int]] = {
    "Report/window_seq": UINT32,
    "Report/board_time_ms": UINT32,
    "Report/samples": UINT32,
    **{f"Report/{f}/{a}": UINT16 for f in ("acc_rms_mg", "acc_peak_mg") for a in _AXES},
    **{f"Report/vel_rms_um_s/{a}": UINT16 for a in _AXES},
    "Report/temperature_degC": FLOAT,
    "Report/flags": UINT16,
    "Report/representative": BOOLEAN,
}
"""A report's metrics and their Sparkplug datatypes."""

EVENT_FIELDS: Final[dict[str, dict[str, int]]] = {
    "board": {"state": STRING, "board_id": STRING, "boot_counter": INT64},
    "link_stats": {
        "bytes_in": INT64,
        "frames_ok": INT64,
        "frames_dropped": INT64,
        "gaps": INT64,
        "reboots": INT64,
        "reconnects": INT64,
    },
    "rule": {"rule": STRING, "state": STRING, "value": DOUBLE, "window_seq": INT64},
    "incident": {
        "id": STRING,
        "rule": STRING,
        "state": STRING,
        "key": STRING,
        "evidence_hash": STRING,
    },
    "tx": {
        "key": STRING,
        "contract": STRING,
        "function": STRING,
        "state": STRING,
        "tx_hash": STRING,
        "nonce": INT64,
        "block": INT64,
        "error": STRING,
    },
    "log": {"level": STRING, "text": STRING},
    "cmd_result": {
        "command": STRING,
        "id": STRING,
        "ok": BOOLEAN,
        "result": STRING,
        "error": STRING,
    },
}
"""Service events (``bpiiot.bus``) as metrics ``Event/<kind>/<field>``; any other kind or
field travels as JSON text in ``Event/other``."""

COMMON_METRICS: Final[dict[str, int]] = {
    "qseq": UINT64,
    "resend": UINT32,
    "replay": BOOLEAN,
}
FRAME_METRICS: Final[dict[str, int]] = {"session": UINT16, "seq": UINT32}
CONFIG_FIELDS: Final = ("sample_rate_hz", "window_ms", "hop_ms", "channels", "machine_class")
DEVICE_COMMANDS: Final = ("ping", "get_status", "reboot")


def _frame_fields() -> dict[str, dict[str, int]]:
    """Metrics of the board's other messages (hello, status, config, log, ack, nack)."""
    out: dict[str, dict[str, int]] = {}
    for cls in m.TO_HOST.values():
        if cls is m.Report:
            continue
        fields: dict[str, int] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            fields[f.name] = INT64 if f.type == "int" else STRING
        out[cls.NAME] = fields
    return out


FRAME_FIELDS: Final = _frame_fields()


def _set_value(metric: Any, datatype: int, value: Any) -> None:
    metric.datatype = datatype
    if value is None:
        metric.is_null = True
    elif datatype in (UINT16, UINT32):
        metric.int_value = int(value)
    elif datatype in (INT64, UINT64):
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF  # two's complement, per the spec
    elif datatype == FLOAT:
        metric.float_value = float(value)
    elif datatype == DOUBLE:
        metric.double_value = float(value)
    elif datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    else:
        metric.string_value = value if isinstance(value, str) else json.dumps(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SparkplugCodec:
    """The bridge's Sparkplug B convention (see the module docstring)."""

    clean_session = True
    batches = False

    def __init__(self, group_id: str, edge_node_id: str, queue: MessageQueue) -> None:
        self.group_id = group_id
        self.node = edge_node_id
        self.queue = queue
        self.topic = SpbTopic(group_id=group_id, edge_node_id=edge_node_id, namespace=NAMESPACE)
        self.bd_seq = 0
        self.seq = 0
        self._born: set[str] = set()

    # -- sequence numbers --------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _payload(self, seq: int | None, timestamp: int | None = None) -> Any:
        payload = pb.Payload()
        payload.timestamp = timestamp if timestamp is not None else _now_ms()
        if seq is not None:
            payload.seq = seq
        return payload

    @staticmethod
    def _add(payload: Any, name: str, datatype: int, value: Any, **kw: Any) -> Any:
        metric = payload.metrics.add()
        metric.name = name
        if "timestamp" in kw:
            metric.timestamp = kw["timestamp"]
        if kw.get("historical"):
            metric.is_historical = True
        try:
            _set_value(metric, datatype, value)
        except (TypeError, ValueError):
            del payload.metrics[-1]
            raise
        return metric

    def _device_topic(self, board: str, kind: str) -> str:
        return str(self.topic.construct_device_topic(board).construct(kind))

    def join(self, payloads: list[bytes]) -> bytes:
        """Never called (``batches`` is False): each Sparkplug message has its own seq."""
        raise ValueError("Sparkplug messages are not batched")

    # -- connection ------------------------------------------------------------------

    def will(self) -> tuple[str, bytes] | None:
        """NDEATH with a new bdSeq, registered as the next connection's last will."""
        self.bd_seq = self.queue.next_counter("sparkplug_bdseq") % 256
        return self.death_payload()

    def death_payload(self) -> tuple[str, bytes]:
        payload = self._payload(None)
        self._add(payload, "bdSeq", UINT64, self.bd_seq)
        return str(self.topic.ndeath), payload.SerializeToString()

    def death(self) -> tuple[str, bytes] | None:
        """NDEATH before a clean disconnect (the broker only sends the will on a loss)."""
        return self.death_payload()

    def births(self) -> list[tuple[str, bytes]]:
        """NBIRTH (seq 0, the will's bdSeq) and a DBIRTH per known board."""
        self.seq = 0
        payload = self._payload(0)
        self._add(payload, "bdSeq", UINT64, self.bd_seq)
        self._add(payload, "Node Control/Rebirth", BOOLEAN, False)
        self._add(payload, "Node Control/Replay From", UINT64, 0)
        for name, datatype in COMMON_METRICS.items():
            self._add(payload, name, datatype, None)
        self._declare_events(payload)
        out = [(str(self.topic.nbirth), payload.SerializeToString())]
        self._born = set()
        for board in self.queue.boards():
            out.append(self._dbirth(board))
        return out

    def _declare_events(self, payload: Any) -> None:
        for kind, fields in EVENT_FIELDS.items():
            for field, datatype in fields.items():
                self._add(payload, f"Event/{kind}/{field}", datatype, None)
        self._add(payload, "Event/other", STRING, None)

    def _dbirth(self, board: str) -> tuple[str, bytes]:
        payload = self._payload(self._next_seq())
        for name, datatype in {**COMMON_METRICS, **FRAME_METRICS, **REPORT_METRICS}.items():
            self._add(payload, name, datatype, None)
        for kind, fields in FRAME_FIELDS.items():
            for field, datatype in fields.items():
                self._add(payload, f"{kind.capitalize()}/{field}", datatype, None)
        self._declare_events(payload)
        for cmd in DEVICE_COMMANDS:
            self._add(payload, f"Commands/{cmd}", BOOLEAN, False)
        for field in CONFIG_FIELDS:
            self._add(payload, f"Config/{field}", UINT32, None)
        self._born.add(board)
        return self._device_topic(board, "DBIRTH"), payload.SerializeToString()

    def prelude(self, message: QueuedMessage) -> list[tuple[str, bytes]]:
        """A DBIRTH before the first message of a board this connection has not born."""
        board = message.board
        if board is None or board in self._born:
            return []
        if message.kind == "event.board" and message.data.get("state") == "disconnected":
            return []
        return [self._dbirth(board)]

    # -- data ------------------------------------------------------------------------

    def encode(self, message: QueuedMessage, historical: bool) -> tuple[str, bytes]:
        """DDATA (a board's frame or event), NDATA (a service event) or DDEATH."""
        d = message.data
        ts = int(float(d.get("received", d.get("time", message.created))) * 1000)
        payload = self._payload(self._next_seq(), ts)
        hist = historical or message.attempts > 0 or message.replay

        def add(name: str, datatype: int, value: Any) -> None:
            self._add(payload, name, datatype, value, timestamp=ts, historical=hist)

        add("qseq", UINT64, message.qseq)
        if message.attempts:
            add("resend", UINT32, message.attempts)
        if message.replay:
            add("replay", BOOLEAN, True)
        if "session" in d:
            add("session", UINT16, d["session"])
            add("seq", UINT32, d["seq"])
        kind = message.kind
        if kind == "report":
            self._report(d, add)
        elif kind.startswith("event.") or kind == "cmd_result":
            ev = kind.removeprefix("event.")
            fields = EVENT_FIELDS.get(ev, {})
            extra = {k: v for k, v in d.items() if k not in fields and k != "time"}
            for field, datatype in fields.items():
                if field in d:
                    try:
                        add(f"Event/{ev}/{field}", datatype, d[field])
                    except (TypeError, ValueError):
                        extra[field] = d[field]  # not of the declared type: sent as text
            if extra or not fields:
                add("Event/other", STRING, json.dumps({"kind": ev, **extra}))
        else:
            fields = FRAME_FIELDS.get(kind, {})
            for field, datatype in fields.items():
                if field in d:
                    add(f"{kind.capitalize()}/{field}", datatype, d[field])
        body = payload.SerializeToString()
        board = message.board
        if board is None:
            return str(self.topic.ndata), body
        if kind == "event.board" and d.get("state") == "disconnected":
            self._born.discard(board)
            return self._device_topic(board, "DDEATH"), body
        return self._device_topic(board, "DDATA"), body

    @staticmethod
    def _report(d: dict[str, Any], add: Any) -> None:
        add("Report/window_seq", UINT32, d["window_seq"])
        add("Report/board_time_ms", UINT32, d["board_time_ms"])
        add("Report/samples", UINT32, d["samples"])
        for key in ("acc_rms_mg", "acc_peak_mg", "vel_rms_um_s"):
            for axis, v in zip(_AXES, d[key], strict=True):
                add(f"Report/{key}/{axis}", UINT16, v)
        t = d.get("temperature_cdeg_c")
        add("Report/temperature_degC", FLOAT, None if t is None else t / 100)
        flags = int(d.get("flags", 0))
        add("Report/flags", UINT16, flags)
        add("Report/representative", BOOLEAN, flags == 0)

    # -- commands ----------------------------------------------------------------------

    def command_topics(self) -> list[str]:
        """NCMD for the node and DCMD for every board of the node."""
        return [str(self.topic.ncmd), f"{NAMESPACE}/{self.group_id}/DCMD/{self.node}/+"]

    def parse_command(self, topic: str, payload: bytes) -> list[CommandRequest]:
        """DCMD/NCMD metrics as command requests (see the module docstring)."""
        try:
            msg = pb.Payload.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError has no stable import path
            raise CommandRefused(f"{topic}: not a Sparkplug B payload ({exc})") from None
        parts = topic.split("/")
        board = parts[4] if len(parts) == 5 and parts[2] == "DCMD" else None
        out: list[CommandRequest] = []
        config: dict[str, int] = {}
        for metric in msg.metrics:
            name = str(metric.name)
            which = metric.WhichOneof("value")
            value = getattr(metric, which) if which else None
            if board is None:
                if name == "Node Control/Rebirth" and value:
                    out.append(CommandRequest(None, "rebirth"))
                elif name == "Node Control/Replay From" and value is not None:
                    out.append(CommandRequest(None, "replay", {"from": int(value)}))
                else:
                    raise CommandRefused(f"{topic}: unknown node command metric {name!r}")
            elif name.startswith("Outputs/"):
                pin = name.removeprefix("Outputs/")
                if not pin.isdigit():
                    raise CommandRefused(f"{topic}: {name!r} is not Outputs/<pin number>")
                out.append(CommandRequest(board, "set_output", {"pin": int(pin), "value": value}))
            elif name.startswith("Config/") and name.removeprefix("Config/") in CONFIG_FIELDS:
                config[name.removeprefix("Config/")] = int(value or 0)
            elif name.startswith("Commands/") and name.removeprefix("Commands/") in DEVICE_COMMANDS:
                if value:
                    out.append(CommandRequest(board, name.removeprefix("Commands/")))
            else:
                raise CommandRefused(f"{topic}: unknown device command metric {name!r}")
        if config:
            out.append(CommandRequest(board, "configure", config))
        return out
