"""bpiiot.iso20816: zone table, exact rounding, and the reference pipeline's guards."""

from __future__ import annotations

import math
import random

import pytest

from bpiiot.iso20816 import (
    COEFFS,
    MACHINE_CLASSES,
    SUPPORTED_RATES,
    ZONE_NAMES,
    FilterState,
    isqrt_round,
    reference_features,
    velocity_band,
    zone,
)


def test_group2_rigid_boundaries_from_the_field_notes() -> None:
    assert MACHINE_CLASSES["group2-rigid"] == (1400, 2800, 4500)
    speeds = (0, 1399, 1400, 2799, 2800, 4499, 4500, 10**7)
    assert [zone(v, "group2-rigid") for v in speeds] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ZONE_NAMES[zone(3000, "group2-rigid")] == "C"


@pytest.mark.parametrize("cls", sorted(MACHINE_CLASSES))
def test_every_class_is_monotonic_and_exact_at_its_boundaries(cls: str) -> None:
    ab, bc, cd = MACHINE_CLASSES[cls]
    assert ab < bc < cd
    assert [zone(b - 1, cls) for b in (ab, bc, cd)] == [0, 1, 2]
    assert [zone(b, cls) for b in (ab, bc, cd)] == [1, 2, 3]


def test_unknown_class_and_rate_are_refused() -> None:
    with pytest.raises(ValueError, match="machine class"):
        zone(100, "group3")
    with pytest.raises(ValueError, match="unsupported sample rate"):
        velocity_band(1000)
    with pytest.raises(ValueError, match="unsupported sample rate"):
        reference_features([0], [0], [0], rate_hz=2000)
    with pytest.raises(ValueError, match="multiple"):
        reference_features([0], [0], [0], 3200, 3200, 1000)
    with pytest.raises(ValueError, match="length"):
        reference_features([0], [0], [], 3200, 1, 1)
    assert SUPPORTED_RATES == (1600, 3200, 6400)
    assert velocity_band(1600) == (10, 500) and velocity_band(3200) == (10, 1000)


def test_isqrt_round_is_exact_round_half_up() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        num = rng.randrange(0, 1 << rng.randrange(1, 120))
        den = rng.randrange(1, 1 << rng.randrange(1, 60))
        r = isqrt_round(num, den)
        # r = floor(sqrt(num/den) + 1/2)  <=>  (2r - 1)^2 <= 4 num/den < (2r + 1)^2
        assert (2 * r - 1) ** 2 * den <= 4 * num or r == 0
        assert 4 * num < (2 * r + 1) ** 2 * den
    assert isqrt_round(2, 1) == 1 and isqrt_round(9, 4) == 2  # 1.41 -> 1, 1.5 -> 2
    assert isqrt_round(10**40, 1) == 10**20


def test_reference_rms_and_peak_on_a_known_signal() -> None:
    x = [1000, -1000] * 1600
    y = [3] * 3200
    z = [0] * 3199 + [-32768]
    (res,) = reference_features(x, y, z, 3200)
    assert res.acc_rms_mg == (1000, 3, round(math.sqrt(32768**2 / 3200)))
    assert res.acc_peak_mg == (1000, 3, 32768)
    # A constant input is DC: no velocity (the filter starts in its steady state).
    assert res.vel_rms_um_s[1] == 0


def test_checked_state_detects_a_design_that_would_overflow() -> None:
    bad = list(COEFFS[3200])
    bad[13] = 20  # input shift far too large: sections overflow int32 on full scale
    st = FilterState(bad, checked=True)
    with pytest.raises(OverflowError):
        for v in [32767, -32768] * 50:
            st.step(v)
    good = FilterState(COEFFS[3200], checked=True)
    for v in [32767, -32768] * 50:
        good.step(v)
    assert 0 < good.max_abs < 2**31


def test_wire_class_codes_match_the_firmware_and_the_spec() -> None:
    import re
    from pathlib import Path

    from bpiiot import iso20816

    root = Path(__file__).resolve().parents[2]
    acquire = (root / "board" / "micropython" / "bpiiot_fw" / "acquire.py").read_text()
    fw = re.search(r"MACHINE_CLASSES = \(([^)]*)\)", acquire)
    assert fw is not None
    assert tuple(re.findall(r'"([^"]+)"', fw.group(1))) == iso20816.CLASS_CODES
    assert set(iso20816.CLASS_CODES) == set(iso20816.MACHINE_CLASSES)
    assert iso20816.class_name(2) == "group2-rigid"
    for bad in (-1, 4):
        try:
            iso20816.class_name(bad)
        except ValueError as exc:
            assert "0..3" in str(exc)
        else:
            raise AssertionError(f"class code {bad} accepted")
