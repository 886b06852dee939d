"""Form parsing: every field checked and named, types kept, nothing partial."""

from __future__ import annotations

from bpiiot import messages as m
from bpiiot.web import forms
from bpiiot.web.events import downsample, report_dict


def test_config_form_names_each_bad_field() -> None:
    ok = {"sample_rate_hz": "3200", "window_ms": "1000", "hop_ms": "500", "machine_class": "2",
          "ch_x": "on", "ch_temp": "on"}  # fmt: skip
    values, errors = forms.parse_config(ok)
    assert errors == {}
    assert values == {"sample_rate_hz": 3200, "window_ms": 1000, "hop_ms": 500,
                      "machine_class": 2, "channels": m.CH_X | m.CH_TEMP}  # fmt: skip
    _, errors = forms.parse_config({**ok, "sample_rate_hz": "1000", "window_ms": "",
                                    "machine_class": "7", "ch_x": ""})  # fmt: skip
    assert errors == {
        "sample_rate_hz": "the features are defined at 1600, 3200, 6400 S/s",
        "window_ms": "required",
        "machine_class": "must be from 0 to 3",
        "channels": "turn on at least one axis",
    }
    _, errors = forms.parse_config({**ok, "sample_rate_hz": "1600", "window_ms": "1001"})
    assert errors == {"window_ms": "must be a whole number of samples at 1600 S/s"}


def test_key_form_never_echoes_the_input() -> None:
    key, errors = forms.parse_key({"key": "00" * 15})
    assert key is None and errors == {"key": "a link key is 16 to 32 bytes; this one is 15"}
    key, errors = forms.parse_key({"key": "ab " * 16})
    assert key == b"\xab" * 16 and errors == {}


def test_rule_fields_keep_their_types_and_errors_name_the_field() -> None:
    rules = [{"name": "hot", "enabled": True, "threshold": 3000, "ratio": 0.5,
              "boards": ["mill"]}]  # fmt: skip
    form = {"r0.name": "hot", "r0.threshold": "x", "r0.ratio": "0.75",
            "r0.boards": '["mill", "press"]'}  # fmt: skip
    new, errors = forms.parse_rules(rules, form)
    assert errors == {"0.threshold": "a whole number"}
    assert new[0]["enabled"] is False  # an unticked box
    assert new[0]["ratio"] == 0.75 and new[0]["boards"] == ["mill", "press"]
    toggled, _ = forms.toggle_rule(rules, "0")
    assert toggled[0]["enabled"] is False and rules[0]["enabled"] is True
    assert forms.unplaced_errors(rules, {"0.threshold": "x"}) == "fix the fields marked below"
    assert forms.unplaced_errors(rules, {"rules": "names must be unique"}) == (
        "names must be unique"
    )


def test_flagged_windows_are_reported_by_name_and_keep_their_peak_when_downsampled() -> None:
    rep = m.Report(7, 7000, 3200, (1, 2, 3), (4, 5, 6), (1500, 2900, 4600), 2512,
                   m.ReportFlag.SETTLING | m.ReportFlag.CLIPPED)  # fmt: skip
    d = report_dict("mill", 100.0, rep, 2)
    assert d["flags"] == ["settling", "clipped"] and d["representative"] is False
    assert d["zones"] == ["B", "C", "D"] and d["temperature_c"] == 25.12
    pts = [(float(t), 1.0, 0.0, 0.0, None) for t in range(10)]
    pts[3] = (3.0, 9.0, 0.0, 0.0, 9.0)
    down = downsample(pts, 2)
    assert down == [(4.0, 9.0, 0.0, 0.0, 9.0), (9.0, 1.0, 0.0, 0.0, None)]
