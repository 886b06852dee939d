"""Cycles per SHA-256 compression on the simulated ATmega328P, from simavr.

Hashes messages of known block counts with the firmware's sha256.cpp as avr-gcc
builds it (build/uno/vector_runner.elf, its 'S' request) under the bridge's
per-address profile, and divides the cycles spent in ``compress`` by its calls::

    python tools/uno_sha_bench.py
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import tempfile
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parent))

from uno_profile import by_function
from uno_sim import BUILD, UnoSim

RUNNER = BUILD / "vector_runner.elf"


def sha256_on_avr(ser: serial.Serial, data: bytes, step: int = 255) -> bytes:
    """The runner's SHA-256 of data (at most 256 bytes)."""
    ser.write(b"S" + bytes([step]) + struct.pack("<H", len(data)) + data)
    reply = ser.read(33)
    if len(reply) != 33 or reply[0] != ord("R"):
        raise TimeoutError(f"the AVR runner answered {reply!r}")
    return reply[1:]


def main(argv: list[str] | None = None) -> int:
    """CLI: hash `--messages` messages of 4 blocks each, print cycles per compression."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=25)
    a = p.parse_args(argv)
    data = bytes(range(247))  # 247 bytes and the padding: 4 blocks
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "profile.txt"
        with UnoSim(firmware=RUNNER, profile=prof) as sim:
            ser = serial.Serial(sim.start(), 115200, timeout=10)
            try:
                for _ in range(a.messages):
                    if sha256_on_avr(ser, data) != hashlib.sha256(data).digest():
                        raise SystemExit("wrong digest")
            finally:
                ser.close()
            sim.stop()
        totals = by_function(prof, RUNNER)
    calls = 4 * a.messages
    comp = sum(c for name, c in totals.items() if "compress" in name)
    upd = sum(c for name, c in totals.items() if name.startswith(("sha256_update", "sha256_final")))
    print(f"{comp / calls:.0f} cycles per compression ({calls} compressions)")
    print(f"{upd / calls:.0f} cycles per block in sha256_update and sha256_final")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
