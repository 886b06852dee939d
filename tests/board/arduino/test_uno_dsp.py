"""The Uno's feature pipeline (board/arduino/bpiiot_uno/dsp.cpp), host build, against
the CPython reference (bpiiot.iso20816) and against the analytic velocity of tones."""

from __future__ import annotations

import math
import random

import pytest

from bpiiot import iso20816

from .uno_codec import UnoCodec

RATES = (800, 1600)


def _tone(f: float, amp_mg: float, n: int, rate: int, dc: int = 0) -> list[int]:
    return [round(dc + amp_mg * math.sin(2 * math.pi * f * i / rate)) for i in range(n)]


@pytest.mark.parametrize("rate", RATES)
def test_tones_match_the_nominal_velocity(uno_codec: UnoCodec, rate: int) -> None:
    # DSP.md 8: N(f) x the true velocity within 2 % (plus the 1 um/s output step) from
    # 10 Hz to Nyquist, on every axis, whatever the constant offset (gravity); the
    # first window (filter settling) is left out, as the firmware flags it.
    for f in (10, 20, 40, 80, 160, 240, 380, 600, 780):
        if f >= rate / 2:
            continue
        # Below 40 Hz, 1 g would be beyond the filter output's peak range (DSP.md 8).
        for amp in (200, 400) if f < 40 else (200, 1000):
            x = _tone(f, amp, 3 * rate, rate)
            y = _tone(f, amp * 0.75, 3 * rate, rate, dc=1000)
            z = _tone(f, amp / 2, 3 * rate, rate, dc=-1000)
            for values, flags in uno_codec.features(x, y, z, rate, rate)[1:]:
                assert flags == 0
                for axis, a in enumerate((amp, amp * 0.75, amp / 2)):
                    ideal = a * 9806.65 / (2 * math.pi * f) / math.sqrt(2)
                    ideal *= iso20816.nominal_response(f)
                    got = values[6 + axis]
                    assert abs(got - ideal) <= 0.02 * ideal + 1, (f, a, got, ideal)


@pytest.mark.parametrize("rate", RATES)
def test_constant_input_reads_zero_velocity(uno_codec: UnoCodec, rate: int) -> None:
    # Gravity or any offset: no transient (the filter starts in its steady state) and
    # no rounding limit cycle (a 16-bit shaping pole held one at Nyquist: 2 um/s).
    for dc in (-4995, -1000, -1, 1, 37, 1000, 5110):
        out = uno_codec.features([dc] * 2 * rate, [0] * 2 * rate, [dc] * 2 * rate, rate, rate)
        assert [v[0][6] for v in out] == [0, 0] and [v[0][8] for v in out] == [0, 0], dc


@pytest.mark.parametrize("rate", RATES)
def test_ringing_dies_out_to_zero_after_any_excitation(uno_codec: UnoCodec, rate: int) -> None:
    # A second of noise, a tone or a full-scale square wave, then a constant: 600 ms
    # later (DSP.md 2.1's SETTLE_MS) every window reads exactly zero, no rounding limit
    # cycle left in any stage (a rounded d2 product held one, 1-2 um/s for ever).
    rnd = random.Random(rate)
    settle = int(0.6 * rate)
    for kind in range(6):
        amp = (5, 300, 5000)[kind % 3]
        if kind < 3:
            burst = [rnd.randint(-amp, amp) for _ in range(rate)]
        else:
            burst = _tone(rnd.uniform(2, rate / 2), amp, rate, rate)
        x = [max(-4995, min(5110, v)) for v in burst] + [rnd.randint(-4000, 4000)] * 2 * rate
        out = uno_codec.features(x, [0] * len(x), [0] * len(x), rate, rate // 4)
        after = [v for k, (v, _) in enumerate(out) if k * (rate // 4) >= rate + settle]
        assert after and all(v[6] == 0 for v in after), (kind, after)


def test_acceleration_is_exact_against_the_reference(uno_codec: UnoCodec) -> None:
    rnd = random.Random(7)
    rate = 800
    n = 3 * rate
    x = [round(800 * math.sin(i / 7.0)) + rnd.randint(-300, 300) for i in range(n)]
    y = [rnd.randint(-2000, 2000) for _ in range(n)]
    z = [1000 + round(3000 * math.sin(2 * math.pi * 55 * i / rate)) for i in range(n)]
    ours = uno_codec.features(x, y, z, rate, rate)
    # Any rate the reference supports: acceleration RMS and peak need no filter.
    ref = iso20816.reference_features(x, y, z, rate_hz=1600, window_n=rate)
    assert len(ours) == len(ref) == 3
    # Acceleration does not depend on the filter: bit for bit.
    for (values, _), r in zip(ours, ref, strict=True):
        assert values[0:3] == list(r.acc_rms_mg)
        assert values[3:6] == list(r.acc_peak_mg)


@pytest.mark.parametrize("rate", RATES)
def test_saturation_is_flagged(uno_codec: UnoCodec, rate: int) -> None:
    # 5 g at 10 Hz is about 550 mm/s RMS: beyond the output's 16 bits (and the
    # filter output's peak range, DSP.md 8), sent as 65535 and flagged.
    x = _tone(10, 5000, 2 * rate, rate)
    out = uno_codec.features(x, [0] * len(x), [0] * len(x), rate, rate)
    values, flags = out[1]
    assert values[6] == 65535 and values[7] == 0 and flags & 2
    assert values[3] == 5000
