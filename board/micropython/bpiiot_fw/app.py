"""The firmware's application: the main loop of an interface board.

Boots (boot counter -> session), sends hello, samples the accelerometer, sends a
report per window, and answers every host command with exactly one ack or nack
(protocol/SPEC.md 5.3-5.4). Nothing a host sends can crash it: refused frames are
counted and nacked where the spec says so; a failing command is nacked
``internal`` and logged in a log frame.

The work is split by role, one module each, all sharing the one ``App`` object:

- ``startup``: boot (configuration file and its checks, boot counter, link objects),
  loaded once and unloaded;
- ``commands``: command handling (verify, dispatch, ack/nack), keys and set_config;
- ``acquire``: acquisition (plan checks, sampler and feature extractor, draining the
  rings);
- ``reports``: a finished window -> report frame and alarm output;
- here: sending frames and logs, hello, writes to flash, and the main loop with the
  REPL escape (mpremote asking for the REPL to flash the board).
"""

import gc
import time
from array import array

from micropython import const

from bpiiot_fw import acquire, codec, commands, hal

FW_VERSION = (0, 1, 0)

# Protocol constants (copies of codec's private ones, SPEC.md 5; checked by
# tests/board/test_fw_app.py): private consts are compiled away and cost no RAM.
_T_HELLO = const(0x01)
_T_ACK = const(0x04)
_T_LOG = const(0x06)
_VERSION_MAJOR = const(1)
_VERSION_MINOR = const(0)

_CAP_AUTH = const(0x01)
_CAP_OUTPUTS = const(0x02)
_CAP_REBOOT = const(0x04)
_CAP_PERSIST = const(0x08)
_CAP_SLIDING = const(0x10)
_CAP_TEMPERATURE = const(0x20)

# What mpremote sends to stop a program and enter the raw REPL (Ctrl-C, Ctrl-A).
# Seen as the tail of an unfinished chunk followed by silence, it means "flash me".
ESCAPE = b"\r\x03\r\x01"
_LOG_ERROR = const(3)
_E_INTERNAL = const(8)
# Samples per axis: the sampler's rings (a power of two: 80-320 ms of slack at
# 6400-1600 S/s, while the main loop drains them every few ms) and the blocks handed
# from the rings to the DSP. The loop drains every ~5 ms (16-32 samples at 3200-6400
# S/s): 64-sample blocks hold that and more; 128 helped only after a stall, for 384 B
# of heap (main-loop load at 6400 S/s, 1 s windows every 250 ms: 13.7 % vs 12.6 %).
_RING = const(512)
_BLOCK = const(64)
# Bytes allocated between two garbage collections (see main).
_GC_EVERY = const(4096)


def _zeros(n):
    # Three int16 arrays of n samples (one per axis), copied from one zeroed buffer:
    # a temporary per array would leave three holes between them.
    z = bytes(2 * n)
    return array("h", z), array("h", z), array("h", z)


class App:
    """One board: link state, configuration and acquisition state, and the main loop.

    Boot is ``startup.start``, command handling ``commands``, acquisition ``acquire``
    and report frames ``reports``: functions taking this object. Its attributes (all
    set at boot; no others, as each one costs heap):

    - link: ``stream``, ``enc`` and ``ver`` (codec, under the key), ``deframer``,
      ``rx`` (read buffer), ``session``, ``boot`` (counter), ``_escape_at`` (REPL
      escape seen), ``frames_sent``, ``frames_rejected``, ``logs`` (log frames to
      send), ``problem`` (warning repeated after every hello request);
    - configuration and I/O: ``store`` (``store.cfg``), ``outputs``, ``wdt``,
      ``clock``, ``load``;
    - acquisition: ``accel``, ``temp``, ``sampler``, ``features``, ``windows``,
      ``overruns_base``, ``_rings``, ``_bufs``, ``_block``.
    """

    def __init__(self, stream=None, store=None):
        # The only large buffers, made first and kept for good: later on the heap is
        # fragmented and may no longer hold 2 KiB in one piece.
        self._rings = _zeros(_RING)
        self._bufs = _zeros(_BLOCK)
        self._block = _BLOCK
        from bpiiot_fw import startup
        from bpiiot_fw.store import Store

        try:
            startup.start(self, stream, store or Store())
        finally:
            startup = None
            hal.unload("startup")
        self.clock = hal.Clock()
        self.load = hal.Load()
        acquire.start(self)

    # -- link --------------------------------------------------------------------------

    def send(self, type_, payload):
        """Encode and write one frame. Sequence numbers never wrap (SPEC.md 3.1): a board
        whose next one would pass 2^32 - 1 reboots instead, with its config saved."""
        if self.enc.seq == 0xFFFFFFFF:
            try:
                self.store.flush()
            except OSError:
                pass
            hal.reboot()
        self.stream.write(self.enc.encode(type_, payload))
        self.frames_sent += 1

    def log(self, level, text):
        """Send a log frame (text cut to 200 bytes)."""
        text = text[:200]
        while len(text.encode()) > 200:
            text = text[:-1]
        self.send(_T_LOG, [level, text])

    def capabilities(self):
        """The capability bits announced in hello."""
        caps = _CAP_AUTH | _CAP_OUTPUTS | _CAP_REBOOT | _CAP_PERSIST | _CAP_SLIDING
        if self.temp is not None:
            caps |= _CAP_TEMPERATURE
        return caps

    def hello(self):
        """Send hello."""
        cfg = self.store.cfg
        self.send(
            _T_HELLO,
            [
                cfg["board_id"],
                list(FW_VERSION),
                [_VERSION_MAJOR, _VERSION_MINOR],
                self.capabilities(),
                self.boot,
                self.ver.seq,
            ],
        )

    def flush(self):
        """Write what must survive a reboot (config, key), and the Unix port's output
        record, if they changed: called when the sample ring has just been drained, so
        a slow flash write delays sampling by at most the ring's length, and changes
        made in between are coalesced into one write."""
        if self.outputs.dirty:
            self.outputs.flush()
        pending = self.key_ack
        if self.store.dirty:
            try:
                self.store.flush()
            except OSError as exc:
                self.log(_LOG_ERROR, "config not saved: " + hal.exception_text(exc))
                if pending is not None:
                    # The file still holds the old key: so does the board.
                    self.key_ack = None
                    self.store.cfg["key"] = pending[2]
                    commands.nack(self, pending[0], _E_INTERNAL, "key not saved")
                return
        if pending is not None:
            self.key_ack = None
            if not self.stream.closed:
                self.send(_T_ACK, [pending[0]])
            commands.set_key(self, pending[1])

    # -- main loop ---------------------------------------------------------------------

    def _flush_logs(self):
        while self.logs:
            level, text = self.logs.pop(0)
            self.log(level, text)

    def poll_link(self, ms):
        """Wait up to ms for bytes, then handle every complete frame.

        False when the link is over: the SBC closed it, or mpremote sent its REPL
        escape (``ESCAPE`` as the unfinished tail, then 100 ms of silence).
        """
        t0 = time.ticks_us()
        ready = self.stream.wait(ms)
        self.load.idle(time.ticks_diff(time.ticks_us(), t0))
        if not ready:
            if (
                self._escape_at is not None
                and time.ticks_diff(time.ticks_ms(), self._escape_at) > 100
            ):
                self._escape_at = None
                buf = self.deframer.buf
                # Still the unfinished tail after 100 ms of silence: mpremote, not a frame.
                return not (len(buf) >= 4 and buf[-4:] == ESCAPE)
            return True
        n = self.stream.read(self.rx)
        if n:
            before = self.deframer.oversize
            for chunk in self.deframer.feed(bytes(self.rx[:n])):
                commands.handle(self, chunk)
            self.frames_rejected += self.deframer.oversize - before
            buf = self.deframer.buf
            if len(buf) >= 4 and buf[-4:] == ESCAPE:
                self._escape_at = time.ticks_ms()
            else:
                self._escape_at = None
        return not self.stream.closed

    def run(self):
        """Run until the SBC closes the line (Unix port) or mpremote asks for the REPL.

        Returns "repl" or "closed"; reboot never returns.
        """
        self.hello()
        self._flush_logs()
        while True:
            self.wdt.feed()
            try:
                up = self.poll_link(5 if self.sampler is not None else 50)
            except SystemExit:
                raise
            except Exception as exc:
                # A fault outside any one command (a MemoryError, a bug): the loop
                # must go on, and the SBC hears about it.
                self.frames_rejected += 1
                hal.log_exception(exc, "main loop")
                self.deframer = codec.Deframer()
                self.logs.append((_LOG_ERROR, "loop: " + hal.exception_text(exc)))
                up = True
            if not up:
                self.flush()
                if self.stream.closed:
                    return "closed"
                acquire.stop(self)
                if self.wdt.active:
                    # A running watchdog would reset the board mid-flash: reboot instead,
                    # main.py skips the app once (see main.py).
                    try:
                        with open("bpiiot_repl_once", "w") as f:
                            f.write("1")
                    except OSError:
                        pass
                    hal.reboot()
                return "repl"
            if self.sampler is not None:
                try:
                    acquire.sample(self)
                except Exception as exc:
                    hal.log_exception(exc, "sampling")
                    acquire.stop(self)
                    self.log(_LOG_ERROR, "acquisition stopped: " + hal.exception_text(exc))
            if self.store.dirty or self.outputs.dirty:
                # Right after sampling the ring is (nearly) empty: the most room for a
                # flash write to stall in (DSP.md 7.1: worst-case main-loop pause).
                sampler = self.sampler
                if sampler is None or 2 * sampler.available() < sampler.capacity:
                    self.flush()
            if self.logs:
                try:
                    self._flush_logs()
                except Exception as exc:
                    hal.log_exception(exc, "log")
                    self.logs = []


def main():
    """Entry point used by main.py: run the app; returns "repl" or "closed"."""
    # Collect after every few KiB allocated, not only when the heap is full: garbage
    # (module loading at boot, frames later) is then reclaimed while it is low in the
    # heap, and long-lived objects do not end up scattered between holes too small to
    # use. At 3200 S/s this is a few collections a second.
    gc.threshold(_GC_EVERY)
    return App().run()
