"""SenML (RFC 8428) JSON packs: the bridge's default payload, readable by anything.

One pack per message. The first record carries the base name
(``urn:dev:bpiiot:<node>:<board>:``), the base time (when the SBC received or queued it,
Unix seconds) and the bridge's queue sequence number ``qseq`` (gapless per node: a consumer
spots a gap or a duplicate with it, and asks for a replay from it). Frames also carry the
board's ``session`` and ``seq``. A message published again says so: ``resend`` (how many
times before, when a PUBACK did not come) or ``replay`` (acknowledged once, published again
on request).

When a backlog waits, several messages of one topic may share an MQTT message: their packs
follow each other in one JSON array, each opening with its own base name and time
(:func:`unpack` splits them).

Report features use RFC 8428's SI units: ``m/s2`` for acceleration (1 mg = 0.00980665 m/s2),
``m/s`` for velocity (1 um/s = 1e-6 m/s), ``Cel`` for temperature, ``s`` for time.
"""

from __future__ import annotations

import json
from typing import Any

from bpiiot.bridge.queue import QueuedMessage
from bpiiot.messages import ReportFlag

MG_TO_M_S2 = 0.00980665
"""One milligravity in metres per second squared (standard gravity / 1000)."""

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def topic(prefix: str, node: str, message: QueuedMessage) -> str:
    """``<prefix>/<node>/<board>/<kind>``; service events go under ``.../event/<kind>``."""
    board = message.board or "_sbc"
    return f"{prefix}/{node}/{board}/{message.kind.replace('.', '/')}"


def _record(name: str, value: Any, unit: str | None = None) -> dict[str, Any] | None:
    rec: dict[str, Any] = {"n": name}
    if unit:
        rec["u"] = unit
    if isinstance(value, bool):
        rec["vb"] = value
    elif isinstance(value, int | float):
        rec["v"] = value
    elif isinstance(value, str):
        rec["vs"] = value
    else:
        return None
    return rec


def _flatten(prefix: str, value: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _flatten(f"{prefix}/{i}", v, out)
    else:
        rec = _record(prefix, value)
        if rec is not None:
            out.append(rec)


def _report_records(d: dict[str, Any], out: list[dict[str, Any]]) -> None:
    out.append({"n": "window_seq", "v": d["window_seq"]})
    out.append({"n": "board_time", "u": "s", "v": d["board_time_ms"] / 1000})
    out.append({"n": "samples", "u": "count", "v": d["samples"]})
    for key, name in (("acc_rms_mg", "acc_rms"), ("acc_peak_mg", "acc_peak")):
        x, y, z = d[key]
        out.append({"n": f"{name}_x", "u": "m/s2", "v": round(x * MG_TO_M_S2, 5)})
        out.append({"n": f"{name}_y", "u": "m/s2", "v": round(y * MG_TO_M_S2, 5)})
        out.append({"n": f"{name}_z", "u": "m/s2", "v": round(z * MG_TO_M_S2, 5)})
    x, y, z = d["vel_rms_um_s"]
    out.append({"n": "vel_rms_x", "u": "m/s", "v": x / 1e6})
    out.append({"n": "vel_rms_y", "u": "m/s", "v": y / 1e6})
    out.append({"n": "vel_rms_z", "u": "m/s", "v": z / 1e6})
    t = d.get("temperature_cdeg_c")
    if t is not None:
        out.append({"n": "temperature", "u": "Cel", "v": t / 100})
    flags = int(d.get("flags", 0))
    out.append({"n": "flags", "v": flags})
    if flags:
        out.append({"n": "flag_names", "vs": ",".join(ReportFlag.names(flags))})


def pack(node: str, message: QueuedMessage) -> list[dict[str, Any]]:
    """The SenML pack (a list of records) of one queued message."""
    d = message.data
    board = message.board or "_sbc"
    out: list[dict[str, Any]] = [
        {
            "bn": f"urn:dev:bpiiot:{node}:{board}:",
            "bt": d.get("received", message.created),
            "n": "qseq",
            "v": message.qseq,
        }
    ]
    if "session" in d:
        out.append({"n": "session", "v": d["session"]})
        out.append({"n": "seq", "v": d["seq"]})
    if message.attempts:
        out.append({"n": "resend", "v": message.attempts})
    if message.replay:
        out.append({"n": "replay", "vb": True})
    if message.kind == "report":
        _report_records(d, out)
    else:
        body = {
            k: v for k, v in d.items() if k not in ("session", "seq", "received", "authenticated")
        }
        _flatten("", body, out)
    return out


def encode(prefix: str, node: str, message: QueuedMessage) -> tuple[str, bytes]:
    """``(topic, payload)`` of one queued message."""
    payload = _dumps(pack(node, message)).encode()
    return topic(prefix, node, message), payload


def unpack(payload: bytes) -> list[dict[str, Any]]:
    """Every message in a payload (one pack, or several joined), each as ``{name: value}``.

    A message starts at a record with a base name; ``_bn`` and ``_bt`` hold the base name
    and base time.
    """
    out: list[dict[str, Any]] = []
    for rec in json.loads(payload):
        if "bn" in rec or not out:
            out.append({})
        cur = out[-1]
        if "bn" in rec:
            cur["_bn"] = rec["bn"]
        if "bt" in rec:
            cur["_bt"] = rec["bt"]
        for key in ("v", "vb", "vs"):
            if key in rec:
                cur[rec["n"]] = rec[key]
    return out


def decode(payload: bytes) -> dict[str, Any]:
    """The first (usually only) message of a payload, as :func:`unpack` gives it."""
    return unpack(payload)[0]
