"""ADXL345 accelerometer driver (SPI or I2C), imported only when configured.

ODR limits: over I2C at 400 kHz a 6-byte burst plus addressing takes about 0.2 ms,
so reads cap the usable rate near 800 S/s; SPI (up to 5 MHz) is needed for 1600 and
3200 S/s. The part tops out at 3200 S/s.
"""

from micropython import const

_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)
_FIFO_CTL = const(0x38)
_FIFO_STATUS = const(0x39)


class ADXL345:
    """ADXL345 over SPI or I2C: full resolution, +-16 g, FIFO in stream mode.

    Full resolution keeps 3.9 mg/LSB (256 LSB/g) at every range; ``read`` rescales
    to 1 mg and drains the 32-entry FIFO with one 6-byte burst per entry. At
    3200 S/s the FIFO fills in 10 ms: drain it at least every 5 ms.
    """

    paced = True
    # Output rates; BW_RATE code 0x0A + index. I2C at 400 kHz cannot sustain more
    # than about 800 S/s.
    RATES = (100, 200, 400, 800, 1600, 3200)

    def __init__(self, cfg, bus="spi"):
        import machine  # hardware only: never imported on the host path

        self.bus = bus
        self.rate_hz = 0
        #: FIFO overflows seen (32 entries found: samples may have been lost).
        self.fifo_full = 0
        #: Largest |mg| a sample can show (+-16 g range, full resolution: 4095 LSB);
        #: a window reaching it is flagged CLIPPED.
        self.limit_mg = 15996
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
        if self._read_reg(_DEVID) != 0xE5:
            raise OSError("ADXL345 not found (DEVID != 0xE5)")
        self._write_reg(_POWER_CTL, 0x00)
        # FULL_RES (bit 3) and +-16 g (range 3); right-justified, 4-wire SPI.
        self._write_reg(_DATA_FORMAT, 0x0B)

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
        if rate_hz not in self.RATES:
            raise ValueError("ADXL345: unsupported rate %r" % (rate_hz,))
        if self.bus == "i2c" and rate_hz > 800:
            raise ValueError("ADXL345 over I2C: 800 S/s at most; use SPI for %d" % rate_hz)
        self._write_reg(_BW_RATE, 0x0A + self.RATES.index(rate_hz))
        self.rate_hz = rate_hz

    def start(self):
        """Stream mode FIFO, then measurement mode."""
        self._write_reg(_FIFO_CTL, 0x80 | 16)
        self._write_reg(_POWER_CTL, 0x08)

    def stop(self):
        """Standby (measurement off)."""
        self._write_reg(_POWER_CTL, 0x00)

    def read(self, x, y, z, i, n):
        """Drain up to n FIFO entries into x, y, z at index i (mg); return the count."""
        avail = self._read_reg(_FIFO_STATUS) & 0x3F
        if avail >= 32:
            self.fifo_full += 1
        if avail > n:
            avail = n
        rx = self._rx
        for k in range(i, i + avail):
            if self.bus == "spi":
                # Multi-byte read (0x40) of DATAX0..DATAZ1 pops one FIFO entry.
                self._tx[0] = 0xC0 | _DATAX0
                self._cs(0)
                self._spi.write_readinto(self._tx, rx)
                self._cs(1)
                o = 1
            else:
                self._i2c.readfrom_mem_into(self._addr, _DATAX0, self._rx6)
                o = 0
            # 3.90625 mg/LSB = 1000/256, rounded; unrolled so nothing is allocated.
            v = rx[o] | (rx[o + 1] << 8)
            x[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
            v = rx[o + 2] | (rx[o + 3] << 8)
            y[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
            v = rx[o + 4] | (rx[o + 5] << 8)
            z[k] = (((v - 65536) if v & 0x8000 else v) * 1000 + 128) >> 8
        return avail
