"""Accelerometer and temperature drivers behind one small interface, and their factories.

Each driver lives in its own module, imported only when the configuration names it,
so a board holds the code and the interned names of the one driver it runs (RAM,
not flash, is what a board lacks): ``sensors_signal`` (host / demo), ``sensors_adxl345``,
``sensors_analog``, ``sensors_temp`` (MCU and TMP36). ``machine`` is imported only
inside the hardware drivers, so the host path never touches hardware.

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

The ADXL345 needs SPI for 1600 and 3200 S/s and tops out at 3200 S/s, so 6400 S/s
is only available from ``SignalSource`` (and the analog driver if the ADC keeps up).
The signal kinds are described in ``sensors_signal``.
"""

from array import array

# The driver of each kind, as "module Class" text: a board interns the names of the
# driver it loads only, not of every driver it could load (interned names cost RAM).
_DRIVERS = {
    "accel": {
        "signal": "sensors_signal SignalSource",
        "adxl345-spi": "sensors_adxl345 ADXL345",
        "adxl345-i2c": "sensors_adxl345 ADXL345",
        "analog": "sensors_analog AnalogAccel",
    },
    "temp": {
        "signal": "sensors_signal SignalTemp",
        "mcu": "sensors_temp McuTemp",
        "tmp36": "sensors_temp TMP36",
    },
}


def _load(name):
    # The class named by "module Class", its module imported now.
    mod, cls = name.split()
    return getattr(__import__("bpiiot_fw.%s" % mod, None, None, (cls,)), cls)


def make_accel(cfg, rate_hz=3200):
    """Build the accelerometer named by cfg["accel"] (ValueError if unknown)."""
    kind = cfg.get("accel", "signal")
    where = _DRIVERS["accel"].get(kind)
    if where is None:
        raise ValueError("unknown accel %r" % (kind,))
    if kind == "signal":
        return _load(where)(cfg.get("signal", {}), rate_hz)
    if kind == "analog":
        return _load(where)(cfg)
    return _load(where)(cfg, kind[8:])  # the ADXL345 on "spi" or "i2c"


def make_temp(cfg):
    """Build the temperature source named by cfg["temp"].

    Default: "signal" when the accelerometer is a signal source, else "mcu" (the
    ADXL345 has no temperature sensor).
    """
    kind = cfg.get("temp")
    if kind is None:
        kind = "signal" if cfg.get("accel", "signal") == "signal" else "mcu"
    where = _DRIVERS["temp"].get(kind)
    if where is None:
        raise ValueError("unknown temp %r" % (kind,))
    return _load(where)(cfg)


def new_buffers(n):
    """Three zeroed array('h') of n samples (one per axis)."""
    return array("h", bytes(2 * n)), array("h", bytes(2 * n)), array("h", bytes(2 * n))


def __getattr__(name):
    # ``sensors.ADXL345`` and the like still work (tools, tests): the driver's module
    # is imported on first use.
    for where in tuple(_DRIVERS["accel"].values()) + tuple(_DRIVERS["temp"].values()):
        if where.split()[1] == name:
            return _load(where)
    raise AttributeError(name)
