"""The cloud bridge against a real Mosquitto, fed by the real firmware on a pty.

A subscriber counts every message by the bridge's queue sequence number (qseq): zero
lost, and a second copy only where the kit marked it (``resend`` after a missing PUBACK,
``replay`` on request) or the broker flagged it (DUP).
"""

from __future__ import annotations

import json
import logging
import sqlite3
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
    TcpProxy,
    board_seqs_contiguous,
    make_pki,
    verdict,
    wait_until,
)


def config(tmp_path: Path, url: str, **kw: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "broker_url": url,
        "edge_node_id": "sbc1",
        "topic_prefix": "plant",
        "queue_path": str(tmp_path / "bridge.sqlite"),
        "keepalive_s": 2,
        "reconnect_max_s": 0.5,
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
    # The bus never had to drop for the bridge: the serial side never waited on the broker.
    assert all(s["dropped"] == 0 for s in bus.stats().values())


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
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for msg in counter.messages:
        by_topic.setdefault(msg.topic, []).extend(senml.unpack(msg.payload))
    rep = by_topic["plant/sbc1/mill/report"][0]
    assert rep["_bn"] == "urn:dev:bpiiot:sbc1:mill:" and rep["samples"] == 320
    (flagged,) = by_topic["plant/sbc1/press/report"]
    assert flagged["session"] == 4 and flagged["seq"] == 100
    assert flagged["acc_rms_x"] == pytest.approx(0.00981, abs=1e-5)  # 1 mg in m/s2
    assert flagged["vel_rms_z"] == pytest.approx(9e-6)  # 9 um/s in m/s
    assert flagged["temperature"] == pytest.approx(25.12)
    assert flagged["flags"] == 9 and flagged["flag_names"] == "settling,clipped"
    press = next(m for m in counter.messages if m.topic == "plant/sbc1/press/report")
    units = {r["n"]: r.get("u") for r in json.loads(press.payload)}
    assert (units["acc_rms_x"], units["vel_rms_x"], units["temperature"]) == ("m/s2", "m/s", "Cel")
    (incident,) = by_topic["plant/sbc1/mill/event/incident"]
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
        # The backlog went out in batches (several packs in one MQTT message).
        assert counter.batches() > 0
    finally:
        bus.close()
        counter.stop()


def db_rows(bridge: Bridge, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the bridge's queue file directly (WAL lets a reader in beside it)."""
    with sqlite3.connect(bridge.queue.path) as db:
        return db.execute(sql, args).fetchall()


def mark_and_wait_acked(bus: Bus, bridge: Bridge, name: str) -> int:
    """Publish a marker event, wait until it and everything before it is acknowledged."""
    bus.publish_event(name, {})
    kind = f"event.{name}"
    wait_until(lambda: db_rows(bridge, "SELECT qseq FROM messages WHERE kind = ?", kind), 20, name)
    ((marker,),) = db_rows(bridge, "SELECT qseq FROM messages WHERE kind = ?", kind)
    wait_until(
        lambda: (
            db_rows(
                bridge, "SELECT count(*) FROM messages WHERE qseq <= ? AND acked IS NULL", marker
            )[0][0]
            == 0
        ),
        20,
        f"the broker's acknowledgement of everything up to {name}",
    )
    return int(marker)


def test_broker_sigkill_after_puback_is_covered_by_a_replay_from_a_sequence_number(
    tmp_path: Path, broker: Mosquitto, streaming_board: bpiiot.Board
) -> None:
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, broker.url, replay_on_session_loss=False)).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        wait_until(lambda: len(counter.on_topic("/report")) >= 5, 20, "reports")
        counter.stop()  # offline: the broker queues for its session, in memory
        seen = max(counter.qseqs())
        publish_events(bus, 300, "tx")
        acked = mark_and_wait_acked(bus, bridge, "mark")
        broker.kill()  # acknowledged, not yet saved (autosave_interval 3600)
        broker.start()
        counter.start()
        wait_until(lambda: max(counter.qseqs(), default=0) > acked, 20, "live messages again")
        # The broker acknowledged these (PUBACK) and lost them with its memory:
        lost_by_broker = sorted(set(range(seen + 1, acked + 1)) - counter.qseqs())
        assert len(lost_by_broker) >= 300
        # The consumer saw the gap in qseq and asks for a replay from where it stopped.
        counter.publish("plant/sbc1/replay", json.dumps({"from": lost_by_broker[0]}).encode())
        bus.detach("mill")
        assert_all_delivered(counter, bridge, bus)
        assert bridge.status().replayed >= len(lost_by_broker)
    finally:
        bus.close()
        counter.stop()
    replayed = {q for q, cs in counter.copies().items() if any(c.values.get("replay") for c in cs)}
    assert set(lost_by_broker) <= replayed


def test_broker_that_lost_its_state_gets_the_acknowledged_messages_again_by_itself(
    tmp_path: Path, broker: Mosquitto, streaming_board: bpiiot.Board
) -> None:
    proxy = TcpProxy(broker.port)  # lets the test hold the bridge back while it resubscribes
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, proxy.url)).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        wait_until(lambda: len(counter.on_topic("/report")) >= 5, 20, "reports")
        counter.stop()
        publish_events(bus, 200, "tx")
        mark_and_wait_acked(bus, bridge, "mark")
        proxy.cut()
        broker.kill()
        broker.start()
        counter.start()
        proxy.restore()
        wait_until(lambda: bridge.status().session_losses == 1, 20, "the session loss")
        bus.detach("mill")
        assert_all_delivered(counter, bridge, bus)
    finally:
        bus.close()
        counter.stop()
        proxy.close()
    assert bridge.status().replayed >= 200


def test_network_cut_loses_nothing_and_marks_what_it_sends_again(
    tmp_path: Path,
    broker: Mosquitto,
    streaming_board: bpiiot.Board,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = TcpProxy(broker.port)
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, proxy.url, keepalive_s=1)).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        wait_until(lambda: len(counter.on_topic("/report")) >= 5, 20, "reports")
        proxy.cut()
        publish_events(bus, 200)  # published into a connection that no longer forwards
        wait_until(lambda: not bridge.status().connected, 20, "the keepalive to notice")
        assert "lost the MQTT broker" in caplog.text and "messages stay queued" in caplog.text
        publish_events(bus, 200)
        proxy.restore()
        wait_until(lambda: bridge.status().connected, 20, "the bridge to reconnect")
        bus.detach("mill")
        assert_all_delivered(counter, bridge, bus)
    finally:
        bus.close()
        counter.stop()
        proxy.close()
    assert bridge.status().resent > 0
    # What the queue published more than once is exactly what arrived marked as a resend.
    resent = {q for q, a in bridge.queue.attempts().items() if a > 1}
    marked = {q for q, cs in counter.copies().items() if any(c.values.get("resend") for c in cs)}
    assert resent and marked == resent


def test_wrong_password_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, streaming_board: bpiiot.Board, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Mosquitto(tmp_path / "broker", users={"sbc1": "right-horse", "counter": "c"})
    broker.start()
    pw = tmp_path / "broker.pass"
    pw.write_text("wrong-battery\n")
    pw.chmod(0o600)
    counter = Counter(broker.port, "plant/#", auth=("counter", "c")).start()
    cfg = config(tmp_path, broker.url, username="sbc1", password_file=str(pw))
    bus = Bus()
    try:
        bridge = Bridge(cfg).start()
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", streaming_board.link)
        publish_events(bus, 100)
        wait_until(lambda: "refused" in bridge.status().last_error, 20, "the refusal")
        err = bridge.status().last_error
        assert "not authorized" in err.lower() or "bad user name or password" in err.lower()
        assert "password_file" in err and "stay queued" in err
        wait_until(
            lambda: len(counter.on_topic("/report")) == 0 and bridge.status().pending > 100,
            20,
            "queued",
        )
        bus.detach("mill")  # no frame may arrive while no bridge listens
        bus.unsubscribe(bridge)  # stops it; its queue stays on disk
        pw.write_text("right-horse\n")
        bridge = Bridge(cfg).start()
        bus.subscribe(bridge, name="bridge")
        assert_all_delivered(counter, bridge, bus)  # from qseq 1: what waited, then the rest
    finally:
        bus.close()
        counter.stop()
        broker.kill()
    assert "wrong-battery" not in caplog.text and "right-horse" not in caplog.text


def test_full_queue_is_a_clear_error_and_keeps_what_it_holds(
    tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    # No tmpfs here: SQLite's max_page_count (queue_max_mb) makes the file full the way a
    # full disk does (SQLITE_FULL on insert).
    broker.stop()
    bridge = Bridge(config(tmp_path, broker.url, queue_max_mb=0.06)).start()
    bus = Bus()
    counter: Counter | None = None
    try:
        bus.subscribe(bridge, name="bridge")
        publish_events(bus, 3000)
        wait_until(
            lambda: bus.stats()["bridge"]["delivered"] + bus.stats()["bridge"]["errors"] == 3000,
            30,
            "the bus to hand every event over",
        )
        status = bridge.status()
        assert status.dropped_full > 0
        assert bus.stats()["bridge"]["errors"] == status.dropped_full
        assert "is full" in status.queue_error and "queue_max_mb=0.06" in status.queue_error
        full_logs = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full_logs) == 1  # one line per episode, not one per message
        kept = bridge.queue.last_qseq()
        assert kept + status.dropped_full == 3000
        broker.start()
        counter = Counter(broker.port, "plant/#").start()
        assert bridge.wait_idle(30)
        wait_until(lambda: counter.qseqs() >= set(range(1, kept + 1)), 30, "every kept qseq")
        lost, unmarked, _ = verdict(counter, range(1, kept + 1))
        assert lost == [] and unmarked == []
        # Drained, it takes new messages again and says so.
        publish_events(bus, 10)
        assert_all_delivered(counter, bridge, bus)
        assert bridge.status().queue_error == ""
        assert "accepts messages again" in caplog.text
    finally:
        bus.close()
        if counter is not None:
            counter.stop()


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ("sbc1", "counter"))
    tls = {"ca": pki["ca"], "cert": pki["server.crt"], "key": pki["server.key"]}
    broker = Mosquitto(tmp_path / "broker", tls=tls).start()
    port = broker.port
    counter = Counter(port, "plant/#", tls=(pki["ca"], pki["counter.crt"], pki["counter.key"]))
    counter.start()
    bus = Bus()
    try:
        # Without a client certificate the broker ends the handshake: a clear error, queued.
        anonymous = Bridge(
            config(tmp_path, f"mqtts://127.0.0.1:{port}", ca_file=str(pki["ca"]))
        ).start()
        bus.subscribe(anonymous, name="anonymous")
        publish_events(bus, 50)
        wait_until(lambda: "cannot reach" in anonymous.status().last_error, 20, "the refusal")
        wait_until(lambda: anonymous.status().pending == 50, 20, "50 queued")
        assert counter.qseqs() == set()
        bus.unsubscribe(anonymous)
        certified = config(
            tmp_path,
            f"mqtts://127.0.0.1:{port}",
            ca_file=str(pki["ca"]),
            cert_file=str(pki["sbc1.crt"]),
            key_file=str(pki["sbc1.key"]),
        )
        bridge = Bridge(certified).start()
        bus.subscribe(bridge, name="bridge")
        publish_events(bus, 50)
        assert_all_delivered(counter, bridge, bus)
        assert bridge.queue.last_qseq() == 101  # 100 events and the end marker
    finally:
        bus.close()
        counter.stop()
        broker.kill()
