"""Synthetic or recorded signals that stand in for an accelerometer and a thermometer.

The host's drivers (Unix port, demos, tests), also usable on a board without
sensors. ``SignalSource`` config (``cfg["signal"]``; all amplitudes in mg,
frequencies in Hz; ``dc`` adds a constant per axis, default [0, 0, 1000] i.e.
gravity on z)::

    {"kind": "sine", "x": [[f, amp], [f, amp, phase_rad]], "y": [...], "z": [...]}
    {"kind": "sweep", "f0": 10, "f1": 1000, "duration_s": 10, "amp": [100, 100, 100]}
    {"kind": "noise", "rms": [100, 100, 100], "seed": 1}
    {"kind": "bearing", "seed": 1, "rpm": 1480, "life_s": 600, "bpfo": 3.58}
    {"kind": "file", "path": "rec.bin", "loop": true}   # int16 LE frames x, y, z

Signals are computed at the sample instants (an ideal sampler: a tone above the
Nyquist frequency aliases; the ADXL345's internal ODR/2 low-pass is not modelled, see
protocol/DSP.md). Values are rounded to the nearest mg and clipped to int16. The
bearing degrades over ``life_s`` seconds (health h = age / life_s, growth h^2):
broadband noise rises from 20 mg to 300 mg RMS, outer-race defect tones (BPFO and two
harmonics, amplitude-modulated by the shaft) grow from 0 to 400 mg, the 1x shaft tone
stays at 15 mg (about 0.7 mm/s: zone A when new, zone D at end of life for group 2
rigid); ``age_s`` starts it later in life.

``SignalTemp`` config: ``{"cdeg": 3500, "rise_cdeg": 2000, "life_s": 600}``.
"""

import math
import time


def _clip16(v):
    # Each driver module keeps its own copy so the factory module (sensors) can be
    # unloaded once the driver is built (a function holds its module's globals alive).
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


_TWO_PI = 2 * math.pi


class SignalSource:
    """Synthetic or recorded three-axis signal that stands in for an accelerometer."""

    paced = False
    RATES = (800, 1600, 3200, 6400)
    #: Samples are clipped to int16: a window reaching it is flagged CLIPPED.
    limit_mg = 32767

    def __init__(self, cfg, rate_hz=3200):
        self.cfg = cfg
        self.kind = cfg.get("kind", "sine")
        if self.kind not in ("sine", "sweep", "noise", "bearing", "file"):
            raise ValueError("unknown signal kind %r" % (self.kind,))
        self.dc = cfg.get("dc", [0, 0, 1000])
        #: Index of the next sample (the signal's clock).
        self.n = 0
        self._rng = cfg.get("seed", 1) & 0xFFFFFFFF or 1
        self._file = None
        self.set_rate(rate_hz)
        # The other kinds' code lives apart: not loaded for the default bearing signal.
        self._more = None
        if self.kind != "bearing":
            from bpiiot_fw import sensors_signal_more

            self._more = sensors_signal_more
        if self.kind == "file":
            self._file = open(cfg["path"], "rb")
            self._frame = bytearray(6)

    def set_rate(self, rate_hz):
        """Set the sample rate (ValueError unless one of RATES)."""
        if rate_hz not in self.RATES:
            raise ValueError("signal source: unsupported rate %r" % (rate_hz,))
        self.rate_hz = rate_hz

    def start(self):
        """Nothing to start; present for the interface."""

    def stop(self):
        """Close a recorded file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def skip(self, n):
        """Advance the signal's clock by n samples without producing them."""
        if self.kind == "file" and self._file is not None:
            for _ in range(n):
                self._more.next_frame(self)
        elif self.kind in ("noise", "bearing"):
            # Keep the random stream aligned: 3 (noise) or 4 (bearing) draws of
            # _gauss per sample, four _rand each.
            for _ in range(n * (12 if self.kind == "noise" else 16)):
                self._rand()
            self.n += n
        else:
            self.n += n

    def _rand(self):
        # xorshift32: deterministic and identical on every port.
        r = self._rng
        r ^= (r << 13) & 0xFFFFFFFF
        r ^= r >> 17
        r ^= (r << 5) & 0xFFFFFFFF
        self._rng = r
        return r

    def _gauss(self):
        # Sum of four uniforms, scaled to unit variance (variance of U(0,1) is 1/12).
        s = self._rand() + self._rand() + self._rand() + self._rand()
        return (s / 4294967296.0 - 2.0) * 1.7320508075688772

    def read(self, x, y, z, i, n):
        """Produce the next n samples into x, y, z at index i; return n (0 at end of file)."""
        if self.kind == "file":
            return self._more.read_file(self, x, y, z, i, n)
        fs = self.rate_hz
        dc = self.dc
        wave = None if self._more is None else self._more.wave
        for k in range(i, i + n):
            t = self.n / fs
            if wave is None:
                vx, vy, vz = self._bearing(t)
            else:
                vx, vy, vz = wave(self, t)
            x[k] = _clip16(int(math.floor(vx + dc[0] + 0.5)))
            y[k] = _clip16(int(math.floor(vy + dc[1] + 0.5)))
            z[k] = _clip16(int(math.floor(vz + dc[2] + 0.5)))
            self.n += 1
        return n

    def bearing_health(self, t):
        """Degradation 0..1 of the bearing signal at time t (s) since start."""
        life = self.cfg.get("life_s", 600)
        h = (t + self.cfg.get("age_s", 0)) / life
        return 1.0 if h > 1.0 else h

    def _bearing(self, t):
        c = self.cfg
        fr = c.get("rpm", 1480) / 60.0
        bpfo = c.get("bpfo", 3.58) * fr
        d = self.bearing_health(t)
        noise = 20.0 + 280.0 * d * d
        tone = 400.0 * d * d
        shaft = 15.0 * math.sin(_TWO_PI * fr * t)
        mod = 1.0 + 0.5 * math.sin(_TWO_PI * fr * t)
        defect = 0.0
        for h in (1, 2, 3):
            defect += tone / h * math.sin(_TWO_PI * h * bpfo * t) * mod
        n1 = self._gauss()
        n2 = self._gauss()
        n3 = self._gauss()
        self._gauss()  # keeps four draws per axis triple, as skip() assumes
        return (shaft + defect + noise * n1, 0.7 * shaft + 0.5 * defect + noise * n2,
                0.3 * defect + noise * n3)  # fmt: skip


class SignalTemp:
    """Host stand-in: cdeg, rising by rise_cdeg over life_s seconds of ticks_ms."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._t0 = time.ticks_ms()

    def read_cdeg(self):
        """Temperature in centi-degrees C."""
        c = self.cfg
        life_ms = c.get("life_s", 600) * 1000
        dt = time.ticks_diff(time.ticks_ms(), self._t0)
        if dt > life_ms:
            dt = life_ms
        return c.get("cdeg", 3500) + c.get("rise_cdeg", 0) * dt // life_ms
