"""Benchmarks of the MicroPython firmware; prints only ``BENCH <name> <value> <unit>`` lines.

- ``board.heap_peak_bytes``: the smallest ``-X heapsize`` (4 KiB steps) at which the
  compiled firmware (x64 .mpy, as flashed) survives a realistic load in the Unix
  port: MAC on, 3200 S/s, 1 s windows sliding every 250 ms, commands interleaved with
  reports. Everything the firmware holds at its peak fits below this figure.
- ``board.mpy_bytes_armv6m`` / ``board.mpy_bytes_xtensawin``: total size of the
  cross-compiled firmware modules (what ``bpiiot flash`` copies, main.py excluded).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "sbc"))

from board_host import BoardHost  # noqa: E402

from bpiiot import flash as flash_mod  # noqa: E402
from bpiiot import messages as m  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "board"))
from fw_link import Client  # noqa: E402

KEY = bytes(range(32))


def mpy_bytes(arch: str) -> int:
    """Total size of the firmware's .mpy files for arch."""
    with tempfile.TemporaryDirectory() as tmp:
        files = flash_mod.build(flash_mod.default_source(), Path(tmp), arch)
        return sum(p.stat().st_size for remote, p in files if remote.endswith(".mpy"))


def survives(fs_src: Path, heap_k: int) -> bool:
    """True when the firmware runs the load below with a heap of heap_k KiB."""
    host = BoardHost(source=fs_src, heapsize=f"{heap_k}K")
    port = host.start()
    c = Client(port)
    try:
        c.sync(timeout=3)
        _, ack = c.command(m.SetKey(KEY))
        if not isinstance(ack.message, m.Ack):
            return False
        c.set_key(KEY)
        _, ack = c.command(
            m.SetConfig(sample_rate_hz=3200, window_ms=1000, hop_ms=250, channels=15)
        )
        if not isinstance(ack.message, m.Ack):
            return False
        c.reports.clear()
        deadline = time.monotonic() + 4
        while len(c.reports) < 6 and time.monotonic() < deadline:
            for msg in (m.Ping(), m.GetStatus(), m.GetConfig(), m.HelloRequest()):
                _, ack = c.command(msg)
                if not isinstance(ack.message, m.Ack):
                    return False
            c.recv(0.05)
        ok = len(c.reports) >= 6 and host.boots == 1 and not host.exit_codes
        return ok and "MemoryError" not in host.read_log()
    except AssertionError:
        return False
    finally:
        c.close()
        host.stop()


def heap_peak_bytes() -> int:
    """Smallest working heap in bytes (binary search over 4 KiB steps, 16-192 KiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        fs = Path(tmp) / "fs"
        files = flash_mod.build(flash_mod.default_source(), fs, "x64")
        assert files[0][0] == "main.py"
        (fs / "main.py").write_bytes(files[0][1].read_bytes())
        lo, hi = 4, 48  # in 4 KiB units: 16 KiB fails, 192 KiB works
        if not survives(fs, hi * 4):
            return -1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if survives(fs, mid * 4):
                hi = mid
            else:
                lo = mid
        return hi * 4 * 1024


def main() -> int:
    """Print the benchmark lines."""
    print(f"BENCH board.heap_peak_bytes {heap_peak_bytes()} bytes", flush=True)
    print(f"BENCH board.mpy_bytes_armv6m {mpy_bytes('armv6m')} bytes", flush=True)
    print(f"BENCH board.mpy_bytes_xtensawin {mpy_bytes('xtensawin')} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
