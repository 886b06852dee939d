"""Accelerometer and temperature drivers behind one small interface.

Sample scale (every driver): int16, 1 LSB = 1 mg (1 mg = 9.80665e-3 m/s^2), so the
range is +-32.767 g. Sensor drivers rescale their raw counts to it.

Accelerometer interface (what ``acquire.Sampler`` uses):

- ``set_rate(rate_hz)``: choose the output rate; ValueError if unsupported.
- ``start()`` / ``stop()``.
- ``read(x, y, z, i, n) -> int``: write up to n samples at x[i], y[i], z[i] onward
  (``array('h')``) and return how many were written. Allocation-free.
- ``paced``: True if the sensor clocks its own samples (ADXL345 FIFO), so the caller
  only drains it; False if every ``read`` call takes a sample now (analog ADC) or
  produces the next ones on demand (``SignalSource``), so the caller paces.

Temperature interface: ``read_cdeg() -> int``, centi-degrees Celsius.

Factories, from the board's JSON config::

    {"accel": "signal", "signal": {...}}                      # host / Unix port
    {"accel": "adxl345-spi", "spi": 1, "cs": 17, "baud": 5000000}
    {"accel": "adxl345-i2c", "i2c": 0, "addr": 83, "freq": 400000}
    {"accel": "analog", "pins": [26, 27, 28], "zero_mv": [1650, 1650, 1650],
     "mv_per_g": 330, "vref_mv": 3300}
    {"temp": "mcu"} | {"temp": "tmp36", "pin": 26, "vref_mv": 3300}
    {"temp": "signal", "cdeg": 3500, "rise_cdeg": 2000, "life_s": 600}

ODR limits of the ADXL345: over I2C at 400 kHz a 6-byte burst plus addressing takes
about 0.2 ms, so reads cap the usable rate near 800 S/s; SPI (up to 5 MHz) is needed
for 1600 and 3200 S/s. The ADXL345 tops out at 3200 S/s, so 6400 S/s is only
available from ``SignalSource`` (and the analog driver if the ADC keeps up).

``SignalSource`` config (``cfg["signal"]``; all amplitudes in mg, frequencies in Hz;
``dc`` adds a constant per axis, default [0, 0, 1000] i.e. gravity on z)::

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

``machine`` is imported only inside the hardware drivers, so the host path never
touches hardware.
"""

import math
from array import array

_TWO_PI = 2 * math.pi


def _clip16(v):
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


class SignalSource:
    """Synthetic or recorded three-axis signal that stands in for an accelerometer."""

    paced = False
    RATES = (800, 1600, 3200, 6400)

    def __init__(self, cfg, rate_hz=3200):
        self.cfg = cfg
        self.kind = cfg.get("kind", "sine")
        if self.kind not in ("sine", "sweep", "noise", "bearing", "file"):
            raise ValueError("unknown signal kind %r" % (self.kind,))
        self.dc = cfg.get("dc", [0, 0, 1000])
        #: Index of the next sample (the signal's clock).
        self.n = 0
        self._seed = cfg.get("seed", 1) & 0xFFFFFFFF or 1
        self._rng = self._seed
        self._file = None
        self.set_rate(rate_hz)
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
                self._next_frame()
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

    def _next_frame(self):
        f = self._file
        if f.readinto(self._frame) < 6:
            if not self.cfg.get("loop", True):
                return None
            f.seek(0)
            if f.readinto(self._frame) < 6:
                return None
        b = self._frame
        self.n += 1
        return b

    def read(self, x, y, z, i, n):
        """Produce the next n samples into x, y, z at index i; return n (0 at end of file)."""
        fs = self.rate_hz
        kind = self.kind
        dc = self.dc
        if kind == "file":
            for k in range(i, i + n):
                b = self._next_frame()
                if b is None:
                    return k - i
                for arr, o in ((x, 0), (y, 2), (z, 4)):
                    v = b[o] | (b[o + 1] << 8)
                    arr[k] = v - 65536 if v & 0x8000 else v
            return n
        for k in range(i, i + n):
            t = self.n / fs
            if kind == "sine":
                vx = self._tones(self.cfg.get("x", ()), t)
                vy = self._tones(self.cfg.get("y", ()), t)
                vz = self._tones(self.cfg.get("z", ()), t)
            elif kind == "sweep":
                ph = self._sweep_phase(t)
                amp = self.cfg.get("amp", [100, 100, 100])
                s = math.sin(ph)
                vx, vy, vz = amp[0] * s, amp[1] * s, amp[2] * s
            elif kind == "noise":
                rms = self.cfg.get("rms", [100, 100, 100])
                vx = rms[0] * self._gauss()
                vy = rms[1] * self._gauss()
                vz = rms[2] * self._gauss()
            else:
                vx, vy, vz = self._bearing(t)
            x[k] = _clip16(int(math.floor(vx + dc[0] + 0.5)))
            y[k] = _clip16(int(math.floor(vy + dc[1] + 0.5)))
            z[k] = _clip16(int(math.floor(vz + dc[2] + 0.5)))
            self.n += 1
        return n

    @staticmethod
    def _tones(tones, t):
        v = 0.0
        for tone in tones:
            ph = tone[2] if len(tone) > 2 else 0.0
            v += tone[1] * math.sin(_TWO_PI * tone[0] * t + ph)
        return v

    def _sweep_phase(self, t):
        # Linear chirp from f0 to f1 over duration_s, repeating.
        c = self.cfg
        f0 = c.get("f0", 10)
        f1 = c.get("f1", 1000)
        d = c.get("duration_s", 10)
        t = t % d
        return _TWO_PI * (f0 * t + (f1 - f0) * t * t / (2 * d))

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


class ADXL345:
    """ADXL345 over SPI or I2C: full resolution, +-16 g, FIFO in stream mode.

    Full resolution keeps 3.9 mg/LSB (256 LSB/g) at every range; ``read`` rescales
    to 1 mg and drains the 32-entry FIFO with one 6-byte burst per entry. At
    3200 S/s the FIFO fills in 10 ms: drain it at least every 5 ms.
    """

    paced = True
    # BW_RATE codes. I2C at 400 kHz cannot sustain more than about 800 S/s.
    _RATE_CODES = {100: 0x0A, 200: 0x0B, 400: 0x0C, 800: 0x0D, 1600: 0x0E, 3200: 0x0F}
    _DEVID = 0x00
    _BW_RATE = 0x2C
    _POWER_CTL = 0x2D
    _DATA_FORMAT = 0x31
    _DATAX0 = 0x32
    _FIFO_CTL = 0x38
    _FIFO_STATUS = 0x39

    def __init__(self, cfg, bus="spi"):
        import machine  # hardware only: never imported on the host path

        self.bus = bus
        self.rate_hz = 0
        #: FIFO overflows seen (32 entries found: samples may have been lost).
        self.fifo_full = 0
        self._rx = bytearray(7)
        self._tx = bytearray(7)
        # Views made once: read() runs in the timer callback and must not allocate.
        self._rx2 = memoryview(self._rx)[:2]
        self._rx6 = memoryview(self._rx)[:6]
        self._tx2 = memoryview(self._tx)[:2]
        self._one = bytearray(1)
        if bus == "spi":
            # SPI mode 3, at most 5 MHz.
            self._spi = machine.SPI(cfg.get("spi", 1), baudrate=cfg.get("baud", 5000000),
                                    polarity=1, phase=1)  # fmt: skip
            self._cs = machine.Pin(cfg["cs"], machine.Pin.OUT, value=1)
        else:
            self._i2c = machine.I2C(cfg.get("i2c", 0), freq=cfg.get("freq", 400000))
            self._addr = cfg.get("addr", 0x53)
        if self._read_reg(self._DEVID) != 0xE5:
            raise OSError("ADXL345 not found (DEVID != 0xE5)")
        self._write_reg(self._POWER_CTL, 0x00)
        # FULL_RES (bit 3) and +-16 g (range 3); right-justified, 4-wire SPI.
        self._write_reg(self._DATA_FORMAT, 0x0B)

    def _write_reg(self, reg, val):
        if self.bus == "spi":
            self._tx[0] = reg
            self._tx[1] = val
            self._cs(0)
            self._spi.write(self._tx2)
            self._cs(1)
        else:
            self._one[0] = val
            self._i2c.writeto_mem(self._addr, reg, self._one)

    def _read_reg(self, reg):
        if self.bus == "spi":
            self._tx[0] = 0x80 | reg
            self._cs(0)
            self._spi.write_readinto(self._tx2, self._rx2)
            self._cs(1)
            return self._rx[1]
        self._i2c.readfrom_mem_into(self._addr, reg, self._one)
        return self._one[0]

    def set_rate(self, rate_hz):
        """Set the output data rate (ValueError if the part or the bus cannot do it)."""
        code = self._RATE_CODES.get(rate_hz)
        if code is None:
            raise ValueError("ADXL345: unsupported rate %r" % (rate_hz,))
        if self.bus == "i2c" and rate_hz > 800:
            raise ValueError("ADXL345 over I2C: 800 S/s at most; use SPI for %d" % rate_hz)
        self._write_reg(self._BW_RATE, code)
        self.rate_hz = rate_hz

    def start(self):
        """Stream mode FIFO, then measurement mode."""
        self._write_reg(self._FIFO_CTL, 0x80 | 16)
        self._write_reg(self._POWER_CTL, 0x08)

    def stop(self):
        """Standby (measurement off)."""
        self._write_reg(self._POWER_CTL, 0x00)

    def read(self, x, y, z, i, n):
        """Drain up to n FIFO entries into x, y, z at index i (mg); return the count."""
        avail = self._read_reg(self._FIFO_STATUS) & 0x3F
        if avail >= 32:
            self.fifo_full += 1
        if avail > n:
            avail = n
        rx = self._rx
        for k in range(i, i + avail):
            if self.bus == "spi":
                # Multi-byte read (0x40) of DATAX0..DATAZ1 pops one FIFO entry.
                self._tx[0] = 0xC0 | self._DATAX0
                self._cs(0)
                self._spi.write_readinto(self._tx, rx)
                self._cs(1)
                o = 1
            else:
                self._i2c.readfrom_mem_into(self._addr, self._DATAX0, self._rx6)
                o = 0
            # 3.90625 mg/LSB = 1000/256, rounded; unrolled so nothing is allocated.
            v = rx[o] | (rx[o + 1] << 8)
            x[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
            v = rx[o + 2] | (rx[o + 3] << 8)
            y[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
            v = rx[o + 4] | (rx[o + 5] << 8)
            z[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
        return avail


class AnalogAccel:
    """Ratiometric analog accelerometer (ADXL335 style) on three ADC pins.

    mg = (mV - zero_mV) * 1000 / (mV per g). One ``read`` takes one sample now; the
    caller's timer paces it. Integer arithmetic only (65535 * 3300 < 2^30).
    """

    paced = False

    def __init__(self, cfg):
        import machine  # hardware only

        self._adc = [machine.ADC(machine.Pin(p)) for p in cfg["pins"]]
        z = cfg.get("zero_mv", 1650)
        self._zero = z if isinstance(z, list) else [z, z, z]
        self._mvg = cfg.get("mv_per_g", 330)
        self._vref = cfg.get("vref_mv", 3300)
        self.rate_hz = 0

    def set_rate(self, rate_hz):
        """Accept rates the timer can pace (up to 6400 S/s; the MCU may not keep up)."""
        if rate_hz not in (100, 200, 400, 800, 1600, 3200, 6400):
            raise ValueError("analog accel: unsupported rate %r" % (rate_hz,))
        self.rate_hz = rate_hz

    def start(self):
        """Nothing to start."""

    def stop(self):
        """Nothing to stop."""

    def read(self, x, y, z, i, n):
        """Take one sample now (n >= 1) into index i; return 1."""
        if n < 1:
            return 0
        a = self._adc
        zr = self._zero
        vref = self._vref
        mvg = self._mvg
        x[i] = _clip16((((a[0].read_u16() * vref) >> 16) - zr[0]) * 1000 // mvg)
        y[i] = _clip16((((a[1].read_u16() * vref) >> 16) - zr[1]) * 1000 // mvg)
        z[i] = _clip16((((a[2].read_u16() * vref) >> 16) - zr[2]) * 1000 // mvg)
        return 1


class McuTemp:
    """The MCU's internal temperature sensor (RP2040 ADC 4, ESP32, STM32)."""

    def __init__(self, cfg=None):
        import sys

        self._port = sys.platform
        if self._port == "rp2":
            import machine

            self._adc = machine.ADC(4)
        elif self._port == "esp32":
            import esp32

            self._esp32 = esp32
        elif self._port in ("pyboard", "stm32"):
            import pyb

            self._adcall = pyb.ADCAll(12, 0x70000)
        else:
            raise ValueError("no MCU temperature sensor known on %r" % self._port)

    def read_cdeg(self):
        """Temperature in centi-degrees C (internal sensors are +-2..5 C accurate)."""
        if self._port == "rp2":
            # RP2040 datasheet: T = 27 - (V - 0.706) / 0.001721, V = raw * 3.3 / 65535.
            uv = self._adc.read_u16() * 3300000 // 65535
            return 2700 - (uv - 706000) * 100 // 1721
        if self._port == "esp32":
            if hasattr(self._esp32, "mcu_temperature"):
                return int(self._esp32.mcu_temperature() * 100)
            return (self._esp32.raw_temperature() - 32) * 500 // 9
        return int(self._adcall.read_core_temp() * 100)


class TMP36:
    """TMP36 analog sensor: 500 mV at 0 C, 10 mV per C."""

    def __init__(self, cfg):
        import machine  # hardware only

        self._adc = machine.ADC(machine.Pin(cfg["pin"]))
        self._vref = cfg.get("vref_mv", 3300)

    def read_cdeg(self):
        """Temperature in centi-degrees C."""
        mv = self._adc.read_u16() * self._vref // 65535
        return (mv - 500) * 10


class SignalTemp:
    """Host stand-in: cdeg, rising by rise_cdeg over life_s seconds of ticks_ms."""

    def __init__(self, cfg):
        import time

        self._time = time
        self._t0 = time.ticks_ms()
        self._c = cfg.get("cdeg", 3500)
        self._rise = cfg.get("rise_cdeg", 0)
        self._life_ms = cfg.get("life_s", 600) * 1000

    def read_cdeg(self):
        """Temperature in centi-degrees C."""
        dt = self._time.ticks_diff(self._time.ticks_ms(), self._t0)
        if dt > self._life_ms:
            dt = self._life_ms
        return self._c + self._rise * dt // self._life_ms


def make_accel(cfg, rate_hz=3200):
    """Build the accelerometer named by cfg["accel"] (ValueError if unknown)."""
    kind = cfg.get("accel", "signal")
    if kind == "signal":
        return SignalSource(cfg.get("signal", {}), rate_hz)
    if kind == "adxl345-spi":
        return ADXL345(cfg, "spi")
    if kind == "adxl345-i2c":
        return ADXL345(cfg, "i2c")
    if kind == "analog":
        return AnalogAccel(cfg)
    raise ValueError("unknown accel %r" % (kind,))


def make_temp(cfg):
    """Build the temperature source named by cfg["temp"].

    Default: "signal" when the accelerometer is a signal source, else "mcu" (the
    ADXL345 has no temperature sensor).
    """
    kind = cfg.get("temp")
    if kind is None:
        kind = "signal" if cfg.get("accel", "signal") == "signal" else "mcu"
    if kind == "signal":
        return SignalTemp(cfg)
    if kind == "mcu":
        return McuTemp(cfg)
    if kind == "tmp36":
        return TMP36(cfg)
    raise ValueError("unknown temp %r" % (kind,))


def new_buffers(n):
    """Three zeroed array('h') of n samples (one per axis)."""
    return array("h", bytes(2 * n)), array("h", bytes(2 * n)), array("h", bytes(2 * n))
