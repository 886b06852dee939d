"""The real-board wrappers (hal_board) drive machine.* as MicroPython documents it.

The Unix port has no real pins, watchdog or timers, so a recording stand-in for the
`machine` module is put in sys.modules before the firmware imports it; the calls it
records are what the wrappers would make on an RP2040 or ESP32.
"""

from __future__ import annotations

import json

from board_host import run_script

SCRIPT = r"""
import sys, json
calls = []

class Pin:
    OUT = 1
    def __init__(self, *a, **k):
        calls.append(["Pin", list(a), k])
        self.v = k.get("value")
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        calls.append(["Pin.value", v])

class WDT:
    def __init__(self, **k):
        calls.append(["WDT", k])
    def feed(self):
        calls.append(["WDT.feed"])

class UART:
    def __init__(self, *a, **k):
        calls.append(["UART", list(a), k])

class Timer:
    PERIODIC = 2
    def __init__(self, n):
        if n == -1 and FAIL_VIRTUAL:
            raise ValueError("no virtual timers")
        calls.append(["Timer", n])
    def init(self, **k):
        calls.append(["Timer.init", k["freq"], k["mode"], k["callback"] is CB])

class M:
    pass

m = M()
m.Pin, m.WDT, m.UART, m.Timer = Pin, WDT, UART, Timer
sys.modules["machine"] = m

def CB(t):
    pass

from bpiiot_fw import hal_board as pb
FAIL_VIRTUAL = False
p = pb.output_pin(5)
w = pb.watchdog(8000)
w.feed()
u = pb.uart({"id": 1, "baudrate": 921600})
t1 = pb.timer(3200, CB)
FAIL_VIRTUAL = True
t2 = pb.timer(1600, CB)
print(json.dumps(calls))
"""


def test_wrappers_make_the_documented_machine_calls() -> None:
    calls = json.loads(run_script(SCRIPT).strip().splitlines()[-1])
    assert calls == [
        ["Pin", [5, 1], {"value": 0}],  # an output, driven low from the start
        ["WDT", {"timeout": 8000}],
        ["WDT.feed"],
        ["UART", [1], {"baudrate": 921600}],
        ["Timer", -1],  # a virtual (soft) timer where the port has one...
        ["Timer.init", 3200, 2, True],
        ["Timer", 0],  # ...else hardware timer 0
        ["Timer.init", 1600, 2, True],
    ]
