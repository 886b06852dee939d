"""The outbox: idempotent queueing, draining, and surviving a node that is down or restarted."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bpiiot.chain.contracts import MachineService, PartReplacement
from bpiiot.chain.devnode import DevNode
from bpiiot.chain.factory import outbox_sender_from_config, sender_from_config
from bpiiot.chain.outbox import (
    CONFIRMED,
    FAILED,
    QUEUED,
    REPLACED,
    SUBMITTED,
    EntryState,
    Outbox,
    OutboxConflict,
    OutboxSender,
    SenderState,
)
from bpiiot.chain.sender import TransactionSender
from bpiiot.config import ChainConfig
from tests.sbc.chain.helpers import ETHER, Parties, SenderFactory, fresh_signer

EVIDENCE = b"\x22" * 32
PRICE = ETHER // 50


def _drain_until(ob: OutboxSender, state: str, key: str, passes: int = 50) -> None:
    for _ in range(passes):
        ob.drain_once()
        entry = ob.outbox.get(key)
        assert entry is not None
        if entry.state == state:
            return
    raise AssertionError(f"{key} never reached {state}: {ob.outbox.get(key)}")


def _outbox_sender(db: sqlite3.Connection, sender: TransactionSender, p: Parties) -> OutboxSender:
    return OutboxSender(
        Outbox(db),
        sender,
        {
            MachineService.NAME: p.service.with_sender(sender),
            PartReplacement.NAME: p.parts.with_sender(sender),
        },
    )


def test_same_key_is_queued_and_executed_once(parties: Parties, db: sqlite3.Connection) -> None:
    p = parties
    p.parts.with_sender(p.supplier).set_price(3, PRICE)
    ob = _outbox_sender(db, p.machine, p)
    args = [3, 1, EVIDENCE]
    first, created = ob.outbox.enqueue(
        "temp-high:pump1:2026-11-25T10", "PartReplacement", "orderPart", args, PRICE
    )
    again, created_again = ob.outbox.enqueue(
        "temp-high:pump1:2026-11-25T10", "PartReplacement", "orderPart", args, PRICE
    )
    assert created and not created_again and again.id == first.id
    ob.outbox.enqueue("vib:pump1:1", "MachineService", "requestService", [EVIDENCE, 12])
    _drain_until(ob, CONFIRMED, "temp-high:pump1:2026-11-25T10")
    _drain_until(ob, CONFIRMED, "vib:pump1:1")
    # A rule that fires again after the call went through still does not order twice.
    ob.outbox.enqueue("temp-high:pump1:2026-11-25T10", "PartReplacement", "orderPart", args, PRICE)
    ob.drain_once()
    assert p.parts.order_count() == 1 and p.service.request_count() == 1
    assert p.parts.order(1).amount == PRICE
    entry = ob.outbox.get("vib:pump1:1")
    assert entry is not None and entry.mined_hash in entry.tx_hashes and entry.block_number
    assert ob.outbox.counts() == {CONFIRMED: 2}


def test_same_key_for_another_call_is_a_conflict(db: sqlite3.Connection) -> None:
    outbox = Outbox(db)
    outbox.enqueue("k", "MachineService", "requestService", [EVIDENCE, 1])
    with pytest.raises(OutboxConflict, match="'k'"):
        outbox.enqueue("k", "MachineService", "requestService", [EVIDENCE, 2])


def test_reverting_call_fails_with_its_reason(parties: Parties, db: sqlite3.Connection) -> None:
    ob = _outbox_sender(db, parties.machine, parties)
    ob.outbox.enqueue("bad", "PartReplacement", "orderPart", [404, 1, EVIDENCE], 1)
    report = ob.drain_once()
    entry = ob.outbox.get("bad")
    assert entry is not None and entry.state == FAILED and report.failed == 1
    assert entry.revert_reason == "PartReplacement: part not listed"


def test_node_down_keeps_everything_queued(
    make_sender: SenderFactory, db: sqlite3.Connection, tmp_path: Path
) -> None:
    with DevNode("anvil", state_path=tmp_path / "anvil-state.json") as dev:
        p = Parties(dev, make_sender, shipping_window_s=3600)
        ob = _outbox_sender(db, p.machine, p)
        dev.stop()
        for i in range(3):
            ob.outbox.enqueue(f"vib:{i}", "MachineService", "requestService", [EVIDENCE, i])
        report = ob.drain_once()
        assert report.node_error is not None and "not reachable" in report.node_error
        assert ob.state == SenderState.PAUSED
        entries = ob.outbox.entries()
        assert [e.state for e in entries] == [QUEUED] * 3
        assert entries[0].last_error is not None and "not reachable" in entries[0].last_error
        # The queue lives in SQLite: a new Outbox on the same database sees it all.
        assert Outbox(db).counts() == {QUEUED: 3}
        dev.start()
        for i in range(3):
            _drain_until(ob, CONFIRMED, f"vib:{i}")
        assert ob.state == SenderState.RUNNING
        assert p.service.request_count() == 3
        assert [p.service.request(i + 1).fault_code for i in range(3)] == [0, 1, 2]


def test_node_restarted_mid_flight(
    make_sender: SenderFactory, db: sqlite3.Connection, tmp_path: Path
) -> None:
    """Submitted, node restarts without its mempool: the same bytes are re-broadcast once."""
    with DevNode("anvil", state_path=tmp_path / "anvil-state.json") as dev:
        p = Parties(dev, make_sender, shipping_window_s=3600)
        ob = _outbox_sender(db, p.machine, p)
        dev.set_automine(False)
        ob.outbox.enqueue("vib:1", "MachineService", "requestService", [EVIDENCE, 9])
        ob.outbox.enqueue("vib:2", "MachineService", "requestService", [EVIDENCE, 10])
        assert ob.drain_once().submitted == 2
        sent = {e.key: e.tx_hashes for e in ob.outbox.entries()}
        assert all(e.state == SUBMITTED for e in ob.outbox.entries())
        dev.stop()
        assert ob.drain_once().node_error is not None
        assert all(e.state == SUBMITTED for e in ob.outbox.entries())
        dev.start()  # automine is on again; the chain came back from the state file
        assert p.service.request_count() == 0  # the pending transactions were lost
        report = ob.drain_once()
        assert report.rebroadcast == 2
        _drain_until(ob, CONFIRMED, "vib:2")
        _drain_until(ob, CONFIRMED, "vib:1")
        assert p.service.request_count() == 2  # exactly once each
        for e in ob.outbox.entries():
            assert e.tx_hashes == sent[e.key] and e.mined_hash == sent[e.key][0]


def test_stuck_entry_is_replaced_by_the_drain(
    make_sender: SenderFactory, db: sqlite3.Connection
) -> None:
    with DevNode("anvil") as dev:
        p = Parties(dev, make_sender, shipping_window_s=3600)
        sender = make_sender(dev, fresh_signer(dev), replace_after_s=0.0)
        machine_ms = MachineService.deploy_for(sender, sender.address, p.vendor.address)
        ob = OutboxSender(Outbox(db), sender, {MachineService.NAME: machine_ms})
        dev.set_automine(False)
        ob.outbox.enqueue("vib:1", "MachineService", "requestService", [EVIDENCE, 1])
        assert ob.drain_once().submitted == 1
        assert ob.drain_once().replaced == 1
        entry = ob.outbox.get("vib:1")
        assert entry is not None and len(entry.tx_hashes) == 2 and entry.nonce is not None
        assert entry.state == REPLACED == "replaced"
        # Both versions are kept with their signed bytes, the original first.
        assert [v.tx_hash for v in entry.signed] == entry.tx_hashes
        assert all(v.raw for v in entry.signed)
        assert entry.signed[1].fees.max_fee_per_gas > entry.signed[0].fees.max_fee_per_gas
        dev.mine()
        _drain_until(ob, CONFIRMED, "vib:1")
        done = ob.outbox.get("vib:1")
        assert done is not None and done.mined_hash == done.tx_hashes[-1]
        assert machine_ms.request_count() == 1


def test_unpaid_order_waits_queued_until_funded(
    anvil: DevNode, make_sender: SenderFactory, db: sqlite3.Connection
) -> None:
    p = Parties(anvil, make_sender, shipping_window_s=3600)
    poor = make_sender(anvil, fresh_signer(anvil, wei=ETHER))
    parts = PartReplacement.deploy_for(poor, poor.address, p.supplier.address, 3600)
    parts.with_sender(p.supplier).set_price(3, 5 * ETHER)
    ob = OutboxSender(Outbox(db), poor, {PartReplacement.NAME: parts})
    ob.outbox.enqueue("order:1", "PartReplacement", "orderPart", [3, 1, EVIDENCE], 5 * ETHER)
    ob.drain_once()
    entry = ob.outbox.get("order:1")
    assert entry is not None and entry.state == QUEUED
    assert entry.last_error is not None and "insufficient funds" in entry.last_error
    anvil.set_balance(poor.address, 10 * ETHER)
    _drain_until(ob, CONFIRMED, "order:1")
    assert parts.order(1).amount == 5 * ETHER


def test_run_loop_drains_in_a_thread(anvil_parties: Parties, db: sqlite3.Connection) -> None:
    ob = _outbox_sender(db, anvil_parties.machine, anvil_parties)
    stop = threading.Event()
    worker = threading.Thread(target=ob.run, args=(stop, 0.02))
    worker.start()
    try:
        for i in range(3):
            ob.outbox.enqueue(f"vib:{i}", "MachineService", "requestService", [EVIDENCE, i])
        deadline = time.monotonic() + 10
        while ob.outbox.counts() != {CONFIRMED: 3} and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive() and ob.state == SenderState.STOPPED
    assert ob.outbox.counts() == {CONFIRMED: 3}
    assert anvil_parties.service.request_count() == 3


def test_entry_states_are_an_enum_readable_as_strings(db: sqlite3.Connection) -> None:
    outbox = Outbox(db)
    entry, _ = outbox.enqueue("k", "MachineService", "requestService", [EVIDENCE, 1])
    assert entry.state is EntryState.QUEUED and entry.state == "queued"
    assert f"{entry.state}" == "queued" and json.dumps({"s": entry.state}) == '{"s": "queued"}'
    assert EntryState("submitted") is SUBMITTED and outbox.entries("queued") == [entry]
    assert outbox.counts() == {"queued": 1} and list(outbox.counts()) == [EntryState.QUEUED]
    assert [s.value for s in EntryState] == [
        "queued",
        "submitted",
        "replaced",
        "confirmed",
        "failed",
    ]
    assert SUBMITTED.pending and REPLACED.pending and CONFIRMED.final and not QUEUED.final


def test_chain_errors_and_value_types_are_leaf_modules() -> None:
    """chain/errors.py imports no other chain module but the value types (no cycle)."""
    code = (
        "import sys, bpiiot.chain.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('bpiiot.chain')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(["bpiiot.chain", "bpiiot.chain.errors", "bpiiot.chain.types"])


def test_refused_send_is_requeued_only_once_the_node_proves_the_nonce_free(
    anvil: DevNode, make_sender: SenderFactory, db: sqlite3.Connection
) -> None:
    """Gas estimation passes (it charges no fee) but the node refuses the send for lack of
    funds: the node knows nothing of it and its count is not above the nonce, so the nonce
    is released and the entry queued again; funded, it goes out with that very nonce."""
    p = Parties(anvil, make_sender, shipping_window_s=3600)
    poor = make_sender(anvil, fresh_signer(anvil, wei=1000))
    service = MachineService.deploy_for(p.machine, poor.address, p.vendor.address)
    ob = OutboxSender(Outbox(db), poor, {MachineService.NAME: service})
    ob.outbox.enqueue("vib:1", "MachineService", "requestService", [EVIDENCE, 1])
    report = ob.drain_once()
    assert (report.submitted, report.requeued) == (1, 1)
    entry = ob.outbox.get("vib:1")
    assert entry is not None and entry.state == QUEUED and entry.nonce is None
    assert entry.last_error is not None and "insufficient funds" in entry.last_error
    assert poor.journal.in_flight() == [] and poor.journal.reserve() == 0
    poor.journal.release(0)
    anvil.set_balance(poor.address, ETHER)
    _drain_until(ob, CONFIRMED, "vib:1")
    done = ob.outbox.get("vib:1")
    assert done is not None and done.nonce == 0 and service.request_count() == 1


def test_factory_builds_the_outbox_sender_from_config(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    p = Parties(anvil, make_sender, shipping_window_s=3600)
    signer = fresh_signer(anvil)
    service = MachineService.deploy_for(p.machine, signer.address, p.vendor.address)
    cfg = ChainConfig(
        node_url=anvil.url, state_db=str(tmp_path / "state.sqlite"), machine_service=service.address
    )
    sender = sender_from_config(cfg, signer)
    ob = outbox_sender_from_config(cfg, sender)
    assert set(ob.contracts) == {MachineService.NAME}
    ob.outbox.enqueue("vib:1", "MachineService", "requestService", [EVIDENCE, 5])
    _drain_until(ob, CONFIRMED, "vib:1")
    # The controller may open the outbox by path: the same database, another connection.
    assert Outbox(tmp_path / "state.sqlite").counts() == {CONFIRMED: 1}
    assert service.request(1).fault_code == 5


def test_signed_bytes_are_kept_until_the_configured_confirmations(
    make_sender: SenderFactory, db: sqlite3.Connection
) -> None:
    with DevNode("anvil") as dev:
        p = Parties(dev, make_sender, shipping_window_s=3600)
        sender = make_sender(dev, fresh_signer(dev), confirmations=3)
        deployed = MachineService.deploy_for(p.machine, sender.address, p.vendor.address)
        service = deployed.with_sender(sender)
        ob = OutboxSender(Outbox(db), sender, {MachineService.NAME: service})
        ob.outbox.enqueue("vib:1", "MachineService", "requestService", [EVIDENCE, 1])
        ob.drain_once()  # submitted and mined at once (automine): one confirmation
        for _ in range(3):
            ob.drain_once()
        entry = ob.outbox.get("vib:1")
        assert entry is not None and entry.state == SUBMITTED and service.request_count() == 1
        # Mined but not deep enough: the journal still holds the signed bytes.
        assert [f.raw for f in sender.journal.in_flight()] == [entry.signed[0].raw]
        dev.mine(2)
        assert ob.drain_once().confirmed == 1
        assert sender.journal.in_flight() == []
        done = ob.outbox.get("vib:1")
        assert done is not None and done.state == CONFIRMED and done.signed == entry.signed
