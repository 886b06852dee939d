"""protocol/constants.json is the one source of the protocol's constants: every
hand-written copy (CDDL, SDK, MicroPython firmware, vector generator, conformance
suite) and the generated C++ header of the Uno firmware must agree with it."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from bpiiot import conformance, messages, wire

ROOT = Path(__file__).resolve().parents[2]
C: dict[str, Any] = json.loads((ROOT / "protocol" / "constants.json").read_text())
FW = ROOT / "board" / "micropython" / "bpiiot_fw"
TYPES = {**C["board_messages"], **C["host_messages"]}

sys.path.insert(0, str(ROOT / "tools"))
import gen_constants  # noqa: E402


def _consts(path: Path) -> dict[str, int]:
    """The ``NAME = const(value)`` lines of a MicroPython file."""
    pat = re.compile(r"^(_?[A-Z][A-Z0-9_]*) = const\((0x[0-9A-Fa-f]+|-?\d+)\)", re.M)
    return {k: int(v, 0) for k, v in pat.findall(path.read_text())}


def _expected(name: str) -> int | None:
    """What constants.json says a firmware constant named ``name`` must be (None: not ours)."""
    n = name.lstrip("_")
    prefix, _, rest = n.partition("_")
    low = rest.lower()
    if prefix == "T" and low in TYPES:
        return int(TYPES[low])
    if prefix == "E" and low in C["nack_codes"]:
        return int(C["nack_codes"][low])
    if prefix == "CAP" and low in C["capabilities"]:
        return int(C["capabilities"][low])
    if prefix == "VERSION" and low in C["version"]:
        return int(C["version"][low])
    if prefix == "F" and low in C["report_flags"]:
        return int(C["report_flags"][low])
    if prefix == "LOG" and low in C["log_levels"]:
        return int(C["log_levels"].index(low))
    if n.lower() in C["header"]:
        return int(C["header"][n.lower()])
    if n.lower() in C["limits"]:
        return int(C["limits"][n.lower()])
    return None


@pytest.mark.parametrize(
    ("name", "at_least"),
    [
        ("codec.py", 30),
        ("app.py", 11),
        ("commands.py", 18),
        ("reports.py", 4),
        ("acquire.py", 2),
        ("startup.py", 2),
        ("codec_host.py", 7),
    ],
)
def test_micropython_firmware_consts_match(name: str, at_least: int) -> None:
    found = {k: (v, _expected(k)) for k, v in _consts(FW / name).items()}
    checked = {k: v for k, v in found.items() if v[1] is not None}
    # A parser that silently matched nothing would prove nothing.
    assert len(checked) >= at_least, sorted(found)
    drift = {k: v for k, v in checked.items() if v[0] != v[1]}
    assert not drift, f"{name} differs from protocol/constants.json: {drift}"


def test_micropython_nack_table_matches() -> None:
    tree = ast.parse((FW / "codec.py").read_text())
    table = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NACK_FOR"
    )
    assert isinstance(table, ast.Dict)
    got = {
        ast.literal_eval(k): C["nack_codes"][v.id.removeprefix("_E_").lower()]  # type: ignore[attr-defined, arg-type]
        for k, v in zip(table.keys, table.values, strict=True)
    }
    assert got == {r: C["nack_codes"][n] for r, n in C["nack_for_reason"].items()}


def test_sdk_messages_match() -> None:
    assert {c.NAME: t for t, c in messages.TO_HOST.items()} == C["board_messages"]
    assert {c.NAME: t for t, c in messages.TO_BOARD.items()} == C["host_messages"]
    assert all(c.TYPE == t for t, c in {**messages.TO_HOST, **messages.TO_BOARD}.items())
    nc = messages.NackCode
    assert {v: k for k, v in nc.NAMES.items()} == C["nack_codes"]
    assert {k: getattr(nc, k.upper()) for k in C["nack_codes"]} == C["nack_codes"]
    assert {k: getattr(messages, "CAP_" + k.upper()) for k in C["capabilities"]} == C[
        "capabilities"
    ]
    assert {k: getattr(messages, "CH_" + k.upper()) for k in C["channels"]} == C["channels"]
    assert list(messages.LOG_LEVELS) == C["log_levels"]


def test_sdk_report_flags_match() -> None:
    flags = messages.ReportFlag
    assert {k: int(getattr(flags, k.upper())) for k in C["report_flags"]} == C["report_flags"]


def test_sdk_wire_matches() -> None:
    assert (wire.PROTOCOL_MAJOR, wire.PROTOCOL_MINOR) == (
        C["version"]["major"],
        C["version"]["minor"],
    )
    for k, v in C["header"].items():
        assert getattr(wire, k.upper()) == v, k
    assert (wire.KEY_MIN, wire.KEY_MAX) == (C["limits"]["key_min"], C["limits"]["key_max"])
    assert list(wire.REASONS) == C["drop_reasons"]


def test_conformance_rules_match() -> None:
    assert conformance._RULES == {v: k for k, v in C["board_messages"].items()}
    # The "unknown command" the suite sends must be a host type no board knows.
    assert 0x40 <= conformance.UNKNOWN_COMMAND <= 0x7F
    assert conformance.UNKNOWN_COMMAND not in C["host_messages"].values()


def test_vector_generator_matches() -> None:
    text = (ROOT / "tools" / "gen_vectors.py").read_text()
    m = re.search(r"^AUTH, HOST = (0x\w+), (0x\w+)$", text, re.M)
    assert m, "gen_vectors.py no longer names AUTH, HOST"
    assert (int(m[1], 0), int(m[2], 0)) == (C["header"]["flag_auth"], C["header"]["flag_host"])
    pairs = re.findall(r'\((0x[0-9A-Fa-f]{2}), "(\w+)"\)', text)
    assert len(pairs) >= 5
    for code, name in pairs:
        assert TYPES[name] == int(code, 0), name


def test_cddl_matches() -> None:
    text = (ROOT / "protocol" / "bpiiot.cddl").read_text()
    board = dict(re.findall(r"\[(\d+), ([a-z-]+)\]", text.split("host-message =")[0]))
    assert {v: int(k) for k, v in board.items()} == C["board_messages"]
    host = re.findall(r"\[(\d+), ([a-z-]+)\]", text.split("host-message =")[1].split("\n\n")[0])
    assert sorted(int(k) for k, _ in host) == sorted(C["host_messages"].values())
    for code, rule in host:
        if rule != "empty":
            assert C["host_messages"][rule.replace("-", "_")] == int(code)
    for name, spec in C["config_keys"].items():
        rule = name.replace("_", "-")
        assert re.search(rf"^{rule} = {spec['min']}\.\.{spec['max']}$", text, re.M), name
        assert re.search(rf"\? {spec['key']} => {rule},", text), name
    lim = C["limits"]
    assert f"bstr .size ({lim['key_min']}..{lim['key_max']})" in text
    assert f"detail: tstr .size (0..{lim['nack_detail_max']})" in text
    assert f"text: tstr .size (0..{lim['log_text_max']})" in text
    assert f"level: 0..{lim['log_level_max']}" in text
    assert f"cpu-load-permille: 0..{lim['cpu_load_max_permille']}" in text
    assert f"{{1,{lim['board_id_max']}}}" in text
    assert f"int .ge {lim['temperature_min_cdeg_c']}" in text
    assert f"int .le {lim['temperature_max_cdeg_c']}" in text


def test_uno_header_is_generated_from_the_json() -> None:
    header = gen_constants.HEADER.read_text()
    assert header == gen_constants.render(C), "run python tools/gen_constants.py"
    assert "#define T_SET_CONFIG 66" in header and "#define RF_OVERRUN 2" in header
