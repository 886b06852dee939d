"""Transactions: fee modes, reverts on both nodes, replacement, errors, nonces under threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hexbytes import HexBytes

from bpiiot.chain.devnode import DevNode, free_port
from bpiiot.chain.errors import (
    ChainIdMismatch,
    FeeCapExceeded,
    InsufficientFunds,
    NodeUnavailable,
    TransactionReverted,
)
from bpiiot.chain.fees import FeePolicy, Fees, bump
from bpiiot.chain.node import Node
from bpiiot.chain.sender import TxRequest
from tests.sbc.chain.helpers import ETHER, Parties, SenderFactory, fresh_signer

EVIDENCE = b"\x11" * 32


def test_eip1559_by_default_with_geth_fee_rule(anvil: DevNode, make_sender: SenderFactory) -> None:
    sender = make_sender(anvil, fresh_signer(anvil))
    base = sender.node.base_fee()
    assert base is not None
    sub = sender.submit(TxRequest(to=sender.address, value=1))
    tx = sender.node.w3.eth.get_transaction(HexBytes(sub.tx_hash))
    assert tx["type"] == 2
    tip = sender.node.max_priority_fee()
    assert tx["maxPriorityFeePerGas"] == tip
    assert tx["maxFeePerGas"] == 2 * base + tip
    assert tx["chainId"] == 31337


def test_legacy_where_the_node_has_no_base_fee(make_sender: SenderFactory) -> None:
    with DevNode("anvil", extra_args=["--hardfork", "berlin"]) as dev:
        sender = make_sender(dev, fresh_signer(dev))
        assert sender.node.base_fee() is None
        receipt = sender.transact(TxRequest(to=sender.address, value=1))
        tx = sender.node.w3.eth.get_transaction(receipt["transactionHash"])
        assert receipt["status"] == 1 and tx["type"] == 0
        assert tx["gasPrice"] == sender.node.gas_price()


def test_revert_reported_the_same_on_both_nodes(parties: Parties) -> None:
    """anvil mines the revert (status 0), Hardhat 2 refuses it at send: one error either way."""
    vendor = parties.vendor
    req = parties.service.call_request("requestService", EVIDENCE, 3, gas=200_000)
    with pytest.raises(TransactionReverted) as e:
        vendor.transact(req)
    assert e.value.reason == "MachineService: caller is not the machine"
    expected_stage = "mined" if parties.dev.kind == "anvil" else "send"
    assert e.value.stage == expected_stage
    assert e.value.tx_hash is not None
    # Both nodes consumed the nonce; the journal must know, so the next send just works.
    receipt = vendor.transact(TxRequest(to=vendor.address, value=1))
    assert receipt["status"] == 1
    assert vendor.node.nonce(vendor.address) == 2
    # Without a fixed gas limit the revert is caught at estimation and nothing is sent.
    with pytest.raises(TransactionReverted) as e2:
        parties.service.with_sender(vendor).request_service(EVIDENCE, 3)
    assert e2.value.stage == "estimate" and e2.value.reason == e.value.reason
    assert vendor.node.nonce(vendor.address) == 2


def test_wrong_chain_id_is_refused() -> None:
    with DevNode("anvil", chain_id=4242) as dev:
        node = Node(dev.url, expected_chain_id=31337)
        with pytest.raises(ChainIdMismatch, match=r"4242.*31337"):
            node.connect()
        assert Node(dev.url, expected_chain_id=4242).connect() == 4242


def test_node_down_is_a_clear_error(make_sender: SenderFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NodeUnavailable, match=f"node at {url} is not reachable"):
        Node(url).connect()
    with DevNode("anvil") as dev:
        sender = make_sender(dev, fresh_signer(dev))
        sender.transact(TxRequest(to=sender.address, value=1))
        dev.stop()
        with pytest.raises(NodeUnavailable) as e:
            sender.submit(TxRequest(to=sender.address, value=1, gas=21_000))
        assert not e.value.delivered
        assert sender.journal.in_flight() == []  # the refused nonce is free again
        dev.start()
        # Fresh chain on the same port: the journal reconciles down to the node's count.
        dev.set_balance(sender.address, ETHER)
        sender.recover()
        receipt = sender.transact(TxRequest(to=sender.address, value=1))
        assert receipt["status"] == 1


def test_insufficient_funds_leaves_no_gap(anvil: DevNode, make_sender: SenderFactory) -> None:
    sender = make_sender(anvil, fresh_signer(anvil, wei=10**15))
    with pytest.raises(InsufficientFunds, match="insufficient funds"):
        sender.submit(TxRequest(to=sender.address, value=ETHER, gas=21_000))
    with pytest.raises(InsufficientFunds):
        sender.submit(TxRequest(to=sender.address, value=ETHER))  # caught at estimation
    receipt = sender.transact(TxRequest(to=sender.address, value=1))
    tx = sender.node.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["nonce"] == 0  # the refused nonce was reused, not skipped


def test_fee_cap_stops_the_send(anvil: DevNode, make_sender: SenderFactory) -> None:
    sender = make_sender(anvil, fresh_signer(anvil), fees=FeePolicy(max_fee_cap_wei=10**6))
    with pytest.raises(FeeCapExceeded, match="above the cap"):
        sender.submit(TxRequest(to=sender.address, value=1))
    assert sender.node.nonce(sender.address) == 0


def test_bump_is_at_least_ten_percent() -> None:
    assert bump(100, 125) == 113
    assert bump(1, 125) == 2
    assert bump(10**9, 125) == 1_125_000_000
    with pytest.raises(ValueError):
        FeePolicy(bump_permille=90)


def test_stuck_transaction_is_replaced_with_bumped_fees(make_sender: SenderFactory) -> None:
    with DevNode("anvil") as dev:
        sender = make_sender(dev, fresh_signer(dev))
        dev.set_automine(False)
        first = sender.submit(TxRequest(to=sender.address, value=1))
        second = sender.replace(first)
        assert second.nonce == first.nonce and second.tx_hash != first.tx_hash
        old, new = first.fees, second.fees
        assert new.max_fee_per_gas * 10 >= old.max_fee_per_gas * 11
        assert new.max_priority_fee_per_gas * 10 >= old.max_priority_fee_per_gas * 11
        dev.mine()
        receipt = sender.find_receipt([first.tx_hash, second.tx_hash])
        assert receipt is not None and receipt["status"] == 1
        assert HexBytes(receipt["transactionHash"]).to_0x_hex() == second.tx_hash
        assert sender.node.receipt(first.tx_hash) is None
        assert not sender.node.knows(first.tx_hash)  # dropped from the pool


def test_wait_replaces_until_mined(make_sender: SenderFactory) -> None:
    with DevNode("anvil") as dev:
        sender = make_sender(dev, fresh_signer(dev), replace_after_s=0.2)
        dev.set_automine(False)
        first = sender.submit(TxRequest(to=sender.address, value=1))
        timer = threading.Timer(0.7, dev.mine)
        timer.start()
        try:
            receipt = sender.wait(first, timeout_s=10)
        finally:
            timer.cancel()
        assert HexBytes(receipt["transactionHash"]).to_0x_hex() != first.tx_hash
        tx = sender.node.w3.eth.get_transaction(receipt["transactionHash"])
        assert tx["nonce"] == first.nonce
        assert tx["maxPriorityFeePerGas"] > first.fees.max_priority_fee_per_gas


def test_waits_for_the_configured_confirmations(make_sender: SenderFactory) -> None:
    with DevNode("anvil") as dev:
        sender = make_sender(dev, fresh_signer(dev), confirmations=3)
        sub = sender.submit(TxRequest(to=sender.address, value=1))
        mined_at: list[float] = []

        def mine_two() -> None:
            time.sleep(0.3)
            dev.mine(2)
            mined_at.append(time.monotonic())

        t = threading.Thread(target=mine_two)
        t.start()
        receipt = sender.wait(sub, timeout_s=10)
        done = time.monotonic()
        t.join()
        assert mined_at and done >= mined_at[0]
        assert sender.confirmations_of(receipt) >= 3


def test_concurrent_senders_no_reused_nonce_no_gap(
    anvil: DevNode, make_sender: SenderFactory
) -> None:
    sender = make_sender(anvil, fresh_signer(anvil))
    hashes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(8):
                sub = sender.submit(TxRequest(to=sender.address, value=1, gas=21_000))
                with lock:
                    hashes.append(sub.tx_hash)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    nonces = sorted(int(sender.node.w3.eth.get_transaction(HexBytes(h))["nonce"]) for h in hashes)
    assert nonces == list(range(48))
    deadline = time.monotonic() + 10
    while sender.node.nonce(sender.address, "latest") < 48 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sender.node.nonce(sender.address, "latest") == 48
    assert all(sender.node.receipt(h)["status"] == 1 for h in hashes)  # type: ignore[index]
    assert sender.journal.next_nonce() == 48


def test_fees_dataclass_fields() -> None:
    assert Fees(gas_price=5).tx_fields() == {"gasPrice": 5}
    assert Fees(7, 2).tx_fields() == {"maxFeePerGas": 7, "maxPriorityFeePerGas": 2}


def test_sender_refuses_a_journal_of_another_account(
    anvil: DevNode, make_sender: SenderFactory, tmp_path: Path
) -> None:
    a = make_sender(anvil, fresh_signer(anvil))
    b = fresh_signer(anvil)
    from bpiiot.chain.sender import TransactionSender

    with pytest.raises(ValueError, match="another chain or account"):
        TransactionSender(a.node, b, a.journal)


def test_eager_replacement_does_not_break_a_mined_transaction(
    anvil: DevNode, make_sender: SenderFactory
) -> None:
    """replace_after_s=0 races the node's automine: a 'nonce too low' on replace is benign."""
    sender = make_sender(anvil, fresh_signer(anvil), replace_after_s=0.0, poll_s=0.0)
    for _ in range(20):
        assert sender.transact(TxRequest(to=sender.address, value=1))["status"] == 1
    assert sender.node.nonce(sender.address, "latest") == 20
