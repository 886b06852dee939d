"""End-to-end benchmarks of the service: ingest rate, trigger-to-submit latency, memory.

Prints only ``BENCH <name> <value> <unit>`` lines on stdout; logs go to stderr.

- ``e2e.reports_per_s_max``: reports one service process ingests (verified by its links,
  stored in SQLite, evaluated by four rules) from four simulated boards, each a separate
  process streaming pre-encoded report frames into a pty as fast as the pty takes them.
  Counted as the reports both the store and the rules received, over the time they took
  (after a warm-up of 100,000). The boards write as fast as the ptys take it, so this is
  the service's ceiling; a report is either delivered or counted as dropped.
- ``e2e.dropped``: reports the bus dropped during that run (a listener's queue was full;
  the most either listener dropped).
- ``e2e.bare_reports_per_s``: the same frames through a bare loop that only verifies each
  frame, checks one threshold and inserts it into SQLite in batches; ``e2e.vs_bare`` is
  the ratio, measured in the same run (goal >= 0.2).
- ``e2e.rss_growth_mb``: resident memory growth of the service over 1,000,000 reports
  (after a warm-up of 100,000; goal <= 20 MB).
- ``e2e.trigger_to_submit_ms_p50`` / ``_p99``: from the simulated board writing the frame
  that fires a rule to the node returning the transaction hash of its request (a real
  anvil; goal p50 <= 20 ms).
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot import messages as m
from bpiiot import wire
from bpiiot.chain.devnode import DevNode
from bpiiot.chain.factory import unlock_from_config
from bpiiot.chain.node import Node
from bpiiot.devenv import dev_up
from bpiiot.link import Link
from bpiiot.service import Service

log = logging.getLogger("bench_e2e")
BOARDS = 4
QUEUES = ("store", "rules")
PER_BOARD = 275_000  # 1.1 M reports: 100 k warm-up + 1 M measured for memory

RULES: list[dict[str, Any]] = [
    {"name": "vibration", "field": "vel_rms_mm_s", "threshold": 45.0, "count": 5, "of": 10},
    {"name": "hot", "field": "temperature_c", "threshold": 95.0, "for_s": 30.0},
    {"name": "zone", "field": "zone", "threshold": "D", "count": 3, "of": 5},
    {"name": "peak", "field": "acc_peak_mg", "threshold": 20000, "axis": "z", "count": 2},
]


def bench(name: str, value: float, unit: str) -> None:
    """Print one result line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def frames(n: int, session: int, start: int = 1) -> list[bytes]:
    """``n`` encoded report frames (with delimiter) of one board, below every threshold."""
    enc = wire.FrameEncoder(from_host=False, session=session)
    out = []
    for i in range(start, start + n):
        v = 1000 + (i * 37) % 2000
        msg = m.Report(i, i * 500, 1600, (300, 310, 320), (900, 950, 1000), (v, v // 2, v // 3),
                       3500 + i % 100, 0)  # fmt: skip
        out.append(enc.encode(msg))
    return out


SIM = r"""
import os, pty, sys, time, tty
blob_file, go_file = sys.argv[1], sys.argv[2]
master, slave = pty.openpty()
tty.setraw(slave)
print(os.ttyname(slave), flush=True)
blob = memoryview(open(blob_file, "rb").read())
while not os.path.exists(go_file):  # pyserial flushes input on open: wait for the link
    time.sleep(0.01)
while blob:
    blob = blob[os.write(master, blob[:65536]):]
time.sleep(3600)
"""


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ingest(tmp: Path) -> tuple[float, int, float]:
    """Service ingest over socket:// from BOARDS simulated boards; (rate, dropped, rss)."""
    cfg = config_mod.Config(path=None)
    cfg.extra["store"] = {"path": str(tmp / "store.sqlite"), "max_reports": 2_000_000}
    cfg.extra["service"] = {"socket": str(tmp / "svc.sock"), "stats_interval_s": 5.0}
    cfg.extra["rule"] = RULES
    procs = []
    ports = []
    go = tmp / "go"
    for b in range(BOARDS):
        blob = tmp / f"blob{b}"
        blob.write_bytes(b"".join(frames(PER_BOARD, session=b + 1)))
        proc = subprocess.Popen(
            [sys.executable, "-c", SIM, str(blob), str(go)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        ports.append(proc.stdout.readline().strip())
    svc = Service(cfg, signer=None).start()
    links = []
    total = BOARDS * PER_BOARD
    warm = min(100_000, total // 4)
    try:
        t_start = time.monotonic()
        for b, port in enumerate(ports):
            link = Link(port, reconnect=False)
            svc.bus.attach(f"sim{b}", link)
            link.open()
            links.append(link)
        go.write_text("go")
        rss0 = None
        t0, n0 = t_start, 0
        while True:
            st = svc.bus.stats()
            done = min(st["store"]["delivered"], st["rules"]["delivered"])
            dropped = max(st["store"]["dropped"], st["rules"]["dropped"])
            if rss0 is None and done >= warm:
                rss0, t0, n0 = rss_mb(), time.monotonic(), done
            # Every report either reached both listeners or was dropped by one of them.
            finished = all(st[q]["delivered"] + st[q]["dropped"] >= total for q in QUEUES)
            if finished or time.monotonic() - t_start > 600:
                break
            time.sleep(0.01)
        t1 = time.monotonic()
        rate = (done - n0) / (t1 - t0)
        growth = rss_mb() - (rss0 or 0.0)
        log.info("ingest: %d delivered, %d dropped in %.1f s", done, dropped, t1 - t_start)
    finally:
        for link in links:
            link.close()
        svc.stop()
        for p in procs:
            p.kill()
            p.wait()
    return rate, dropped, growth


def bare(tmp: Path) -> float:
    """Verify, one threshold, batched SQLite inserts: the floor the service is compared to."""
    blobs = [frames(PER_BOARD // 2, session=b + 1) for b in range(BOARDS)]
    conn = sqlite3.connect(str(tmp / "bare.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE r (board INT, seq INT, w INT, vx INT, vy INT, vz INT, t INT, body BLOB)"
    )
    n = 0
    alarms = 0
    t0 = time.perf_counter()
    for b, blob in enumerate(blobs):
        ver = wire.FrameVerifier("host")
        rows = []
        for f in blob:
            raw = f[:-1]
            frame = ver.verify(raw)
            r = frame.message
            assert isinstance(r, m.Report)
            if max(r.vel_rms_um_s) > 4500:
                alarms += 1
            rows.append((b, frame.seq, r.window_seq, *r.vel_rms_um_s, r.temperature_cdeg_c, raw))
            if len(rows) >= 1000:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
                n += len(rows)
                rows = []
        if rows:
            conn.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?)", rows)
            n += len(rows)
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt


def latency(tmp: Path, rounds: int = 60) -> tuple[float, float]:
    """Trigger-to-submit latency against a real anvil, ``rounds`` incidents."""
    sent_at: list[float] = []
    orig_send = Node.send_raw

    def send_raw(self: Node, raw: bytes, tx_hash: str) -> str:
        out = orig_send(self, raw, tx_hash)
        sent_at.append(time.perf_counter())
        return out

    Node.send_raw = send_raw  # type: ignore[method-assign]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    rules = [
        {
            "name": "trip",
            "field": "vel_rms_mm_s",
            "threshold": 4.5,
            "count": 1,
            "clear_windows": 1,
            "action": "request_service",
            "fault_code": 9,
        }
    ]
    with DevNode("anvil") as anvil:
        env = dev_up(tmp / "dev", node_url=anvil.url, rules=rules)
        cfg = config_mod.load(env.config_path)
        svc = Service(cfg, signer=unlock_from_config(cfg.wallet)).start()
        link = Link(f"socket://127.0.0.1:{port}", reconnect=False)
        svc.bus.attach("sim", link)
        opener = threading.Thread(target=link.open)
        opener.start()
        conn, _ = srv.accept()
        opener.join()
        enc = wire.FrameEncoder(from_host=False, session=1)
        samples = []
        try:
            w = 0
            for i in range(rounds + 5):
                w += 1
                conn.sendall(enc.encode(m.Report(w, w, 1600, (1, 1, 1), (1, 1, 1),
                                                 (1000, 1000, 1000), 3500, 0)))  # fmt: skip
                time.sleep(0.05)  # resolved
                w += 1
                frame = enc.encode(
                    m.Report(w, w, 1600, (1, 1, 1), (1, 1, 1), (9000, 9000, 9000), 3500, 0)
                )
                before = len(sent_at)
                t0 = time.perf_counter()
                conn.sendall(frame)
                deadline = time.monotonic() + 10
                while len(sent_at) == before and time.monotonic() < deadline:
                    time.sleep(0.0005)
                if len(sent_at) > before and i >= 5:  # the first rounds warm caches up
                    samples.append((sent_at[before] - t0) * 1000)
                time.sleep(0.05)
        finally:
            link.close()
            conn.close()
            srv.close()
            svc.stop()
    Node.send_raw = orig_send  # type: ignore[method-assign]
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return p50, p99


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bpiiot-bench-e2e-") as d:
        tmp = Path(d)
        p50, p99 = latency(tmp)
        bench("e2e.trigger_to_submit_ms_p50", p50, "ms")
        bench("e2e.trigger_to_submit_ms_p99", p99, "ms")
        rate, dropped, growth = ingest(tmp)
        bare_rate = bare(tmp)
        bench("e2e.reports_per_s_max", rate, "reports/s")
        bench("e2e.dropped", dropped, "reports")
        bench("e2e.bare_reports_per_s", bare_rate, "reports/s")
        bench("e2e.vs_bare", rate / bare_rate, "ratio")
        bench("e2e.rss_growth_mb", growth, "MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
