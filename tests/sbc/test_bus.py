"""The in-process bus: per-listener queues, drops counted, failures contained, order kept."""

from __future__ import annotations

import threading
import time

import pytest

from bpiiot import messages as m
from bpiiot import wire
from bpiiot.bus import Bus, Event, FrameEvent, Listener
from bpiiot.link import Link


def report(seq: int, flags: int = 0) -> m.Report:
    return m.Report(seq, seq * 500, 3200, (1, 2, 3), (4, 5, 6), (7, 8, 9), 2500, flags)


def frame(seq: int) -> wire.Frame:
    enc = wire.FrameEncoder(from_host=False, session=3)
    ver = wire.FrameVerifier("host", None)
    enc.seq = seq - 1
    return ver.verify(enc.encode(report(seq))[:-1])


class Recorder(Listener):
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None) -> None:
        self.frames: list[int] = []
        self.events: list[str] = []
        self.errors: list[BaseException] = []
        self.stopped = False
        self.gate = gate
        self.fail_on = fail_on

    def on_frame(self, item: FrameEvent) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if item.frame.seq == self.fail_on:
            raise ValueError("listener bug")
        self.frames.append(item.frame.seq)

    def on_event(self, event: Event) -> None:
        self.events.append(event.kind)

    def on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)

    def stop(self) -> None:
        self.stopped = True


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_every_listener_gets_every_item_in_order() -> None:
    with Bus() as bus:
        a, b = Recorder(), Recorder()
        bus.subscribe(a)
        bus.subscribe(b, name="second")
        for seq in range(1, 101):
            bus.publish_frame("mill", frame(seq))
        bus.publish_event("incident", {"rule": "vib"}, board="mill")
        wait_for(lambda: len(a.events) == 1 and len(b.events) == 1)
        assert a.frames == b.frames == list(range(1, 101))
        stats = bus.stats()
        assert stats["Recorder"]["delivered"] == 101
        assert stats["second"] == {"delivered": 101, "dropped": 0, "errors": 0, "queued": 0}
    assert a.stopped and b.stopped


def test_a_stalled_listener_never_blocks_the_publisher_and_its_drops_are_counted() -> None:
    gate = threading.Event()
    bus = Bus()
    slow, fast = Recorder(gate), Recorder()
    bus.subscribe(slow, maxsize=10, name="slow")
    bus.subscribe(fast, maxsize=1000, name="fast")
    t0 = time.monotonic()
    for seq in range(1, 501):
        bus.publish_frame("mill", frame(seq))
    publish_s = time.monotonic() - t0
    wait_for(lambda: len(fast.frames) == 500)
    stats = bus.stats()
    # The slow one holds at most its queue plus the item in its hands; the rest is counted.
    assert stats["slow"]["dropped"] >= 500 - 11
    assert stats["slow"]["dropped"] + stats["slow"]["queued"] + 1 >= 500
    assert stats["fast"]["dropped"] == 0
    assert publish_s < 5.0  # a blocked put would have waited on the gate (10 s)
    gate.set()
    bus.close()
    # What it kept are the newest frames, in order.
    assert slow.frames == sorted(slow.frames)
    assert slow.frames[-1] == 500


def test_a_failing_listener_is_told_and_keeps_receiving() -> None:
    with Bus() as bus:
        rec = Recorder(fail_on=3)
        bus.subscribe(rec)
        for seq in range(1, 6):
            bus.publish_frame("mill", frame(seq))
        wait_for(lambda: len(rec.frames) == 4)
        assert rec.frames == [1, 2, 4, 5]
        assert [str(e) for e in rec.errors] == ["listener bug"]
        assert bus.stats()["Recorder"]["errors"] == 1


def test_unsubscribe_delivers_what_is_queued_then_stops() -> None:
    bus = Bus()
    rec = Recorder()
    bus.subscribe(rec)
    for seq in range(1, 51):
        bus.publish_frame("mill", frame(seq))
    bus.unsubscribe(rec)
    assert rec.frames == list(range(1, 51))
    assert rec.stopped
    bus.publish_frame("mill", frame(51))
    time.sleep(0.05)
    assert rec.frames[-1] == 50
    again = Recorder()
    bus.subscribe(again)
    with pytest.raises(ValueError, match="already subscribed"):
        bus.subscribe(again)
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe(Recorder())


def test_attach_publishes_the_links_verified_frames_under_the_board_name() -> None:
    got: list[tuple[str, int, int]] = []
    done = threading.Event()

    class Boards(Listener):
        def on_frame(self, item: FrameEvent) -> None:
            got.append((item.board, item.frame.type, item.frame.seq))
            if len(got) == 3:
                done.set()

    enc = wire.FrameEncoder(from_host=False, session=9)
    with Bus() as bus, Link("loop://", reconnect=False) as link:
        bus.subscribe(Boards())
        bus.attach("press-2", link)
        with pytest.raises(ValueError, match="already attached"):
            bus.attach("press-2", link)
        for seq in (1, 2, 3):
            link.send_raw(enc.encode(report(seq)))
        assert done.wait(5)
        bus.detach("press-2")
        link.send_raw(enc.encode(report(4)))
        time.sleep(0.1)
    assert got == [("press-2", m.Report.TYPE, 1), ("press-2", m.Report.TYPE, 2), ("press-2", 2, 3)]


def test_event_to_dict_is_flat_and_json_friendly() -> None:
    ev = Event("tx", {"state": "mined", "hash": "0xab"}, board="mill", time=12.5)
    assert ev.to_dict() == {
        "kind": "tx",
        "board": "mill",
        "time": 12.5,
        "state": "mined",
        "hash": "0xab",
    }


def test_report_flags_name_why_a_window_is_not_representative() -> None:
    assert report(1).representative
    flagged = report(2, m.ReportFlag.SETTLING | m.ReportFlag.VEL_SATURATED)
    assert not flagged.representative
    assert m.ReportFlag.names(flagged.flags) == ["settling", "vel_saturated"]
    assert m.ReportFlag.names(0x8000) == ["bit15"]
    assert flagged.to_payload()[-1] == 0x11 and len(flagged.to_payload()) == 14
    assert len(report(1).to_payload()) == 13
    assert m.Report.from_payload(flagged.to_payload()) == flagged
    with pytest.raises(m.SchemaError, match=r"13 elements \(14 with flags\), got 15"):
        m.Report.from_payload([*report(1).to_payload(), 1, 1])


def test_link_stats_snapshot_is_consistent_and_safe_inside_a_subscriber() -> None:
    seen: list[dict[str, object]] = []
    done = threading.Event()
    enc = wire.FrameEncoder(from_host=False, session=4)
    with Link("loop://", reconnect=False) as link:

        def sub(frame: wire.Frame) -> None:
            # On the read thread, between two frames: the lock must not be held here.
            seen.append(link.stats.snapshot())
            if frame.seq == 50:
                done.set()

        link.subscribe(sub)
        sizes = []
        for seq in range(1, 51):
            data = enc.encode(report(seq))
            sizes.append(len(data))
            link.send_raw(data)
        assert done.wait(10)
    # Each snapshot already counts the frame being delivered and every byte before it.
    assert [s["frames_ok"] for s in seen] == list(range(1, 51))
    for n, s in enumerate(seen, start=1):
        assert isinstance(s["bytes_in"], int) and s["bytes_in"] >= sum(sizes[:n])
    final = link.stats.snapshot()
    assert final["bytes_in"] == final["bytes_out"] == sum(sizes)
