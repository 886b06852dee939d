"""The bridge's queue and config without a broker: sequence numbers, acknowledgement,
retention, replay, the size limit, counters; the [bridge] table and its password file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bpiiot import config as cfgmod
from bpiiot.bridge import BridgeConfig, BridgeConfigError, MessageQueue, QueueFull, senml
from bpiiot.bridge.queue import QueuedMessage


def test_qseq_grows_across_restarts_and_acked_rows_stay_for_replay(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = MessageQueue(path, retention_s=60)
    ids = [q.put("mill", "report", {"n": i}, 1000.0 + i) for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert [m.qseq for m in q.pending(after=2)] == [3, 4, 5]
    q.mark_sent([1, 2, 3])
    q.mark_acked([1, 2, 3], now=2000.0)
    assert q.pending_count() == 2 and q.acked_count() == 3
    assert [m.attempts for m in q.pending()] == [0, 0]
    # Replaying from 2 brings 2 and 3 back, marked; 1 stays acknowledged.
    assert q.replay_from(2) == 2
    again = q.pending()
    assert [(m.qseq, m.replay, m.attempts) for m in again[:2]] == [(2, True, 1), (3, True, 1)]
    q.mark_acked([2, 3], now=2000.0)
    # Retention: acknowledged rows older than 60 s go; unacknowledged ones never do.
    assert q.prune(now=2061.0) == 3
    assert q.pending_count() == 2 and q.acked_count() == 0
    q.close()
    q2 = MessageQueue(path)
    assert q2.put(None, "event.log", {}, 3000.0) == 6  # never reuses a sequence number
    assert q2.next_counter("bridge_session") == 0 and q2.next_counter("bridge_session") == 1
    q2.close()


def test_replay_of_what_the_broker_acknowledged_since_a_time(tmp_path: Path) -> None:
    q = MessageQueue(tmp_path / "q.sqlite")
    for i in range(4):
        q.put("mill", "report", {}, float(i))
    q.mark_acked([1, 2], now=100.0)
    q.mark_acked([3], now=200.0)
    assert q.replay_acked_since(150.0) == 1
    assert [m.qseq for m in q.pending()] == [3, 4]
    q.close()


def test_a_full_queue_refuses_new_messages_with_a_clear_error_and_keeps_the_old(
    tmp_path: Path,
) -> None:
    q = MessageQueue(tmp_path / "q.sqlite", max_bytes=64_000)
    body = {"text": "x" * 200}
    kept = 0
    with pytest.raises(QueueFull) as info:
        for _ in range(10_000):
            q.put("mill", "log", body, 0.0)
            kept += 1
    assert "is full" in str(info.value) and "queue_max_mb=0.064" in str(info.value)
    assert isinstance(info.value, OSError)
    assert q.pending_count() == kept and q.last_qseq() == kept
    # Acknowledged rows give way to new ones (their retention is the first thing to go).
    q.mark_acked(list(range(1, kept // 2)), now=1.0)
    q.put("mill", "log", body, 0.0)
    assert q.pending_count() == kept - (kept // 2 - 1) + 1
    q.close()


def report_row(**over: object) -> QueuedMessage:
    data = {
        "window_seq": 12,
        "board_time_ms": 6000,
        "samples": 1600,
        "acc_rms_mg": [100, 200, 300],
        "acc_peak_mg": [400, 500, 600],
        "vel_rms_um_s": [1500, 2500, 4600],
        "temperature_cdeg_c": -512,
        "flags": 0,
        "session": 3,
        "seq": 41,
        "authenticated": True,
        "received": 1764500000.25,
    }
    values = {"qseq": 9, "created": 1.0, "board": "mill", "kind": "report", "data": data}
    values.update(
        {"attempts": 0, "replay": False, **over}  # type: ignore[dict-item]
    )
    return QueuedMessage(**values)  # type: ignore[arg-type]


def test_senml_pack_of_a_report() -> None:
    topic, payload = senml.encode("plant/a", "sbc1", report_row())
    assert topic == "plant/a/sbc1/mill/report"
    records = json.loads(payload)
    assert records[0] == {
        "bn": "urn:dev:bpiiot:sbc1:mill:",
        "bt": 1764500000.25,
        "n": "qseq",
        "v": 9,
    }
    by_name = {r["n"]: r for r in records}
    assert by_name["vel_rms_z"] == {"n": "vel_rms_z", "u": "m/s", "v": 0.0046}
    assert by_name["acc_peak_y"]["u"] == "m/s2"
    assert by_name["acc_peak_y"]["v"] == pytest.approx(500 * 0.00980665, abs=1e-5)
    assert by_name["temperature"] == {"n": "temperature", "u": "Cel", "v": -5.12}
    assert (by_name["session"]["v"], by_name["seq"]["v"]) == (3, 41)
    assert "resend" not in by_name and "replay" not in by_name and "flag_names" not in by_name
    again = senml.decode(senml.encode("p", "n", report_row(attempts=2, replay=True))[1])
    assert again["resend"] == 2 and again["replay"] is True


def test_bridge_config_is_checked_and_registered(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[bridge]\nbroker_url = "mqtts://broker.example:8884"\nformat = "sparkplug"\n')
    section = cfgmod.load(path).section("bridge")
    assert isinstance(section, BridgeConfig) and section.broker() == ("broker.example", 8884, True)
    assert BridgeConfig().broker() == ("127.0.0.1", 1883, False)
    with pytest.raises(BridgeConfigError, match="format must be one of senml, sparkplug"):
        BridgeConfig(format="json")
    with pytest.raises(BridgeConfigError, match="unknown self_destruct"):
        BridgeConfig(commands=["ping", "self_destruct"])
    with pytest.raises(BridgeConfigError, match="broker_url"):
        BridgeConfig(broker_url="http://x")
    path.write_text("[bridge]\nbroker = 1\n")
    with pytest.raises(cfgmod.ConfigError, match="unknown key 'broker'"):
        cfgmod.load(path)


def test_password_file_must_be_private(tmp_path: Path) -> None:
    pw = tmp_path / "broker.pass"
    pw.write_text("s3cret\n")
    os.chmod(pw, 0o644)
    cfg = BridgeConfig(password_file=str(pw), username="sbc1")
    with pytest.raises(BridgeConfigError) as info:
        cfg.read_password()
    assert "chmod 600" in str(info.value) and "s3cret" not in str(info.value)
    os.chmod(pw, 0o600)
    assert cfg.read_password() == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_batched_packs_split_back_into_messages() -> None:
    from bpiiot.bridge.bridge import SenmlCodec

    codec = SenmlCodec("p", "n")
    rows = [report_row(qseq=q, attempts=a) for q, a in ((7, 0), (8, 1), (9, 0))]
    body = codec.join([codec.encode(r, False)[1] for r in rows])
    assert isinstance(json.loads(body), list)  # still one SenML pack, valid JSON
    got = senml.unpack(body)
    assert [m["qseq"] for m in got] == [7, 8, 9]
    assert [m.get("resend") for m in got] == [None, 1, None]
    assert all(m["_bn"] == "urn:dev:bpiiot:n:mill:" for m in got)
