"""The link to one board: a pyserial port, one read thread, verified frames out.

``Link`` is the only place that reads the port. It turns bytes into frames
(:mod:`bpiiot.wire`), counts everything it drops, and hands each verified
:class:`~bpiiot.wire.Frame` to its subscribers, in order, on the read thread.
Any pyserial URL works: a device path, ``socket://``, ``rfc2217://``, ``loop://``.
When the port disappears the link says so, retries with exponential backoff and
says so again when it is back; subscribers are told through ``on_connect``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from bpiiot import wire
from bpiiot.errors import BpiiotError
from bpiiot.messages import Message

log = logging.getLogger("bpiiot.link")

# What the tail of a frame fails with: it is checked for these before anything else.
_CUT = ("cobs", "truncated", "crc")

Subscriber = Callable[[wire.Frame], None]


class LinkError(BpiiotError):
    """The port could not be opened or written, or the link is closed."""


@dataclass
class LinkStats:
    """Counters of one link since it was created.

    The read thread and writers update them under :attr:`lock`; :meth:`snapshot` reads
    them under it too, so a snapshot taken from another thread is consistent (a frame
    counted as verified is never missing from ``bytes_in``).
    """

    bytes_in: int = 0
    bytes_out: int = 0
    frames_ok: int = 0
    frames_sent: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Frames dropped, by reason: one of :data:`wire.REASONS`, ``internal``, or
    ``partial``: the bytes before the first delimiter since the port opened, failing
    as a frame's tail does (cobs, truncated, crc), i.e. the end of a frame sent before
    this link listened."""
    gaps: int = 0
    reboots: int = 0
    reconnects: int = 0
    subscriber_errors: int = 0
    internal_errors: Counter[str] = field(default_factory=Counter)
    """Exceptions the read thread survived, by where they happened (``verify``,
    ``deframe``, ``read``, ``on_connect``); each is logged with its traceback."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while counters change and while :meth:`snapshot` copies them."""

    @property
    def frames_dropped(self) -> int:
        """All frames dropped, whatever the reason."""
        return sum(self.dropped.values())

    def snapshot(self) -> dict[str, Any]:
        """:meth:`as_dict`, consistent across fields, from any thread while the link counts."""
        with self.lock:
            return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot."""
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_ok": self.frames_ok,
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "dropped": dict(self.dropped),
            "gaps": self.gaps,
            "reboots": self.reboots,
            "reconnects": self.reconnects,
            "subscriber_errors": self.subscriber_errors,
            "internal_errors": dict(self.internal_errors),
        }


class Link:
    """A verified frame stream over one serial port (see the module docstring).

    ``key`` turns on authentication both ways. ``reconnect`` keeps retrying a
    lost port with backoff from ``backoff_s`` doubling up to ``max_backoff_s``.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        key: bytes | None = None,
        reconnect: bool = True,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        read_timeout_s: float = 0.05,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.reconnect = reconnect
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.read_timeout_s = read_timeout_s
        self.stats = LinkStats()
        self.verifier = wire.FrameVerifier("host", key)
        self.encoder = wire.FrameEncoder(from_host=True, key=key)
        self._deframer = wire.Deframer()
        self._subscribers: tuple[Subscriber, ...] = ()  # replaced, never changed in place
        self._subs_lock = threading.Lock()  # for whoever replaces it; the reader needs none
        self.last_raw = b""
        """The frame being delivered as it was verified (COBS-encoded, without its
        delimiter): valid inside a subscriber's call, on the read thread."""
        self._on_connect: list[Callable[[], None]] = []
        self._port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.foreign_version: str | None = None
        """The last protocol version refused (``major version N``), if any."""

    # -- lifecycle ---------------------------------------------------------------

    def open(self) -> Link:
        """Open the port and start the read thread; raises :class:`LinkError`."""
        if self._thread is not None:
            return self
        self._port = self._open_port()
        self._connected.set()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"bpiiot-link {self.url}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the read thread and close the port (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._close_port()

    def __enter__(self) -> Link:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the port is open (again); False on timeout."""
        return self._connected.wait(timeout)

    # -- keys ------------------------------------------------------------------------

    def set_key(self, key: bytes | None) -> None:
        """Use ``key`` (or none) for frames sent and received from now on."""
        self.encoder.set_key(key)
        self.verifier.set_key(key)

    # -- subscribers -------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Subscriber:
        """Call ``callback(frame)`` on the read thread for every verified frame."""
        with self._subs_lock:
            self._subscribers = (*self._subscribers, callback)
        return callback

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback`` (no error if it was not subscribed)."""
        with self._subs_lock:
            subs = list(self._subscribers)
            if callback in subs:
                subs.remove(callback)
                self._subscribers = tuple(subs)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the read thread each time the port is reopened."""
        self._on_connect.append(callback)

    def queue(self, maxsize: int = 10000) -> FrameQueue:
        """Subscribe a bounded queue (oldest frames dropped and counted when full)."""
        q = FrameQueue(self, maxsize)
        self.subscribe(q.put)
        return q

    # -- sending ---------------------------------------------------------------------

    def send(self, message: Message) -> int:
        """Frame and write ``message``; returns its sequence number."""
        with self._write_lock:
            self._write(self.encoder.encode(message), frames=1)
            return self.encoder.seq

    def send_with(
        self,
        build: Callable[[wire.FrameEncoder], tuple[int, bytes]],
        before_write: Callable[[int], None] | None = None,
    ) -> int:
        """Build a frame with this link's encoder and write it, atomically with other sends.

        ``build(encoder)`` returns ``(seq, frame bytes)``; ``before_write(seq)`` runs under
        the same lock just before the write (e.g. to register who waits for the ack, so an
        answer can never arrive before anyone listens). Returns the sequence number.
        """
        with self._write_lock:
            seq, data = build(self.encoder)
            if before_write is not None:
                before_write(seq)
            self._write(data, frames=1)
            return seq

    def adopt_session(self, session: int, last_host_seq: int) -> None:
        """Send in the board's ``session`` from now on, continuing above ``last_host_seq``
        (the board refuses a host sequence number it has already seen). A new session
        starts again from ``last_host_seq``: the board's replay state did too (SPEC.md
        3.1), and the host's numbers stay far from 2^32 - 1."""
        with self._write_lock:
            if session != self.encoder.session:
                self.encoder.seq = last_host_seq
            else:
                self.encoder.seq = max(self.encoder.seq, last_host_seq)
            self.encoder.session = session

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (conformance tests, resynchronisation)."""
        with self._write_lock:
            self._write(data, frames=0)

    def _write(self, data: bytes, frames: int) -> None:
        port = self._port
        if port is None or not self._connected.is_set():
            raise LinkError(f"{self.url}: not connected")
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.url}: write failed: {exc}") from None
        stats = self.stats
        with stats.lock:
            stats.bytes_out += len(data)
            stats.frames_sent += frames

    # -- reading -----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Process received bytes: verify frames, count drops, deliver (read thread).

        Nothing a frame or a subscriber raises escapes: a refused frame is counted
        in ``stats.dropped`` under its reason, a subscriber's exception in
        ``stats.subscriber_errors``, anything unexpected in ``stats.internal_errors``
        (and ``dropped["internal"]`` for the frame it hit), and processing goes on
        with the next frame. Only ``KeyboardInterrupt`` and ``SystemExit`` raised on
        the main thread propagate, so a program that feeds bytes itself can still be
        stopped; on the read thread they are counted like any other error.
        """
        stats = self.stats
        lock = stats.lock
        with lock:
            stats.bytes_in += len(data)
        deframer = self._deframer
        before = deframer.oversize
        try:
            chunks = deframer.feed(data)
        except BaseException as exc:
            self._survive(exc, "deframe")
            self._deframer = wire.Deframer()
            return
        if deframer.oversize != before:
            with lock:
                stats.dropped["oversize"] += deframer.oversize - before
        verifier = self.verifier
        head = deframer.head_returned
        for i, chunk in enumerate(chunks):
            try:
                frame = verifier.verify(chunk)
            except wire.FrameError as exc:
                # The bytes before the first delimiter since the port opened: the tail
                # of a frame sent before we listened, not a damaged one.
                reason = "partial" if head and i == 0 and exc.reason in _CUT else exc.reason
                with lock:
                    stats.dropped[reason] += 1
                    stats.gaps = verifier.gaps
                    stats.reboots = verifier.reboots
                log.debug("dropped frame: %s", exc)
                if exc.reason == "version":
                    self.foreign_version = exc.detail
                if exc.reason == "replay" and self.verifier.session is not None:
                    self._warn_replay()
                continue
            except BaseException as exc:
                with lock:
                    stats.dropped["internal"] += 1
                self._survive(exc, "verify")
                continue
            with lock:
                stats.frames_ok += 1
                stats.gaps = verifier.gaps
                stats.reboots = verifier.reboots
            self.last_raw = chunk if type(chunk) is bytes else bytes(chunk)
            for sub in self._subscribers:
                try:
                    sub(frame)
                except BaseException as exc:
                    if _must_propagate(exc):
                        raise
                    with lock:
                        stats.subscriber_errors += 1
                    log.exception("subscriber %r failed", sub)

    def _survive(self, exc: BaseException, where: str) -> None:
        # Log and count an unexpected exception, or re-raise a main-thread interrupt.
        if _must_propagate(exc):
            raise exc
        with self.stats.lock:
            self.stats.internal_errors[where] += 1
        log.error("%s: %s failed; the link goes on", self.url, where, exc_info=exc)

    _replay_warned = 0.0

    def _warn_replay(self) -> None:
        now = time.monotonic()
        if now - self._replay_warned > 10.0:
            self._replay_warned = now
            log.warning(
                "%s: refusing frames whose (session, seq) went backwards; if the board's "
                "boot counter was erased, call forget_session() to accept it",
                self.url,
            )

    def forget_session(self) -> None:
        """Accept the board's next session whatever it is (after an operator checked)."""
        self.verifier.forget()

    def _run(self) -> None:
        delay = self.backoff_s
        while not self._stop.is_set():
            port = self._port
            if port is None:
                if not self.reconnect:
                    return
                try:
                    self._port = self._open_port()
                except LinkError as exc:
                    log.debug("%s", exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.max_backoff_s)
                    continue
                delay = self.backoff_s
                with self.stats.lock:
                    self.stats.reconnects += 1
                self._deframer = wire.Deframer()
                self._connected.set()
                log.warning("%s: port is back, link resumed", self.url)
                for cb in tuple(self._on_connect):
                    try:
                        cb()
                    except BaseException as exc:
                        self._survive(exc, "on_connect")
                continue
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial's internals after a close race.
                if self._stop.is_set():
                    return
                log.warning("%s: port lost (%s); reconnecting", self.url, exc)
                self._close_port()
                continue
            except BaseException as exc:
                self._survive(exc, "read")
                self._stop.wait(delay)
                continue
            if data:
                try:
                    self.feed(data)
                except BaseException as exc:  # feed() counts its own; this is a last resort
                    self._survive(exc, "feed")

    def _open_port(self) -> serial.SerialBase:
        try:
            port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=self.read_timeout_s, do_not_open=True
            )
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from None
        return port

    def _close_port(self) -> None:
        self._connected.clear()
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass


def _must_propagate(exc: BaseException) -> bool:
    # Ctrl-C and sys.exit() mean "stop" only on the main thread: Python delivers
    # signals there, and the caller of feed() there expects them. On the read thread
    # they would only end the thread silently, so there they are errors like others.
    return isinstance(exc, KeyboardInterrupt | SystemExit) and (
        threading.current_thread() is threading.main_thread()
    )


class FrameQueue:
    """A bounded queue subscribed to a link; full means the oldest frame is dropped."""

    def __init__(self, link: Link, maxsize: int) -> None:
        self._link = link
        self._q: queue.Queue[wire.Frame] = queue.Queue(maxsize)
        self.overflows = 0

    def put(self, frame: wire.Frame) -> None:
        """Add a frame (called on the read thread)."""
        while True:
            try:
                self._q.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.overflows += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> wire.Frame | None:
        """Next frame, or None after ``timeout`` seconds."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Unsubscribe from the link."""
        self._link.unsubscribe(self.put)
