"""Analog (ratiometric, ADXL335 style) accelerometer driver, imported only when configured."""


def _clip16(v):
    # Each driver module keeps its own copy so the factory module (sensors) can be
    # unloaded once the driver is built (a function holds its module's globals alive).
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


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
        # Largest |mg| the ADC can show before a rail (a window reaching it is CLIPPED).
        zmin = min(self._zero)
        zmax = max(self._zero)
        lim = min(zmin, self._vref - zmax) * 1000 // self._mvg
        self.limit_mg = lim if lim < 32767 else 32767

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
