"""Errors of the chain layer: one class per thing a caller can act on.

A leaf module next to :mod:`bpiiot.chain.types`: it imports no other module of the chain
layer, so every other module can raise and catch these without an import cycle.
"""

from __future__ import annotations

from bpiiot.chain.types import Submitted
from bpiiot.errors import BpiiotError


class ChainError(BpiiotError):
    """Base class of every error of the chain layer."""


class NodeUnavailable(ChainError):
    """The Ethereum node did not answer (down, restarting, wrong URL, timeout).

    ``delivered`` tells whether a request may have reached the node anyway (it left, but the
    answer never came back). ``submitted`` is set when a signed transaction was recorded
    before the failure: its outcome is unknown, it is kept and re-broadcast by
    :meth:`~bpiiot.chain.sender.TransactionSender.recover`, never signed anew.
    """

    def __init__(
        self, message: str, *, delivered: bool = False, submitted: Submitted | None = None
    ) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.submitted = submitted


class ChainIdMismatch(ChainError):
    """The node serves another chain than the configured one."""


class NodeRejected(ChainError):
    """The node answered with an error for a request (message kept as the node wrote it)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class InsufficientFunds(NodeRejected):
    """The account cannot pay value + gas x max fee."""


class AlreadyKnown(NodeRejected):
    """The node already has this very transaction (an earlier send of the same bytes got
    through): for a re-broadcast this is success."""


class NonceTooLow(NodeRejected):
    """The nonce was already used on chain (someone else sends from this account?)."""


class FeeCapExceeded(ChainError):
    """The fee the network needs is above the configured cap; nothing was sent."""


class TransactionReverted(ChainError):
    """A contract call reverted; ``reason`` is the decoded revert string when there is one.

    ``stage`` says where it was seen: ``"estimate"`` (gas estimation, nothing sent),
    ``"send"`` (the node refused it at eth_sendRawTransaction, as Hardhat 2 does) or
    ``"mined"`` (mined with status 0, as anvil and geth do).
    """

    def __init__(self, reason: str | None, *, stage: str, tx_hash: str | None = None) -> None:
        text = reason if reason is not None else "no reason given"
        where = f" (transaction {tx_hash})" if tx_hash else ""
        super().__init__(f"transaction reverted at {stage}: {text}{where}")
        self.reason = reason
        self.stage = stage
        self.tx_hash = tx_hash


class ConfirmationTimeout(ChainError):
    """No receipt with enough confirmations arrived in time; the transaction may still land."""

    def __init__(self, message: str, *, tx_hashes: list[str]) -> None:
        super().__init__(message)
        self.tx_hashes = tx_hashes


class ContractError(ChainError):
    """A contract artifact is missing or invalid, or no address is configured for it."""
