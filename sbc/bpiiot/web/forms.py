"""Form parsing for the device manager: every field checked, every problem named, nothing applied
until the whole form is valid.

Errors are dicts of field name -> message, shown next to the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bpiiot import iso20816
from bpiiot import messages as m

CHANNEL_FIELDS = (("ch_x", m.CH_X), ("ch_y", m.CH_Y), ("ch_z", m.CH_Z), ("ch_temp", m.CH_TEMP))


def _int(form: Mapping[str, str], name: str, lo: int, hi: int, errors: dict[str, str]) -> int:
    raw = form.get(name, "").strip()
    try:
        v = int(raw)
    except ValueError:
        errors[name] = f"a whole number from {lo} to {hi}" if raw else "required"
        return 0
    if not lo <= v <= hi:
        errors[name] = f"must be from {lo} to {hi}"
    return v


def parse_config(form: Mapping[str, str]) -> tuple[dict[str, int], dict[str, str]]:
    """The board settings of a config form, and what is wrong with them."""
    errors: dict[str, str] = {}
    rate = _int(form, "sample_rate_hz", 1, 65535, errors)
    if "sample_rate_hz" not in errors and rate not in iso20816.SUPPORTED_RATES:
        rates = ", ".join(map(str, iso20816.SUPPORTED_RATES))
        errors["sample_rate_hz"] = f"the features are defined at {rates} S/s"
    window = _int(form, "window_ms", 1, 60000, errors)
    hop = _int(form, "hop_ms", 1, 60000, errors)
    klass = _int(form, "machine_class", 0, len(iso20816.CLASS_CODES) - 1, errors)
    channels = sum(bit for name, bit in CHANNEL_FIELDS if form.get(name) == "on")
    if not channels & (m.CH_X | m.CH_Y | m.CH_Z):
        errors["channels"] = "turn on at least one axis"
    if not errors:
        if hop > window:
            errors["hop_ms"] = "the hop cannot be longer than the window"
        for name, ms in (("window_ms", window), ("hop_ms", hop)):
            if (rate * ms) % 1000:
                errors.setdefault(name, f"must be a whole number of samples at {rate} S/s")
    values = {
        "sample_rate_hz": rate,
        "window_ms": window,
        "hop_ms": hop,
        "machine_class": klass,
        "channels": channels,
    }
    return values, errors


def parse_output(form: Mapping[str, str]) -> tuple[int, bool, dict[str, str]]:
    """(pin, level, errors) of an output form."""
    errors: dict[str, str] = {}
    pin = _int(form, "pin", 0, 255, errors)
    value = form.get("value", "")
    if value not in ("high", "low"):
        errors["value"] = "choose high or low"
    return pin, value == "high", errors


def parse_key(form: Mapping[str, str]) -> tuple[bytes | None, dict[str, str]]:
    """A link key typed as hex (16-32 bytes); the error never repeats what was typed."""
    raw = "".join(form.get("key", "").split())
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        return None, {"key": "hex digits only (0-9, a-f), two per byte"}
    if not 16 <= len(key) <= 32:
        return None, {"key": f"a link key is 16 to 32 bytes; this one is {len(key)}"}
    return key, {}


# -- rules ------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def _show(value: Any) -> str:
    kind = _kind(value)
    if kind == "json":
        return json.dumps(value)
    return str(value)


def rule_fields(
    rules: list[dict[str, Any]], form: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Rules as form rows (each field's input kind and shown value; from ``form`` if given)."""
    out = []
    for i, rule in enumerate(rules):
        fields = []
        for name, value in rule.items():
            kind = _kind(value)
            key = f"r{i}.{name}"
            if form is not None:
                shown = "on" if kind == "bool" and form.get(key) == "on" else form.get(key, "")
                checked = form.get(key) == "on"
            else:
                shown, checked = _show(value), bool(value) if kind == "bool" else False
            fields.append(
                {"name": name, "key": key, "kind": kind, "value": shown, "checked": checked}
            )
        out.append(
            {
                "index": i,
                "name": str(rule.get("name", f"rule {i + 1}")),
                "enabled": bool(rule.get("enabled", True)),
                # Every rule can be switched off (`enabled = false` keeps it in the file).
                "can_toggle": isinstance(rule.get("enabled", True), bool),
                "fields": fields,
            }
        )
    return out


def parse_rules(
    rules: list[dict[str, Any]], form: Mapping[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The edited rules (each field parsed as the type it had), and errors by ``"i.field"``."""
    errors: dict[str, str] = {}
    new: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        edited: dict[str, Any] = {}
        for name, old in rule.items():
            key = f"r{i}.{name}"
            kind = _kind(old)
            raw = form.get(key)
            if kind == "bool":
                edited[name] = raw == "on"
                continue
            raw = (raw or "").strip()
            try:
                if kind == "int":
                    edited[name] = int(raw)
                elif kind == "float":
                    edited[name] = float(raw)
                elif kind == "str":
                    edited[name] = raw
                else:
                    edited[name] = json.loads(raw)
            except ValueError:
                errors[f"{i}.{name}"] = {
                    "int": "a whole number",
                    "float": "a number",
                    "json": "a JSON value",
                }[kind]
                edited[name] = old
        new.append(edited)
    return new, errors


def unplaced_errors(rules: list[dict[str, Any]], errors: Mapping[str, str]) -> str:
    """The summary above the rules form: errors with no field of their own are spelled out."""
    fields = {f"{i}.{name}" for i, rule in enumerate(rules) for name in rule}
    loose = [msg if key == "rules" else f"{key}: {msg}" for key, msg in errors.items()
             if key not in fields]  # fmt: skip
    return "; ".join(loose) if loose else "fix the fields marked below"


def toggle_rule(
    rules: list[dict[str, Any]], index: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rules with rule ``index`` enabled or disabled."""
    try:
        i = int(index)
        rule = rules[i]
    except (ValueError, IndexError):
        return rules, {"toggle": f"no rule number {index!r}"}
    new = [dict(r) for r in rules]
    new[i] = {**rule, "enabled": not bool(rule.get("enabled", True))}
    return new, {}
