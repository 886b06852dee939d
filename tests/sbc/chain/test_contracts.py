"""The two agreements on real nodes: happy paths, money, deadlines, access control, re-entrancy."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.types import TxReceipt

from bpiiot.chain.contracts import (
    MAX_SHIPPING_WINDOW_S,
    OrderStatus,
    PartReplacement,
    ServiceStatus,
)
from bpiiot.chain.devnode import DevNode, rpc_call
from bpiiot.chain.errors import ContractError, TransactionReverted
from bpiiot.chain.node import decode_revert_data
from bpiiot.chain.sender import TransactionSender, TxRequest
from tests.sbc.chain.helpers import ETHER, Parties, SenderFactory, load_test_artifact

EVIDENCE = Web3.keccak(text="vibration 7.1 mm/s, 5 windows over 4.5")
REPORT = Web3.keccak(text="bearing replaced")
PRICE = ETHER // 100


def test_service_request_accept_complete_with_events(parties: Parties) -> None:
    ms = parties.service
    assert ms.parties() == (parties.machine.address, parties.vendor.address)
    rid = ms.request_service(EVIDENCE, 42)
    assert rid == 1 and ms.request_count() == 1
    info = ms.request(rid)
    assert (info.status, info.evidence_hash, info.fault_code) == (
        ServiceStatus.REQUESTED,
        bytes(EVIDENCE),
        42,
    )
    vendor_ms = ms.with_sender(parties.vendor)
    vendor_ms.accept_request(rid)
    assert ms.request(rid).status == ServiceStatus.ACCEPTED
    vendor_ms.complete_request(rid, REPORT)
    done = ms.request(rid)
    assert done.status == ServiceStatus.COMPLETED and done.report_hash == bytes(REPORT)
    assert done.completed_at >= done.accepted_at >= done.requested_at > 0
    [req] = ms.events("ServiceRequested")
    assert req["args"]["requestId"] == 1 and req["args"]["faultCode"] == 42
    [acc] = ms.events("ServiceAccepted")
    assert acc["args"]["vendor"] == parties.vendor.address
    [comp] = ms.events("ServiceCompleted")
    assert comp["args"]["reportHash"] == bytes(REPORT)


def _order(parties: Parties, quantity: int = 2) -> int:
    parties.parts.with_sender(parties.supplier).set_price(7, PRICE)
    return parties.parts.order_part(7, quantity, EVIDENCE)


def test_order_ship_confirm_withdraw_moves_the_money(parties: Parties) -> None:
    pr, node = parties.parts, parties.machine.node
    oid = _order(parties, quantity=3)
    order = pr.order(oid)
    assert (order.status, order.amount, order.quantity) == (OrderStatus.ORDERED, 3 * PRICE, 3)
    assert node.balance(pr.address) == 3 * PRICE  # held in escrow
    supplier_pr = pr.with_sender(parties.supplier)
    supplier_pr.mark_shipped(oid)
    assert pr.credits(parties.supplier.address) == 0  # nothing released before delivery
    pr.confirm_delivery(oid)
    assert pr.order(oid).status == OrderStatus.DELIVERED
    assert pr.credits(parties.supplier.address) == 3 * PRICE
    before = node.balance(parties.supplier.address)
    receipt = supplier_pr.withdraw()
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert node.balance(parties.supplier.address) == before + 3 * PRICE - gas_cost
    assert node.balance(pr.address) == 0 and pr.credits(parties.supplier.address) == 0
    [ev] = pr.events("Withdrawn")
    assert ev["args"]["amount"] == 3 * PRICE


def test_refund_only_after_the_deadline(parties: Parties) -> None:
    pr, node = parties.parts, parties.machine.node
    oid = _order(parties)
    with pytest.raises(TransactionReverted, match="deadline not reached") as e:
        pr.refund(oid)
    assert e.value.reason == "PartReplacement: deadline not reached"
    parties.dev.increase_time(3601)
    # Past the deadline the supplier may no longer ship, and the machine gets its money back.
    with pytest.raises(TransactionReverted, match="shipping deadline passed"):
        pr.with_sender(parties.supplier).mark_shipped(oid)
    before = node.balance(parties.machine.address)
    receipt = pr.refund(oid)
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert node.balance(parties.machine.address) == before + 2 * PRICE - gas_cost
    assert pr.order(oid).status == OrderStatus.REFUNDED and node.balance(pr.address) == 0
    with pytest.raises(TransactionReverted, match="order is not open"):
        pr.refund(oid)  # no second refund


@pytest.mark.parametrize("value_delta", [-1, 1, PRICE])
def test_exact_price_required(parties: Parties, value_delta: int) -> None:
    parties.parts.with_sender(parties.supplier).set_price(7, PRICE)
    with pytest.raises(TransactionReverted) as e:
        parties.parts.order_part(7, 1, EVIDENCE, value=PRICE + value_delta)
    assert e.value.reason == "PartReplacement: exact price required"
    assert parties.parts.order_count() == 0


def test_unlisted_part_and_zero_quantity_refused(parties: Parties) -> None:
    with pytest.raises(TransactionReverted, match="part not listed"):
        parties.parts.order_part(99, 1, EVIDENCE, value=0)
    parties.parts.with_sender(parties.supplier).set_price(7, PRICE)
    with pytest.raises(TransactionReverted, match="quantity must be positive"):
        parties.parts.order_part(7, 0, EVIDENCE)


def test_price_times_quantity_overflow_has_a_reason(parties: Parties) -> None:
    """A listing of 2^255 wei ordered twice overflows uint256: a reason, not a bare Panic."""
    parties.parts.with_sender(parties.supplier).set_price(7, 2**255)
    with pytest.raises(TransactionReverted) as e:
        parties.parts.order_part(7, 2, EVIDENCE, value=0)
    assert e.value.reason == "PartReplacement: price x quantity overflows"
    # One unit of the same part does not overflow; it fails on the price, as it should.
    with pytest.raises(TransactionReverted) as e1:
        parties.parts.order_part(7, 1, EVIDENCE, value=0)
    assert e1.value.reason == "PartReplacement: exact price required"
    assert parties.parts.order_count() == 0


@pytest.mark.parametrize("window", [2**64 - 1, 2**64 - 2**32, MAX_SHIPPING_WINDOW_S + 1])
def test_shipping_window_near_2_64_is_refused_at_deploy(parties: Parties, window: int) -> None:
    p = parties
    # The binding refuses it before signing anything...
    with pytest.raises(ContractError, match="shipping window"):
        PartReplacement.deploy_for(p.machine, p.machine.address, p.supplier.address, window)
    # ...and the constructor itself reverts with a reason for anyone deploying it otherwise.
    with pytest.raises(TransactionReverted) as e:
        PartReplacement.deploy(p.machine, p.machine.address, p.supplier.address, window)
    assert e.value.reason == "PartReplacement: shipping window longer than 100 years"
    # The longest window allowed deploys and orders without overflow.
    pr = PartReplacement.deploy_for(
        p.machine, p.machine.address, p.supplier.address, MAX_SHIPPING_WINDOW_S
    )
    assert int(pr.read("MAX_SHIPPING_WINDOW")) == MAX_SHIPPING_WINDOW_S
    pr.with_sender(p.supplier).set_price(7, PRICE)
    order = pr.order(pr.order_part(7, 1, EVIDENCE))
    assert order.ship_deadline == order.ordered_at + MAX_SHIPPING_WINDOW_S


# (who, contract, function, args, reason): every role check of both contracts.
ACCESS = [
    ("vendor", "service", "requestService", [EVIDENCE, 1], "caller is not the machine"),
    ("stranger", "service", "requestService", [EVIDENCE, 1], "caller is not the machine"),
    ("machine", "service", "acceptRequest", [1], "caller is not the vendor"),
    ("stranger", "service", "acceptRequest", [1], "caller is not the vendor"),
    ("machine", "service", "completeRequest", [1, REPORT], "caller is not the vendor"),
    ("machine", "parts", "setPrice", [7, 1], "caller is not the supplier"),
    ("stranger", "parts", "setPrice", [7, 1], "caller is not the supplier"),
    ("supplier", "parts", "orderPart", [7, 1, EVIDENCE], "caller is not the machine"),
    ("machine", "parts", "markShipped", [1], "caller is not the supplier"),
    ("supplier", "parts", "confirmDelivery", [1], "caller is not the machine"),
    ("stranger", "parts", "confirmDelivery", [1], "caller is not the machine"),
    ("machine", "parts", "withdraw", [], "caller is not the supplier"),
    ("supplier", "parts", "refund", [1], "caller is not the machine"),
]


@pytest.mark.parametrize(("who", "target", "function", "args", "reason"), ACCESS)
def test_access_control(
    anvil_parties: Parties, who: str, target: str, function: str, args: list[Any], reason: str
) -> None:
    p = anvil_parties
    p.service.request_service(EVIDENCE, 1)
    _order(p, quantity=1)
    contract = getattr(p, target).with_sender(getattr(p, who))
    value = PRICE if function == "orderPart" else 0
    with pytest.raises(TransactionReverted) as e:
        contract.transact(function, *args, value=value)
    assert e.value.reason is not None and e.value.reason.endswith(reason)


def test_vendor_cannot_skip_or_repeat_steps(parties: Parties) -> None:
    vendor_ms = parties.service.with_sender(parties.vendor)
    rid = parties.service.request_service(EVIDENCE, 1)
    with pytest.raises(TransactionReverted, match="request is not accepted"):
        vendor_ms.complete_request(rid, REPORT)
    vendor_ms.accept_request(rid)
    with pytest.raises(TransactionReverted, match="request is not open"):
        vendor_ms.accept_request(rid)


def _deploy_attacker(sender: TransactionSender) -> Any:
    art = load_test_artifact("ReentrancyAttacker")
    w3 = sender.node.w3
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    data = factory.constructor("0x" + "00" * 20).data_in_transaction
    receipt = sender.transact(TxRequest(to=None, data=data))
    return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def _attacker_call(
    sender: TransactionSender, attacker: Any, fn: str, *args: Any, value: int = 0
) -> TxReceipt:
    data = attacker.encode_abi(fn, args=list(args))
    return sender.transact(TxRequest(to=attacker.address, data=data, value=value))


def test_reentrant_withdraw_is_stopped_by_the_guard(parties: Parties) -> None:
    """A supplier contract that re-enters withdraw() from its receive() gets paid once."""
    p, node = parties, parties.machine.node
    attacker = _deploy_attacker(p.stranger)
    pr = PartReplacement.deploy_for(p.machine, p.machine.address, attacker.address, 3600)
    _attacker_call(p.stranger, attacker, "setTarget", pr.address)

    def as_supplier(fn: str, *args: Any) -> None:
        _attacker_call(p.stranger, attacker, "forward", pr.contract.encode_abi(fn, args=list(args)))

    as_supplier("setPrice", 7, PRICE)
    # Two delivered orders, so a second withdraw would have something to take if re-entry worked.
    for _ in range(2):
        oid = pr.order_part(7, 1, EVIDENCE)
        as_supplier("markShipped", oid)
        pr.confirm_delivery(oid)
    assert pr.credits(attacker.address) == 2 * PRICE
    _attacker_call(p.stranger, attacker, "setReentry", pr.contract.encode_abi("withdraw", args=[]))
    as_supplier("withdraw")
    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySucceeded().call() is False
    error = bytes(attacker.functions.reentryError().call())
    assert decode_revert_data(error) == "PartReplacement: reentrant call"
    assert node.balance(attacker.address) == 2 * PRICE  # exactly what it was owed
    assert node.balance(pr.address) == 0 and pr.credits(attacker.address) == 0


def test_reentrant_refund_is_stopped_by_the_guard(anvil_parties: Parties) -> None:
    """A machine contract that re-enters refund() (and withdraw) cannot take a second refund."""
    p, node = anvil_parties, anvil_parties.machine.node
    attacker = _deploy_attacker(p.stranger)
    pr = PartReplacement.deploy_for(p.stranger, attacker.address, p.supplier.address, 60)
    _attacker_call(p.stranger, attacker, "setTarget", pr.address)
    pr.with_sender(p.supplier).set_price(7, PRICE)
    order = pr.contract.encode_abi("orderPart", args=[7, 1, bytes(EVIDENCE)])
    for _ in range(2):
        _attacker_call(p.stranger, attacker, "forward", order, value=PRICE)
    assert node.balance(pr.address) == 2 * PRICE
    p.dev.increase_time(61)
    _attacker_call(p.stranger, attacker, "setReentry", pr.contract.encode_abi("refund", args=[1]))
    _attacker_call(p.stranger, attacker, "forward", pr.contract.encode_abi("refund", args=[1]))
    assert attacker.functions.reentrySucceeded().call() is False
    assert decode_revert_data(bytes(attacker.functions.reentryError().call())) == (
        "PartReplacement: reentrant call"
    )
    assert node.balance(attacker.address) == PRICE  # one refund, not two
    assert node.balance(pr.address) == PRICE  # the other order's escrow is untouched
    assert pr.order(1).status == OrderStatus.REFUNDED
    assert pr.order(2).status == OrderStatus.ORDERED


def test_ship_deadline_past_2_64_reverts_with_a_reason(make_sender: SenderFactory) -> None:
    """A chain clock within the window of 2^64 s: the deadline cannot be stored, and the
    order is refused with a reason instead of an arithmetic Panic."""
    with DevNode("anvil") as dev:  # its own node: the clock cannot be turned back
        p = Parties(dev, make_sender, shipping_window_s=3600)
        p.parts.with_sender(p.supplier).set_price(7, PRICE)
        rpc_call(dev.url, "evm_setNextBlockTimestamp", [2**64 - 1000])
        dev.mine()
        with pytest.raises(TransactionReverted) as e:
            p.parts.order_part(7, 1, EVIDENCE)
        assert e.value.reason == "PartReplacement: shipping deadline overflows"
        assert p.parts.order_count() == 0
