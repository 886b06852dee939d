"""Live updates: one bus listener, fanned out to each browser's bounded queue as SSE.

The bus gives the app one listener thread with its own bounded queue; this module turns
frames and events into small JSON-friendly dicts and hands them to the event loop, where
each open event stream has an ``asyncio.Queue`` of at most ``client_maxsize`` items. A
browser that stops reading loses its oldest items (counted in :attr:`EventHub.dropped`);
it never slows the bus or the other browsers.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import Callable
from typing import Any

from bpiiot import iso20816
from bpiiot import messages as m
from bpiiot.bus import Event, FrameEvent, Listener

#: Service event kinds passed on to browsers (see :mod:`bpiiot.bus`).
EVENT_KINDS = frozenset({"board", "link_stats", "rule", "incident", "tx", "log"})
#: Fields that may never leave the SBC, whatever a publisher puts in an event.
SECRET_FIELDS = frozenset({"key", "link_key", "private_key", "password", "keystore_password"})


def report_dict(
    board: str, received: float, rep: m.Report, machine_class: int | None
) -> dict[str, Any]:
    """A report as the pages and the API show it (features per axis, zones, flags)."""
    klass = iso20816.CLASS_CODES[machine_class] if machine_class is not None else None
    zones = (
        [iso20816.ZONE_NAMES[iso20816.zone(v, klass)] for v in rep.vel_rms_um_s] if klass else None
    )
    return {
        "board": board,
        "received": received,
        "window_seq": rep.window_seq,
        "board_time_ms": rep.board_time_ms,
        "acc_rms_mg": list(rep.acc_rms_mg),
        "acc_peak_mg": list(rep.acc_peak_mg),
        "vel_rms_um_s": list(rep.vel_rms_um_s),
        "zones": zones,
        "temperature_c": None if rep.temperature_cdeg_c is None else rep.temperature_cdeg_c / 100,
        "flags": m.ReportFlag.names(rep.flags),
        "representative": rep.representative,
    }


def public_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the fields that could hold a secret.

    ``key`` in an incident or tx event is the outbox idempotency key, not a secret.
    """
    return {k: v for k, v in data.items() if k not in SECRET_FIELDS or k == "key"}


#: One plot point: (time received, velocity RMS x, y, z in mm/s, max velocity if flagged).
Point = tuple[float, float, float, float, float | None]


def plot_point(received: float, rep: m.Report) -> Point:
    """A report as one point of the overview's velocity plot."""
    v = rep.vel_rms_um_s
    return (
        received,
        v[0] / 1000,
        v[1] / 1000,
        v[2] / 1000,
        None if rep.flags == 0 else max(v) / 1000,
    )


def downsample(points: list[Point], max_points: int) -> list[Point]:
    """At most ``max_points`` points: per bucket the highest value of each axis (peaks are
    what matter on a vibration plot) and the highest flagged value, at the bucket's last time."""
    n = len(points)
    if n <= max_points:
        return points
    out: list[Point] = []
    for b in range(max_points):
        chunk = points[b * n // max_points : (b + 1) * n // max_points]
        flagged = [p[4] for p in chunk if p[4] is not None]
        out.append(
            (
                chunk[-1][0],
                max(p[1] for p in chunk),
                max(p[2] for p in chunk),
                max(p[3] for p in chunk),
                max(flagged) if flagged else None,
            )
        )
    return out


class EventHub(Listener):
    """The app's bus listener, the last hour of plot points per board, the open event streams.

    The overview is drawn from these points (filled once from the store at start, then by
    the bus), so a page load never decodes stored reports.
    """

    def __init__(
        self,
        machine_class: Callable[[str], int | None],
        client_maxsize: int = 256,
        history_s: float = 3600.0,
    ):
        self.machine_class = machine_class
        self.client_maxsize = client_maxsize
        self.history_s = history_s
        self._points: dict[str, collections.deque[Point]] = {}
        self._points_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self.last_report: dict[str, dict[str, Any]] = {}
        """The newest report dict of each board."""
        self._clients: set[asyncio.Queue[tuple[str, str]]] = set()
        self._lock = threading.Lock()
        self._hello_hooks: list[Callable[[str], None]] = []

    def add_points(self, board: str, points: list[Point]) -> None:
        """Append plot points of ``board`` (oldest first) and forget those past the history."""
        with self._points_lock:
            q = self._points.setdefault(board, collections.deque())
            q.extend(points)
            if q:
                cut = q[-1][0] - self.history_s
                while q and q[0][0] < cut:
                    q.popleft()

    def backfill(self, board: str, points: list[Point]) -> None:
        """Put stored points (oldest first) before the live ones already received."""
        with self._points_lock:
            q = self._points.setdefault(board, collections.deque())
            first_live = q[0][0] if q else float("inf")
            q.extendleft(reversed([p for p in points if p[0] < first_live]))

    def points(self, board: str) -> list[Point]:
        """A copy of the board's plot points of the last ``history_s``, oldest first."""
        with self._points_lock:
            return list(self._points.get(board, ()))

    def on_hello(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(board)`` (on the bus thread) when a board says hello (reboot, reconnect)."""
        self._hello_hooks.append(hook)

    # -- bus side (listener thread) ------------------------------------------------

    def on_frame(self, item: FrameEvent) -> None:
        msg = item.frame.message
        if isinstance(msg, m.Report):
            d = report_dict(item.board, item.received, msg, self.machine_class(item.board))
            self.last_report[item.board] = d
            self.add_points(item.board, [plot_point(item.received, msg)])
            self._publish("report", d)
        elif isinstance(msg, m.Hello):
            for hook in self._hello_hooks:
                hook(item.board)
            self._publish(
                "board",
                {
                    "board": item.board,
                    "state": "hello",
                    "board_id": msg.board_id,
                    "firmware_version": ".".join(map(str, msg.firmware_version)),
                    "protocol_version": ".".join(map(str, msg.protocol_version)),
                    "boot_counter": msg.boot_counter,
                },
            )

    def on_event(self, event: Event) -> None:
        if event.kind in EVENT_KINDS:
            self._publish(event.kind, public_fields(event.to_dict()))

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        text = json.dumps(data, separators=(",", ":"))
        try:
            loop.call_soon_threadsafe(self._fan_out, kind, text)
        except RuntimeError:
            pass  # the loop closed between the check and the call: the app is stopping

    # -- loop side -----------------------------------------------------------------

    def _fan_out(self, kind: str, text: str) -> None:
        for q in tuple(self._clients):
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait((kind, text))

    def open(self) -> asyncio.Queue[tuple[str, str]]:
        """A new stream's queue (call on the event loop)."""
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue(self.client_maxsize)
        self._clients.add(q)
        return q

    def close(self, q: asyncio.Queue[tuple[str, str]]) -> None:
        """Forget a stream's queue."""
        self._clients.discard(q)

    @property
    def streams(self) -> int:
        """How many event streams are open."""
        return len(self._clients)
