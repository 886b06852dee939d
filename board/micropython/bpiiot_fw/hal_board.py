"""What only a real board runs: output pins, the watchdog, a UART link, the sample timer.

Thin wrappers over ``machine``, imported by ``hal``, ``acquire`` and the app
only off the Unix port: a host never loads them, nor holds their names (every
interned name costs RAM).
"""

import machine


def output_pin(pin):
    """machine.Pin pin as a digital output, driven low."""
    return machine.Pin(pin, machine.Pin.OUT, value=0)


def watchdog(ms):
    """A started machine.WDT with a timeout of ms."""
    return machine.WDT(timeout=ms)


def uart(cfg):
    """The machine.UART described by cfg ({"id": 0, "baudrate": 115200})."""
    return machine.UART(cfg.get("id", 0), baudrate=cfg.get("baudrate", 115200))


def timer(freq, callback):
    """A periodic machine.Timer calling callback freq times a second (soft callback)."""
    try:
        tim = machine.Timer(-1)
    except (ValueError, TypeError):
        tim = machine.Timer(0)
    tim.init(freq=freq, mode=machine.Timer.PERIODIC, callback=callback)
    return tim
