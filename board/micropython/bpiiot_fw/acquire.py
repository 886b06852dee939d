"""Timer-paced sampling into preallocated ring buffers.

``Sampler(accel, rate_hz, block=256)`` owns three ``array('h')`` rings (one per
axis, capacity a power of two, default 8 * block rounded up), or uses the three the
caller passes as ``rings`` (the app allocates them once at boot). Samples are produced
by a clock, never by the main loop's speed:

- On a board, ``machine.Timer`` calls a soft callback: for a self-clocked sensor
  (ADXL345 FIFO, ``accel.paced``) every 8 samples' time to drain the FIFO, else
  (analog ADC) once per sample. The callback only copies into the rings and updates
  two small-int counters; it allocates nothing. Soft (scheduled) callbacks are used
  because SPI/I2C transfers are not allowed in hard interrupts on every port.
- On the Unix port (no usable Timer) the clock is ``time.ticks_us()``: each ``poll``
  works out how many samples fell due since the previous poll and asks the signal
  source for exactly those.

``poll(x, y, z)`` copies up to ``len(x)`` (or ``count``) waiting samples into the caller's arrays
and returns how many. If the main loop falls behind by more than the ring capacity,
the samples that do not fit are dropped and ``overruns`` grows by their number (for
the ADXL345, by 1 per FIFO found full: how many it lost is unknown). The signal
source is advanced past dropped samples, so its time stays true. ``flags`` collects
the report flag bits of what happened (OVERRUN, SENSOR_FAULT for a failed read); the
caller passes them with the next block to ``dsp.Features.feed`` and clears them.

The app's side of acquisition is here too, as functions taking the ``App``: ``plan``
checks a configuration, ``start`` (re)builds sensors, sampler and feature extractor,
``stop`` stops them, and ``sample`` drains the rings into the DSP and hands each
finished window to ``reports.send``.
"""

import gc
import sys
import time
from array import array

import micropython
from micropython import const

from bpiiot_fw import hal, reports

# Counters wrap here; a small int on 32-bit ports, and a multiple of every capacity.
_MASK = const(0x3FFFFFFF)
# Sensor reads failing in a row before acquisition gives up (poll raises).
_MAX_FAILS = const(8)
# Report flag bits (SPEC.md 5.2).
_OVERRUN = const(0x02)
_SENSOR_FAULT = const(0x04)
_LOG_WARNING = const(2)
_LOG_ERROR = const(3)

# Wire machine class (SPEC.md 5.3) -> name in dsp.MACHINE_CLASSES.
MACHINE_CLASSES = ("group1-rigid", "group1-flexible", "group2-rigid", "group2-flexible")


@micropython.viper
def _copy(dst, src, s0: int, n: int):
    # dst[0:n] = src[s0:s0+n] with wrap-around; len(src) is a power of two.
    # Viper: 23x faster than the same loop in bytecode (Unix port, 256-sample blocks).
    d = ptr16(dst)
    s = ptr16(src)
    m = int(len(src)) - 1
    j = 0
    while j < n:
        d[j] = s[(s0 + j) & m]
        j += 1


def _host():
    # The Unix (and other OS-hosted) ports have no usable machine.Timer.
    return sys.platform in ("linux", "darwin", "win32", "windows", "webassembly")


class Sampler:
    """Paced acquisition from one accelerometer into ring buffers."""

    def __init__(self, accel, rate_hz, block=256, capacity=None, clock=None, rings=None):
        accel.set_rate(rate_hz)  # ValueError for a rate the sensor cannot do
        self.accel = accel
        self.rate_hz = rate_hz
        if rings is None:
            cap = capacity or 8 * block
            c = 1
            while c < cap:
                c <<= 1
            rings = (array("h", bytes(2 * c)), array("h", bytes(2 * c)), array("h", bytes(2 * c)))
        else:
            # The caller's rings, reused across restarts so the heap never needs room
            # for a second set (a board's heap fragments: big blocks are found once).
            c = len(rings[0])
            if c & (c - 1) or len(rings[1]) != c or len(rings[2]) != c:
                raise ValueError("rings: three arrays of one power-of-two length")
        self.capacity = c
        self._rings = rings
        self._w = 0  # written, only the producer changes it
        self._r = 0  # read, only poll changes it
        #: Samples dropped because the ring was full (never silently lost).
        self.overruns = 0
        #: Report flag bits (SPEC.md 5.2) for the samples polled next: OVERRUN when
        #: samples were lost, SENSOR_FAULT when a read failed. The reader clears them.
        self.flags = 0
        # Reads failed in a row; past _MAX_FAILS acquisition stops (an exception in the
        # main loop). Few attributes: a 17th would grow every Sampler by 96 bytes.
        self._fails = 0
        self._clock = clock
        self._host = clock is not None or _host()
        self._timer = None
        self._acc = 0
        self._last = 0
        self._fifo_seen = 0
        self.running = False

    def start(self):
        """Start the sensor and the clock that paces it."""
        self.accel.start()
        self._w = self._r = 0
        self._acc = 0
        self.running = True
        if self._host:
            self._last = self._now()
            return
        from bpiiot_fw import hal_board

        freq = self.rate_hz // 8 if self.accel.paced else self.rate_hz
        # The bound method is made once, here: the callback itself allocates nothing.
        self._timer = hal_board.timer(freq, self._tick)

    def stop(self):
        """Stop the timer and the sensor."""
        self.running = False
        if self._timer is not None:
            self._timer.deinit()
            self._timer = None
        self.accel.stop()

    def _now(self):
        if self._clock is not None:
            return self._clock()
        return time.ticks_us()

    def available(self):
        """Samples waiting in the ring."""
        return (self._w - self._r) & _MASK

    def _fill(self, n):
        # Write n samples from the sensor at the ring head (two segments on wrap).
        cap = self.capacity
        head = self._w & (cap - 1)
        first = cap - head
        if first > n:
            first = n
        x, y, z = self._rings
        try:
            got = self.accel.read(x, y, z, head, first)
            if got == first and n > first:
                got += self.accel.read(x, y, z, 0, n - first)
        except OSError:
            # A bus error (SPI/I2C, ADC): nothing read now; flagged, not fatal, unless
            # it persists. Then the error goes up from here on the Unix port (this runs
            # in poll, in the main loop), and from poll on a board (never out of a timer
            # callback, which would print into the serial stream).
            self.flags |= _SENSOR_FAULT
            self._fails += 1
            if self._fails > _MAX_FAILS and self._host:
                raise
            return 0
        self._fails = 0
        self._w = (self._w + got) & _MASK
        return got

    def _tick(self, t):
        # Timer callback (board): no allocation, no exceptions expected.
        free = self.capacity - ((self._w - self._r) & _MASK)
        a = self.accel
        if a.paced:
            if free:
                self._fill(free)
            ff = a.fifo_full
            if ff != self._fifo_seen:
                self.overruns += ff - self._fifo_seen
                self._fifo_seen = ff
                self.flags |= _OVERRUN
        elif free:
            self._fill(1)
        else:
            self.overruns += 1
            self.flags |= _OVERRUN

    def _produce(self):
        # Unix port: the clock says how many samples are due; produce exactly those.
        now = self._now()
        if self._clock is not None:
            el = now - self._last
        else:
            el = time.ticks_diff(now, self._last)
        self._last = now
        self._acc += el * self.rate_hz
        due = self._acc // 1000000
        self._acc -= due * 1000000
        free = self.capacity - ((self._w - self._r) & _MASK)
        k = due if due < free else free
        if k:
            self._fill(k)
        if due > k:
            self.overruns += due - k
            self.flags |= _OVERRUN
            skip = getattr(self.accel, "skip", None)
            if skip is not None:
                skip(due - k)

    def poll(self, x, y, z, count=0):
        """Copy up to ``count`` (default len(x)) waiting samples into x, y, z; return how many."""
        if self._host and self.running:
            self._produce()
        if self._fails > _MAX_FAILS:
            raise OSError("sensor: %d reads failed in a row" % self._fails)
        n = (self._w - self._r) & _MASK
        if not count:
            count = len(x)
        if n > count:
            n = count
        if n:
            r = self._r & (self.capacity - 1)
            rx, ry, rz = self._rings
            _copy(x, rx, r, n)
            _copy(y, ry, r, n)
            _copy(z, rz, r, n)
            self._r = (self._r + n) & _MASK
        return n


# -- the app's acquisition ------------------------------------------------------------


def plan(cfg):
    """(rate, window_n, hop_n, class name) of cfg; ValueError when the board cannot do
    them. Checks only: nothing is allocated for a plan that may be refused."""
    from bpiiot_fw import dsp

    rate = cfg["sample_rate_hz"]
    window_ms = cfg["window_ms"]
    hop_ms = cfg["hop_ms"]
    if hop_ms > window_ms:
        raise ValueError("hop longer than the window")
    if (rate * window_ms) % 1000 or (rate * hop_ms) % 1000:
        raise ValueError("window and hop must be whole numbers of samples")
    p = (rate, rate * window_ms // 1000, rate * hop_ms // 1000,
         MACHINE_CLASSES[cfg["machine_class"]])  # fmt: skip
    dsp.check(*p)
    return p


def start(app):
    """(Re)build the app's sensors, sampler and feature extractor from its configuration.

    A saved plan this board cannot run (refused by the checks, or no room for it in
    the heap) falls back to the default plan, says so in a log frame (repeated after
    every hello request) and saves the plan that runs, so get_config tells the truth.
    A sensor failure leaves the link running without reports and says why: the board
    must stay reachable to be reconfigured.
    """
    stop(app)
    app.features = None
    cfg = app.store.cfg
    try:
        from bpiiot_fw import dsp

        try:
            p = plan(cfg)
            gc.collect()
            feat = dsp.Features(*p)
        except (ValueError, MemoryError) as exc:
            # The saved plan cannot run: the defaults can (the benchmark's plan).
            feat = None
            gc.collect()
            from bpiiot_fw.store import DEFAULTS

            old = "%d S/s, %d/%d ms" % (cfg["sample_rate_hz"], cfg["window_ms"], cfg["hop_ms"])
            new = {k: DEFAULTS[k] for k in ("sample_rate_hz", "window_ms", "hop_ms")}
            app.store.update(**new)  # written by flush(), from the main loop
            app.problem = "saved plan %s cannot run (%s): defaults in use" % (
                old,
                hal.exception_text(exc)[:60],
            )
            app.logs.append((_LOG_WARNING, app.problem))
            feat = dsp.Features(*plan(cfg))
        if app.accel is None or app.temp is None:
            _make_sensors(app, cfg)
        # The old acquisition and the imports' garbage go before the new one is made.
        gc.collect()
        # Blocks never span two hops (Features.feed takes at most hop_n samples).
        block = min(feat.hop_n, len(app._bufs[0]))
        sampler = Sampler(app.accel, cfg["sample_rate_hz"], block=block, rings=app._rings)
        sampler.start()
        app._block = block
        app.sampler = sampler
        app.features = feat
    except Exception as exc:
        hal.log_exception(exc, "acquisition")
        app.sampler = None
        app.features = None
        app.logs.append((_LOG_ERROR, "acquisition off: " + hal.exception_text(exc)))


def _make_sensors(app, cfg):
    # The factory is needed only until the drivers exist: unloaded afterwards.
    from bpiiot_fw import sensors

    try:
        if app.accel is None:
            app.accel = sensors.make_accel(cfg["sensor"], cfg["sample_rate_hz"])
        if app.temp is None:
            try:
                app.temp = sensors.make_temp(cfg["sensor"])
            except Exception as exc:
                app.temp = None
                app.logs.append((_LOG_WARNING, "no temperature: " + hal.exception_text(exc)))
    finally:
        sensors = None
        hal.unload("sensors")


def stop(app):
    """Stop the app's sampler, keeping its overrun count for the status."""
    sampler = app.sampler
    if sampler is not None:
        app.overruns_base += sampler.overruns
        try:
            sampler.stop()
        except Exception:
            pass
    app.sampler = None


def sample(app):
    """Drain the rings into the feature extractor; send a report per finished window."""
    sampler = app.sampler
    feat = app.features
    x, y, z = app._bufs
    while True:
        n = sampler.poll(x, y, z, app._block)
        # Samples lost or a failed read before these: the windows holding them (and,
        # after a gap, those while the filters ring) are flagged, never silent.
        flags = sampler.flags
        if flags:
            sampler.flags ^= flags  # a bit set meanwhile by the timer stays
        if not n:
            if flags:
                feat.feed(x, y, z, 0, flags)
            return
        res = feat.feed(x, y, z, n, flags)
        if res is not None:
            reports.send(app, res)
