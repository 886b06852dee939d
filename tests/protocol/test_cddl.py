"""Payloads against the normative CDDL schema (pycddl), per message type."""

from __future__ import annotations

from functools import cache
from typing import Any

import pycddl
import pytest
from cobs import cobs

from bpiiot import messages, wire

from .vectors import CDDL, VECTORS

RULES = {
    1: "hello",
    2: "report",
    3: "status",
    4: "ack",
    5: "nack",
    6: "log",
    7: "config",
    0x40: "empty",
    0x41: "empty",
    0x42: "set-config",
    0x43: "set-output",
    0x44: "set-key",
    0x45: "empty",
    0x46: "empty",
    0x47: "empty",
    0x48: "empty",
}


@cache
def schema(rule: str) -> pycddl.Schema:
    """The schema with ``rule`` as its root (pycddl validates against the first rule)."""
    return pycddl.Schema(f"root = {rule}\n" + CDDL.read_text())


def validate(type_: int, payload: bytes) -> None:
    schema(RULES[type_]).validate_cbor(payload)


def test_every_message_type_has_a_rule() -> None:
    assert set(RULES) == set(messages.TO_HOST) | set(messages.TO_BOARD)


OK = [v for v in VECTORS if v["verdict"] == "ok"]


@pytest.mark.parametrize("v", OK, ids=lambda v: v["name"])
def test_ok_vector_payloads_match_the_schema(v: dict[str, Any]) -> None:
    validate(v["header"]["type"], bytes.fromhex(v["payload_hex"]))


SCHEMA_NEGATIVE = [
    "float-in-report",
    "bool-in-report",
    "text-in-report",
    "negative-rms",
    "report-short",
    "report-long",
    "report-flags-zero",
    "report-flags-too-big",
    "report-out-of-range",
    "config-missing-key",
    "set-output-value-2",
    "set-key-short",
    "ping-with-args",
    "nack-detail-too-long",
    "log-level-5",
    "temperature-too-cold",
]


@pytest.mark.parametrize("name", SCHEMA_NEGATIVE)
def test_schema_rejects_what_the_sdk_rejects(name: str) -> None:
    v = next(v for v in VECTORS if v["name"] == name)
    body = cobs.decode(bytes.fromhex(v["wire"]))
    payload = body[wire.HEADER_LEN : -wire.CRC_LEN]
    with pytest.raises(pycddl.ValidationError):
        validate(body[1], payload)


def test_frames_the_sdk_encodes_match_the_schema() -> None:
    samples: list[messages.Message] = [
        messages.Hello("b-1", (1, 2, 3), (1, 0), 63, 70000, 5),
        messages.Report(1, 2, 3200, (1, 2, 3), (4, 5, 6), (7, 8, 9), -27315),
        messages.Report(2**32 - 1, 2**32 - 1, 3200, (65535,) * 3, (0,) * 3, (1,) * 3, None),
        messages.Status(1, 2, 3, 4, 1000, 6, 7),
        messages.Nack(1, 3, "x" * 64),
        messages.Config(6400, 500, 250, 15, 3),
        messages.SetConfig(hop_ms=100),
        messages.SetKey(bytes(32)),
        messages.SetOutput(255, 0),
    ]
    for msg in samples:
        validate(msg.TYPE, wire.encode_payload(msg.to_payload()))
