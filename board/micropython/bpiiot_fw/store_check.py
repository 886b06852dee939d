"""Checks of a configuration read from the file: loaded by ``Store.load`` only.

Used once per boot, then unloaded (``hal.unload``), so its code and names are
not resident while the DSP and the link run.
"""

from bpiiot_fw.store import DEFAULTS


def validate(cfg):
    """Return cfg merged over the defaults, or raise ValueError naming the bad field."""
    out = dict(DEFAULTS)
    if type(cfg) is not dict:
        raise ValueError("not a JSON object")
    for k, v in cfg.items():
        if k in out:
            out[k] = v
    # key: (lo, hi) of the integers a hand-edited or damaged file may hold.
    ints = {
        "sample_rate_hz": (1, 65535),
        "window_ms": (1, 60000),
        "hop_ms": (1, 60000),
        "channels": (0, 15),
        "machine_class": (0, 3),
        "wdt_ms": (0, 3600000),
        "boot": (0, 0xFFFFFFFF),
    }
    for k, (lo, hi) in ints.items():
        v = out[k]
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError("bad " + k)
    # board_id: 1-32 letters, digits, ".", "_" or "-". Checked as bytes: iterating a
    # str makes each character an interned string, which costs RAM for good.
    s = out["board_id"]
    if type(s) is not str or not 1 <= len(s) <= 32:
        raise ValueError("bad board_id")
    for c in s.encode():
        if not (0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A or 0x30 <= c <= 0x39 or c in b"._-"):
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
