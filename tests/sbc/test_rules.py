"""Rules, store and evidence over real encoded and verified frames (no board, no node)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from bpiiot import evidence, wire
from bpiiot import messages as m
from bpiiot.rules import (
    FIRING,
    PENDING,
    RESOLVED,
    Action,
    Rule,
    RuleEngine,
    RuleError,
    above,
    rule_from_table,
    rules_from_config,
    vel_rms_mm_s,
)
from bpiiot.store import Store, StoreError

KEY = bytes(range(32))


class Feed:
    """A board's side of a link: reports encoded and verified as the SBC would."""

    def __init__(self, key: bytes | None = None, session: int = 1) -> None:
        self.enc = wire.FrameEncoder(from_host=False, key=key, session=session)
        self.ver = wire.FrameVerifier("host", key)

    def report(
        self, window_seq: int, vel_um_s: int = 1000, temp_cdeg: int = 3500, flags: int = 0
    ) -> tuple[wire.Frame, bytes]:
        msg = m.Report(
            window_seq,
            window_seq * 1000,
            3200,
            (100, 100, 100),
            (300, 300, 300),
            (vel_um_s, vel_um_s // 2, vel_um_s // 3),
            temp_cdeg,
            flags,
        )
        raw = self.enc.encode(msg)[:-1]
        return self.ver.verify(raw), raw


def vib_rule(**kw: object) -> Rule:
    args: dict[str, object] = {
        "when": above(vel_rms_mm_s(), 4.5),
        "measure": vel_rms_mm_s(),
        "count": 3,
        "of": 3,
        "action": Action("request_service", fault_code=1),
    }
    args.update(kw)
    return Rule("vib", **args)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.sqlite")
    yield s  # type: ignore[misc]
    s.close()


def run(engine: RuleEngine, feed: Feed, seqs: list[int], vel: int = 6000, **kw: int) -> list[str]:
    states = []
    for w in seqs:
        frame, raw = feed.report(w, vel, **kw)
        for t in engine.process("b1", frame, raw, 1000.0 + w):
            states.append(t.new)
    return states


def test_n_of_m_counts_by_window_seq_so_a_lost_frame_is_not_a_passing_window(
    store: Store,
) -> None:
    engine = RuleEngine([vib_rule()], store)
    feed = Feed()
    # Windows 1, 2 hit, 3 is lost, 4 hits: the last three windows (2, 3, 4) hold two hits.
    assert run(engine, feed, [1, 2, 4]) == [PENDING]
    assert engine.state("b1", "vib").state == PENDING
    assert store.incidents() == []
    # Counting received frames, 1, 2, 4 would already be three hits in a row.
    assert run(engine, feed, [5]) == []  # 3 (lost), 4, 5: still two
    assert run(engine, feed, [6]) == [FIRING]  # 4, 5, 6
    assert len(store.incidents()) == 1


def test_flagged_windows_never_count(store: Store) -> None:
    engine = RuleEngine([vib_rule(count=1, of=1)], store)
    feed = Feed()
    settling = m.ReportFlag.SETTLING
    assert run(engine, feed, [1, 2, 3], flags=settling) == []
    assert store.incidents() == []
    assert run(engine, feed, [4]) == [FIRING]


def test_one_incident_per_excursion_and_a_new_key_for_the_next(store: Store) -> None:
    engine = RuleEngine([vib_rule(count=2, of=2, clear_windows=2)], store)
    feed = Feed()
    assert run(engine, feed, list(range(1, 30))) == [PENDING, FIRING]
    (inc,) = store.incidents()
    assert inc["key"] == "b1/vib/1"
    # Between the clear threshold (default: not the condition) for 2 windows: resolved.
    assert run(engine, feed, [30, 31], vel=1000) == [RESOLVED]
    assert store.incident(inc["id"])["state"] == "resolved"  # type: ignore[index]
    assert run(engine, feed, [32, 33, 34]) == [PENDING, FIRING]
    keys = sorted(i["key"] for i in store.incidents())
    assert keys == ["b1/vib/1", "b1/vib/2"]


def test_hysteresis_keeps_firing_between_thresholds(store: Store) -> None:
    rule = vib_rule(count=1, of=1, clear=lambda r: max(r.vel_rms_um_s) < 3500)
    engine = RuleEngine([rule], store)
    feed = Feed()
    assert run(engine, feed, [1]) == [FIRING]
    assert run(engine, feed, list(range(2, 10)), vel=4000) == []  # below 4.5, above 3.5
    assert engine.state("b1", "vib").state == FIRING
    assert run(engine, feed, [10, 11, 12], vel=3000) == [RESOLVED]


def test_a_replayed_window_is_not_counted_twice(store: Store) -> None:
    engine = RuleEngine([vib_rule()], store)
    feed = Feed()
    frame, raw = feed.report(1, 6000)
    for _ in range(5):
        engine.process("b1", frame, raw, 1.0)
    assert engine.state("b1", "vib").state == PENDING
    assert store.incidents() == []


def test_restart_resumes_counting_and_never_reopens_an_incident(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    feed = Feed()
    s1 = Store(path)
    e1 = RuleEngine([vib_rule()], s1)
    run(e1, feed, [1, 2])
    e1.save()
    s1.close()
    s2 = Store(path)
    e2 = RuleEngine([vib_rule()], s2)
    assert run(e2, feed, [3]) == [FIRING]  # two hits before the restart + one after
    s2.close()
    s3 = Store(path)
    e3 = RuleEngine([vib_rule()], s3)
    assert e3.state("b1", "vib").state == FIRING
    assert run(e3, feed, list(range(4, 20))) == []
    assert [i["key"] for i in s3.incidents()] == ["b1/vib/1"]
    s3.close()


def test_for_duration_and_cooldown(store: Store) -> None:
    rule = vib_rule(count=1, of=1, for_s=3.0, clear_windows=1, cooldown_s=100.0)
    engine = RuleEngine([rule], store)
    feed = Feed()
    # Board time is window_seq * 1000 ms: hits at 1..4 hold for 3 s at window 4.
    assert run(engine, feed, [1, 2, 3]) == [PENDING]
    assert run(engine, feed, [4]) == [FIRING]
    inc = store.incidents()[0]
    assert inc["detail"]["frames"] == 4
    assert run(engine, feed, [5], vel=100) == [RESOLVED]
    # Within the cooldown (received = 1000 + w s): holds but does not fire.
    assert run(engine, feed, list(range(6, 20))) == [PENDING]
    assert len(store.incidents()) == 1


def test_evidence_hash_is_over_the_firing_frames_and_reverifies(store: Store) -> None:
    engine = RuleEngine([vib_rule()], store)
    feed = Feed(key=KEY)
    bodies = []
    for w in (1, 2, 3):
        frame, raw = feed.report(w, 6000)
        bodies.append(evidence.body_of(raw))
        engine.process("b1", frame, raw, float(w))
    (inc,) = store.incidents()
    assert inc["evidence_hash"] == "0x" + evidence.evidence_hash(bodies).hex()
    stored = [f.body for f in store.incident_frames(inc["id"])]
    assert stored == bodies
    good = evidence.verify_frames(stored, inc["evidence_hash"], KEY)
    assert good.ok and all(f.tag_ok for f in good.frames)
    wrong_key = evidence.verify_frames(stored, inc["evidence_hash"], bytes(32))
    assert not wrong_key.ok and all(f.tag_ok is False for f in wrong_key.frames)
    tampered = [*stored[:2], stored[2][:-5] + bytes([stored[2][-5] ^ 1]) + stored[2][-4:]]
    bad = evidence.verify_frames(tampered, inc["evidence_hash"], KEY)
    assert not bad.ok and not bad.frames[2].crc_ok and bad.expected != bad.computed


def test_bundle_round_trip_and_tamper(store: Store) -> None:
    engine = RuleEngine([vib_rule(count=1, of=1)], store)
    feed = Feed()
    frame, raw = feed.report(1, 6000)
    engine.process("b1", frame, raw, 1.0)
    inc = store.incidents()[0]
    bodies = [f.body for f in store.incident_frames(inc["id"])]
    doc = evidence.export_bundle(inc, bodies, {"evidence_hash": inc["evidence_hash"]})
    doc2 = evidence.load_bundle(json.dumps(doc))
    assert evidence.verify_bundle(doc2).ok
    doc2["transaction"]["evidence_hash"] = "0x" + "00" * 32
    assert not evidence.verify_bundle(doc2).ok


def test_reports_retention_keeps_incident_frames(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite", max_reports=5, retention_s=3600)
    engine = RuleEngine([vib_rule(count=1, of=1)], s)
    feed = Feed()
    now = time.time()
    for w in range(1, 21):
        frame, raw = feed.report(w, 6000 if w == 1 else 100)
        # Window 1 (the evidence) is two hours old: retention by age removes it.
        received = now - 7200 if w == 1 else now + w
        s.add_report("b1", frame, raw, received)
        engine.process("b1", frame, raw, received)
    s.flush()  # writes the batch, then prunes by age and by count
    assert s.report_count("b1") == 5
    assert [r["window_seq"] for r in s.reports("b1")] == [16, 17, 18, 19, 20]
    inc = s.incidents()[0]
    assert len(s.incident_frames(inc["id"])) == 1
    s.close()


def test_corrupt_or_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        Store(bad)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.sqlite", create=False)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    c = sqlite3.connect(other)
    c.execute("INSERT INTO meta VALUES ('schema', '99')")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(other)


def test_toml_rules_validate_and_build() -> None:
    rules = rules_from_config(
        [
            {"name": "z", "field": "zone", "threshold": "C", "count": 2, "of": 4},
            {"name": "t", "field": "temperature_c", "threshold": 70, "for_s": 30},
        ]
    )
    zone_rule = rules[0]
    feed = Feed()
    frame_c, _ = feed.report(1, 3000)  # 3.0 mm/s: zone C for group2-rigid
    frame_b, _ = feed.report(2, 2000)
    assert isinstance(frame_c.message, m.Report) and isinstance(frame_b.message, m.Report)
    assert zone_rule.when(frame_c.message) and not zone_rule.when(frame_b.message)
    with pytest.raises(RuleError, match="unknown key"):
        rule_from_table({"name": "x", "field": "zone", "threshold": "C", "treshold": 1})
    with pytest.raises(RuleError, match="zone threshold"):
        rule_from_table({"name": "x", "field": "zone", "threshold": 3})
    with pytest.raises(RuleError, match="part_id"):
        rule_from_table(
            {"name": "x", "field": "acc_rms_mg", "threshold": 3, "action": "order_part"}
        )
    with pytest.raises(RuleError, match="unique"):
        rules_from_config([{"name": "a", "field": "zone", "threshold": "D"}] * 2)
    assert rules[1].for_s == 30.0 and rules[1].action == Action("log")


def test_invalid_tables_are_reported_by_index_and_key() -> None:
    good = {"name": "a", "field": "zone", "threshold": "D"}
    with pytest.raises(RuleError) as err:
        rules_from_config([good, {"name": "b", "field": "zone", "threshold": 3}, {"name": "c"}])
    assert set(err.value.errors) == {"1.threshold", "2.field"}
    with pytest.raises(RuleError) as err:
        rules_from_config([good, {**good, "count": 0}])
    assert set(err.value.errors) == {"1.count"}
    with pytest.raises(RuleError) as err:
        rules_from_config([good, good])
    assert set(err.value.errors) == {"1.name"}


def test_a_disabled_rule_is_checked_kept_in_the_tables_and_evaluates_nothing() -> None:
    good = {"name": "a", "field": "zone", "threshold": "D"}
    off = {"name": "b", "field": "zone", "threshold": "C", "enabled": False}
    assert [r.name for r in rules_from_config([good, off])] == ["a"]
    assert [r.name for r in rules_from_config([good, {**off, "enabled": True}])] == ["a", "b"]
    # Switched off, it is still validated: a broken rule is not hidden by disabling it.
    with pytest.raises(RuleError) as err:
        rules_from_config([good, {**off, "threshold": 3}])
    assert set(err.value.errors) == {"1.threshold"}
    with pytest.raises(RuleError) as err:
        rules_from_config([good, {**off, "enabled": "no"}])
    assert set(err.value.errors) == {"1.enabled"}
    # Two rules of one name stay an error even when one is off.
    with pytest.raises(RuleError, match="unique"):
        rules_from_config([good, {**good, "enabled": False}])


def test_store_reads_back_reports_and_incidents_with_their_frames(store: Store) -> None:
    engine = RuleEngine([vib_rule(count=2, of=2)], store)
    feed = Feed()
    sent = []
    t0 = time.time()
    for w in (1, 2, 3):
        frame, raw = feed.report(w, 6000 if w > 1 else 100, flags=0)
        sent.append(frame.message)
        store.add_report("b1", frame, raw, t0 + w)
        engine.process("b1", frame, raw, t0 + w)
    got = store.reports_since("b1", t0 + 1.5)
    assert [t for t, _ in got] == [t0 + 2, t0 + 3]
    assert [r for _, r in got] == sent[1:]
    (inc,) = store.incidents(limit=50)
    assert inc["evidence_ok"] is True and inc["closed"] is None
    assert [f["window_seq"] for f in inc["frames"]] == [2, 3]
    assert list(inc["frames"][0]["vel_rms_um_s"]) == [6000, 3000, 2000]
