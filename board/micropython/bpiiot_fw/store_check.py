"""Checks of a configuration read from the file: loaded by ``Store.load`` only.

Used once per boot, then unloaded (``platform.unload``), so its code and names are
not resident while the DSP and the link run.
"""

from bpiiot_fw.store import DEFAULTS

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
