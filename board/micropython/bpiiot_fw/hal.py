"""Hardware abstraction layer: the serial stream, watchdog, reboot, outputs, memory, load.

(Named ``hal``, not ``platform``: that name belongs to the standard module that both
MicroPython and CPython have, and a package module shadowing it misleads readers.)

One module hides the differences between boards (USB CDC via sys.stdin/stdout or
a machine.UART, machine.Pin, machine.WDT, machine.reset) and the MicroPython Unix
port (a pty on stdin/stdout, outputs recorded in a file, reboot as an exit code
the host harness tools/board_host.py acts on). The calls into ``machine`` for pins,
watchdog and UART are in ``hal_board``, loaded on boards only. Nothing here
ever writes text to the serial stream: the stream carries frames only.
"""

import gc
import select
import sys
import time

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


UNIX = sys.platform in ("linux", "darwin")

# Exit codes the host harness understands (Unix port only).
_EXIT_REBOOT = const(75)
_EXIT_REPL = const(76)


def log_exception(exc, text=""):
    """Print a traceback where it cannot corrupt the stream: stderr on the Unix port.

    On boards stderr is the serial stream, so nothing is printed; the caller sends
    a log frame instead (see :func:`exception_text`). ``text`` says where it happened.
    """
    if UNIX:
        try:
            if text:
                sys.stderr.write("bpiiot: %s\n" % text)
            sys.print_exception(exc, sys.stderr)
        except Exception:
            pass


def exception_text(exc):
    """Short one-line text of an exception, for a log frame (at most 200 bytes)."""
    try:
        text = "%s: %s" % (type(exc).__name__, exc)
    except Exception:
        text = "exception"
    return text[:200]


class Stream:
    """The byte stream to the SBC: non-blocking reads, blocking writes.

    Default: the board's console (USB CDC, or a pty on the Unix port) with
    Ctrl-C turned into data. ``uart``: a configured machine.UART instead.
    """

    def __init__(self, uart=None):
        self._uart = uart
        if uart is None:
            import micropython

            # 0x03 occurs inside frames: it must not raise KeyboardInterrupt.
            micropython.kbd_intr(-1)
            self._rd = sys.stdin.buffer.read
            self._wr = sys.stdout.buffer.write
            self._poll = select.poll()
            self._poll.register(sys.stdin, select.POLLIN)
        else:
            self._rd = uart.read
            self._wr = uart.write
            self._poll = select.poll()
            self._poll.register(uart, select.POLLIN)
        self.closed = False

    def wait(self, ms):
        """Wait up to ms for input; True when bytes are ready (or the line closed)."""
        for _obj, ev in self._poll.ipoll(ms):
            if ev & ~select.POLLIN:
                # POLLHUP/POLLERR: the SBC side went away (EIO on a pty).
                self.closed = True
            return True
        return False

    def read(self, buf):
        """Copy the bytes ready now (at most len(buf)) into buf; return their count."""
        n = 0
        size = len(buf)
        if self._uart is not None:
            while n < size and self._uart.any():
                got = self._uart.readinto(memoryview(buf)[n:])
                if not got:
                    break
                n += got
            return n
        # A console read of k bytes blocks until all k arrive: read one at a time,
        # only while poll says a byte is there.
        poll = self._poll
        rd = self._rd
        while n < size:
            ready = False
            for _obj, ev in poll.ipoll(0):
                ready = True
                if ev & ~select.POLLIN:
                    self.closed = True
                    return n
            if not ready:
                break
            b = rd(1)
            if not b:
                self.closed = True
                break
            buf[n] = b[0]
            n += 1
        return n

    def write(self, data):
        """Write all of data."""
        self._wr(data)


class Outputs:
    """Digital outputs by pin number: machine.Pin on boards, a recording driver on Unix.

    Only pins listed in the configuration are outputs; anything else is refused
    (the app answers ``nack bad_value``). On the Unix port the states are written to
    ``outputs.json`` in the board's filesystem so a test or an operator can see them;
    like every file write that is kept out of the sampling path: ``dirty`` says a
    write is due, the app calls ``flush`` when the sample ring has room. A board
    drives its pins at once and writes nothing (outputs do not survive a reboot).
    """

    def __init__(self, pins, path="outputs.json"):
        self.states = {}
        self._pins = {}
        self._file = path if UNIX else None
        self.dirty = False
        for p in pins:
            if UNIX:
                self._pins[p] = None
            else:
                from bpiiot_fw import hal_board

                self._pins[p] = hal_board.output_pin(p)
            self.states[p] = 0
        self._record()

    def set(self, pin, value):
        """Drive pin to value (0/1); False if pin is not an output."""
        if pin not in self._pins:
            return False
        value = 1 if value else 0
        drv = self._pins[pin]
        if drv is not None:
            drv.value(value)
        if self.states.get(pin) != value:
            self.states[pin] = value
            self.dirty = self._file is not None
        return True

    def flush(self):
        """Write the recorded states if they changed (Unix port only)."""
        if self.dirty:
            self.dirty = False
            self._record()

    def _record(self):
        if self._file is None:
            return
        import json
        import os

        try:
            with open(self._file + ".tmp", "w") as f:
                json.dump({str(k): v for k, v in self.states.items()}, f)
            os.rename(self._file + ".tmp", self._file)
        except OSError:
            pass


class Watchdog:
    """machine.WDT when asked for on a real board; does nothing on the Unix port.

    A started WDT cannot be stopped on most ports, so it is opt-in (config
    ``wdt_ms``) and the app reboots, rather than returns to the REPL, while it runs.
    """

    def __init__(self, ms):
        self.active = False
        self._wdt = None
        if ms and not UNIX:
            try:
                from bpiiot_fw import hal_board

                self._wdt = hal_board.watchdog(ms)
                self.active = True
            except Exception:
                self._wdt = None

    def feed(self):
        """Keep the board alive for another timeout."""
        if self._wdt is not None:
            self._wdt.feed()


class Load:
    """CPU load estimate: the share of wall time not spent waiting for input."""

    def __init__(self):
        self._idle = 0
        self._t0 = time.ticks_us()
        self.permille = 0

    def idle(self, t):
        """Count t microseconds spent idle; every second, update permille."""
        self._idle += t
        now = time.ticks_us()
        span = time.ticks_diff(now, self._t0)
        if span >= 1000000:
            busy = span - self._idle
            self.permille = max(0, min(1000, busy * 1000 // span))
            self._idle = 0
            self._t0 = now


class Clock:
    """Uptime in ms since boot, kept across ticks_ms wrap-around (which is port specific)."""

    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0

    def ms(self):
        """Milliseconds since boot."""
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


def unload(name):
    """Drop module bpiiot_fw.<name> so its code and names can be collected.

    For code used once (config checks at boot, the sensor factory): the heap it
    frees is what the DSP and the link need later. A later import loads it again.
    """
    sys.modules.pop("bpiiot_fw.%s" % name, None)
    try:
        delattr(sys.modules["bpiiot_fw"], name)
    except (KeyError, AttributeError):
        pass


def mem_free():
    """Free heap in bytes."""
    return gc.mem_free()


def reboot():
    """Restart the board: machine.reset() on boards, exit code 75 on the Unix port."""
    if UNIX:
        try:
            sys.stdout.buffer.flush()
        except Exception:
            pass
        sys.exit(_EXIT_REBOOT)
    import machine

    time.sleep_ms(50)  # let the last frame leave the UART/USB buffer
    machine.reset()


def to_repl():
    """Leave the app so the REPL runs (mpremote, flashing): exit code 76 on the Unix port."""
    import micropython

    micropython.kbd_intr(3)
    if UNIX:
        sys.exit(_EXIT_REPL)
