"""Board commands from the broker (SenML command topic, Sparkplug DCMD/NCMD), carried out
through the SDK on the real firmware, and the Sparkplug B session: births, deaths, bdSeq,
seq, typed metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from board_host import BoardHost
from tahutils.tahu import sparkplug_b_pb2 as pb

import bpiiot
from bpiiot.bridge import Bridge, BridgeConfig, senml
from bpiiot.bridge import sparkplug as spb
from bpiiot.bus import Bus

from .mqtt_broker import Counter, Mosquitto, TcpProxy, wait_until


def config(tmp_path: Path, url: str, **kw: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "broker_url": url,
        "edge_node_id": "sbc1",
        "topic_prefix": "plant",
        "group_id": "plant-a",
        "queue_path": str(tmp_path / "bridge.sqlite"),
        "keepalive_s": 5,
        "commands": ["ping", "get_status", "set_output", "configure", "replay"],
    }
    values.update(kw)
    return BridgeConfig(**values)


def outputs(host: BoardHost) -> dict[str, int]:
    """The firmware's output states (the Unix port records them in its filesystem)."""
    data: dict[str, int] = json.loads((host.fs_dir / "outputs.json").read_text())
    return data


def results(counter: Counter) -> list[dict[str, Any]]:
    return [v for m in counter.on_topic("/cmd_result") for v in senml.unpack(m.payload)]


def test_senml_commands_go_through_the_sdk_only_when_allowed(
    tmp_path: Path, broker: Mosquitto, firmware: tuple[BoardHost, bpiiot.Board]
) -> None:
    host, board = firmware
    counter = Counter(broker.port, "plant/#").start()
    bridge = Bridge(config(tmp_path, broker.url), boards={"mill": board}).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", board.link)
        wait_until(lambda: bridge.status().connected, 10, "the bridge")
        assert outputs(host)["1"] == 0

        def send(body: dict[str, Any], board_name: str = "mill") -> None:
            counter.publish(f"plant/sbc1/{board_name}/cmd", json.dumps(body).encode())

        send({"command": "set_output", "args": {"pin": 1, "value": True}, "id": "a"})
        send({"command": "configure", "args": {"window_ms": 200, "hop_ms": 100}, "id": "b"})
        send({"command": "reboot", "id": "c"})  # not in [bridge] commands
        send({"command": "ping", "id": "d"}, board_name="lathe")  # no such board
        send({"command": "set_output", "args": {"pin": 9, "value": True}, "id": "e"})
        wait_until(lambda: len(results(counter)) == 5, 30, "five results")
        by_id = {r["id"]: r for r in results(counter)}
        assert by_id["a"]["ok"] is True and outputs(host)["1"] == 1
        assert by_id["b"]["ok"] is True and by_id["b"]["result/window_ms"] == 200
        assert board.get_config().window_ms == 200
        assert by_id["c"]["ok"] is False and "not allowed" in by_id["c"]["error"]
        assert by_id["d"]["ok"] is False and "no board called 'lathe'" in by_id["d"]["error"]
        # The firmware refused pin 9: the SDK's own error comes back.
        assert by_id["e"]["ok"] is False and "bad_value" in by_id["e"]["error"]
        status = bridge.status()
        assert (status.commands_run, status.commands_refused) == (3, 2)
    finally:
        bus.close()
        counter.stop()


def decode(msg: Any) -> tuple[str, Any]:
    return msg.topic, pb.Payload.FromString(msg.payload)


def metrics(payload: Any) -> dict[str, Any]:
    out = {}
    for mt in payload.metrics:
        which = mt.WhichOneof("value")
        out[mt.name] = (mt.datatype, getattr(mt, which) if which else None, mt.is_historical)
    return out


def dcmd(
    counter: Counter, device: str, items: list[tuple[str, int, Any]], node: bool = False
) -> None:
    payload = pb.Payload()
    for name, datatype, value in items:
        mt = payload.metrics.add()
        mt.name = name
        spb._set_value(mt, datatype, value)
    kind = "NCMD" if node else "DCMD"
    topic = f"spBv1.0/plant-a/{kind}/sbc1" + ("" if node else f"/{device}")
    counter.publish(topic, payload.SerializeToString())


def test_sparkplug_births_deaths_sequence_typed_metrics_and_commands(
    tmp_path: Path, broker: Mosquitto, firmware: tuple[BoardHost, bpiiot.Board]
) -> None:
    host, board = firmware
    counter = Counter(broker.port, "spBv1.0/#").start()
    cfg = config(tmp_path, broker.url, format="sparkplug")
    bridge = Bridge(cfg, boards={"mill": board}).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", board.link)
        wait_until(lambda: len(counter.on_topic("DDATA/sbc1/mill")) >= 5, 20, "reports")
        bus.publish_event("incident", {"id": 3, "rule": "vib", "state": "open", "key": "k"})
        dcmd(counter, "mill", [("Outputs/2", spb.BOOLEAN, True)])
        dcmd(
            counter,
            "mill",
            [("Config/window_ms", spb.UINT32, 200), ("Config/hop_ms", spb.UINT32, 100)],
        )
        dcmd(counter, "mill", [("Commands/reboot", spb.BOOLEAN, True)])  # not allowed
        wait_until(lambda: outputs(host)["2"] == 1, 20, "output 2 on the firmware")
        wait_until(lambda: board.get_config().window_ms == 200, 20, "the new config")
        dcmd(counter, "", [("Node Control/Rebirth", spb.BOOLEAN, True)], node=True)
        wait_until(lambda: len(counter.on_topic("NBIRTH/sbc1")) == 2, 20, "the rebirth")
        wait_until(lambda: bridge.status().commands_refused == 1, 20, "the refusal")
        bus.detach("mill")
        assert bridge.wait_idle(20)
    finally:
        bus.close()  # stops the bridge: NDEATH
        counter.stop()
    # What the edge node sent (the counter also sees the commands it published itself).
    msgs = [decode(mm) for mm in counter.messages if "CMD/" not in mm.topic]
    topics = [t for t, _ in msgs]
    assert topics[0] == "spBv1.0/plant-a/NBIRTH/sbc1"
    assert topics[-1] == "spBv1.0/plant-a/NDEATH/sbc1"
    nbirth = metrics(msgs[0][1])
    assert msgs[0][1].seq == 0
    bd_seq = nbirth["bdSeq"][1]
    assert metrics(msgs[-1][1])["bdSeq"][1] == bd_seq  # the death matches the birth
    # seq counts every message after a birth, modulo 256, in the order they went out.
    seq = None
    for topic, payload in msgs[:-1]:
        if topic.endswith("NBIRTH/sbc1"):
            seq = 0
            assert metrics(payload)["bdSeq"][1] == bd_seq
            continue
        assert seq is not None and payload.seq == (seq + 1) % 256, topic
        seq = payload.seq
    # A DBIRTH declares the report metrics with their types before the first DDATA.
    first_dbirth = topics.index("spBv1.0/plant-a/DBIRTH/sbc1/mill")
    first_ddata = topics.index("spBv1.0/plant-a/DDATA/sbc1/mill")
    assert first_dbirth < first_ddata
    declared = metrics(msgs[first_dbirth][1])
    assert declared["Report/vel_rms_um_s/x"][0] == spb.UINT16
    assert declared["Report/temperature_degC"][0] == spb.FLOAT
    assert declared["Commands/reboot"][0] == spb.BOOLEAN
    data = [(t, metrics(p)) for t, p in msgs if "DATA/" in t]
    reports = [mt for t, mt in data if t.endswith("/mill") and "Report/samples" in mt]
    assert len(reports) >= 5
    for rep in reports:
        assert rep["Report/vel_rms_um_s/x"][0] == spb.UINT16 and rep["Report/vel_rms_um_s/x"][1] > 0
        assert rep["session"][0] == spb.UINT16 and rep["seq"][0] == spb.UINT32
        assert rep["Report/representative"][0] == spb.BOOLEAN
    board_seqs = [r["seq"][1] for r in reports]
    assert board_seqs == sorted(board_seqs)
    incident = next(mt for t, mt in data if t.endswith("NDATA/sbc1") and "Event/incident/id" in mt)
    assert incident["Event/incident/rule"][1] == "vib" and incident["Event/incident/id"][1] == "3"
    results = [mt for t, mt in data if "Event/cmd_result/ok" in mt]
    oks = sorted((r["Event/cmd_result/command"][1], r["Event/cmd_result/ok"][1]) for r in results)
    assert oks == [("configure", True), ("reboot", False), ("set_output", True)]
    # Every queued message arrived: qseq has no gap.
    qseqs = {metrics(p)["qseq"][1] for t, p in msgs if "DATA" in t or "DDEATH" in t}
    assert qseqs == set(range(1, max(qseqs) + 1))


def test_sparkplug_will_on_a_network_cut_then_rebirth_and_the_backlog_as_history(
    tmp_path: Path, broker: Mosquitto, firmware: tuple[BoardHost, bpiiot.Board]
) -> None:
    _, board = firmware
    proxy = TcpProxy(broker.port)
    counter = Counter(broker.port, "spBv1.0/#").start()
    cfg = config(tmp_path, proxy.url, format="sparkplug", keepalive_s=1, reconnect_max_s=0.5)
    bridge = Bridge(cfg).start()
    bus = Bus()
    try:
        bus.subscribe(bridge, name="bridge")
        bus.attach("mill", board.link)
        wait_until(lambda: len(counter.on_topic("DDATA/sbc1/mill")) >= 5, 20, "reports")
        proxy.cut()
        # The broker gives up on the silent connection and publishes the will.
        wait_until(lambda: counter.on_topic("NDEATH/sbc1"), 20, "the will (NDEATH)")
        wait_until(lambda: bridge.status().pending >= 10, 20, "a backlog")
        proxy.restore()
        wait_until(lambda: len(counter.on_topic("NBIRTH/sbc1")) == 2, 20, "the rebirth")
        bus.detach("mill")
        assert bridge.wait_idle(30)
        last = bridge.queue.last_qseq()
        wait_until(
            lambda: {metrics(decode(mm)[1])["qseq"][1] for mm in counter.on_topic("/mill")
                     if "DATA" in mm.topic} >= set(range(1, last + 1)),
            20,
            "every qseq",
        )  # fmt: skip
    finally:
        bus.close()
        counter.stop()
        proxy.close()
    births = [metrics(decode(mm)[1])["bdSeq"][1] for mm in counter.on_topic("NBIRTH/sbc1")]
    (death,) = [metrics(decode(mm)[1])["bdSeq"][1] for mm in counter.on_topic("NDEATH/sbc1")][:1]
    # The will names the session it ends; the next session has a new bdSeq (one more per
    # CONNECT sent, and the attempts during the cut sent some).
    assert death == births[0] and 0 < (births[1] - births[0]) % 256 < 128
    # What waited in the queue during the cut went out after the rebirth, as history.
    msgs = [decode(mm) for mm in counter.messages if "CMD/" not in mm.topic]
    rebirth = [i for i, (t, _) in enumerate(msgs) if t.endswith("NBIRTH/sbc1")][1]
    after = [metrics(p) for t, p in msgs[rebirth:] if t.endswith("DDATA/sbc1/mill")]
    assert msgs[rebirth + 1][0].endswith("DBIRTH/sbc1/mill")
    assert any(mt["qseq"][2] for mt in after)  # is_historical on the backlog
