"""Arduino Uno firmware: size (avr-size) and cost, measured cycle-accurately in simavr.

Prints only ``BENCH <name> <value> <unit>`` lines on stdout.

- ``uno.flash_bytes``, ``uno.ram_bytes``: program memory (.text + .data) of 32,768
  and static RAM (.data + .bss) of 2,048 bytes, from the ELF (``make uno``).
- ``uno.cycles_per_sample``: CPU cycles per axis-sample over five steady one-second
  windows with the MAC on: everything the CPU did that was not sleeping (timer and
  ADC interrupts, the filter, window features, report framing with its HMAC tag,
  the UART interrupt), divided by the samples converted (3 axes x 800 S/s). simavr's
  cycle counter; sleep cycles are the idle loop's. Goal from issue 13: <= 580.
- ``uno.cpu_load_permille``: the firmware's own busy share in the same run.
- ``uno.max_rate_sps``: per-axis rate sustained with no overrun, MAC on: 800, the one
  rate the firmware runs (protocol/DSP.md section 8); the run fails if it overran.
- ``uno.stack_free_bytes``: RAM the stack never reached (stack painting), after a
  run with the MAC on and every command; of 2,048 bytes (goal >= 512).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "board"))

from fw_link import Client  # noqa: E402
from uno_sim import FIRMWARE, UnoSim  # noqa: E402

from bpiiot import messages as m  # noqa: E402

KEY = bytes(range(0xA0, 0xC0))


def _size() -> tuple[int, int]:
    out = subprocess.run(["avr-size", "-A", str(FIRMWARE)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    sec = {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines())
           if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit()}  # fmt: skip
    return sec[".text"] + sec.get(".data", 0), sec.get(".data", 0) + sec.get(".bss", 0)


def main() -> int:
    subprocess.run(["make", "-s", "uno"], cwd=ROOT, check=True, capture_output=True)
    flash, ram = _size()
    print(f"BENCH uno.flash_bytes {flash} bytes")
    print(f"BENCH uno.ram_bytes {ram} bytes")
    with UnoSim() as sim:
        c = Client(sim.start())
        try:
            c.sync()
            c.command(m.SetKey(KEY))
            c.set_key(KEY)
            for msg in (m.Ping(), m.GetConfig(), m.SetOutput(4, 1), m.HelloRequest()):
                c.command(msg)
            c.recv(5.0, (m.Report,))
            a = sim.snapshot()
            for _ in range(5):
                if c.recv(5.0, (m.Report,)) is None:
                    raise RuntimeError("no report from the simulated Uno")
            b = sim.snapshot()
            replies, _ = c.command(m.GetStatus())
            status = replies[0].message
            assert isinstance(status, m.Status)
        finally:
            c.close()
    busy = (b["cycles"] - b["sleep_cycles"]) - (a["cycles"] - a["sleep_cycles"])
    samples = 3 * (b["conversions"] - a["conversions"])
    print(f"BENCH uno.cycles_per_sample {busy / samples:.0f} cycles")
    print(f"BENCH uno.cpu_load_permille {status.cpu_load_permille} permille")
    print(f"BENCH uno.stack_free_bytes {status.free_memory_bytes} bytes")
    if status.overruns:
        print(f"{status.overruns} samples lost at 800 S/s", file=sys.stderr)
        return 1
    print("BENCH uno.max_rate_sps 800 S/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
