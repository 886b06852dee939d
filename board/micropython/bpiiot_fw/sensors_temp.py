"""Temperature drivers for boards: the MCU's internal sensor and a TMP36 on an ADC pin.

Imported only when configured (the host uses ``sensors_signal.SignalTemp``).
"""


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
