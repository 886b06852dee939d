"""The committed contract artifacts are exactly what the pinned solc makes of the sources."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from bpiiot.chain.contracts import load_artifact

ROOT = Path(__file__).resolve().parents[3]


def test_artifacts_match_a_fresh_compile() -> None:
    node = shutil.which("node")
    assert node, "node (Node.js 20) is required to check the contract artifacts"
    assert (ROOT / "node_modules/solc").is_dir(), "solc-js missing: run `npm ci` at the repo root"
    proc = subprocess.run(
        [node, "contracts/build.js", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stale artifacts, run `node contracts/build.js`:\n{proc.stderr}"
    assert "artifacts up to date" in proc.stdout


def test_artifact_records_source_hash_and_compiler() -> None:
    for name in ("MachineService", "PartReplacement"):
        art = load_artifact(name)
        source = (ROOT / f"contracts/src/{name}.sol").read_text(encoding="utf-8")
        assert art.source_sha256 == hashlib.sha256(source.encode()).hexdigest()
        pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["solc"]
        assert art.compiler_version.startswith(pinned + "+commit")
        assert art.bytecode.startswith("0x60") and len(art.bytecode) > 1000
