"""`make mutation`: mutmut 3 on the wire layer (wire.py, messages.py), and its score.

mutmut 3 names modules after their path and only strips a leading ``src``, so the
run happens in build/mutation/, a copy of the repository with the SDK under
``src/`` (its [mutmut] settings come from setup.cfg). Mutants run against the fast
in-process tests of tests/protocol. Afterwards the score is

    killed / (mutants - equivalent)

where equivalent mutants are listed, each with the reason it cannot change
behaviour, in tools/mutation_equivalent.txt. The score and every surviving mutant go
to build/mutation.json (read by tools/bench/bench_mutation.py) and the survivors'
diffs to build/mutation-survivors.txt.

Usage: python tools/mutation.py [--jobs N] [--score-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
OUT = ROOT / "build" / "mutation.json"
SURVIVORS = ROOT / "build" / "mutation-survivors.txt"
EQUIVALENT = Path(__file__).with_name("mutation_equivalent.txt")
MUTMUT = Path(sys.executable).with_name("mutmut")
COPY = ("tests", "protocol", "tools", "board", "pyproject.toml")
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # failed tests, timeouts, type check
SURVIVED = {0}


def stage() -> None:
    """Copy the repository into build/mutation/ with the SDK as src/bpiiot."""
    (STAGE / "src").mkdir(parents=True, exist_ok=True)
    for name in ("src/bpiiot", *COPY):
        dst = STAGE / name
        if dst.is_dir():
            shutil.rmtree(dst)
        src = ROOT / ("sbc/bpiiot" if name == "src/bpiiot" else name)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    # The [mutmut] section names sbc/...: the stage has the same files under src/.
    cfg = (ROOT / "setup.cfg").read_text().replace("sbc/bpiiot", "src/bpiiot")
    (STAGE / "setup.cfg").write_text(cfg)


def load_equivalent() -> dict[str, str]:
    """{mutant name: reason} from tools/mutation_equivalent.txt."""
    out: dict[str, str] = {}
    for line in EQUIVALENT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def score() -> dict[str, object]:
    """Read mutmut's results in the stage and write build/mutation.json."""
    codes: dict[str, int | None] = {}
    for meta in sorted((STAGE / "mutants" / "src" / "bpiiot").glob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    equivalent = load_equivalent()
    # A name that no longer exists, or whose mutant the tests kill, is a wrong entry
    # (mutmut renumbers a function's mutants when the function changes).
    stale = sorted(k for k in equivalent if k not in codes or codes[k] in KILLED)
    considered = {k: v for k, v in codes.items() if k not in equivalent or k in stale}
    killed = sorted(k for k, v in considered.items() if v in KILLED)
    survived = sorted(k for k, v in considered.items() if v in SURVIVED)
    other = sorted(k for k, v in considered.items() if v not in KILLED and v not in SURVIVED)
    total = len(considered)
    result: dict[str, object] = {
        "score": round(len(killed) / total, 4) if total else 0.0,
        "mutants": len(codes),
        "equivalent": len(equivalent) - len(stale),
        "killed": len(killed),
        "survived": survived,
        "not_killed_other": {k: codes[k] for k in other},
        "stale_equivalent_names": stale,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="mutmut on wire.py and messages.py")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--score-only", action="store_true", help="re-read the last run")
    ap.add_argument(
        "--survivors",
        action="store_true",
        help="run the last run's survivors again against the current tests (source unchanged)",
    )
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    if not args.score_only:
        names: list[str] = []
        if args.survivors and OUT.exists():
            names = list(json.loads(OUT.read_text())["survived"])
        stage()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(args.jobs), *names],
            cwd=STAGE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            return proc.returncode
    res = score()
    survived = res["survived"]
    assert isinstance(survived, list)
    with SURVIVORS.open("w") as f:
        for name in survived:
            diff = subprocess.run(
                [str(MUTMUT), "show", name], cwd=STAGE, capture_output=True, text=True, check=False
            ).stdout
            f.write(diff + "\n")
    if res["stale_equivalent_names"]:
        print(f"fix tools/mutation_equivalent.txt: {res['stale_equivalent_names']}")
    print(
        f"{res['killed']} killed of {res['mutants']} mutants ({res['equivalent']} equivalent "
        f"excluded), {len(survived)} survived; diffs in {SURVIVORS.relative_to(ROOT)}; "
        f"{time.monotonic() - t0:.0f} s"
    )
    print(f"BENCH tests.mutation_score_wire {res['score']:.3f} ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
