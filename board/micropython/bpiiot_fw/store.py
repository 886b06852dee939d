"""Persistent configuration: one JSON file on the board's filesystem.

Holds the board id, MAC key, acquisition settings, sensor configuration, outputs
and the boot counter. Every write goes to a temporary file that is then renamed
over the old one, so a power cut leaves either the old or the new file, never half
of one. A missing or corrupt file falls back to the defaults; :meth:`Store.load`
returns why, and the app sends it as a log frame.
"""

import json
import os

PATH = "bpiiot.json"

DEFAULTS = {
    "board_id": "bpiiot-mp",
    "key": None,  # hex of 16-32 bytes, or None
    "sample_rate_hz": 3200,  # per axis; the DSP supports 1600, 3200 and 6400 (DSP.md)
    "window_ms": 1000,
    "hop_ms": 1000,
    "channels": 15,
    "machine_class": 2,
    "sensor": {"accel": "signal", "signal": {"kind": "bearing", "seed": 1}},
    "outputs": [0, 1, 2, 3],
    "alarm_pin": None,  # an output driven high while the zone is D
    "wdt_ms": 0,  # 0: no watchdog (a started WDT cannot be stopped for flashing)
    "uart": None,  # {"id": 0, "baudrate": 115200, ...} to use a UART, None: console
    "boot": 0,
}

# key: (type, lo, hi) for the values a hand-edited or damaged file may hold.
_INTS = {
    "sample_rate_hz": (1, 65535),
    "window_ms": (1, 60000),
    "hop_ms": (1, 60000),
    "channels": (0, 15),
    "machine_class": (0, 3),
    "wdt_ms": (0, 3600000),
    "boot": (0, 0xFFFFFFFF),
}


def _id_ok(s):
    if type(s) is not str or not 1 <= len(s) <= 32:
        return False
    for c in s:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "._-"):
            return False
    return True


def key_bytes(cfg):
    """The MAC key of cfg as bytes, or None."""
    k = cfg.get("key")
    return bytes.fromhex(k) if k else None


def validate(cfg):
    """Return cfg merged over the defaults, or raise ValueError naming the bad field."""
    out = dict(DEFAULTS)
    if type(cfg) is not dict:
        raise ValueError("not a JSON object")
    for k, v in cfg.items():
        if k in out:
            out[k] = v
    for k, (lo, hi) in _INTS.items():
        v = out[k]
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError("bad " + k)
    if not _id_ok(out["board_id"]):
        raise ValueError("bad board_id")
    key = out["key"]
    if key is not None:
        if type(key) is not str:
            raise ValueError("bad key")
        try:
            kb = bytes.fromhex(key)
        except Exception:
            raise ValueError("bad key")
        if not 16 <= len(kb) <= 32:
            raise ValueError("bad key")
    if type(out["sensor"]) is not dict:
        raise ValueError("bad sensor")
    pins = out["outputs"]
    if type(pins) is not list or any(type(p) is not int or not 0 <= p <= 255 for p in pins):
        raise ValueError("bad outputs")
    if out["alarm_pin"] is not None and out["alarm_pin"] not in pins:
        raise ValueError("bad alarm_pin")
    return out


class Store:
    """The configuration file at path; ``cfg`` is the current, validated dict."""

    def __init__(self, path=PATH):
        self.path = path
        self.cfg = dict(DEFAULTS)

    def load(self):
        """Read the file into cfg; return None, or the reason the defaults are used."""
        try:
            with open(self.path) as f:
                raw = f.read()
        except OSError:
            self.cfg = dict(DEFAULTS)
            return None  # first boot: the defaults are the configuration
        try:
            self.cfg = validate(json.loads(raw))
            return None
        except Exception as exc:
            # Keep the boot counter if it is still readable, so the session still grows.
            boot = 0
            try:
                b = json.loads(raw).get("boot")
                if type(b) is int and 0 <= b <= 0xFFFFFFFF:
                    boot = b
            except Exception:
                pass
            self.cfg = dict(DEFAULTS)
            self.cfg["boot"] = boot
            return "config %s corrupt (%s): defaults used" % (self.path, exc)

    def save(self):
        """Write cfg atomically (temporary file, then rename)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(self.cfg))
        try:
            os.rename(tmp, self.path)
        except OSError:
            # Some filesystems refuse to rename over an existing file.
            os.remove(self.path)
            os.rename(tmp, self.path)

    def boot(self):
        """Count this boot, persist it and return the new boot counter."""
        self.cfg["boot"] = (self.cfg.get("boot", 0) + 1) & 0xFFFFFFFF
        self.save()
        return self.cfg["boot"]

    def update(self, **changes):
        """Apply changes to cfg and persist them."""
        for k, v in changes.items():
            self.cfg[k] = v
        self.save()
