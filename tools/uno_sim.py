"""Run the Arduino Uno firmware in simavr, cycle-accurately, on a pseudo-terminal.

Wraps ``build/uno/simavr_bridge`` (tools/uno/simavr_bridge.c, built by ``make uno``):
the firmware's UART0 is a pty the SDK opens with pyserial exactly as a board's port;
the ADC reads a signal file; EEPROM lives in a file, so a board keeps its boot
counter, key and configuration from one run to the next. The simulator is always
stopped by its PID; on stop it writes its statistics (cycle counter, cycles asleep,
ADC conversions) and a dump of SRAM.

Library use::

    with UnoSim() as sim:              # a fresh board (blank EEPROM)
        port = sim.start()             # e.g. /dev/pts/7
        ...
    sim.stats                          # {"cycles": ..., "sleep_cycles": ..., ...}

CLI: ``python tools/uno_sim.py [--signal FILE] [--eeprom FILE] [--bootloader HEX]``
prints the port and runs until interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "uno"
BRIDGE = BUILD / "simavr_bridge"
FIRMWARE = BUILD / "bpiiot_uno.elf"
OPTIBOOT = Path(
    "/usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot/optiboot_atmega328.hex"
)

# The analog front end the bridge simulates (tools/uno/simavr_bridge.c) and the
# firmware assumes (board/arduino/bpiiot_uno/sensors.h): ADXL335 at 3.3 V.
AVCC_MV = 5000
ZERO_G_MV = 1650
MV_PER_G = 330
TMP36_25C_MV = 750


def adc_code(mv: int) -> int:
    """The ADC code simavr converts a voltage to (10 bits, AVcc reference)."""
    return min(1023, max(0, mv) * 1023 // AVCC_MV)


def code_to_mg(code: int) -> int:
    """What the firmware computes from an ADC code (sensors.h, adxl335_mg)."""
    return (((2 * code + 1) * 484849) >> 16) - 5000


def mg_to_mv(mg: float) -> int:
    """The ADXL335's output voltage for an acceleration, rounded to a millivolt."""
    return round(ZERO_G_MV + mg * MV_PER_G / 1000)


def write_signal(path: Path, rows: Iterable[tuple[int, int, int, int]]) -> int:
    """Write a signal file (rows of A0..A3 in mV); returns the number of rows."""
    data = bytearray()
    n = 0
    for row in rows:
        data += struct.pack("<4H", *row)
        n += 1
    path.write_bytes(bytes(data))
    return n


def tone_rows(
    rate: int, seconds: float, axes: list[Callable[[float], float]], temp_mv: int = TMP36_25C_MV
) -> list[tuple[int, int, int, int]]:
    """Rows for acceleration functions of time (mg) on X, Y, Z and a fixed TMP36 voltage."""
    n = round(rate * seconds)
    return [
        (mg_to_mv(axes[0](i / rate)), mg_to_mv(axes[1](i / rate)),
         mg_to_mv(axes[2](i / rate)), temp_mv)
        for i in range(n)
    ]  # fmt: skip


def sine(freq: float, amp_mg: float, dc_mg: float = 0.0) -> Callable[[float], float]:
    """A tone of amplitude amp_mg on top of dc_mg."""
    return lambda t: dc_mg + amp_mg * math.sin(2 * math.pi * freq * t)


class UnoSim:
    """One simulated Uno: the bridge process, its pty and its files."""

    def __init__(
        self,
        signal_file: Path | None = None,
        eeprom: Path | None = None,
        firmware: Path | None = FIRMWARE,
        bootloader: Path | None = None,
        realtime: bool = False,
        profile: Path | None = None,
        power_cut: tuple[int, int, int] | None = None,
        poke: tuple[int, bytes] | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bpiiot-uno-")
        tmp = Path(self._tmp.name)
        self.signal_file = signal_file
        self.eeprom = eeprom or tmp / "eeprom.bin"
        self.firmware = firmware
        self.bootloader = bootloader
        self.realtime = realtime
        self.profile = profile
        #: (n, cycles, value): cut the power `cycles` after the n-th EEPROM byte write
        #: began, leaving that byte as `value` if it was still being written.
        self.power_cut = power_cut
        self.returncode: int | None = None
        #: (data address, bytes) written into SRAM once the firmware's UART receiver
        #: is on: a state that would take years to reach (bridge option -m).
        self.poke = poke
        self.stats_file = tmp / "stats.json"
        self.ram_file = tmp / "sram.bin"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: str | None = None
        self.stats: dict[str, int] = {}
        self.sram = b""

    def start(self) -> str:
        """Start the simulator; returns the pty path for pyserial."""
        args = [str(BRIDGE), "-e", str(self.eeprom), "-t", str(self.stats_file),
                "-d", str(self.ram_file)]  # fmt: skip
        if self.firmware is not None:
            args += ["-f", str(self.firmware)]
        if self.bootloader is not None:
            args += ["-b", str(self.bootloader)]
        if self.signal_file is not None:
            args += ["-s", str(self.signal_file)]
        if self.realtime:
            args.append("-r")
        if self.profile is not None:
            args += ["-p", str(self.profile)]
        if self.power_cut is not None:
            args += ["-k", ":".join(str(int(v)) for v in self.power_cut)]
        if self.poke is not None:
            args += ["-m", f"{self.poke[0]:#x}:{self.poke[1].hex()}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        # simavr's ELF loader prints a few lines of its own first.
        line = ""
        for _ in range(20):
            line = self.proc.stdout.readline().decode().strip()
            if line.startswith("/dev/") or not line:
                break
        if not line.startswith("/dev/"):
            self.stop()
            raise RuntimeError(f"simavr_bridge did not start: {line!r}")
        self.port = line
        return line

    def stop(self) -> dict[str, int]:
        """Stop the simulator by its PID; returns its statistics."""
        proc = self.proc
        if proc is None:
            return self.stats
        self.proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.returncode = proc.returncode
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if self.stats_file.exists():
            self.stats = json.loads(self.stats_file.read_text())
        if self.ram_file.exists():
            self.sram = self.ram_file.read_bytes()
        return self.stats

    def wait_power_cut(self, timeout: float = 20.0) -> dict[str, int]:
        """Wait for the power cut asked for (``power_cut``); returns the statistics.
        Stops the simulator by its PID and raises if it does not come in time."""
        assert self.proc is not None and self.power_cut is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"no power cut {self.power_cut} within {timeout} s") from None
        stats = self.stop()
        if self.returncode != 3 or not stats.get("power_cut"):
            raise RuntimeError(f"the simulator ended with {self.returncode}, no power cut")
        return stats

    def snapshot(self, timeout: float = 5.0) -> dict[str, int]:
        """The simulator's statistics now, while it keeps running (SIGUSR1)."""
        assert self.proc is not None, "not running"
        self.stats_file.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.stats_file.read_text()
                if text.endswith("\n"):
                    return dict(json.loads(text))
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise TimeoutError("the simulator wrote no statistics")

    def restart(self) -> str:
        """Power-cycle: stop, then start again with the same EEPROM."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary files."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> UnoSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: run a simulated Uno until interrupted."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--signal", type=Path, help="signal file (rows of 4 x uint16 mV, LE)")
    p.add_argument("--eeprom", type=Path, help="EEPROM image, kept between runs")
    p.add_argument("--bootloader", type=Path, help="start in this bootloader (optiboot HEX)")
    p.add_argument("--no-firmware", action="store_true", help="flash empty (for avrdude)")
    p.add_argument("--realtime", action="store_true", help="pace the simulation to real time")
    a = p.parse_args(argv)
    sim = UnoSim(a.signal, a.eeprom, None if a.no_firmware else FIRMWARE, a.bootloader,
                 a.realtime)  # fmt: skip
    print(sim.start(), flush=True)
    try:
        while sim.proc is not None and sim.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(sim.stop()))
        sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
