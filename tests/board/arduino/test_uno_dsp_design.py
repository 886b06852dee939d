"""The Uno's velocity filter (dsp.cpp): its committed coefficients are the SciPy design
of tests/board/arduino/uno_dsp_design.py, its response follows ISO 2954's nominal
N(f) within the tolerance protocol/DSP.md section 8 states, the gain table there is
the measured one, and no stage can overflow for any input the ADC can deliver."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from . import uno_dsp_design as design
from .conftest import ROOT
from .uno_codec import UnoCodec

DSP_CPP = ROOT / "board" / "arduino" / "bpiiot_uno" / "dsp.cpp"
DSP_MD = ROOT / "protocol" / "DSP.md"
# DSP.md 8: the tolerance against N(f), as for the MicroPython firmware (DSP.md 4).
TOL_REL, TOL_SKIRT, TOL_ABS = 0.02, 0.05, 0.01
TABLE_HZ = (2.0, 5.0, 8.0, 10.0, 16.0, 79.4, 200.0, 300.0, 500.0, 700.0)


def _committed_rows() -> dict[int, dict[str, int]]:
    text = DSP_CPP.read_text()
    rows = {}
    names = ("B0", "B1", "B2", "A", "D1", "E", "D2", "GN")
    for m in re.finditer(r"\{(\d+), ([-\d]+), ([-\d]+), ([-\d]+), ([-\d]+), ([-\d]+), "
                         r"([-\d]+), ([-\d]+), (\d+)ULL\}", text):  # fmt: skip
        rows[int(m.group(1))] = dict(zip(names, (int(v) for v in m.groups()[1:]), strict=True))
    return rows


def _tolerance(n: np.ndarray) -> np.ndarray:
    return np.where(n >= 0.5, TOL_REL * n, np.where(n >= 0.1, TOL_SKIRT * n, TOL_ABS))


@pytest.mark.parametrize("fs", design.RATES)
def test_committed_coefficients_are_the_design(fs: int) -> None:
    assert _committed_rows()[fs] == design.design(fs)


def test_only_the_designed_rates_have_rows() -> None:
    assert sorted(_committed_rows()) == list(design.RATES)


@pytest.mark.parametrize("fs", design.RATES)
def test_response_follows_iso2954_nominal_within_tolerance(fs: int) -> None:
    f = np.r_[np.geomspace(1.0, 20.0, 200), np.linspace(20.0, fs / 2, 800)]
    got = design.velocity_ratio(design.design(fs), fs, f)
    n = design.nominal(f)
    assert np.all(np.abs(got - n) <= _tolerance(n))


def _tone_ratio(codec: UnoCodec, fs: int, f: float, amp: float = 2000.0) -> float:
    # Whole seconds; the first window (settling) is left out.
    n = 3 * fs
    x = [round(amp * math.sin(2 * math.pi * f * i / fs)) for i in range(n)]
    out = codec.features(x, [0] * n, [0] * n, fs, fs)
    ideal = amp * design.MG_UM_S2 / (2 * math.pi * f) / math.sqrt(2)
    return out[-1][0][6] / ideal


@pytest.mark.parametrize("fs", design.RATES)
def test_host_build_gain_table_is_the_one_in_dsp_md(uno_codec: UnoCodec, fs: int) -> None:
    # Tones through the firmware's own C++ (host build; the AVR build matches it bit
    # for bit, test_uno_sim.py): the gain relative to the true velocity, within the
    # tolerance of N(f) and as DSP.md section 8 states it (3 decimals, +-0.002 for
    # the 1 um/s output step and the 1 mg input step).
    freqs = [f for f in TABLE_HZ if f < fs / 2]
    # 2 g at 2-16 Hz is more velocity than 16 bits hold: 200 mg there.
    got = {f: _tone_ratio(uno_codec, fs, f, 200.0 if f < 20 else 2000.0) for f in freqs}
    for f, g in got.items():
        n = float(design.nominal(f))
        assert abs(g - n) <= float(_tolerance(np.array([n]))[0]) + 0.002, (f, g, n)
    section8 = DSP_MD.read_text().split("## 8.", 1)[1]
    row = re.search(rf"^ *\| Uno {fs} S/s \|(.*)\|$", section8, re.M)
    assert row is not None, f"no {fs} S/s row in DSP.md's Uno gain table"
    cells = [c.strip() for c in row.group(1).split("|")]
    stated = {f: float(c) for f, c in zip(TABLE_HZ, cells, strict=False) if c != "-"}
    assert sorted(stated) == freqs
    for f in freqs:
        assert abs(stated[f] - got[f]) <= 0.002, (f, stated[f], got[f])


@pytest.mark.parametrize("fs", design.RATES)
def test_l1_bounds_keep_every_stage_in_range(fs: int) -> None:
    # Worst case of a linear filter: |output| <= L1 norm x max |input|, for any
    # sequence of samples within +-5120 mg (the ADXL335 through the 10-bit ADC).
    row = design.design(fs)
    h = design.impulse(row, fs)
    xmax = design.X_LIMIT
    l1 = {k: float(np.sum(np.abs(v))) for k, v in h.items()}
    # d = x - x1, u, y and y - y1 are int16 (u and y in 0.5 mg); +2 LSB for rounding.
    for k in ("d", "u", "y", "dy"):
        assert l1[k] * xmax + 2 < 2**15, (k, l1[k])
    # The shaping sum a is held in 24 bits (+2^8 for the pole's floor), its pole's
    # product A a1 in 32.
    assert l1["a"] * xmax + 2**8 < 2**23
    assert row["A"] * 2**23 < 2**31
    # v and w are 24-bit, with room for the error feedback: each of its two products
    # puts less than 1 LSB of error into w per sample.
    assert l1["v"] * xmax + 2 * l1["vn"] < 2**23 and l1["w"] * xmax + 2 * l1["wn"] < 2**23
    # The e and d2 products of v1 and w1 (< 2^23) fit their 40 bits with the residual.
    assert row["E"] * 2**23 + 2**16 < 2**39 and -row["D2"] * 2**23 + 2**16 < 2**39
    # The coefficients fit their operands: bytes, E 9 bits, D1 and D2 16 bits.
    assert all(0 <= row[k] < 2**8 for k in ("B0", "B1", "B2", "A"))
    assert 0 < row["E"] < 2**9 and -(2**15) < row["D2"] < 0 < row["D1"] < 2**15


@pytest.mark.parametrize("fs", design.RATES)
def test_full_scale_step_settles_within_600_ms(uno_codec: UnoCodec, fs: int) -> None:
    # DSP.md 2.1's SETTLE_MS: a step across the whole ADC range, after 600 ms of
    # ringing, leaves less than 1 um/s (the windows from then on are not flagged).
    settle = int(0.6 * fs)
    n = settle + fs
    x = [-4995] * 10 + [5110] * (n - 10)
    out = uno_codec.features(x[settle:], [0] * fs, [0] * fs, fs, fs)
    assert out[0][0][6] == 0
    full = uno_codec.features(x, [0] * n, [0] * n, fs, n)
    assert full[0][0][6] > 1000  # the step itself does ring


def test_rates_without_a_row_are_refused(uno_codec: UnoCodec) -> None:
    with pytest.raises(ValueError):
        uno_codec.features([0] * 3200, [0] * 3200, [0] * 3200, 3200, 3200)
