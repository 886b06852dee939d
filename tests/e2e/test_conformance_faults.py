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
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from board_host import BoardHost

import bpiiot
from tests.e2e.broken_firmware import FAULTS, Fault, apply

KEY = bytes(range(7, 39))
GOOD = Fault("unmodified firmware", (), "")


def _conformance(fault: Fault, tmp: Path) -> dict[str, Any]:
    host = BoardHost()
    apply(host.fs_dir, fault)
    host.start()
    try:
        key_args: list[str] = []
        if fault.keyed:
            with bpiiot.connect(host.port, timeout_s=10.0) as board:
                board.set_key(KEY)
            key_file = tmp / f"{abs(hash(fault.name))}.key"
            key_file.write_text(KEY.hex() + "\n")
            key_file.chmod(0o600)
            key_args = ["--key-file", str(key_file)]
        proc = subprocess.run(
            [
                # -O: verdicts are explicit failures, not asserts that python -O removes.
                *(sys.executable, "-O", "-m", "bpiiot.cli", "conformance", host.port, "--json"),
                *("--output-pin", "2", "--timeout", "2" if fault is GOOD else "1", *key_args),
            ],
            capture_output=True,
            text=True,
            timeout=150,
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
    todo = (GOOD, *FAULTS)
    with ThreadPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(lambda f: _conformance(f, tmp), todo))
    return {f.name: r for f, r in zip(todo, done, strict=True)}


def _doc(run: dict[str, Any]) -> dict[str, Any]:
    proc = run["proc"]
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_unmodified_firmware_passes(runs) -> None:
    run = runs[GOOD.name]
    doc = _doc(run)
    assert run["proc"].returncode == 0, json.dumps(doc["checks"], indent=1)
    assert doc["counts"]["fail"] == 0 and doc["counts"]["not run"] == 0
    assert run["key_after"] == "original"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_broken_board_fails_on_its_check(runs, fault: Fault) -> None:
    run = runs[fault.name]
    doc = _doc(run)
    text = "\n".join(f"{c['status']:8} {c['name']} - {c['detail']}" for c in doc["checks"])
    assert run["proc"].returncode == 1, text
    by_name = {c["name"]: c for c in doc["checks"]}
    assert fault.check in by_name, f"{fault.check!r} not reported:\n{text}"
    assert by_name[fault.check]["status"] == "fail", text
    # Every check is reported: as many as on the good board (a board's fault never
    # ends the report early), each with a reason unless it passed.
    good = {c["name"] for c in _doc(runs[GOOD.name])["checks"]}
    assert good <= set(by_name), f"missing: {good - set(by_name)}"
    for c in doc["checks"]:
        assert c["status"] in ("pass", "fail", "n/a", "not run")
        assert c["status"] == "pass" or c["detail"], c
    # The suite never leaves a board with a key nobody knows.
    assert run["key_after"] == "original", run["key_after"]
