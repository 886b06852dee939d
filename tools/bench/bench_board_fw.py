"""Benchmarks of the MicroPython firmware; prints only ``BENCH <name> <value> <unit>`` lines.

- ``board.heap_peak_bytes``: the smallest ``-X heapsize`` (4 KiB steps) at which the
  compiled firmware (x64 .mpy, as flashed) survives a realistic load in the Unix
  port: MAC on, 3200 S/s, 1 s windows sliding every 250 ms, commands interleaved with
  reports. A size counts only if the firmware survives the load at it in each of
  ``RUNS`` separate runs (one run alone is noisy: the same build passed at 72 KiB
  once and failed at 76 KiB another time). Everything the firmware holds at its
  peak fits below this figure.
- ``board.heap_live_bytes``: the largest live heap (``gc.mem_alloc()`` right after a
  collection) seen in the main loop under the same load. Both figures are for the
  64-bit Unix port (8-byte pointers, 32-byte GC blocks): a 32-bit board needs less.
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
RUNS = 3  # a heap size must survive the load this many times in a row


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


# Runs the app with the live heap (after a collection, every 50 loop turns) tracked.
_PROBE = """import gc, sys
from bpiiot_fw import app
peak = [0, 0]
orig = app.App.poll_link
def poll_link(self, ms):
    peak[1] += 1
    if peak[1] % 50 == 0:
        gc.collect()
        a = gc.mem_alloc()
        if a > peak[0]:
            peak[0] = a
            sys.stderr.write("BENCHLIVE %d\\n" % a)
    return orig(self, ms)
app.App.poll_link = poll_link
app.main()
"""


def heap_live_bytes(fs_src: Path) -> int:
    """Largest live heap (allocated after a collection) seen in the main loop under load."""
    host = BoardHost(source=fs_src, heapsize="192K")
    (host.fs_dir / "main.py").write_text(_PROBE)
    port = host.start()
    c = Client(port)
    try:
        c.sync(timeout=3)
        c.command(m.SetKey(KEY))
        c.set_key(KEY)
        c.command(m.SetConfig(sample_rate_hz=3200, window_ms=1000, hop_ms=250, channels=15))
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            c.command(m.GetStatus())
            c.recv(0.05)
    finally:
        c.close()
        host.stop()
    lines = [ln for ln in host.read_log().splitlines() if ln.startswith("BENCHLIVE ")]
    return max((int(ln.split()[1]) for ln in lines), default=-1)


def compiled_fs(tmp: str) -> Path:
    """A board filesystem with the x64 build of the firmware, as `bpiiot flash` makes it."""
    fs = Path(tmp) / "fs"
    files = flash_mod.build(flash_mod.default_source(), fs, "x64")
    (fs / "main.py").write_bytes(files[0][1].read_bytes())
    return fs


def survives_always(fs_src: Path, heap_k: int) -> bool:
    """True when the firmware survives the load at heap_k KiB in each of RUNS runs."""
    return all(survives(fs_src, heap_k) for _ in range(RUNS))


def heap_peak_bytes() -> int:
    """Smallest heap in bytes that always works (binary search, 4 KiB steps, 16-192 KiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        fs = compiled_fs(tmp)
        lo, hi = 4, 48  # in 4 KiB units: 16 KiB fails, 192 KiB works
        if not survives_always(fs, hi * 4):
            return -1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if survives_always(fs, mid * 4):
                hi = mid
            else:
                lo = mid
        return hi * 4 * 1024


def main() -> int:
    """Print the benchmark lines."""
    print(f"BENCH board.heap_peak_bytes {heap_peak_bytes()} bytes", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"BENCH board.heap_live_bytes {heap_live_bytes(compiled_fs(tmp))} bytes", flush=True)
    print(f"BENCH board.mpy_bytes_armv6m {mpy_bytes('armv6m')} bytes", flush=True)
    print(f"BENCH board.mpy_bytes_xtensawin {mpy_bytes('xtensawin')} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
