"""Device manager benchmarks, against the test harness (real firmware on ptys, real bus, uvicorn).

Prints only ``BENCH <name> <value> <unit>`` lines on stdout; logs go to stderr.

- ``ui.overview_ms``: server time of the overview page (its ``Server-Timing`` header: data
  and rendering) with a week of stored reports from two boards at one report per second;
  median of 20 requests (goal <= 50 ms).
- ``ui.event_lag_ms_p50``: from a report reaching the SBC (the bus stamps it) to the overview
  in a headless Chromium showing it, measured in the page; median of 20 reports (goal <= 100 ms).
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.web.conftest import CHROMIUM, start_site  # noqa: E402


def bench(name: str, value: float, unit: str) -> None:
    """Print one result line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bpiiot-bench-web-") as tmp:
        t0 = time.monotonic()
        site = start_site(
            Path(tmp), "--no-chain", "--boards", "mill,press", "--prefill-days", "7", password=False
        )
        sys.stderr.write(
            f"harness with 2 x 604800 stored reports up in {time.monotonic() - t0:.0f} s\n"
        )
        try:
            with httpx.Client(base_url=site.url, timeout=60) as c:
                c.get("/")  # warm-up: templates compiled, SQLite pages cached
                times = []
                for _ in range(20):
                    r = c.get("/")
                    r.raise_for_status()
                    m = re.search(r"dur=([0-9.]+)", r.headers["server-timing"])
                    if m is None:
                        raise RuntimeError("no Server-Timing header on the overview")
                    times.append(float(m.group(1)))
                points = r.text.count(",")  # rough size of the embedded series
            bench("ui.overview_ms", statistics.median(times), "ms")
            sys.stderr.write(f"overview: {len(r.text)} bytes, ~{points} values\n")

            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = browser.new_page()
                    page.goto(site.url + "/")
                    page.wait_for_function("() => window.bpiiotLags.length >= 20", timeout=120000)
                    lags = page.evaluate("window.bpiiotLags.slice(0, 20)")
                finally:
                    browser.close()
            bench("ui.event_lag_ms_p50", statistics.median(lags), "ms")
        finally:
            site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
