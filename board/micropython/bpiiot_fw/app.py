"""The firmware's application: the main loop of an interface board.

Boots (boot counter -> session), sends hello, samples the accelerometer, sends a
report per window, and answers every host command with exactly one ack or nack
(protocol/SPEC.md 5.3-5.4). Nothing a host sends can crash it: refused frames are
counted and nacked where the spec says so; a failing command is nacked
``internal`` and logged in a log frame.
"""

import gc
import time
from array import array

from micropython import const

from bpiiot_fw import codec, hal
from bpiiot_fw.store import Store, key_bytes

FW_VERSION = (0, 1, 0)

# Protocol constants (copies of codec's private ones, SPEC.md 5; checked by
# tests/board/test_fw_app.py): private consts are compiled away and cost no RAM.
_T_ACK = const(0x04)
_T_CLEAR_KEY = const(0x45)
_T_CONFIG = const(0x07)
_T_GET_CONFIG = const(0x48)
_T_GET_STATUS = const(0x41)
_T_HELLO = const(0x01)
_T_HELLO_REQUEST = const(0x47)
_T_LOG = const(0x06)
_T_NACK = const(0x05)
_T_PING = const(0x40)
_T_REBOOT = const(0x46)
_T_REPORT = const(0x02)
_T_SET_CONFIG = const(0x42)
_T_SET_KEY = const(0x44)
_T_SET_OUTPUT = const(0x43)
_T_STATUS = const(0x03)
_E_UNKNOWN_TYPE = const(1)
_E_BAD_VALUE = const(3)
_E_INTERNAL = const(8)
_VERSION_MAJOR = const(1)
_VERSION_MINOR = const(0)

# Report flag bits (SPEC.md 5.2) the app sets; SETTLING, OVERRUN and SENSOR_FAULT come
# through dsp.Features from the sampler.
_F_CLIPPED = const(0x08)
_F_VEL_SATURATED = const(0x10)
_F_ACC_SATURATED = const(0x20)

_CAP_AUTH = const(0x01)
_CAP_OUTPUTS = const(0x02)
_CAP_REBOOT = const(0x04)
_CAP_PERSIST = const(0x08)
_CAP_SLIDING = const(0x10)
_CAP_TEMPERATURE = const(0x20)

# Wire machine class (SPEC.md 5.3) -> name in dsp.MACHINE_CLASSES.
MACHINE_CLASSES = ("group1-rigid", "group1-flexible", "group2-rigid", "group2-flexible")
# What mpremote sends to stop a program and enter the raw REPL (Ctrl-C, Ctrl-A).
# Seen as the tail of an unfinished chunk followed by silence, it means "flash me".
ESCAPE = b"\r\x03\r\x01"
CONFIG_KEYS = ("sample_rate_hz", "window_ms", "hop_ms", "channels", "machine_class")
_LOG_INFO = const(1)
_LOG_WARNING = const(2)
_LOG_ERROR = const(3)
# Samples per axis: the sampler's rings (a power of two: 80-320 ms of slack at
# 6400-1600 S/s, while the main loop drains them every few ms) and the blocks handed
# from the rings to the DSP.
_RING = const(512)
_BLOCK = const(128)
# Bytes allocated between two garbage collections (see main).
_GC_EVERY = const(4096)


class BadValue(Exception):
    """A well-formed command asks for something this board cannot do (nack 3)."""


def _zeros(n):
    # Three int16 arrays of n samples (one per axis), copied from one zeroed buffer:
    # a temporary per array would leave three holes between them.
    z = bytes(2 * n)
    return array("h", z), array("h", z), array("h", z)


class App:
    """One board: link state, configuration, acquisition and the command handlers."""

    def __init__(self, stream=None, store=None):
        # The only large buffers, made first and kept for good: later on the heap is
        # fragmented and may no longer hold 2 KiB in one piece.
        self._rings = _zeros(_RING)
        self._bufs = _zeros(_BLOCK)
        self._block = _BLOCK
        self.store = store or Store()
        self.clock = hal.Clock()
        self.load = hal.Load()
        problem = self.store.load()
        cfg = self.store.cfg
        self.logs = []  # log frames to send once the link is up
        # Repeated after every hello request until the file is rewritten: the boot-time
        # log frame is usually lost (pyserial flushes its input when it opens).
        self.problem = problem
        if problem:
            self.logs.append((_LOG_WARNING, problem))
        try:
            self.boot = self.store.boot()
        except OSError as exc:
            # A read-only or full filesystem: run anyway, the session cannot persist.
            self.boot = cfg["boot"] = (cfg.get("boot", 0) + 1) & 0xFFFFFFFF
            self.logs.append((_LOG_ERROR, "boot counter not saved: " + hal.exception_text(exc)))
        self.session = self.boot & 0xFFFF
        key = key_bytes(cfg)
        self.enc = codec.Encoder(False, key, self.session)
        self.ver = codec.Verifier(True, key, self.session)
        self.deframer = codec.Deframer()
        if stream is None:
            uart = None
            ucfg = cfg.get("uart")
            if ucfg and not hal.UNIX:
                from bpiiot_fw import hal_board

                uart = hal_board.uart(ucfg)
            stream = hal.Stream(uart)
        self.stream = stream
        self.outputs = hal.Outputs(cfg["outputs"])
        self.wdt = hal.Watchdog(cfg.get("wdt_ms", 0))
        self.rx = bytearray(256)
        self.frames_sent = 0
        self.frames_rejected = 0
        self.windows = 0
        self.overruns_base = 0
        self.sampler = None
        self.features = None
        self.temp = None
        self.accel = None
        self._escape_at = None
        self.start_acquisition()

    # -- acquisition -------------------------------------------------------------------

    @staticmethod
    def _plan(cfg):
        # (rate, window_n, hop_n, class name) of cfg; ValueError when the board cannot
        # do them. Checks only: nothing is allocated for a plan that may be refused.
        from bpiiot_fw import dsp

        rate = cfg["sample_rate_hz"]
        window_ms = cfg["window_ms"]
        hop_ms = cfg["hop_ms"]
        if hop_ms > window_ms:
            raise ValueError("hop longer than the window")
        if (rate * window_ms) % 1000 or (rate * hop_ms) % 1000:
            raise ValueError("window and hop must be whole numbers of samples")
        plan = (rate, rate * window_ms // 1000, rate * hop_ms // 1000,
                MACHINE_CLASSES[cfg["machine_class"]])  # fmt: skip
        dsp.check(*plan)
        return plan

    def start_acquisition(self):
        """(Re)build sensors, sampler and feature extractor from the configuration.

        A saved plan this board cannot run (refused by the checks, or no room for it in
        the heap) falls back to the default plan, says so in a log frame (repeated after
        every hello request) and saves the plan that runs, so get_config tells the
        truth. A sensor failure leaves the link running without reports and says why:
        the board must stay reachable to be reconfigured.
        """
        self.stop_acquisition()
        self.features = None
        cfg = self.store.cfg
        try:
            from bpiiot_fw import acquire, dsp

            try:
                plan = self._plan(cfg)
                gc.collect()
                feat = dsp.Features(*plan)
            except (ValueError, MemoryError) as exc:
                # The saved plan cannot run: the defaults can (the benchmark's plan).
                feat = None
                gc.collect()
                from bpiiot_fw.store import DEFAULTS

                old = "%d S/s, %d/%d ms" % (cfg["sample_rate_hz"], cfg["window_ms"], cfg["hop_ms"])
                new = {k: DEFAULTS[k] for k in ("sample_rate_hz", "window_ms", "hop_ms")}
                self.store.update(**new)  # written by flush(), from the main loop
                self.problem = "saved plan %s cannot run (%s): defaults in use" % (
                    old,
                    hal.exception_text(exc)[:60],
                )
                self.logs.append((_LOG_WARNING, self.problem))
                feat = dsp.Features(*self._plan(cfg))
            if self.accel is None or self.temp is None:
                self._make_sensors(cfg)
            # The old acquisition and the imports' garbage go before the new one is made.
            gc.collect()
            # Blocks never span two hops (Features.feed takes at most hop_n samples).
            block = min(feat.hop_n, _BLOCK)
            sampler = acquire.Sampler(
                self.accel, cfg["sample_rate_hz"], block=block, rings=self._rings
            )
            sampler.start()
            self._block = block
            self.sampler = sampler
            self.features = feat
        except Exception as exc:
            hal.log_exception(exc, "acquisition")
            self.sampler = None
            self.features = None
            self.logs.append((_LOG_ERROR, "acquisition off: " + hal.exception_text(exc)))

    def _make_sensors(self, cfg):
        # The factory is needed only until the drivers exist: unloaded afterwards.
        from bpiiot_fw import sensors

        try:
            if self.accel is None:
                self.accel = sensors.make_accel(cfg["sensor"], cfg["sample_rate_hz"])
            if self.temp is None:
                try:
                    self.temp = sensors.make_temp(cfg["sensor"])
                except Exception as exc:
                    self.temp = None
                    self.logs.append((_LOG_WARNING, "no temperature: " + hal.exception_text(exc)))
        finally:
            sensors = None
            hal.unload("sensors")

    def stop_acquisition(self):
        """Stop the sampler, keeping its overrun count for the status."""
        if self.sampler is not None:
            self.overruns_base += self.sampler.overruns
            try:
                self.sampler.stop()
            except Exception:
                pass
        self.sampler = None

    @property
    def overruns(self):
        """Samples lost since boot."""
        return self.overruns_base + (self.sampler.overruns if self.sampler is not None else 0)

    def _sample(self):
        sampler = self.sampler
        feat = self.features
        x, y, z = self._bufs
        while True:
            n = sampler.poll(x, y, z, self._block)
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
                self._report(res)

    def _report(self, result):
        cfg = self.store.cfg
        ch = cfg["channels"]
        self.windows += 1
        rms, peak, vel, zone, flags = result
        # Saturation is decided here, per axis actually sent.
        flags &= ~_F_VEL_SATURATED
        out = [self.windows & 0xFFFFFFFF, self.clock.ms() & 0xFFFFFFFF, self.features.window_n]
        limit = getattr(self.accel, "limit_mg", 32767)
        for j, arr in enumerate((rms, peak, vel)):
            for i in range(3):
                v = arr[i] if ch & (1 << i) else 0
                if v > 65535:  # uint16 on the wire: never a silent clip
                    v = 65535
                    flags |= _F_VEL_SATURATED if j == 2 else _F_ACC_SATURATED
                elif j == 1 and v >= limit:
                    flags |= _F_CLIPPED
                out.append(v)
        t = None
        if ch & 8 and self.temp is not None:
            try:
                t = self.temp.read_cdeg()
                t = -27315 if t < -27315 else (100000 if t > 100000 else t)
            except Exception:
                t = None
        out.append(t)
        if flags:
            out.append(flags)  # SPEC.md 5.2: the 14th item only when non-zero
        self.send(_T_REPORT, out)
        pin = cfg.get("alarm_pin")
        if pin is not None and not flags:
            # A flagged window is not representative: the alarm keeps its state.
            self.outputs.set(pin, 1 if zone == 3 else 0)

    # -- link --------------------------------------------------------------------------

    def send(self, type_, payload):
        """Encode and write one frame."""
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

    def config_payload(self):
        """The config message's map."""
        cfg = self.store.cfg
        return {i + 1: cfg[k] for i, k in enumerate(CONFIG_KEYS)}

    def status_payload(self):
        """The status message's array."""
        return [
            self.frames_sent & 0xFFFFFFFF,
            self.frames_rejected & 0xFFFFFFFF,
            self.overruns & 0xFFFFFFFF,
            hal.mem_free(),
            self.load.permille,
            self.clock.ms() & 0xFFFFFFFF,
            self.windows & 0xFFFFFFFF,
        ]

    def nack(self, seq, code, detail):
        """Refuse the command with sequence number seq."""
        self.send(_T_NACK, [seq & 0xFFFFFFFF, code, detail[:64]])

    def handle(self, chunk):
        """Verify one received chunk and carry out the command it holds."""
        try:
            type_, _session, seq, _auth, obj = self.ver.verify(chunk)
        except codec.FrameError as exc:
            self.frames_rejected += 1
            code = codec.NACK_FOR.get(exc.reason)
            if code is not None and exc.seq is not None:
                self.nack(exc.seq, code, exc.reason)
            return
        try:
            self.command(type_, seq, obj)
        except SystemExit:
            raise
        except BadValue as exc:
            self.nack(seq, _E_BAD_VALUE, str(exc))
        except Exception as exc:
            hal.log_exception(exc, "command 0x%02x" % type_)
            self.nack(seq, _E_INTERNAL, hal.exception_text(exc)[:64])
            self.log(_LOG_ERROR, "command 0x%02x failed: %s" % (type_, hal.exception_text(exc)))

    def command(self, type_, seq, obj):
        """Carry out one verified command (payload already checked against its schema)."""
        if type_ == _T_PING:
            pass
        elif type_ == _T_HELLO_REQUEST:
            self.hello()
            if self.problem:
                self.logs.append((_LOG_WARNING, self.problem))
        elif type_ == _T_GET_STATUS:
            self.send(_T_STATUS, self.status_payload())
        elif type_ == _T_GET_CONFIG:
            self.send(_T_CONFIG, self.config_payload())
        elif type_ == _T_SET_CONFIG:
            self.set_config(obj)
            self.send(_T_CONFIG, self.config_payload())
        elif type_ == _T_SET_OUTPUT:
            if not self.outputs.set(obj[0], obj[1]):
                raise BadValue("pin %d is not an output" % obj[0])
        elif type_ == _T_SET_KEY:
            # The ack goes out under the old key; the new key applies from the next frame.
            self.send(_T_ACK, [seq])
            self._set_key(obj[0])
            return
        elif type_ == _T_CLEAR_KEY:
            self.send(_T_ACK, [seq])
            self._set_key(None)
            return
        elif type_ == _T_REBOOT:
            self.send(_T_ACK, [seq])
            self.stop_acquisition()
            self.flush()
            hal.reboot()
            return
        else:  # the verifier only lets command types through; keep the contract anyway
            self.nack(seq, _E_UNKNOWN_TYPE, "type")
            return
        self.send(_T_ACK, [seq])

    def _set_key(self, key):
        self.enc.set_key(key)
        self.ver.set_key(key)
        self.store.update(key=key.hex() if key else None)
        self.problem = None

    def flush(self):
        """Write what must survive a reboot (config, key), and the Unix port's output
        record, if they changed: called when the sample ring has just been drained, so
        a slow flash write delays sampling by at most the ring's length, and changes
        made in between are coalesced into one write."""
        if self.outputs.dirty:
            self.outputs.flush()
        if self.store.dirty:
            try:
                self.store.flush()
            except OSError as exc:
                self.log(_LOG_ERROR, "config not saved: " + hal.exception_text(exc))

    def set_config(self, obj):
        """Apply a set_config map {1..5: value}; BadValue (nothing changed) if impossible."""
        cfg = self.store.cfg
        new = {k: cfg[k] for k in CONFIG_KEYS}
        for i, value in obj.items():
            new[CONFIG_KEYS[i - 1]] = value
        try:
            self._plan(new)
        except ValueError as exc:
            raise BadValue(str(exc)[:64])
        if self.accel is not None and new["sample_rate_hz"] != cfg["sample_rate_hz"]:
            try:
                # Sensors refuse a rate before changing anything (ValueError).
                self.accel.set_rate(new["sample_rate_hz"])
            except ValueError as exc:
                raise BadValue(str(exc)[:64])
        if new == {k: cfg[k] for k in CONFIG_KEYS}:
            return
        restart = any(new[k] != cfg[k] for k in CONFIG_KEYS if k != "channels")
        self.store.update(**new)
        self.problem = None
        if restart:
            self.start_acquisition()

    # -- main loop ---------------------------------------------------------------------

    def _flush_logs(self):
        while self.logs:
            level, text = self.logs.pop(0)
            self.log(level, text)

    def poll_link(self, ms):
        """Wait up to ms for bytes, then handle every complete frame."""
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
                self.handle(chunk)
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
                self.stop_acquisition()
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
                    self._sample()
                except Exception as exc:
                    hal.log_exception(exc, "sampling")
                    self.stop_acquisition()
                    self.log(_LOG_ERROR, "acquisition stopped: " + hal.exception_text(exc))
            if self.store.dirty or self.outputs.dirty:
                # Right after _sample the ring is (nearly) empty: the most room for a
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
