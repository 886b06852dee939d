"""Measurement fidelity of the firmware's features; prints ``BENCH`` lines only.

- ``board.band_error_max_pct_<rate>``: worst deviation of the velocity gain from ISO
  2954's nominal response over DSP.md's gain table (2, 5, 8, 10, 16, 79.4, 500, 1000,
  1250 Hz and Nyquist, those below Nyquist), in percent of nominal where nominal >= 0.1,
  else in percent of the reference gain; from the integer coefficients the firmware
  runs (the tests prove the firmware bit-exact with them).
- ``board.settle_windows``: windows after a boot that are **not** flagged but are
  outside the accuracy budget (2 % of N(f) x the analytic velocity), for tones from
  12 Hz to 1.4 kHz, with and without 2 g of DC on one axis, at every rate, with
  sliding windows (1 s every 100 ms) so every window start near the boot is seen.
  Goal 0. ``board.settle_flagged`` counts the windows flagged settling meanwhile.
  The firmware's dsp.Features runs in the Unix port, fed from t = 0 like after a boot.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "sbc"))
sys.path.insert(0, str(ROOT / "tests" / "board"))

import numpy as np  # noqa: E402
import test_dsp_design as design  # noqa: E402
import test_dsp_features as feats  # noqa: E402

# (tone Hz, amplitude mg, DC mg on x); all stationary, so every window should read alike.
BOOTS = [(12, 50, 0), (49, 80, 2000), (160, 300, -2000), (1000, 500, 0), (1400, 1000, 2000)]


def settle_windows() -> tuple[int, int]:
    """(unflagged windows outside the budget, flagged windows) over the boots above."""
    cases = []
    jobs = []
    for rate in design.RATES:
        for f, amp, dc in BOOTS:
            if f >= rate / 2:
                continue
            n = 3 * rate
            x = feats.tone(f, amp, rate, n).astype(np.int32) + dc
            y = feats.tone(f, amp, rate, n, phase=1.3)
            z = np.full(n, 1000, np.int16)
            cases.append(feats.case(x.astype(np.int16), y, z, rate, rate, rate // 10))
            jobs.append(feats.iso_velocity(f, amp))
    bad = flagged = 0
    for want, res in zip(jobs, feats.run_cases(cases), strict=True):
        for _rms, _peak, vel, _zone, flags in res:
            if flags:
                flagged += 1
            elif max(abs(vel[0] / want - 1), abs(vel[1] / want - 1)) > 0.02:
                bad += 1
    return bad, flagged


def main() -> int:
    """Print the BENCH lines."""
    for rate in design.RATES:
        print(f"BENCH board.band_error_max_pct_{rate} {design.band_error_pct(rate):.2f} %")
    bad, flagged = settle_windows()
    print(f"BENCH board.settle_windows {bad} windows")
    print(f"BENCH board.settle_flagged {flagged} windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
