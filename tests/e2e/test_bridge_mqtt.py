"""The cloud bridge against a real Mosquitto, fed by the real firmware on a pty.

A subscriber counts every message by the bridge's queue sequence number (qseq): zero
lost, and a second copy only where the kit marked it (``resend`` after a missing PUBACK,
``replay`` on request) or the broker flagged it (DUP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bpiiot
from bpiiot import messages as m
from bpiiot.bridge import Bridge, BridgeConfig, senml
from bpiiot.bus import Bus

from .mqtt_broker import (
    Counter,
    Mosquitto,
    board_seqs_contiguous,
    verdict,
    wait_until,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def streaming_board(board_host: Any) -> Iterator[bpiiot.Board]:
    """The real firmware sending 20 reports a second."""
    with bpiiot.connect(board_host.port) as board:
        board.configure(window_ms=100, hop_ms=50)
        yield board


def config(tmp_path: Path, url: str, **kw: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "broker_url": url,
        "edge_node_id": "sbc1",
        "topic_prefix": "plant",
        "queue_path": str(tmp_path / "bridge.sqlite"),
        "keepalive_s": 2,
        "commands": ["ping", "get_status", "set_output", "configure", "replay"],
    }
    values.update(kw)
    return BridgeConfig(**values)


def publish_events(bus: Bus, n: int, kind: str = "link_stats") -> None:
    for i in range(n):
        bus.publish_event(kind, {"frames_ok": i, "dropped": {"crc": 0}}, board="mill")


def assert_all_delivered(counter: Counter, bridge: Bridge, bus: Bus, timeout: float = 30) -> None:
    """Mark the end of the stream, wait for it at the subscriber, then judge every qseq."""
    # The bus hands items over on the bridge's own thread: an end marker published last is
    # queued last, so once it arrived everything before it was queued too.
    bus.publish_event("end", {})
    wait_until(
        lambda: any(m.topic.endswith("/event/end") for m in counter.messages), timeout, "the end"
    )
    assert bridge.wait_idle(timeout), bridge.status()
    last = bridge.queue.last_qseq()
    wait_until(lambda: counter.qseqs() >= set(range(1, last + 1)), timeout, "every qseq")
    lost, unmarked, _ = verdict(counter, range(1, last + 1))
    assert lost == [] and unmarked == []
    assert board_seqs_contiguous(counter, "mill") == {}


def test_reports_arrive_as_senml_with_units_session_seq_and_flags(
    tmp_path: Path, broker: Mosquitto, streaming_board: bpiiot.Board
) -> None:
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, broker.url)).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        wait_until(
            lambda: sum(1 for m in counter.messages if m.topic.endswith("/report")) >= 10,
            20,
            "ten reports",
        )
        bus.publish_event("incident", {"id": 7, "rule": "vib", "state": "open"}, board="mill")
        # A flagged window from the service's own bus (as a board in settling would send).
        report = m.Report(9, 4500, 320, (1, 2, 3), (4, 5, 6), (7, 8, 9), 2512, 0x09)
        enc = bpiiot.wire.FrameEncoder(from_host=False, session=4, seq=99)
        frame = bpiiot.wire.FrameVerifier("host", None).verify(enc.encode(report)[:-1])
        bus.publish_frame("press", frame)
        bus.detach("mill")
        assert_all_delivered(counter, bridge, bus)
    finally:
        bus.close()
        counter.stop()
    msgs = {m.topic: m for m in counter.messages}
    rep = next(senml.decode(m.payload) for t, m in msgs.items() if t.startswith("plant/sbc1/mill/"))
    assert rep["_bn"] == "urn:dev:bpiiot:sbc1:mill:"
    flagged = senml.decode(msgs["plant/sbc1/press/report"].payload)
    assert flagged["session"] == 4 and flagged["seq"] == 100
    assert flagged["acc_rms_x"] == pytest.approx(0.00981, abs=1e-5)  # 1 mg in m/s2
    assert flagged["vel_rms_z"] == pytest.approx(9e-6)  # 9 um/s in m/s
    assert flagged["temperature"] == pytest.approx(25.12)
    assert flagged["flags"] == 9 and flagged["flag_names"] == "settling,clipped"
    units = {r["n"]: r.get("u") for r in json.loads(msgs["plant/sbc1/press/report"].payload)}
    assert (units["acc_rms_x"], units["vel_rms_x"], units["temperature"]) == ("m/s2", "m/s", "Cel")
    incident = senml.decode(msgs["plant/sbc1/mill/event/incident"].payload)
    assert incident["rule"] == "vib" and incident["state"] == "open"


def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, broker: Mosquitto, streaming_board: bpiiot.Board
) -> None:
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, broker.url)).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        publish_events(bus, 300)
        broker.stop()  # SIGTERM: it saves the counter's session and its queued messages
        publish_events(bus, 300)  # queued on disk while the broker is away
        wait_until(lambda: not bridge.status().connected, 10, "the bridge to notice")
        broker.start()
        publish_events(bus, 300)
        wait_until(lambda: bridge.status().connected, 15, "the bridge to reconnect")
        bus.detach("mill")
        assert_all_delivered(counter, bridge, bus)
    finally:
        bus.close()
        counter.stop()
