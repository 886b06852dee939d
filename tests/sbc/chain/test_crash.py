"""Exactly once, proven against a real anvil: SIGKILL at every step, lost replies, restarts.

Each test drives a sender worker process (tests/sbc/chain/crash.py) or an in-process outbox
against a node, then reads the verdict from the chain: every action's event exactly once,
the machine's nonces from 0 without a gap, nothing left pending. ``make soak`` runs the
random-kill test with ``BPIIOT_SOAK_KILLS=200 BPIIOT_SOAK_ACTIONS=200``.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest
from web3 import Web3

from bpiiot.chain import killpoints
from bpiiot.chain.contracts import MachineService
from bpiiot.chain.devnode import DevNode, free_port
from bpiiot.chain.errors import AlreadyKnown, NodeUnavailable
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.outbox import CONFIRMED, Outbox, OutboxSender
from bpiiot.chain.sender import TransactionSender, TxRequest
from bpiiot.wallet import LocalSigner
from tests.sbc.chain.crash import (
    REPLACE_POINTS,
    SEND_POINTS,
    CrashDriver,
    Scenario,
    action_key,
    evidence,
    open_outbox_sender,
    verdict,
)
from tests.sbc.chain.helpers import SenderFactory, dev_key, dev_signer, fresh_key, fresh_signer
from tests.sbc.chain.proxy import DropReplyProxy, drops_sends

SOAK_KILLS = int(os.environ.get("BPIIOT_SOAK_KILLS", "16"))
SOAK_ACTIONS = int(os.environ.get("BPIIOT_SOAK_ACTIONS", "24"))


def _scenario(
    dev: DevNode, make_sender: SenderFactory, tmp_path: Path, actions: int, **kw: object
) -> Scenario:
    """A fresh machine account and MachineService on ``dev``; the worker's state db."""
    machine_key = fresh_key(dev)
    machine = LocalSigner(machine_key)
    deployer = make_sender(dev, fresh_signer(dev))
    vendor = fresh_signer(dev, wei=0)
    service = MachineService.deploy_for(deployer, machine.address, vendor.address)
    return Scenario(
        url=dev.url,
        chain_id=dev.chain_id,
        db_path=tmp_path / "worker.sqlite",
        key=machine_key,
        service=service.address,
        actions=actions,
        **kw,  # type: ignore[arg-type]
    )


def _check_outbox(sc: Scenario) -> None:
    """Every entry confirmed, mined by one of its own recorded versions, nonces distinct."""
    conn = open_db(sc.db_path)
    try:
        entries = Outbox(conn).entries()
        assert [e.state for e in entries] == [CONFIRMED] * sc.actions
        assert all(e.mined_hash in e.tx_hashes for e in entries)
        assert sorted(e.nonce for e in entries if e.nonce is not None) == list(range(sc.actions))
        # Confirmed with the configured confirmations: the journal holds no bytes any more.
        chain_id, machine = sc.chain_id, sc.machine
        assert NonceJournal(conn, chain_id, machine).in_flight() == []
    finally:
        conn.close()


def test_sigkill_at_every_point_mines_each_action_once(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    assert set(SEND_POINTS) | set(REPLACE_POINTS) <= set(killpoints.POINTS)
    sc = _scenario(anvil, make_sender, tmp_path, actions=0)
    driver = CrashDriver(sc)
    # Every named point at its first pass, then at a later pass (mid-queue); new actions
    # arrive before each life, as rules keep firing while the sender crashes.
    first = driver.sweep(SEND_POINTS, add=2)
    assert first == [f"killed at {p}" for p in SEND_POINTS]
    per_pass = [p for p in SEND_POINTS if p != "commit:reconciled"]  # once per start-up
    later = driver.sweep(per_pass, hit=3, add=4)
    assert later == [f"killed at {p}" for p in per_pass]
    driver.finish()
    v = verdict(sc.url, sc.service, sc.machine, range(sc.actions))
    assert v.duplicates == {} and v.missing == [] and v.gaps == [], v
    assert v.exactly_once and v.events == sc.actions and v.latest == sc.actions
    _check_outbox(sc)


def test_random_sigkills_mine_each_action_once(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    """Issue 8, items 1 and 2 together: SIGKILLs at random instants and points, restart after
    each, while a third of the send replies are lost on the way back."""
    sc = _scenario(anvil, make_sender, tmp_path, actions=1)
    seed = int(os.environ.get("BPIIOT_SOAK_SEED", "8"))
    lossy = random.Random(seed + 1)
    with DropReplyProxy(anvil.url, lambda r: drops_sends(r) and lossy.random() < 0.3) as proxy:
        sc.url = proxy.url
        driver = CrashDriver(sc)
        driver.random_kills(SOAK_KILLS, SOAK_ACTIONS, random.Random(seed))
        # At least the actions asked for: a life whose worker finished unkilled adds one.
        assert driver.kills == SOAK_KILLS and sc.actions >= SOAK_ACTIONS
        assert driver.points["random"] >= SOAK_KILLS // 3  # not only at the named points
        driver.finish(timeout_s=300)
        assert proxy.dropped > 0
    sc.url = anvil.url
    v = verdict(sc.url, sc.service, sc.machine, range(sc.actions))
    assert v.duplicates == {} and v.missing == [] and v.gaps == [], v
    assert v.exactly_once and v.events == sc.actions
    _check_outbox(sc)


def test_sigkill_around_a_refused_send(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    """The node refuses the sends (no funds for gas): killed after the refused entries were
    queued again and their nonces released, and right after the refused send."""
    sc = _scenario(anvil, make_sender, tmp_path, actions=3)
    anvil.set_balance(sc.machine, 1000)  # enough for gas estimation, not for any fee
    driver = CrashDriver(sc)
    outcomes = driver.sweep(["commit:requeued", "commit:submitted", "commit:requeued"], hit=2)
    assert all(o.startswith("killed at ") for o in outcomes), outcomes
    assert Outbox(open_db(sc.db_path)).counts().get(CONFIRMED, 0) == 0
    anvil.set_balance(sc.machine, 10**20)
    driver.finish()
    v = verdict(sc.url, sc.service, sc.machine, range(sc.actions))
    assert v.exactly_once and v.events == sc.actions and v.latest == sc.actions, v
    _check_outbox(sc)


def test_lost_send_replies_are_resolved_by_asking_the_node(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    """Issue 8, item 2: every eth_sendRawTransaction reaches the node, its reply is lost."""
    sc = _scenario(anvil, make_sender, tmp_path, actions=6)
    with DropReplyProxy(anvil.url) as proxy:
        ob = open_outbox_sender(Scenario(**{**sc.__dict__, "url": proxy.url}))
        for i in range(sc.actions):
            ob.outbox.enqueue(action_key(i), "MachineService", "requestService", [evidence(i), i])
        for _ in range(10 * sc.actions):
            report = ob.drain_once()
            if ob.outbox.counts() == {CONFIRMED: sc.actions}:
                break
        assert proxy.dropped >= sc.actions
        assert report.node_error is None or "not reachable" in report.node_error
    # Each action was signed exactly once: no second signature after a lost reply.
    assert all(len(e.tx_hashes) == 1 for e in ob.outbox.entries())
    v = verdict(sc.url, sc.service, sc.machine, range(sc.actions))
    assert v.exactly_once and v.events == sc.actions, v
    _check_outbox(sc)


def test_a_dropped_reply_counts_as_possibly_delivered(make_sender: SenderFactory) -> None:
    """The node classifies send failures: a refused connection sent nothing, a reply lost
    after the request left may have delivered it (and here did)."""
    with DevNode("anvil", extra_args=["--no-mining"]) as dev:
        sender = make_sender(dev, fresh_signer(dev))
        req = TxRequest(to=sender.address, value=1, gas=21_000)
        sub = sender.sign(req, 0, 21_000, sender.prepare(req)[1])
        with DropReplyProxy(dev.url) as proxy:
            with pytest.raises(NodeUnavailable) as lost:
                Node(proxy.url).send_raw(sub.raw, sub.tx_hash)
            assert proxy.dropped == 1  # one request: web3 does not retry a send
        assert lost.value.delivered and sender.node.knows(sub.tx_hash)
        with pytest.raises(NodeUnavailable) as refused:
            Node(f"http://127.0.0.1:{free_port()}").send_raw(sub.raw, sub.tx_hash)
        assert not refused.value.delivered
        # Sending the same bytes again is harmless: the node says it has them.
        with pytest.raises(AlreadyKnown):
            sender.node.send_raw(sub.raw, sub.tx_hash)


def _deploy_dev_service(dev: DevNode, tmp_path: Path, run: int) -> MachineService:
    """MachineService deployed by dev account 1 at its nonce 0: the same address on every
    fresh chain, so a chain that was reset can be given the same contract again."""
    node = Node(dev.url, expected_chain_id=dev.chain_id)
    node.connect()
    deployer = dev_signer(1)
    journal = NonceJournal(
        open_db(tmp_path / f"deployer-{run}.sqlite"), node.chain_id, deployer.address
    )
    sender = TransactionSender(node, deployer, journal, FeePolicy(cache_s=0), poll_s=0.02)
    sender.start()
    sub = sender.submit(MachineService.deploy_request(dev_signer(2).address, dev_signer(3).address))
    dev.mine()
    receipt = sender.wait(sub, timeout_s=30)
    return MachineService(sender, str(receipt["contractAddress"]))


def _restart_scenario(dev: DevNode, tmp_path: Path, *, keep_state: bool) -> None:
    """Three sends sit in the mempool; the node restarts twice in a row without it."""
    service = _deploy_dev_service(dev, tmp_path, 0)
    sc = Scenario(
        url=dev.url,
        chain_id=dev.chain_id,
        db_path=tmp_path / "machine.sqlite",
        key=dev_key(2),
        service=service.address,
        actions=3,
    )
    ob = open_outbox_sender(sc)
    for i in range(3):
        ob.outbox.enqueue(action_key(i), "MachineService", "requestService", [evidence(i), i])
    assert ob.drain_once().submitted == 3
    sent = {e.key: e.tx_hashes for e in ob.outbox.entries()}
    for run in (1, 2):
        dev.restart()  # --no-mining: the mempool is lost, nothing is mined by itself
        if not keep_state:
            # A fresh chain: the same contract again at the same address (deployer nonce 0).
            assert _deploy_dev_service(dev, tmp_path, run).address == service.address
        if run == 2:
            ob = open_outbox_sender(sc)  # the SBC restarted too: start-up reconciles
        report = ob.drain_once()
        assert report.rebroadcast >= 3, (run, report)
        assert Outbox(ob.outbox.conn).counts() == {"submitted": 3}
    dev.mine()
    for _ in range(20):
        ob.drain_once()
        if ob.outbox.counts() == {CONFIRMED: 3}:
            break
    assert {e.key: e.tx_hashes for e in ob.outbox.entries()} == sent  # never re-signed
    # Later actions all go through: no nonce was lost in the restarts.
    more = Scenario(**{**sc.__dict__, "actions": 40})
    for i in range(3, 40):
        ob.outbox.enqueue(action_key(i), "MachineService", "requestService", [evidence(i), i])
    for _ in range(40):
        ob.drain_once()
        dev.mine()
        if ob.outbox.counts() == {CONFIRMED: 40}:
            break
    v = verdict(dev.url, service.address, more.machine, range(40))
    assert v.exactly_once and v.events == 40 and v.latest == 40, v
    _check_outbox(more)


def test_node_restarted_twice_with_state_loses_nothing(tmp_path: Path) -> None:
    """Issue 8, item 3: the signed bytes are kept until mined, across any number of restarts."""
    with DevNode(
        "anvil", state_path=tmp_path / "anvil-state.json", extra_args=["--no-mining"]
    ) as dev:
        _restart_scenario(dev, tmp_path, keep_state=True)


def test_node_restarted_twice_without_state_loses_nothing(tmp_path: Path) -> None:
    with DevNode("anvil", extra_args=["--no-mining"]) as dev:
        _restart_scenario(dev, tmp_path, keep_state=False)


def test_sender_keeps_signed_bytes_across_two_restarts(
    make_sender: SenderFactory, tmp_path: Path
) -> None:
    """The journal alone (direct sends, no outbox): the bytes survive two lost mempools."""
    with DevNode(
        "anvil", state_path=tmp_path / "anvil-state.json", extra_args=["--no-mining"]
    ) as dev:
        sender = make_sender(dev, fresh_signer(dev))
        subs = [sender.submit(TxRequest(to=sender.address, value=1, gas=21_000)) for _ in range(3)]
        for _ in range(2):
            dev.restart()
            assert not any(sender.node.knows(s.tx_hash) for s in subs)
            assert sender.recover() == 3
            assert [f.tx_hash for f in sender.journal.in_flight()] == [s.tx_hash for s in subs]
        dev.mine()
        assert [sender.wait(s, timeout_s=10)["status"] for s in subs] == [1, 1, 1]
        assert sender.journal.in_flight() == []
        later = [sender.submit(TxRequest(to=sender.address, value=1, gas=21_000)) for _ in range(5)]
        dev.mine()
        assert [sender.wait(s, timeout_s=10)["status"] for s in later] == [1] * 5
        assert [s.nonce for s in subs + later] == list(range(8))
        assert sender.node.nonce(sender.address, "latest") == 8


def test_stuck_transaction_replaced_while_the_sender_is_killed(
    make_sender: SenderFactory, tmp_path: Path
) -> None:
    """Issue 8, item 4: killed right after a replacement reached the node (and right after
    it was recorded, before sending): whichever version is mined is recognised as ours."""
    with DevNode("anvil") as dev:
        sc = _scenario(dev, make_sender, tmp_path, actions=2, replace_after_s=0.0)
        dev.set_automine(False)
        driver = CrashDriver(sc)
        outcomes = driver.sweep(["replacement_sent", *REPLACE_POINTS, "replacement_sent"])
        assert all(o.startswith("killed at ") for o in outcomes)
        dev.mine()
        dev.set_automine(True)
        driver.finish()
        v = verdict(sc.url, sc.service, sc.machine, range(sc.actions))
        assert v.exactly_once and v.events == sc.actions, v
        entries = Outbox(open_db(sc.db_path)).entries()
        assert all(e.state == CONFIRMED and e.mined_hash in e.tx_hashes for e in entries)
        # The mined version of the first action is a replacement, not its original.
        first = entries[0]
        assert len(first.tx_hashes) >= 3 and first.mined_hash != first.tx_hashes[0]


def test_outbox_and_journal_must_share_one_database(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path, db: sqlite3.Connection
) -> None:
    sender = make_sender(anvil, fresh_signer(anvil))
    elsewhere = Outbox(tmp_path / "other.sqlite")
    try:
        OutboxSender(elsewhere, sender, {})
    except ValueError as e:
        assert "share one state database" in str(e)
    else:
        raise AssertionError("an outbox in another database was accepted")
    # The same file through another connection is fine (e.g. the controller's own).
    path = next(row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main")
    OutboxSender(Outbox(path), sender, {})
    assert Web3.is_address(sender.address)
