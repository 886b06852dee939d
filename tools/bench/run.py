"""Run every benchmark under tools/bench/ and collect its figures.

Each `bench_*.py` prints lines `BENCH <name> <value> <unit>`; this runner echoes
them, writes them all to build/bench.json, and fails if a benchmark fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    figures: dict[str, dict[str, object]] = {}
    failed = []
    for script in sorted((ROOT / "tools" / "bench").glob("bench_*.py")):
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=False
        )
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "BENCH":
                print(line, flush=True)
                figures[parts[1]] = {
                    "value": float(parts[2]),
                    "unit": " ".join(parts[3:]),
                    "script": script.name,
                }
        if proc.returncode != 0:
            failed.append(script.name)
            sys.stderr.write(f"{script.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n")
        else:
            sys.stderr.write(f"{script.name}: {time.monotonic() - t0:.1f} s\n")
    out = ROOT / "build" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stderr.write(f"{len(figures)} figures written to {out.relative_to(ROOT)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
