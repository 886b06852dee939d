"""Mutation score of the wire layer, read from the last `make mutation` run.

mutmut takes well over a few minutes on this layer (about a thousand mutants, each run
against the protocol tests), so `make bench` does not run it inline: it reads
build/mutation.json, which `make mutation` (tools/mutation.py) writes, and says how old
it is. Without that file it prints a note and no figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "build" / "mutation.json"


def main() -> int:
    if not RESULTS.exists():
        print(
            "no build/mutation.json: run `make mutation` for tests.mutation_score_wire",
            file=sys.stderr,
        )
        return 0
    res = json.loads(RESULTS.read_text())
    print(f"BENCH tests.mutation_score_wire {res['score']:.3f} ratio")
    print(
        f"from the `make mutation` run finished {res['finished']}: {res['killed']} killed, "
        f"{len(res['survived'])} survived, {res['equivalent']} equivalent excluded",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
