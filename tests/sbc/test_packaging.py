"""An installed SDK carries what it needs: the schema, the firmware, the contract ABIs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_schema_firmware_and_contracts(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("bpiiot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "bpiiot/data/bpiiot.cddl" in names
    assert "bpiiot/data/contracts/MachineService.json" in names
    assert "bpiiot/data/contracts/PartReplacement.json" in names
    firmware = {
        n.removeprefix("bpiiot/data/firmware/")
        for n in names
        if n.startswith("bpiiot/data/firmware/")
    }
    on_disk = {
        str(p.relative_to(ROOT / "board" / "micropython"))
        for p in (ROOT / "board" / "micropython").rglob("*.py")
    }
    assert firmware == on_disk
    # The packaged schema is the protocol's, byte for byte.
    with zipfile.ZipFile(wheel) as z:
        assert z.read("bpiiot/data/bpiiot.cddl") == (ROOT / "protocol" / "bpiiot.cddl").read_bytes()
    # The device manager's pages and its locally served chart library (no CDN).
    assert "bpiiot/web/templates/overview.html" in names
    assert "bpiiot/web/static/vendor/uPlot.iife.min.js" in names
    assert "bpiiot/cli.py" in names and any(n.endswith("entry_points.txt") for n in names)
