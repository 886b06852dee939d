"""Python bindings of the two agreements, built on web3 contract objects from the committed ABI.

Artifacts (ABI, bytecode, compiler version, source sha256) ship in ``bpiiot/data/contracts``;
``node contracts/build.js`` regenerates them from ``contracts/src``. Every write goes through a
:class:`~bpiiot.chain.sender.TransactionSender`, so it is signed locally; :meth:`call_request`
gives the same call as a :class:`TxRequest` for the outbox instead of sending it now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from importlib import resources
from typing import Any, ClassVar, TypeVar

from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import EventData, TxReceipt

from bpiiot.chain.errors import ContractError
from bpiiot.chain.sender import TransactionSender
from bpiiot.chain.types import TxRequest


@dataclass(frozen=True)
class Artifact:
    """A compiled contract as committed in the package."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    compiler_version: str
    source_sha256: str


@cache
def load_artifact(name: str) -> Artifact:
    """Load ``bpiiot/data/contracts/<name>.json``."""
    try:
        text = (resources.files("bpiiot") / "data" / "contracts" / f"{name}.json").read_text()
        doc = json.loads(text)
        return Artifact(
            name=name,
            abi=doc["abi"],
            bytecode=doc["bytecode"],
            compiler_version=doc["compiler"]["version"],
            source_sha256=doc["sourceSha256"],
        )
    except (OSError, KeyError, ValueError) as e:
        raise ContractError(
            f"contract artifact {name} missing or invalid ({e}); run `node contracts/build.js`"
        ) from None


def to_bytes32(value: bytes | str) -> bytes:
    """A bytes32 argument from 32 bytes or 0x-hex text."""
    raw = bytes(HexBytes(value))
    if len(raw) != 32:
        raise ContractError(f"expected 32 bytes (a sha256 or keccak hash), got {len(raw)}")
    return raw


def _json_arg(value: Any) -> Any:
    # Outbox entries are stored as JSON: bytes go in as 0x-hex, which web3 accepts back.
    return HexBytes(value).to_0x_hex() if isinstance(value, bytes | bytearray) else value


C = TypeVar("C", bound="ContractClient")


class ContractClient:
    """Common part of the bindings: one deployed contract, one sender to write with."""

    NAME: ClassVar[str]

    def __init__(self, sender: TransactionSender, address: str) -> None:
        if not address or not Web3.is_address(address):
            raise ContractError(
                f"no valid address for {self.NAME}: run `bpiiot contracts deploy` "
                "or set it in [chain]"
            )
        self.sender = sender
        self.address = Web3.to_checksum_address(address)
        self.artifact = load_artifact(self.NAME)
        self.contract: Contract = sender.node.w3.eth.contract(
            address=self.address, abi=self.artifact.abi
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"

    def with_sender(self: C, sender: TransactionSender) -> C:
        """The same contract, written to by another account (e.g. the vendor)."""
        return type(self)(sender, self.address)

    @classmethod
    def deploy_request(cls, *args: Any) -> TxRequest:
        """The deployment transaction with constructor ``args`` (nothing is sent)."""
        artifact = load_artifact(cls.NAME)
        factory = Web3().eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        return TxRequest(to=None, data=factory.constructor(*args).data_in_transaction)

    @classmethod
    def deploy(cls: type[C], sender: TransactionSender, *args: Any) -> C:
        """Deploy a new instance with constructor ``args``; waits for the receipt."""
        receipt = sender.transact(cls.deploy_request(*args))
        return cls(sender, str(receipt["contractAddress"]))

    def call_request(
        self, function: str, *args: Any, value: int = 0, gas: int | None = None
    ) -> TxRequest:
        """The transaction calling ``function(*args)``, for the sender or the outbox."""
        data = self.contract.encode_abi(function, args=list(args))
        return TxRequest(to=self.address, data=data, value=value, gas=gas)

    def transact(self, function: str, *args: Any, value: int = 0) -> TxReceipt:
        """Call ``function(*args)`` in a transaction and wait for the confirmed receipt."""
        return self.sender.transact(self.call_request(function, *args, value=value))

    def read(self, function: str, *args: Any) -> Any:
        """Call a view function."""
        with self.sender.node.rpc(f"{self.NAME}.{function}"):
            return self.contract.functions[function](*args).call()

    def events(self, name: str, from_block: int = 0) -> list[EventData]:
        """Every ``name`` event of this contract since ``from_block``."""
        with self.sender.node.rpc(f"logs {self.NAME}.{name}"):
            return list(self.contract.events[name]().get_logs(from_block=from_block))

    def event_in(self, receipt: TxReceipt, name: str) -> EventData:
        """The first ``name`` event in ``receipt`` (raises if absent)."""
        logs = self.contract.events[name]().process_receipt(receipt)
        if not logs:
            raise ContractError(f"{name} event missing from transaction receipt")
        event: EventData = logs[0]
        return event

    @staticmethod
    def json_args(*args: Any) -> list[Any]:
        """Arguments in the JSON form the outbox stores."""
        return [_json_arg(a) for a in args]


class ServiceStatus(IntEnum):
    """Status of a service request (mirrors ``MachineService.Status``)."""

    NONE = 0
    REQUESTED = 1
    ACCEPTED = 2
    COMPLETED = 3


@dataclass(frozen=True)
class ServiceRequestInfo:
    """State of one service request on chain."""

    request_id: int
    evidence_hash: bytes
    fault_code: int
    status: ServiceStatus
    requested_at: int
    accepted_at: int
    completed_at: int
    report_hash: bytes


class MachineService(ContractClient):
    """Machine <-> service vendor agreement."""

    NAME = "MachineService"

    @classmethod
    def deploy_for(cls, sender: TransactionSender, machine: str, vendor: str) -> MachineService:
        """Deploy for ``machine`` (usually the sender's account) and ``vendor``."""
        return cls.deploy(
            sender, Web3.to_checksum_address(machine), Web3.to_checksum_address(vendor)
        )

    def request_service(self, evidence_hash: bytes | str, fault_code: int) -> int:
        """Machine: ask for service; returns the request id."""
        receipt = self.transact("requestService", to_bytes32(evidence_hash), fault_code)
        return int(self.event_in(receipt, "ServiceRequested")["args"]["requestId"])

    def accept_request(self, request_id: int) -> TxReceipt:
        """Vendor: take the request on."""
        return self.transact("acceptRequest", request_id)

    def complete_request(self, request_id: int, report_hash: bytes | str) -> TxReceipt:
        """Vendor: report the service done."""
        return self.transact("completeRequest", request_id, to_bytes32(report_hash))

    def request_count(self) -> int:
        """Number of requests so far."""
        return int(self.read("requestCount"))

    def request(self, request_id: int) -> ServiceRequestInfo:
        """State of one request."""
        ev, code, status, req_at, acc_at, done_at, report = self.read("requests", request_id)
        return ServiceRequestInfo(
            request_id,
            bytes(ev),
            int(code),
            ServiceStatus(status),
            req_at,
            acc_at,
            done_at,
            bytes(report),
        )

    def parties(self) -> tuple[str, str]:
        """(machine, vendor) addresses."""
        return str(self.read("machine")), str(self.read("vendor"))


class OrderStatus(IntEnum):
    """Status of a part order (mirrors ``PartReplacement.Status``)."""

    NONE = 0
    ORDERED = 1
    SHIPPED = 2
    DELIVERED = 3
    REFUNDED = 4


@dataclass(frozen=True)
class OrderInfo:
    """State of one part order on chain."""

    order_id: int
    part_id: int
    quantity: int
    status: OrderStatus
    ordered_at: int
    ship_deadline: int
    amount: int
    evidence_hash: bytes


#: Longest shipping window ``PartReplacement``'s constructor accepts (its
#: ``MAX_SHIPPING_WINDOW``: 100 years), so a ship deadline can never overflow 64 bits.
MAX_SHIPPING_WINDOW_S = 100 * 365 * 24 * 3600


class PartReplacement(ContractClient):
    """Machine <-> part supplier agreement, with escrowed payment."""

    NAME = "PartReplacement"

    @classmethod
    def deploy_for(
        cls, sender: TransactionSender, machine: str, supplier: str, shipping_window_s: int
    ) -> PartReplacement:
        """Deploy for ``machine`` and ``supplier`` with a shipping window in seconds.

        A window outside 1 s .. :data:`MAX_SHIPPING_WINDOW_S` raises :class:`ContractError`
        before anything is signed (the constructor would revert with the same reason).
        """
        if not 0 < shipping_window_s <= MAX_SHIPPING_WINDOW_S:
            raise ContractError(
                f"shipping window {shipping_window_s} s refused: give 1 to "
                f"{MAX_SHIPPING_WINDOW_S} s (100 years); longer ones would overflow the "
                "contract's 64-bit ship deadline"
            )
        return cls.deploy(
            sender,
            Web3.to_checksum_address(machine),
            Web3.to_checksum_address(supplier),
            shipping_window_s,
        )

    def set_price(self, part_id: int, price_wei: int) -> TxReceipt:
        """Supplier: list a unit price (0 withdraws the listing)."""
        return self.transact("setPrice", part_id, price_wei)

    def price_of(self, part_id: int) -> int:
        """Listed unit price in wei (0: not listed)."""
        return int(self.read("priceOf", part_id))

    def order_request(
        self, part_id: int, quantity: int, evidence_hash: bytes | str, value: int | None = None
    ) -> TxRequest:
        """The paid ``orderPart`` call; ``value`` defaults to the listed price x quantity."""
        if value is None:
            value = self.price_of(part_id) * quantity
        return self.call_request(
            "orderPart", part_id, quantity, to_bytes32(evidence_hash), value=value
        )

    def order_part(
        self, part_id: int, quantity: int, evidence_hash: bytes | str, value: int | None = None
    ) -> int:
        """Machine: order and pay; returns the order id."""
        receipt = self.sender.transact(self.order_request(part_id, quantity, evidence_hash, value))
        return int(self.event_in(receipt, "PartOrdered")["args"]["orderId"])

    def mark_shipped(self, order_id: int) -> TxReceipt:
        """Supplier: the order is on its way."""
        return self.transact("markShipped", order_id)

    def confirm_delivery(self, order_id: int) -> TxReceipt:
        """Machine: the part arrived; releases the escrow to the supplier's credit."""
        return self.transact("confirmDelivery", order_id)

    def withdraw(self) -> TxReceipt:
        """Supplier: pull every released amount."""
        return self.transact("withdraw")

    def refund(self, order_id: int) -> TxReceipt:
        """Machine: take the payment back for an order not shipped by its deadline."""
        return self.transact("refund", order_id)

    def credits(self, address: str) -> int:
        """Amount released to ``address`` and not withdrawn yet."""
        return int(self.read("credits", Web3.to_checksum_address(address)))

    def order_count(self) -> int:
        """Number of orders so far."""
        return int(self.read("orderCount"))

    def order(self, order_id: int) -> OrderInfo:
        """State of one order."""
        part, qty, status, at, deadline, amount, ev = self.read("orders", order_id)
        return OrderInfo(order_id, part, qty, OrderStatus(status), at, deadline, amount, bytes(ev))


#: Binding classes by contract name, as the outbox names them.
BINDINGS: dict[str, type[ContractClient]] = {
    MachineService.NAME: MachineService,
    PartReplacement.NAME: PartReplacement,
}
