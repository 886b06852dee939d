"""Where the simulated Uno's CPU time goes: awake cycles per function, from simavr.

Runs the firmware ELF in simavr (tools/uno_sim.py) with the bridge's per-address
profile (``simavr_bridge -p``), MAC on, at a sample rate, and charges each address's
cycles to the function that contains it (``avr-nm``). Prints the functions taking the
most cycles per axis-sample, interrupts included::

    python tools/uno_profile.py --rate 1600 --seconds 5 [--annotate loop]
"""

from __future__ import annotations

import argparse
import bisect
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "board"))

from fw_link import Client
from uno_sim import FIRMWARE, UnoSim

from bpiiot import messages as m

KEY = bytes(range(0xA0, 0xC0))


def symbols(elf: Path) -> tuple[list[int], list[str]]:
    """Function start addresses (sorted) and their demangled names."""
    out = subprocess.run(["avr-nm", "-n", "-C", str(elf)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    starts, names = [], []
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1] in "tTwW":
            starts.append(int(parts[0], 16))
            names.append(parts[2])
    return starts, names


def by_function(profile: Path, elf: Path) -> dict[str, int]:
    """Awake cycles per function from the bridge's profile file."""
    starts, names = symbols(elf)
    totals: dict[str, int] = {}
    for line in profile.read_text().splitlines():
        addr, cycles = (int(v) for v in line.split())
        i = bisect.bisect_right(starts, addr) - 1
        name = names[i] if i >= 0 else "?"
        totals[name] = totals.get(name, 0) + cycles
    return totals


def annotate(profile: Path, elf: Path, function: str, samples: int) -> None:
    """Print a function's disassembly with each instruction's cycles per axis-sample."""
    cycles = {}
    for line in profile.read_text().splitlines():
        addr, n = (int(v) for v in line.split())
        cycles[addr] = n
    dis = subprocess.run(["avr-objdump", "-d", "-C", str(elf)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    inside = False
    for line in dis.splitlines():
        if line.endswith(">:"):
            inside = line.split("<", 1)[1][:-2] == function
        elif inside and ":" in line and line.startswith(" "):
            addr = int(line.split(":", 1)[0], 16)
            print(f"{cycles.get(addr, 0) / samples:8.2f}  {line.strip()}")


def main(argv: list[str] | None = None) -> int:
    """CLI: profile a run and print the top functions."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=1600, help="sample rate per axis (S/s)")
    p.add_argument("--seconds", type=float, default=5.0, help="simulated run, roughly")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--annotate", metavar="FUNCTION",
                   help="also print this function's instructions with their cycles "
                   "(the name as avr-nm -C prints it, e.g. loop)")  # fmt: skip
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "profile.txt"
        eeprom = Path(tmp) / "eeprom.bin"
        # A first run stores the key and the rate; the profiled one boots with them, so
        # nothing of the default rate is in the profile.
        with UnoSim(eeprom=eeprom) as sim:
            c = Client(sim.start())
            try:
                c.sync()
                c.command(m.SetKey(KEY))
                c.set_key(KEY)
                c.command(m.SetConfig(sample_rate_hz=a.rate))
                c.command(m.Ping())
                time.sleep(0.5)  # the EEPROM writes (3.4 ms a byte) finish
            finally:
                c.close()
        with UnoSim(eeprom=eeprom, profile=prof) as sim:
            c = Client(sim.start())
            try:
                c.set_key(KEY)
                c.sync()
                t0 = sim.snapshot()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    c.recv(0.5)
                    now = sim.snapshot()
                    if now["cycles"] - t0["cycles"] >= a.seconds * 16e6:
                        break
            finally:
                c.close()
            stats = sim.stop()
        samples = 3 * stats["conversions"]
        totals = by_function(prof, FIRMWARE)
        if a.annotate:
            annotate(prof, FIRMWARE, a.annotate, samples)
    awake = sum(totals.values())
    print(f"{awake / samples:.0f} awake cycles per axis-sample over {samples} samples")
    for name, cyc in sorted(totals.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{cyc / samples:8.1f}  {100 * cyc / awake:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
