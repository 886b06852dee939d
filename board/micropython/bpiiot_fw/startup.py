"""Boot: what the app does once at power-up; unloaded afterwards (``hal.unload``), so
its code is not resident while the DSP and the link run.

Reads and checks the configuration file (none: the defaults are the configuration; a
corrupt one: the defaults, and a log frame says why), counts the boot (boot counter ->
session), and builds the link: encoder and verifier under the saved key, deframer,
stream (the console, or a configured UART), outputs and watchdog.
"""

import json

from micropython import const

from bpiiot_fw import codec, hal
from bpiiot_fw.store import DEFAULTS, key_bytes

_LOG_WARNING = const(2)
_LOG_ERROR = const(3)


def start(app, stream, store):
    """Boot app: configuration, boot counter, link objects and counters."""
    app.store = store
    problem = load(store)
    cfg = store.cfg
    app.logs = []  # log frames to send once the link is up
    # Repeated after every hello request until the file is rewritten: the boot-time
    # log frame is usually lost (pyserial flushes its input when it opens).
    app.problem = problem
    if problem:
        app.logs.append((_LOG_WARNING, problem))
    cfg["boot"] = (cfg.get("boot", 0) + 1) & 0xFFFFFFFF
    app.boot = cfg["boot"]
    try:
        store.save()
    except OSError as exc:
        # A read-only or full filesystem: run anyway, the session cannot persist.
        app.logs.append((_LOG_ERROR, "boot counter not saved: " + hal.exception_text(exc)))
    app.session = app.boot & 0xFFFF
    key = key_bytes(cfg)
    app.enc = codec.Encoder(False, key, app.session)
    app.ver = codec.Verifier(True, key, app.session)
    app.deframer = codec.Deframer()
    if stream is None:
        uart = None
        ucfg = cfg.get("uart")
        if ucfg and not hal.UNIX:
            from bpiiot_fw import hal_board

            uart = hal_board.uart(ucfg)
        stream = hal.Stream(uart)
    app.stream = stream
    app.outputs = hal.Outputs(cfg["outputs"])
    app.wdt = hal.Watchdog(cfg.get("wdt_ms", 0))
    app.rx = bytearray(256)
    app.frames_sent = 0
    app.frames_rejected = 0
    app.windows = 0
    app.overruns_base = 0
    app.sampler = None
    app.features = None
    app.temp = None
    app.accel = None
    app._escape_at = None
    app.key_ack = None  # (seq, key, old key hex) of a key change not yet in the file


def load(store):
    """Read the store's file into its cfg; return None, or the reason the defaults are used."""
    try:
        with open(store.path) as f:
            raw = f.read()
    except OSError:
        store.cfg = dict(DEFAULTS)
        return None  # first boot: the defaults are the configuration
    try:
        store.cfg = validate(json.loads(raw))
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
        store.cfg = dict(DEFAULTS)
        store.cfg["boot"] = boot
        return "config %s corrupt (%s): defaults used" % (store.path, exc)


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
