"""The service's in-process bus: verified frames and service events, fanned out.

One publisher side (each board's :class:`~bpiiot.link.Link`, the controller, the outbox
drain) and many consumers (the store, the rules, the local socket, the web page, the
cloud bridge). A consumer is a :class:`Listener` (the shape of python-can's listener:
``on_frame``, ``on_event``, ``on_error``, ``stop``) and gets its own bounded queue and
thread, so a slow or failing consumer never stalls a port's read thread or another
consumer. When a queue is full its oldest item is dropped and counted: the counts are in
:meth:`Bus.stats`.

Data flows one way: link -> bus -> listeners. Nothing on the bus reads a port.

Event kinds the service publishes (``Event.kind``, ``Event.board``, then ``data``):

- ``board``: a board's state changed. ``state`` is ``connected``, ``disconnected``,
  ``hello`` (with ``board_id``, ``firmware_version``, ``protocol_version``,
  ``boot_counter``) or ``released``/``resumed`` (port lent out for flashing).
- ``link_stats``: periodic counters of one link (``LinkStats.as_dict()``) and the bus's
  per-listener drops (``bus``).
- ``rule``: a rule moved (``rule``, ``state``: ``inactive``, ``pending``, ``firing``,
  ``resolved``; ``value``, ``window_seq``).
- ``incident``: an incident opened or closed (``id``, ``rule``, ``state``: ``open`` or
  ``resolved``; ``key``, the idempotency key of its action; ``evidence_hash``).
- ``tx``: an outbox entry moved (``key``, ``contract``, ``function``, ``state``:
  ``queued``, ``submitted``, ``replaced``, ``confirmed``, ``failed``; ``tx_hash``,
  ``nonce``, ``block``, ``error``).
- ``log``: a service log line worth showing (``level``, ``text``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bpiiot import wire
from bpiiot.link import Link

log = logging.getLogger("bpiiot.bus")


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """A verified frame from one configured board."""

    board: str
    """The board's name in the service's configuration."""
    frame: wire.Frame
    received: float = field(default_factory=time.time)
    """When the SBC received it (Unix time, seconds)."""
    raw: bytes = b""
    """The frame as verified (COBS-encoded, no delimiter): kept as evidence, re-verifiable."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something the service did or saw that is not a frame.

    ``kind`` names it (for example ``link_stats``, ``board``, ``rule``, ``incident``,
    ``tx``); ``data`` is a JSON-friendly dict whose fields depend on the kind.
    """

    kind: str
    data: dict[str, Any]
    board: str | None = None
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form: ``{"kind", "board", "time", **data}``."""
        return {"kind": self.kind, "board": self.board, "time": self.time, **self.data}


class Listener:
    """A consumer of the bus; override what you need (every method has a default).

    Each method runs on the listener's own thread, in the order items were published.
    """

    def on_frame(self, item: FrameEvent) -> None:
        """A verified frame arrived (all message types: reports, hellos, acks, logs...)."""

    def on_event(self, event: Event) -> None:
        """A service event arrived."""

    def on_error(self, exc: BaseException) -> None:
        """``on_frame`` or ``on_event`` raised ``exc``; the listener keeps receiving."""
        log.error("%s failed: %r", type(self).__name__, exc)

    def stop(self) -> None:
        """The listener was unsubscribed or the bus closed; release what it holds."""


@dataclass
class SubscriptionStats:
    """Counters of one listener's queue."""

    delivered: int = 0
    dropped: int = 0
    errors: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-friendly snapshot."""
        return {
            "delivered": self.delivered,
            "dropped": self.dropped,
            "errors": self.errors,
            "queued": self.queued,
        }


_CLOSE = object()  # queued by close(): everything before it is delivered, then the thread ends


class Subscription:
    """One listener's bounded queue and the thread that drains it.

    The queue is a :class:`queue.SimpleQueue` (C, no Python-level lock): a port's read
    thread hands an item over without ever waiting for a lock that a descheduled
    listener thread holds, which under load is what limits a lock-per-item queue.
    """

    def __init__(self, listener: Listener, maxsize: int, name: str) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.listener = listener
        self.name = name
        self.maxsize = maxsize
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._drop_lock = threading.Lock()  # taken only when the queue is full
        self._dropped = 0
        self._delivered = 0  # written by the listener's thread only
        self._errors = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"bpiiot-bus {name}", daemon=True)
        self._thread.start()

    def put(self, item: FrameEvent | Event) -> None:
        """Queue ``item``; never blocks (the oldest item is dropped when full)."""
        if self._closing:
            return
        q = self._q
        if q.qsize() >= self.maxsize:
            with self._drop_lock:
                while q.qsize() >= self.maxsize:
                    try:
                        old = q.get_nowait()
                    except queue.Empty:
                        break
                    if old is _CLOSE:  # closing meanwhile: keep the marker, drop nothing
                        q.put(old)
                        return
                    self._dropped += 1
        q.put(item)

    def stats(self) -> SubscriptionStats:
        """A copy of the counters (each one exact; read together, not atomically)."""
        return SubscriptionStats(self._delivered, self._dropped, self._errors, self._q.qsize())

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then call the listener's ``stop``."""
        if not self._closing:
            self._closing = True
            self._q.put(_CLOSE)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("listener %s did not finish in %.1f s", self.name, timeout_s)
        try:
            self.listener.stop()
        except Exception:
            log.exception("listener %s failed to stop", self.name)

    def _run(self) -> None:
        listener = self.listener
        get = self._q.get
        while True:
            item = get()
            if item is _CLOSE:
                return
            try:
                if isinstance(item, FrameEvent):
                    listener.on_frame(item)
                else:
                    listener.on_event(item)
            except Exception as exc:
                self._errors += 1
                try:
                    listener.on_error(exc)
                except Exception:
                    log.exception("listener %s failed in on_error", self.name)
            else:
                self._delivered += 1


class Bus:
    """Fans out verified frames and service events to listeners (thread-safe)."""

    def __init__(self, default_maxsize: int = 10000) -> None:
        self.default_maxsize = default_maxsize
        self._subs: dict[int, Subscription] = {}
        self._fanout: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._links: dict[str, tuple[Link, Any]] = {}
        self._closed = False

    def subscribe(
        self, listener: Listener, *, maxsize: int | None = None, name: str | None = None
    ) -> Subscription:
        """Start delivering to ``listener`` on its own thread, through a bounded queue."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the bus is closed")
            if id(listener) in self._subs:
                raise ValueError(f"{listener!r} is already subscribed")
            sub = Subscription(
                listener, maxsize or self.default_maxsize, name or type(listener).__name__
            )
            self._subs[id(listener)] = sub
            self._fanout = tuple(self._subs.values())
            return sub

    def unsubscribe(self, listener: Listener, timeout_s: float = 5.0) -> None:
        """Stop delivering to ``listener`` (what is queued is delivered first)."""
        with self._lock:
            sub = self._subs.pop(id(listener), None)
            self._fanout = tuple(self._subs.values())
        if sub is not None:
            sub.close(timeout_s)

    def publish_frame(self, board: str, frame: wire.Frame, raw: bytes = b"") -> None:
        """Hand a verified frame from ``board`` to every listener; never blocks."""
        self._put(FrameEvent(board, frame, time.time(), raw))

    def publish_event(self, kind: str, data: dict[str, Any], board: str | None = None) -> None:
        """Hand a service event to every listener; never blocks."""
        self._put(Event(kind, data, board))

    def _put(self, item: FrameEvent | Event) -> None:
        for sub in self._fanout:  # a tuple swapped under the lock: no lock per item
            sub.put(item)

    def attach(self, board: str, link: Link) -> None:
        """Publish every frame ``link`` verifies as coming from ``board`` (with its raw bytes)."""
        put = self._put

        def forward(frame: wire.Frame) -> None:
            put(FrameEvent(board, frame, time.time(), link.last_raw))

        with self._lock:
            if board in self._links:
                raise ValueError(f"a link is already attached as {board!r}")
            self._links[board] = (link, forward)
        link.subscribe(forward)

    def detach(self, board: str) -> None:
        """Stop publishing the frames of ``board``'s link."""
        with self._lock:
            entry = self._links.pop(board, None)
        if entry is not None:
            link, forward = entry
            link.unsubscribe(forward)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per listener (by name): frames and events delivered, dropped, failed, queued."""
        with self._lock:
            subs = tuple(self._subs.values())
        out: dict[str, dict[str, int]] = {}
        for sub in subs:
            name = sub.name
            n = 2
            while name in out:
                name = f"{sub.name}#{n}"
                n += 1
            out[name] = sub.stats().as_dict()
        return out

    def close(self, timeout_s: float = 5.0) -> None:
        """Detach every link, then drain and stop every listener."""
        with self._lock:
            self._closed = True
            boards = list(self._links)
        for board in boards:
            self.detach(board)
        with self._lock:
            subs = list(self._subs.values())
            self._subs.clear()
            self._fanout = ()
        for sub in subs:
            sub.close(timeout_s)

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
