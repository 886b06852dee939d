"""Reports: one finished window's features -> a report frame (SPEC.md 5.2) and the alarm.

Saturation and clipping are decided here, per axis actually sent: a value that does
not fit the wire's uint16 is sent as 65535 with its SATURATED flag, never as a silent
clip. A flagged window is not representative, so it leaves the alarm output alone.
"""

from micropython import const

_T_REPORT = const(0x02)
# Report flag bits (SPEC.md 5.2) decided here; SETTLING, OVERRUN and SENSOR_FAULT come
# through dsp.Features from the sampler.
_F_CLIPPED = const(0x08)
_F_VEL_SATURATED = const(0x10)
_F_ACC_SATURATED = const(0x20)


def send(app, result):
    """Send the report of result (what ``dsp.Features.feed`` returned) and set the alarm."""
    cfg = app.store.cfg
    ch = cfg["channels"]
    app.windows += 1
    rms, peak, vel, zone, flags = result
    flags &= ~_F_VEL_SATURATED
    out = [app.windows & 0xFFFFFFFF, app.clock.ms() & 0xFFFFFFFF, app.features.window_n]
    limit = getattr(app.accel, "limit_mg", 32767)
    for j, arr in enumerate((rms, peak, vel)):
        for i in range(3):
            v = arr[i] if ch & (1 << i) else 0
            if v > 65535:  # uint16 on the wire: never a silent clip
                v = 65535
                flags |= _F_VEL_SATURATED if j == 2 else _F_ACC_SATURATED
            elif j == 1 and v >= limit:
                flags |= _F_CLIPPED
            out.append(v)
    t = None
    temp = app.temp
    if ch & 8 and temp is not None:
        try:
            t = temp.read_cdeg()
            t = -27315 if t < -27315 else (100000 if t > 100000 else t)
        except Exception:
            t = None
    out.append(t)
    if flags:
        out.append(flags)  # SPEC.md 5.2: the 14th item only when non-zero
    app.send(_T_REPORT, out)
    pin = cfg.get("alarm_pin")
    if pin is not None and not flags:
        # A flagged window is not representative: the alarm keeps its state.
        app.outputs.set(pin, 1 if zone == 3 else 0)
