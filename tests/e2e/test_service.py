"""The service end to end: the real firmware in the Unix port, a real anvil, real SQLite.

A degrading machine must yield exactly the expected requests and orders, each with evidence
that verifies; a service killed with SIGKILL at each stage of acting on an incident and
restarted must still send exactly one transaction per incident.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpiiot import cli, evidence
from bpiiot import config as config_mod
from bpiiot.chain.devnode import DevNode
from bpiiot.chain.factory import unlock_from_config
from bpiiot.controller import events_of
from bpiiot.rules import RuleError
from bpiiot.service import RulesConflict, Service
from tests.e2e.service_helpers import (
    Chain,
    ServiceProcess,
    add_boards,
    make_env,
    start_board,
    wait_until,
)

DEGRADE_RULES = [
    {
        "name": "vibration",
        "field": "vel_rms_mm_s",
        "threshold": 4.5,
        "clear_threshold": 3.5,
        "count": 3,
        "of": 5,
        "action": "request_service",
        "fault_code": 1,
    },
    {
        "name": "bearing-hot",
        "field": "temperature_c",
        "threshold": 70.0,
        "for_s": 3.0,
        "action": "order_part",
        "part_id": 7,
        "quantity": 2,
    },
]


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    """One anvil for the module, keeping its chain across restarts (node-down test)."""
    state = tmp_path_factory.mktemp("anvil") / "state.json"
    with DevNode("anvil", state_path=state) as node:
        yield node


def test_degrading_machine_yields_one_request_and_one_order_with_evidence(
    anvil: DevNode, tmp_path: Path
) -> None:
    env = make_env(tmp_path, anvil.url, DEGRADE_RULES)
    host = start_board(wear_s=16, temp_rise_c=45.0)
    try:
        cfg = add_boards(env, {"press-1": host.port})
        svc = Service(cfg, signer=unlock_from_config(cfg.wallet))
        events = events_of(svc.bus)
        with svc:
            chain = Chain(env)
            wait_until(lambda: chain.requests() and chain.orders(), 60, "a request and an order")
            events.wait_for(kind="tx", state="confirmed", function="orderPart", timeout_s=30)
            events.wait_for(kind="tx", state="confirmed", function="requestService", timeout_s=30)
            # The rules keep holding for several more windows: still one of each.
            n = svc.store.report_count("press-1")
            wait_until(lambda: svc.store.report_count("press-1") >= n + 3, 20, "more reports")
            status = svc.status()
            incidents = {i["rule"]: i for i in svc.store.incidents()}
            # The same rule replayed over the stored history fires where the live one did.
            preview = svc.rules.preview(DEGRADE_RULES[0], since=0.0)
            assert [(p["board"], p["window_seq"]) for p in preview] == [
                ("press-1", incidents["vibration"]["detail"]["window_seq"])
            ]
            with pytest.raises(RuleError) as bad:
                svc.rules.preview({"name": "x", "field": "zone", "threshold": 3}, since=0.0)
            assert set(bad.value.errors) == {"0.threshold"}
        assert status["boards"]["press-1"]["connected"]
        assert status["chain"]["outbox"] == {"confirmed": 2}
        assert sorted(incidents) == ["bearing-hot", "vibration"]
        (request,) = chain.requests()
        (order,) = chain.orders()
        assert "0x" + request.hex() == incidents["vibration"]["evidence_hash"]
        assert order == (
            7,
            2,
            2 * env.part_price_wei,
            bytes.fromhex(incidents["bearing-hot"]["evidence_hash"][2:]),
        )
        states = [e.data["state"] for e in events.events if e.kind == "rule"]
        assert states.count("firing") == 2 and "pending" in states
        tx_hashes = [
            e.data["tx_hash"]
            for e in events.events
            if e.kind == "tx" and e.data["state"] == "confirmed"
        ]
        for tx_hash in tx_hashes:
            bundle = evidence.tx_evidence(config_mod.load(env.config_path), tx_hash)
            verdict = evidence.verify_bundle(bundle)
            assert verdict.ok, verdict.as_dict()
            assert len(verdict.frames) >= 3
            assert all(f.message and f.message["kind"] == "report" for f in verdict.frames)
        # The CLI says the same, and an exported bundle verifies offline.
        assert cli.main(["evidence", "verify", tx_hashes[0], "--config", str(env.config_path)]) == 0
        out = tmp_path / "bundle.json"
        assert (
            cli.main(
                [
                    "evidence",
                    "export",
                    tx_hashes[0],
                    "--config",
                    str(env.config_path),
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        assert cli.main(["evidence", "verify", "--bundle", str(out)]) == 0
        doc = json.loads(out.read_text())
        doc["frames"][0] = doc["frames"][0][:-2] + ("00" if doc["frames"][0][-2:] != "00" else "11")
        out.write_text(json.dumps(doc))
        assert cli.main(["evidence", "verify", "--bundle", str(out)]) == 1
    finally:
        host.stop()


STAGES = ["incident", "before_enqueue", "after_enqueue", "after_sign", "after_send"]


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_each_stage_still_one_transaction_per_incident(
    anvil: DevNode, tmp_path: Path, stage: str
) -> None:
    rules = [
        {
            "name": "hot",
            "field": "temperature_c",
            "threshold": 30.0,
            "count": 1,
            "action": "request_service",
            "fault_code": 3,
        }
    ]
    env = make_env(tmp_path, anvil.url, rules)
    host = start_board(wear_s=600, temp_start_c=40.0)
    try:
        add_boards(env, {"press-1": host.port})
        chain = Chain(env)
        crashing = ServiceProcess(env.config_path, crash_stage=stage)
        code = crashing.wait_killed(60)
        assert code == -9, crashing.output()
        assert f"CRASH at {stage}" in crashing.output()
        sent_before = len(chain.requests())
        assert sent_before == (1 if stage == "after_send" else 0)
        service = ServiceProcess(env.config_path)
        try:
            wait_until(lambda: chain.requests(), 45, "the request after the restart")
            store_db = env.dir / "store.sqlite"

            def confirmed() -> bool:
                conn = sqlite3.connect(env.dir / "chain.sqlite")
                try:
                    rows = conn.execute("SELECT state FROM outbox").fetchall()
                finally:
                    conn.close()
                return rows == [("confirmed",)]

            wait_until(confirmed, 30, "the outbox entry confirmed")
            # Let the rule keep holding and the drain loop run a few more passes.
            conn = sqlite3.connect(store_db)
            n = conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
            conn.close()

            def more() -> bool:
                c = sqlite3.connect(store_db)
                try:
                    return int(c.execute("SELECT COUNT(*) FROM reports").fetchone()[0]) >= n + 2
                finally:
                    c.close()

            wait_until(more, 20, "more reports stored")
        finally:
            assert service.stop() == 0, service.output()
        conn = sqlite3.connect(store_db)
        incidents = conn.execute("SELECT key, evidence_hash FROM incidents").fetchall()
        conn.close()
        assert incidents == [("press-1/hot/1", incidents[0][1])]
        requests = chain.requests()
        w3 = chain.node.w3
        txs = [
            (b, tx["from"], tx["nonce"], tx["input"].hex()[:10])
            for b in range(w3.eth.block_number + 1)
            for tx in w3.eth.get_block(b, full_transactions=True).transactions
        ]
        assert len(requests) == 1, (txs, service.output())
        (request,) = requests
        assert "0x" + request.hex() == incidents[0][1]
    finally:
        host.stop()


def test_socket_clients_stall_and_vanish_two_boards_rules_replaced(
    anvil: DevNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = make_env(tmp_path, anvil.url, [])
    hosts = [start_board(wear_s=600), start_board(wear_s=600, seed=2)]
    try:
        cfg = add_boards(env, {"a": hosts[0].port, "b": hosts[1].port})
        svc = Service(cfg, signer=unlock_from_config(cfg.wallet))
        with svc:
            path = str(svc.socket_path)
            assert oct(Path(path).stat().st_mode & 0o777) == "0o660"
            watcher = socket.socket(socket.AF_UNIX)
            watcher.connect(path)
            stalled = socket.socket(socket.AF_UNIX)
            stalled.connect(path)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            vanished = socket.socket(socket.AF_UNIX)
            vanished.connect(path)
            vanished.close()
            reader = watcher.makefile("rb")
            seen: set[str] = set()
            while seen != {"a", "b"}:
                line = json.loads(reader.readline())
                if line["kind"] == "frame" and line["message"]["kind"] == "report":
                    seen.add(line["board"])
            watcher.sendall(b'{"cmd": "command", "board": "b", "name": "get_config"}\n')
            while True:
                line = json.loads(reader.readline())
                if line["kind"] == "reply":
                    break
            assert line["ok"] and line["result"]["kind"] == "config"
            watcher.sendall(b'{"cmd": "frobnicate"}\n')
            while (line := json.loads(reader.readline()))["kind"] != "reply":
                pass
            assert not line["ok"] and "unknown cmd" in line["error"]
            # `bpiiot monitor PORT` goes through the service that owns the port.
            monkeypatch.setenv("BPIIOT_CONFIG", str(env.config_path))
            capsys.readouterr()
            assert cli.main(["monitor", hosts[1].port, "--count", "2", "--json"]) == 0
            lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
            assert [x["kind"] for x in lines].count("report") == 2
            # The stalled client never reads: the service keeps storing both boards.
            n = svc.store.report_count()
            wait_until(lambda: svc.store.report_count() >= n + 6, 30, "reports while stalled")
            # A flood fills the stalled client's socket: it is dropped, the watcher stays.
            assert svc.status()["socket"]["clients"] == 2
            watcher.sendall(b'{"cmd": "watch", "frames": false, "events": false}\n')
            while (line := json.loads(reader.readline()))["kind"] != "reply":
                pass
            for i in range(4000):
                svc.bus.publish_event("log", {"level": "info", "text": f"{i} " + "x" * 1000})
            wait_until(lambda: svc.status()["socket"]["clients"] == 1, 30, "the stall dropped")
            watcher.sendall(b'{"cmd": "status"}\n')
            while (line := json.loads(reader.readline()))["kind"] != "reply":
                pass
            assert line["ok"] and line["result"]["socket"]["clients"] == 1
            # Release a port (as the flasher would) and take it back.
            svc.release("a")
            assert not svc.boards["a"].connected and not svc.boards["a"].link.connected
            svc.resume("a")
            wait_until(lambda: svc.boards["a"].connected, 20, "board a back")
            # Rules: replaced atomically, a racing edit refused.
            version = svc.rules.version
            new = [{"name": "hot", "field": "temperature_c", "threshold": 30.0}]
            v2 = svc.rules.replace_rules(new, version)
            with pytest.raises(RulesConflict):
                svc.rules.replace_rules([], version)
            assert config_mod.load(env.config_path).extra["rule"] == new
            wait_until(lambda: svc.rules.states().get("hot") == "firing", 20, "new rule firing")
            assert svc.rules.current() == (new, v2)
            assert svc.rules.version == v2
            stats = svc.bus.stats()
            watcher.close()
            stalled.close()
        assert {"store", "rules"} <= set(stats)
    finally:
        for h in hosts:
            h.stop()


def test_node_down_keeps_storing_and_the_outbox_drains_when_it_returns(
    anvil: DevNode, tmp_path: Path
) -> None:
    rules = [
        {
            "name": "hot",
            "field": "temperature_c",
            "threshold": 30.0,
            "count": 1,
            "action": "request_service",
            "fault_code": 2,
        }
    ]
    env = make_env(tmp_path, anvil.url, rules)
    # A keyed board: every frame carries a tag, and the evidence's tags are checked.
    key = bytes(range(100, 132))
    host = start_board(wear_s=600, temp_start_c=40.0, key=key)
    key_file = tmp_path / "press-1.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    try:
        cfg = add_boards(env, {"press-1": host.port})
        cfg.extra["board"][0]["key_file"] = str(key_file)
        config_mod.save(cfg)
        anvil.stop()  # the node goes down before anything fired
        try:
            svc = Service(cfg, signer=unlock_from_config(cfg.wallet))
            with svc:
                wait_until(lambda: svc.store.incidents(), 30, "the incident while the node is down")
                n = svc.store.report_count("press-1")
                wait_until(
                    lambda: svc.store.report_count("press-1") >= n + 3, 20, "storing while down"
                )
                assert svc.controller.chain_error is not None
                assert svc.status()["chain"]["node_ok"] is False
                anvil.start()
                entry = svc.controller.wait_tx("press-1/hot/1", timeout_s=60)
                incident = svc.store.incidents()[0]
        finally:
            if anvil.pid is None:
                anvil.start()
        assert str(entry.state) == "confirmed"
        (request,) = Chain(env).requests()
        assert "0x" + request.hex() == incident["evidence_hash"]
        bundle = evidence.tx_evidence(config_mod.load(env.config_path), str(entry.mined_hash))
        keyed = evidence.verify_bundle(bundle, key)
        assert keyed.ok and keyed.frames and all(f.tag_ok for f in keyed.frames)
        unkeyed = evidence.verify_bundle(bundle)
        assert unkeyed.ok and all(f.tagged and f.tag_ok is None for f in unkeyed.frames)
        assert not evidence.verify_bundle(bundle, bytes(32)).ok
        # The CLI takes the key from the board's key_file in the config.
        args = ["evidence", "verify", str(entry.mined_hash), "--config", str(env.config_path)]
        assert cli.main([*args, "--json"]) == 0
    finally:
        host.stop()


class Component:
    """What the web page or the bridge looks like to the service."""

    def __init__(self) -> None:
        self.started: Service | None = None
        self.stopped = False

    def start(self, service: Service) -> None:
        self.started = service

    def stop(self) -> None:
        self.stopped = True


def test_flash_goes_through_the_running_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_mod.Config(path=tmp_path / "config.toml")
    host = start_board(wear_s=600)
    try:
        cfg.extra["board"] = [{"name": "press-1", "url": host.port}]
        cfg.extra["store"] = {"path": str(tmp_path / "store.sqlite")}
        cfg.extra["service"] = {"socket": str(tmp_path / "s.sock"), "stats_interval_s": 0.5}
        config_mod.save(cfg)
        monkeypatch.setenv("BPIIOT_CONFIG", str(cfg.path))
        svc = Service(cfg, signer=None)
        events = events_of(svc.bus, ("board",))
        component = Component()
        svc.add_component(component)
        with svc:
            assert component.started is svc
            wait_until(lambda: svc.boards["press-1"].connected, 20, "the board")
            code = cli.main(["flash", host.port, "--arch", "unix", "--resume", "-q"])
            assert code == 0
            events.wait_for(kind="board", state="released", timeout_s=5)
            events.wait_for(kind="board", state="resumed", timeout_s=5)
            wait_until(lambda: svc.boards["press-1"].connected, 30, "the board back")
            n = svc.store.report_count("press-1")
            wait_until(lambda: svc.store.report_count("press-1") > n, 20, "reports after flashing")
        assert component.stopped
    finally:
        host.stop()


def test_zone_d_drives_the_board_relay_through_the_output_driver(tmp_path: Path) -> None:
    from board_host import BoardHost

    host = BoardHost()
    # 500 mg at 100 Hz on x: 5.5 mm/s RMS, zone D for group 2 rigid.
    sensor = {"accel": "signal", "signal": {"kind": "sine", "x": [[100, 500]]}}
    (host.fs_dir / "bpiiot.json").write_text(json.dumps({"sensor": sensor}))
    host.start()
    try:
        cfg = config_mod.Config(path=tmp_path / "config.toml")
        cfg.extra["board"] = [{"name": "press-1", "url": host.port, "outputs": {"relay": 2}}]
        cfg.extra["store"] = {"path": str(tmp_path / "store.sqlite")}
        cfg.extra["service"] = {"socket": str(tmp_path / "s.sock")}
        cfg.extra["rule"] = [
            {"name": "stop", "field": "zone", "threshold": "D", "action": "output",
             "output": "relay", "value": 1}
        ]  # fmt: skip
        config_mod.save(cfg)
        outputs = host.fs_dir / "outputs.json"
        with Service(cfg) as svc:
            inc = wait_until(lambda: svc.store.incidents(), 30, "the zone D incident")[0]
            wait_until(
                lambda: svc.store.incident(inc["id"])["action_status"] == "done",  # type: ignore[index]
                10,
                "the output action",
            )
        assert json.loads(outputs.read_text())["2"] == 1
        assert inc["key"] == "press-1/stop/1" and inc["action"]["kind"] == "output"
    finally:
        host.stop()


def test_a_reused_incident_key_is_refused_never_sent(anvil: DevNode, tmp_path: Path) -> None:
    from bpiiot.controller import Controller
    from bpiiot.rules import Action, Rule, above, vel_rms_mm_s
    from tests.sbc.test_rules import Feed

    env = make_env(tmp_path, anvil.url, [])
    cfg = config_mod.load(env.config_path)
    rule = Rule("vib", above(vel_rms_mm_s(), 4.5), action=Action("request_service", fault_code=1))
    ctl = Controller(cfg, signer=unlock_from_config(cfg.wallet), rules=[rule])
    assert ctl.outbox is not None
    # What a store reset leaves behind: the chain state still holds incident 1's call.
    ctl.outbox.enqueue("b/vib/1", "MachineService", "requestService", ["0x" + "11" * 32, 1])
    events = events_of(ctl.bus, ("log", "incident"))
    with ctl:
        frame, raw = Feed().report(1, 9000)
        ctl.bus.publish_frame("b", frame, raw)
        events.wait_for(kind="incident", key="b/vib/1", timeout_s=10)
        refused = events.wait_for(kind="log", level="error", timeout_s=30)
        assert "not acted on" in refused.data["text"]
        (inc,) = ctl.store.incidents()
        assert inc["action_status"] == "refused"
        ctl.wait_tx("b/vib/1", timeout_s=30)
    # Only the call the key already named went out; the new incident sent nothing.
    assert Chain(env).requests() == [bytes.fromhex("11" * 32)]


def test_an_order_above_the_ceiling_is_refused_and_one_below_pays_the_listed_price(
    anvil: DevNode, tmp_path: Path
) -> None:
    from bpiiot.controller import Controller
    from bpiiot.rules import Action, Rule, above, vel_rms_mm_s
    from tests.sbc.test_rules import Feed

    env = make_env(tmp_path, anvil.url, [])
    cfg = config_mod.load(env.config_path)
    # Three parts cost 3 x the listed price: above a ceiling of 2.5 x, one part is below.
    cfg.extra["controller"] = {"max_order_value_wei": env.part_price_wei * 5 // 2}
    hot = above(vel_rms_mm_s(), 4.5)
    rules = [
        Rule("many", hot, action=Action("order_part", part_id=7, quantity=3)),
        Rule("one", hot, action=Action("order_part", part_id=7, quantity=1)),
    ]
    ctl = Controller(cfg, signer=unlock_from_config(cfg.wallet), rules=rules)
    events = events_of(ctl.bus, ("log", "tx"))
    with ctl:
        frame, raw = Feed().report(1, 9000)
        ctl.bus.publish_frame("b", frame, raw)
        refused = events.wait_for(kind="log", level="error", timeout_s=30)
        assert "max_order_value_wei" in refused.data["text"] and "b/many/1" in refused.data["text"]
        entry = ctl.wait_tx("b/one/1", timeout_s=30)
        statuses = {i["rule"]: i["action_status"] for i in ctl.store.incidents()}
    assert str(entry.state) == "confirmed" and entry.value == env.part_price_wei
    assert statuses == {"many": "refused", "one": "queued"}
    ((part, qty, amount, _ev),) = Chain(env).orders()
    assert (part, qty, amount) == (7, 1, env.part_price_wei)


def one_board_config(tmp_path: Path, port: str) -> str:
    """A service config with one board, its store and socket in ``tmp_path``, no wallet."""
    return f"""
[[board]]
name = "press-1"
url = "{port}"
[store]
path = "{tmp_path / "store.sqlite"}"
[service]
socket = "{tmp_path / "s.sock"}"
[wallet]
keystore = "{tmp_path / "no-wallet.json"}"
"""


def test_a_bridge_table_runs_the_mqtt_bridge_inside_the_service(tmp_path: Path) -> None:
    from bpiiot.service import BridgeComponent, register_sections
    from tests.e2e.mqtt_broker import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    host = start_board(wear_s=600)
    try:
        text = (
            one_board_config(tmp_path, host.port)
            + f"""
[bridge]
broker_url = "mqtt://127.0.0.1:{broker.port}"
queue_path = "{tmp_path / "bridge.sqlite"}"
edge_node_id = "sbc-1"
"""
        )
        (tmp_path / "config.toml").write_text(text)
        register_sections()
        svc = Service.from_config(tmp_path / "config.toml")
        (component,) = svc.components
        assert isinstance(component, BridgeComponent)
        with svc:
            wait_until(lambda: component.bridge.status().acked >= 3, 30, "reports acked by MQTT")
            assert component.bridge.status().connected
            assert "bridge" in svc.bus.stats()
    finally:
        host.stop()
        broker.kill()


def test_a_web_table_serves_the_device_manager_inside_the_service(tmp_path: Path) -> None:
    import urllib.request

    from bpiiot.service import register_sections
    from bpiiot.web.auth import PasswordError
    from bpiiot.web.server import WebComponent
    from tests.e2e.mqtt_broker import free_port

    port = free_port()
    host = start_board(wear_s=600)
    try:
        base = one_board_config(tmp_path, host.port)
        register_sections()
        # Bound beyond loopback with no password ever set: refused before anything starts.
        (tmp_path / "open.toml").write_text(
            base + f'[web]\nhost = "0.0.0.0"\nport = {port}\n'
            f'password_file = "{tmp_path / "none"}"\n'
        )
        with pytest.raises(PasswordError, match="bpiiot web passwd"):
            Service.from_config(tmp_path / "open.toml")
        (tmp_path / "config.toml").write_text(base + f"[web]\nport = {port}\n")
        svc = Service.from_config(tmp_path / "config.toml")
        (component,) = svc.components
        assert isinstance(component, WebComponent)
        assert component.host == "127.0.0.1"
        with svc:
            wait_until(lambda: svc.store.reports_since("press-1", 0), 30, "a stored report")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                page = r.read().decode()
            assert r.status == 200 and "press-1" in page
        # Stopped with the service: the port no longer answers.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        host.stop()
