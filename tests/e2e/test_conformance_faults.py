"""`bpiiot conformance` against broken copies of the real firmware: each fails on its check.

Every broken board (tests/e2e/broken_firmware.py) and the unmodified firmware run
the CLI at the same time, each on its own pty, so the whole area costs about one
slow conformance run. A broken board must exit 1 with the fault's check failed and
every other check reported (run, not applicable, or not run with a reason); the
unmodified firmware must pass through the same path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from board_host import BoardHost

from tests.e2e.broken_firmware import FAULTS, GOOD, Fault, apply

KEY = bytes(range(7, 39))
ROOT = Path(__file__).resolve().parents[2]


def _conformance(fault: Fault, tmp: Path) -> dict[str, Any]:
    host = BoardHost()
    apply(host.fs_dir, fault)
    # The board's stored config (merged over its defaults at boot): half the default
    # sample rate halves the CPU the many boards of this module need at once; a keyed
    # board starts with its key, as a provisioned board would.
    stored = {"sample_rate_hz": 1600, "key": KEY.hex() if fault.keyed else None}
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(stored))
    host.start()
    try:
        key_args: list[str] = []
        if fault.keyed:
            key_file = tmp / f"{abs(hash(fault.name))}.key"
            key_file.write_text(KEY.hex() + "\n")
            key_file.chmod(0o600)
            key_args = ["--key-file", str(key_file)]
        proc = subprocess.run(
            [
                # -O: verdicts are explicit failures, not asserts that python -O removes.
                *(sys.executable, "-O", "-m", "bpiiot.cli", "conformance", host.port, "--json"),
                *("--output-pin", "2", "--timeout", "2" if fault in GOOD else "1", *key_args),
                *(("--reboot",) if fault in GOOD or fault.reboot else ()),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "BPIIOT_LINK_KEY": ""},
            check=False,
        )
        # Whatever the suite did to the board's key, the board holds its original one
        # (read from its store: a broken board may not answer well enough to ask it).
        stored = json.loads((host.fs_dir / "bpiiot.json").read_text()).get("key")
        want = KEY.hex() if fault.keyed else None
        key_after = "original" if stored == want else f"board holds key {stored!r}"
        return {"proc": proc, "key_after": key_after, "log": host.read_log()}
    finally:
        host.stop()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("keys")
    todo = (*GOOD, *FAULTS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda f: _conformance(f, tmp), todo))
    return {f.name: r for f, r in zip(todo, done, strict=True)}


def _doc(run: dict[str, Any]) -> dict[str, Any]:
    proc = run["proc"]
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize("good", GOOD, ids=[f.name for f in GOOD])
def test_conforming_firmware_passes(runs, good: Fault) -> None:
    run = runs[good.name]
    doc = _doc(run)
    assert run["proc"].returncode == 0, json.dumps(doc["checks"], indent=1)
    assert doc["counts"]["fail"] == 0 and doc["counts"]["not run"] == 0
    assert run["key_after"] == "original"


def test_a_1_0_sbc_talks_to_a_1_1_board(runs) -> None:
    # SPEC.md 6: the SDK (1.0) accepts the higher minor version, the board speaks 1.0.
    doc = _doc(runs["protocol 1.1 board"])
    assert doc["hello"]["protocol_version"] == [1, 1]
    assert doc["passed"] is True
    # A board that sends a type the SBC does not know: dropped as `type`, counted,
    # and the link carries on (every other check of that run passed).
    odd = _doc(runs["sends a message type the SBC does not know"])
    failed = [c for c in odd["checks"] if c["status"] != "pass" and c["status"] != "n/a"]
    assert [c["name"] for c in failed] == ["no board frame failed verification"]
    assert "'type'" in failed[0]["detail"]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_broken_board_fails_on_its_check(runs, fault: Fault) -> None:
    run = runs[fault.name]
    doc = _doc(run)
    text = "\n".join(f"{c['status']:8} {c['name']} - {c['detail']}" for c in doc["checks"])
    assert run["proc"].returncode == 1, text
    by_name = {c["name"]: c for c in doc["checks"]}
    assert fault.check in by_name, f"{fault.check!r} not reported:\n{text}"
    assert by_name[fault.check]["status"] == "fail", text
    if fault.explains:
        failed = [c["detail"] for c in doc["checks"] if c["status"] == "fail"]
        assert any(fault.explains in d for d in failed), text
    # Every check is reported: as many as on the good board (a board's fault never
    # ends the report early), each with a reason unless it passed.
    good = {c["name"] for c in _doc(runs[GOOD[0].name])["checks"]}
    assert good <= set(by_name), f"missing: {good - set(by_name)}"
    for c in doc["checks"]:
        assert c["status"] in ("pass", "fail", "n/a", "not run")
        assert c["status"] == "pass" or c["detail"], c
    # The suite never leaves a board with a key nobody knows.
    assert run["key_after"] == "original", run["key_after"]


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_conformance_doc_lists_every_must_and_every_check(runs) -> None:
    spec = _normal((ROOT / "protocol" / "SPEC.md").read_text())
    doc = (ROOT / "protocol" / "CONFORMANCE.md").read_text()
    musts, faults = doc.split("## Broken boards")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in musts.splitlines()
        if line.startswith("| ") and not line.startswith("| SPEC.md")
    ]
    listed = {line.split("|")[1].strip() for line in faults.splitlines() if line.startswith("| ")}
    assert {f.name for f in FAULTS} <= listed, "CONFORMANCE.md: list every broken board"
    assert rows and all(len(r) == 3 for r in rows)
    spans = []
    for _section, requirement, _covered in rows:
        at = spec.find(_normal(requirement))
        assert at >= 0, f"CONFORMANCE.md quotes a MUST that SPEC.md no longer has: {requirement}"
        spans.append((at, at + len(_normal(requirement))))
    # Sentences about the key words themselves are not requirements.
    for meta in ("The key words MUST, MUST NOT, SHOULD", "lists every MUST of this file"):
        at = spec.find(meta)
        assert at >= 0, meta
        spans.append((at, at + len(meta)))
    uncovered = [
        spec[max(0, i - 60) : i + 40]
        for i in range(len(spec))
        if spec.startswith("MUST", i) and not any(a <= i < b for a, b in spans)
    ]
    assert not uncovered, "MUSTs of SPEC.md missing from CONFORMANCE.md:\n" + "\n".join(uncovered)
    named = {name for r in rows for name in re.findall(r'"([^"]+)"', r[2])}
    checks = {c["name"] for c in _doc(runs[GOOD[0].name])["checks"]}
    assert named <= checks, f"not checks of the suite: {named - checks}"
    assert checks <= named, f"checks of the suite no MUST refers to: {checks - named}"
