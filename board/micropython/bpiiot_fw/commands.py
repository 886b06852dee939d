"""Command handling: one received chunk in, exactly one ack or nack out (SPEC.md 5.3-5.4).

``handle(app, chunk)`` verifies the frame (refused frames are counted, and nacked where
the spec says so), carries out the command and answers it. A command the board cannot
do raises ``BadValue`` (nack bad_value, nothing changed); any other failure is nacked
``internal`` and logged in a log frame. Keys (set_key, clear_key) and configuration
changes (set_config) are here too. Module functions taking the ``App`` rather than a
class: a class and its bound methods would cost heap on a board.
"""

from micropython import const

from bpiiot_fw import acquire, codec, hal

# Protocol constants (copies of codec's private ones, SPEC.md 5; checked by
# tests/board/test_fw_app.py): private consts are compiled away and cost no RAM.
_T_ACK = const(0x04)
_T_CLEAR_KEY = const(0x45)
_T_CONFIG = const(0x07)
_T_GET_CONFIG = const(0x48)
_T_GET_STATUS = const(0x41)
_T_HELLO_REQUEST = const(0x47)
_T_NACK = const(0x05)
_T_PING = const(0x40)
_T_REBOOT = const(0x46)
_T_SET_CONFIG = const(0x42)
_T_SET_KEY = const(0x44)
_T_SET_OUTPUT = const(0x43)
_T_STATUS = const(0x03)
_E_UNKNOWN_TYPE = const(1)
_E_BAD_VALUE = const(3)
_E_BUSY = const(7)
_E_INTERNAL = const(8)
_LOG_WARNING = const(2)
_LOG_ERROR = const(3)

# The config message's keys 1..5 (SPEC.md 5.3), in wire order.
CONFIG_KEYS = ("sample_rate_hz", "window_ms", "hop_ms", "channels", "machine_class")


class BadValue(Exception):
    """A well-formed command asks for something this board cannot do (nack 3)."""


def handle(app, chunk):
    """Verify one received chunk and carry out the command it holds."""
    try:
        type_, _session, seq, _auth, obj = app.ver.verify(chunk)
    except codec.FrameError as exc:
        app.frames_rejected += 1
        code = codec.NACK_FOR.get(exc.reason)
        if code is not None and exc.seq is not None:
            nack(app, exc.seq, code, exc.reason)
        return
    try:
        command(app, type_, seq, obj)
    except SystemExit:
        raise
    except BadValue as exc:
        nack(app, seq, _E_BAD_VALUE, str(exc))
    except Exception as exc:
        hal.log_exception(exc, "command 0x%02x" % type_)
        nack(app, seq, _E_INTERNAL, hal.exception_text(exc)[:64])
        app.log(_LOG_ERROR, "command 0x%02x failed: %s" % (type_, hal.exception_text(exc)))


def nack(app, seq, code, detail):
    """Refuse the command with sequence number seq."""
    app.send(_T_NACK, [seq & 0xFFFFFFFF, code, detail[:64]])


def command(app, type_, seq, obj):
    """Carry out one verified command (payload already checked against its schema)."""
    if type_ == _T_PING:
        pass
    elif type_ == _T_HELLO_REQUEST:
        app.hello()
        if app.problem:
            app.logs.append((_LOG_WARNING, app.problem))
    elif type_ == _T_GET_STATUS:
        app.send(_T_STATUS, status_payload(app))
    elif type_ == _T_GET_CONFIG:
        app.send(_T_CONFIG, config_payload(app))
    elif type_ == _T_SET_CONFIG:
        set_config(app, obj)
        app.send(_T_CONFIG, config_payload(app))
    elif type_ == _T_SET_OUTPUT:
        if not app.outputs.set(obj[0], obj[1]):
            raise BadValue("pin %d is not an output" % obj[0])
    elif type_ == _T_SET_KEY or type_ == _T_CLEAR_KEY:
        # Acked by app.flush once the key is in the file, so an ack means the key
        # survives a power cut (SPEC.md 5.3); until then the old key stays in use both
        # ways (the ack goes out under it), and another key change or a reboot is busy.
        if app.key_ack is not None:
            nack(app, seq, _E_BUSY, "writing the last key")
            return
        key = obj[0] if type_ == _T_SET_KEY else None
        app.key_ack = (seq, key, app.store.cfg.get("key"))
        app.store.update(key=key.hex() if key else None)
        return
    elif type_ == _T_REBOOT:
        if app.key_ack is not None:
            nack(app, seq, _E_BUSY, "writing the last key")
            return
        app.send(_T_ACK, [seq])
        acquire.stop(app)
        app.flush()
        hal.reboot()
        return
    else:  # the verifier only lets command types through; keep the contract anyway
        nack(app, seq, _E_UNKNOWN_TYPE, "type")
        return
    app.send(_T_ACK, [seq])


def config_payload(app):
    """The config message's map."""
    cfg = app.store.cfg
    return {i + 1: cfg[k] for i, k in enumerate(CONFIG_KEYS)}


def status_payload(app):
    """The status message's array."""
    sampler = app.sampler
    overruns = app.overruns_base + (sampler.overruns if sampler is not None else 0)
    return [
        app.frames_sent & 0xFFFFFFFF,
        app.frames_rejected & 0xFFFFFFFF,
        overruns & 0xFFFFFFFF,
        hal.mem_free(),
        app.load.permille,
        app.clock.ms() & 0xFFFFFFFF,
        app.windows & 0xFFFFFFFF,
    ]


def set_key(app, key):
    """Use key (bytes, or None for no MAC) from the next frame on (already saved)."""
    app.enc.set_key(key)
    app.ver.set_key(key)
    app.problem = None


def set_config(app, obj):
    """Apply a set_config map {1..5: value}; BadValue (nothing changed) if impossible."""
    cfg = app.store.cfg
    new = {k: cfg[k] for k in CONFIG_KEYS}
    for i, value in obj.items():
        new[CONFIG_KEYS[i - 1]] = value
    try:
        acquire.plan(new)
    except ValueError as exc:
        raise BadValue(str(exc)[:64])
    if app.accel is not None and new["sample_rate_hz"] != cfg["sample_rate_hz"]:
        try:
            # Sensors refuse a rate before changing anything (ValueError).
            app.accel.set_rate(new["sample_rate_hz"])
        except ValueError as exc:
            raise BadValue(str(exc)[:64])
    if new == {k: cfg[k] for k in CONFIG_KEYS}:
        return
    restart = any(new[k] != cfg[k] for k in CONFIG_KEYS if k != "channels")
    app.store.update(**new)
    app.problem = None
    if restart:
        acquire.start(app)
