"""The signal kinds other than "bearing" (sine, sweep, noise, file) for ``SignalSource``.

Loaded only when the configuration asks for one of them, so a board or host that
runs the default bearing signal does not hold their code.
"""

import math

_TWO_PI = 2 * math.pi


def wave(src, t):
    """(x, y, z) in mg of a sine, sweep or noise source at time t (s)."""
    cfg = src.cfg
    kind = src.kind
    if kind == "sine":
        return (_tones(cfg.get("x", ()), t), _tones(cfg.get("y", ()), t),
                _tones(cfg.get("z", ()), t))  # fmt: skip
    if kind == "sweep":
        s = math.sin(_sweep_phase(cfg, t))
        amp = cfg.get("amp", [100, 100, 100])
        return amp[0] * s, amp[1] * s, amp[2] * s
    rms = cfg.get("rms", [100, 100, 100])
    return rms[0] * src._gauss(), rms[1] * src._gauss(), rms[2] * src._gauss()


def _tones(tones, t):
    v = 0.0
    for tone in tones:
        ph = tone[2] if len(tone) > 2 else 0.0
        v += tone[1] * math.sin(_TWO_PI * tone[0] * t + ph)
    return v


def _sweep_phase(c, t):
    # Linear chirp from f0 to f1 over duration_s, repeating.
    f0 = c.get("f0", 10)
    f1 = c.get("f1", 1000)
    d = c.get("duration_s", 10)
    t = t % d
    return _TWO_PI * (f0 * t + (f1 - f0) * t * t / (2 * d))


def next_frame(src):
    """The next 6-byte frame of a file source (looping unless cfg["loop"] is false), or None."""
    f = src._file
    b = src._frame
    if f.readinto(b) < 6:
        if not src.cfg.get("loop", True):
            return None
        f.seek(0)
        if f.readinto(b) < 6:
            return None
    src.n += 1
    return b


def read_file(src, x, y, z, i, n):
    """Replay the next n frames of a file source into x, y, z at i; return how many."""
    for k in range(i, i + n):
        b = next_frame(src)
        if b is None:
            return k - i
        for arr, o in ((x, 0), (y, 2), (z, 4)):
            v = b[o] | (b[o + 1] << 8)
            arr[k] = v - 65536 if v & 0x8000 else v
    return n
