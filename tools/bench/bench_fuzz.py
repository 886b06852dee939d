"""Fuzz throughput: a bounded run of tools/fuzz_wire.py (SDK, Link and firmware codec).

`make fuzz` runs 1,000,000 inputs and prints the same figure; this runs 50,000 so that
`make bench` stays short. Prints `BENCH fuzz.inputs_per_s N inputs/s` and fails if any
verdict disagreed or a good frame was lost.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fuzz_wire


def main() -> int:
    res = fuzz_wire.run(inputs=50_000, seed=20261130)
    print(f"BENCH fuzz.inputs_per_s {res.inputs / res.seconds:.0f} inputs/s")
    for line in res.disagreements[:20]:
        print("  " + line, file=sys.stderr)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
