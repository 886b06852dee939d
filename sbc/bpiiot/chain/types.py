"""Value types of the chain layer.

A leaf module: it imports nothing of the package, so errors, the nonce journal, the sender,
the contract bindings and the outbox can all use these types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class TxRequest:
    """What to send: a call (``to`` + ``data``), a transfer, or a deployment (``to`` None).

    ``gas`` None means "estimate"; giving it skips estimation (and its early revert check).
    """

    to: str | None
    data: str = "0x"
    value: int = 0
    gas: int | None = None


@dataclass(frozen=True)
class Fees:
    """Fee fields of one transaction: EIP-1559 (max fee + tip) or legacy (gas price)."""

    max_fee_per_gas: int = 0
    max_priority_fee_per_gas: int = 0
    gas_price: int = 0

    @property
    def legacy(self) -> bool:
        """True for a legacy (type 0) transaction."""
        return self.gas_price > 0

    def tx_fields(self) -> dict[str, int]:
        """The fields to put into a transaction dict."""
        if self.legacy:
            return {"gasPrice": self.gas_price}
        return {
            "maxFeePerGas": self.max_fee_per_gas,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
        }

    def to_json(self) -> dict[str, int]:
        """The three fields as a JSON object (what the outbox stores)."""
        return {
            "max_fee_per_gas": self.max_fee_per_gas,
            "max_priority_fee_per_gas": self.max_priority_fee_per_gas,
            "gas_price": self.gas_price,
        }


@dataclass(frozen=True)
class Submitted:
    """A signed transaction that went (or is about to go) to the node."""

    request: TxRequest
    nonce: int
    gas: int
    fees: Fees
    tx_hash: str
    raw: bytes = field(repr=False)
    sent_at: float


class EntryState(StrEnum):
    """Where an outbox entry stands; each member is also its plain string (``"queued"``).

    ``QUEUED``: waiting, nothing signed (or a refused attempt whose nonce the node proved
    free). ``SUBMITTED``: signed with a nonce, recorded, and sent or about to be sent.
    ``REPLACED``: as submitted, and re-signed with higher fees at least once.
    ``CONFIRMED``: mined with the configured confirmations. ``FAILED``: will not happen
    (reverted, or its nonce was taken by a transaction that is not ours).
    """

    QUEUED = "queued"
    SUBMITTED = "submitted"
    REPLACED = "replaced"
    CONFIRMED = "confirmed"
    FAILED = "failed"

    @property
    def pending(self) -> bool:
        """True while the entry has a signed transaction that is not settled yet."""
        return self in (EntryState.SUBMITTED, EntryState.REPLACED)

    @property
    def final(self) -> bool:
        """True once nothing will change any more."""
        return self in (EntryState.CONFIRMED, EntryState.FAILED)


class SenderState(StrEnum):
    """What an :class:`~bpiiot.chain.outbox.OutboxSender` is doing.

    ``IDLE``: not drained yet. ``RUNNING``: the last pass reached the node. ``PAUSED``: the
    node was unreachable on the last pass (entries wait, nothing is lost). ``STOPPED``:
    :meth:`~bpiiot.chain.outbox.OutboxSender.run` returned.
    """

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Attempt:
    """One signed version of an outbox entry's transaction (the original or a replacement)."""

    tx_hash: str
    raw: bytes = field(repr=False)
    fees: Fees
    signed_at: float
