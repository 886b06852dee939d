"""An installed SDK carries what it needs: the schema, the firmware, the contract ABIs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_copy(dest: Path) -> Path:
    """The work tree's files as git sees them (tracked and new, not ignored), links kept.

    Building from the checkout itself would reuse setuptools' build/lib, where files
    deleted or renamed since an earlier build linger and end up in the wheel.
    """
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, names):
        src = ROOT / raw.decode()
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet in the index
        target = dest / raw.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)
    return dest


def test_wheel_ships_schema_firmware_and_contracts(tmp_path) -> None:
    src = clean_copy(tmp_path / "src")
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("bpiiot-*.whl")
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
    assert "bpiiot/cli.py" in names and any(n.endswith("entry_points.txt") for n in names)
