"""The Uno's velocity filter (board/arduino/bpiiot_uno/dsp.cpp), designed with SciPy.

protocol/DSP.md section 8 describes the structure; this module computes its integer
coefficients from ISO 2954's nominal response and evaluates the quantised filter's
response, so the test can check the committed table and the stated gain table.
Run it as a script to print the coefficient rows and the gain table.

Structure per axis (x in mg, |x| <= 5120: the ADXL335 through the 10-bit ADC):

- d = x - x1: the chain's first DC zero taken on the input, so a constant input leaves
  every stage at exactly zero.
- F, shaping (acceleration domain, 8-bit coefficients):
  a = B0 d + B1 d1 + B2 d2 - floor(A a1 / 2^8) (24-bit), u = (a + 64) >> 7 (0.5 mg).
  One pole and two zeros fitted (minimax) so that the whole chain's gain follows N(f)
  up to Nyquist: it stands for the 1 kHz low-pass and corrects the rectangular
  integrator's excess near Nyquist; then the rounded coefficients are searched for
  the smallest deviation with every coefficient of the row quantised.
- S1, the real pole of the 10 Hz Butterworth high-pass (bilinear, pre-warped), 16-bit
  with first-order error feedback of the product's bits 8-15 (its low byte dropped):
  q = D1 y1 + (r << 8), y = y1 + u - (q >> 16), r = (q >> 8) & 255.
- S4, its complex pole pair times the rectangular integrator (whose pole cancels the
  second high-pass zero), 24-bit in the delta form w = v - v1:
  w = w1 + ((y - y1) << F4) - e v1 + d2 w1, v = v1 + w, with e = E / 2^16 (= 1 + a1 + a2,
  about omega^2, 9 bits) and d2 = D2 / 2^16 (= a2 - 1); both products have first-order
  error feedback (16 bits), so that no rounding dead zone holds a limit cycle.
- Output vs = v >> K (16 bits, about 1.5 um/s at 1600 S/s); the window sums vs^2.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy import optimize, signal

RATES = (800, 1600)
REF_HZ = 79.4
X_LIMIT = 5120  # mg: the largest |sample| the ADXL335 and the ADC can deliver
F4, K, GQ = 4, 3, 40
SEARCH = 3  # each shaping coefficient is searched within +-SEARCH of its rounding
MG_UM_S2 = 9806.65  # um/s^2 per mg


def nominal(f: Any) -> Any:
    """ISO 2954's nominal velocity response (DSP.md 3)."""
    return 1 / np.sqrt(1 + (10.0 / f) ** 6) / np.sqrt(1 + (f / 1000.0) ** 6)


def _hp(fs: int) -> tuple[float, float, float]:
    """Real pole and the pole pair's (a1, a2) of the bilinear 10 Hz Butterworth."""
    _, p, _ = signal.butter(3, 10, "high", fs=fs, output="zpk")
    real = float(p[np.isclose(p.imag, 0)].real[0])
    pair = p[p.imag > 1e-12][0]
    return real, float(-2 * pair.real), float(abs(pair) ** 2)


def _fit_shaping(fs: int) -> np.ndarray:
    """(b0, b1, b2, a) with F(1) = 1, minimax relative error against N(f) from 10 Hz to
    Nyquist (gain referred to 79.4 Hz)."""
    pr, a1, a2 = _hp(fs)
    f = np.linspace(10, fs / 2, 800)
    zi = np.exp(-2j * np.pi * f / fs)
    chain = (1 - zi) / (1 - pr * zi) * (1 - zi) / (1 + a1 * zi + a2 * zi**2)
    ideal = nominal(f) / (2 * np.pi * f)
    iref = int(np.argmin(abs(f - REF_HZ)))

    def res(b: np.ndarray) -> np.ndarray:
        g = np.abs(chain * (b[0] + b[1] * zi + b[2] * zi**2) / (1 + b[3] * zi)) / ideal
        return np.asarray(g / g[iref] - 1)

    ls = optimize.least_squares(res, [0.8, 0.7, 0.08, 0.67])
    x0 = np.r_[ls.x, np.max(np.abs(res(ls.x)))]
    cons = [{"type": "ineq", "fun": lambda v: v[-1] - res(v[:-1])},
            {"type": "ineq", "fun": lambda v: v[-1] + res(v[:-1])}]  # fmt: skip
    mm = optimize.minimize(lambda v: v[-1], x0, constraints=cons, method="SLSQP",
                           options={"maxiter": 500, "ftol": 1e-12})  # fmt: skip
    b = np.asarray(mm.x[:4])
    return np.r_[b[:3] / (sum(b[:3]) / (1 + b[3])), b[3]]


def _deviation(row: dict[str, int], fs: int) -> float:
    """Largest deviation from N(f), 1 Hz to Nyquist, in units of the tolerance."""
    f = np.r_[np.geomspace(1.0, 20.0, 200), np.linspace(20.0, fs / 2, 800)]
    g = np.abs(quantised_response(row, fs, f))
    g = g / float(np.abs(quantised_response(row, fs, np.array([REF_HZ])))[0])
    n = nominal(f)
    got = g * float(nominal(REF_HZ)) * f / REF_HZ
    tol = np.where(n >= 0.5, 0.02 * n, np.where(n >= 0.1, 0.05 * n, 0.01))
    return float(np.max(np.abs(got - n) / tol))


def design(fs: int) -> dict[str, int]:
    """The integer coefficient row for a rate (the table in dsp.cpp)."""
    b0, b1, b2, a = _fit_shaping(fs)
    pr, a1, a2 = _hp(fs)
    base = {
        "B0": round(b0 * 2**8), "B1": round(b1 * 2**8), "B2": round(b2 * 2**8),
        "A": round(a * 2**8), "D1": round((1 - pr) * 2**16),
        "E": round((1 + a1 + a2) * 2**16), "D2": round((a2 - 1) * 2**16),
    }  # fmt: skip
    best: tuple[float, dict[str, int]] | None = None
    steps = range(-SEARCH, SEARCH + 1)
    for db0, db1, db2, da in itertools.product(steps, steps, steps, steps):
        row = dict(base, B0=base["B0"] + db0, B1=base["B1"] + db1, B2=base["B2"] + db2,
                   A=base["A"] + da)  # fmt: skip
        dev = _deviation(row, fs)
        if best is None or dev < best[0]:
            best = (dev, row)
    assert best is not None
    row = best[1]
    g = float(abs(quantised_response(row, fs, np.array([REF_HZ]))[0]))
    lsb = MG_UM_S2 / (2 * math.pi * REF_HZ) * float(nominal(REF_HZ)) / (g / 2**K)
    row["GN"] = round(lsb * 2**GQ)
    return row


def quantised_response(row: dict[str, int], fs: int, f: np.ndarray) -> np.ndarray:
    """Complex gain from x (mg) to v (LSB) of the integer filter."""
    zi = np.exp(-2j * np.pi * f / fs)
    shaping = (1 - zi) * (row["B0"] + row["B1"] * zi + row["B2"] * zi**2) / 2**7
    shaping = shaping / (1 + row["A"] / 2**8 * zi)
    s1 = 1 / (1 - (1 - row["D1"] / 2**16) * zi)
    e, d2 = row["E"] / 2**16, row["D2"] / 2**16
    s4 = (1 - zi) / (1 - (2 + d2 - e) * zi + (1 + d2) * zi**2)
    return np.asarray(shaping * s1 * 2**F4 * s4)


def velocity_ratio(row: dict[str, int], fs: int, f: np.ndarray) -> np.ndarray:
    """The filter's velocity over the true velocity of a tone (compare with N(f))."""
    vs = np.abs(quantised_response(row, fs, f)) / 2**K
    return np.asarray(vs * row["GN"] / 2**GQ / (MG_UM_S2 / (2 * np.pi * f)))


def impulse(row: dict[str, int], fs: int, n: int = 1 << 15) -> dict[str, np.ndarray]:
    """Impulse responses (per mg of input) to d, a, u, y, y - y1, w and v, and (wn, vn)
    from an error injected into w to w and v, for the L1 bounds."""
    imp = np.zeros(n)
    imp[0] = 1.0
    d = np.diff(np.r_[0.0, imp])
    a = signal.lfilter([row["B0"], row["B1"], row["B2"]], [1, row["A"] / 2**8], d)
    u = a / 2**7
    y = signal.lfilter([1], [1, -(1 - row["D1"] / 2**16)], u)
    dy = np.diff(np.r_[0.0, y])
    e, d2 = row["E"] / 2**16, row["D2"] / 2**16
    s4 = [1, -(2 + d2 - e), 1 + d2]
    v = signal.lfilter([2**F4], s4, dy)
    vn = signal.lfilter([1], s4, imp)
    return {"d": d, "a": a, "u": u, "y": y, "dy": dy, "w": np.diff(np.r_[0.0, v]), "v": v,
            "wn": np.diff(np.r_[0.0, vn]), "vn": vn}  # fmt: skip


def main() -> None:
    """Print the coefficient rows and the gain table (DSP.md 8)."""
    freqs = np.array([2.0, 5.0, 8.0, 10.0, 16.0, 79.4, 200.0, 300.0, 400.0, 500.0, 700.0])
    for fs in RATES:
        row = design(fs)
        print(fs, row)
        f = freqs[freqs <= fs / 2]
        ratio = velocity_ratio(row, fs, f)
        print("  ", {float(a): round(float(b), 3) for a, b in zip(f, ratio, strict=True)})
        print("   nyquist", round(float(velocity_ratio(row, fs, np.array([fs / 2.0]))[0]), 3))
        print("   L1", {k: round(float(np.sum(np.abs(v))), 3) for k, v in impulse(row, fs).items()})


if __name__ == "__main__":
    main()
