"""Build, sign, submit and track transactions of one account.

The :class:`TransactionSender` is the one path from an intended call to the node: it takes a
nonce from the SDK's journal, chooses fees with the :class:`FeePolicy`, estimates gas, signs
with the :class:`~bpiiot.wallet.Signer` and hands only the signed bytes to the node
(``eth_sendRawTransaction``). The signed bytes are written to the journal *before* they are
sent, so a node that is down or restarted loses nothing: :meth:`recover` re-broadcasts them,
and re-broadcasting the same bytes can never execute a call twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hexbytes import HexBytes
from web3.types import TxReceipt

from bpiiot.chain.errors import (
    ConfirmationTimeout,
    NodeRejected,
    NodeUnavailable,
    NonceTooLow,
    TransactionReverted,
)
from bpiiot.chain.fees import FeePolicy, Fees
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal
from bpiiot.wallet import Signer, log_signing_backend

log = logging.getLogger(__name__)


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
class Submitted:
    """A signed transaction that went (or is about to go) to the node."""

    request: TxRequest
    nonce: int
    gas: int
    fees: Fees
    tx_hash: str
    raw: bytes = field(repr=False)
    sent_at: float


class TransactionSender:
    """Sends the transactions of one signer through one node; safe to share between threads.

    ``confirmations`` is how many blocks (the including one counts) a receipt needs;
    ``replace_after_s`` is how long a transaction may wait unmined before :meth:`transact`
    replaces it with bumped fees; ``gas_headroom_permille`` is added to estimates because
    anvil and Hardhat estimate exactly the gas used, with no margin for state changes.
    """

    def __init__(
        self,
        node: Node,
        signer: Signer,
        journal: NonceJournal,
        fees: FeePolicy | None = None,
        *,
        confirmations: int = 1,
        replace_after_s: float = 60.0,
        receipt_timeout_s: float = 300.0,
        gas_headroom_permille: int = 250,
        poll_s: float = 0.1,
    ) -> None:
        if journal.chain_id != node.chain_id or journal.address != signer.address.lower():
            raise ValueError("journal belongs to another chain or account")
        self.node = node
        self.signer = signer
        self.journal = journal
        self.fees = fees or FeePolicy()
        self.confirmations = max(1, confirmations)
        self.replace_after_s = replace_after_s
        self.receipt_timeout_s = receipt_timeout_s
        self.gas_headroom_permille = gas_headroom_permille
        self.poll_s = poll_s
        self._started = False

    @property
    def address(self) -> str:
        """Address the sender signs for."""
        return self.signer.address

    def start(self) -> None:
        """Log the signing backend, reconcile the nonce journal and re-broadcast lost sends."""
        log_signing_backend()
        self.recover(startup=True)
        self._started = True

    def recover(self, *, startup: bool = False) -> int:
        """Reconcile the journal with the node's pending count and re-broadcast every sent
        transaction the node does not know (after a restart it forgets its mempool).
        Returns how many were re-broadcast."""
        self.journal.reconcile(self.node.nonce(self.address, "pending"), startup=startup)
        count = 0
        for item in self.journal.in_flight():
            if self.node.knows(item.tx_hash):
                continue
            try:
                self.node.send_raw(item.raw, item.tx_hash)
                count += 1
                log.info("re-broadcast nonce %d (%s)", item.nonce, item.tx_hash)
            except NonceTooLow:
                # Mined meanwhile (or replaced by another of ours): the next reconcile drops it.
                pass
            except NodeRejected as e:
                # One refusal must not stop the others; the owner of the entry sees it later.
                log.warning("re-broadcast of nonce %d refused: %s", item.nonce, e)
        if count:
            self.journal.reconcile(self.node.nonce(self.address, "pending"))
        return count

    def _tx_dict(self, req: TxRequest) -> dict[str, Any]:
        tx: dict[str, Any] = {"from": self.address, "value": req.value, "data": req.data}
        if req.to is not None:
            tx["to"] = req.to
        return tx

    def estimate_gas(self, req: TxRequest) -> int:
        """Gas for ``req`` with headroom; a revert raises :class:`TransactionReverted`."""
        estimate = self.node.estimate_gas(self._tx_dict(req))
        return estimate + estimate * self.gas_headroom_permille // 1000

    def _sign(self, req: TxRequest, nonce: int, gas: int, fees: Fees) -> tuple[str, bytes]:
        tx: dict[str, Any] = {
            "chainId": self.node.chain_id,
            "nonce": nonce,
            "gas": gas,
            "value": req.value,
            "data": req.data,
            **fees.tx_fields(),
        }
        if req.to is not None:
            tx["to"] = req.to
        signed = self.signer.sign_transaction(tx)
        return HexBytes(signed.hash).to_0x_hex(), bytes(signed.raw_transaction)

    def submit(self, req: TxRequest) -> Submitted:
        """Build, sign and send ``req``; returns once the node has accepted it (not mined).

        Errors: :class:`TransactionReverted` (at estimate, or at send on Hardhat),
        :class:`InsufficientFunds`, :class:`FeeCapExceeded`, :class:`NodeUnavailable` (with
        ``submitted`` set when the bytes may have reached the node and will be re-broadcast).
        """
        if not self._started:
            self.start()
        gas = req.gas if req.gas is not None else self.estimate_gas(req)
        fees = self.fees.suggest(self.node)
        for attempt in range(2):
            nonce = self.journal.reserve()
            tx_hash, raw = self._sign(req, nonce, gas, fees)
            sub = Submitted(req, nonce, gas, fees, tx_hash, raw, time.time())
            # Write-ahead: the bytes are in the journal before the node can have them.
            self.journal.mark_sent(nonce, tx_hash, raw)
            try:
                self.node.send_raw(raw, tx_hash)
                log.debug("sent nonce %d %s", nonce, tx_hash)
                return sub
            except NodeUnavailable as e:
                if not e.delivered:
                    self.journal.release(nonce)
                    raise
                raise NodeUnavailable(str(e), delivered=True, submitted=sub) from e
            except NonceTooLow:
                # The account was used elsewhere: line up with the node and try once more.
                self._settle(nonce)
                if attempt:
                    raise
            except (NodeRejected, TransactionReverted):
                self._settle(nonce)
                raise
        raise AssertionError("unreachable")

    def _settle(self, nonce: int) -> None:
        """After the node refused a transaction: was its nonce used anyway?

        Hardhat 2 mines a reverting transaction and still answers with an error, so the
        nonce is consumed; other refusals leave it free. The node's count decides.
        """
        try:
            pending = self.node.nonce(self.address, "pending")
        except NodeUnavailable:
            self.journal.release(nonce)
            return
        if pending <= nonce:
            self.journal.release(nonce)
        self.journal.reconcile(pending)

    def replace(self, sub: Submitted) -> Submitted:
        """Replace a stuck transaction: same nonce and call, both fees bumped (>= 10%)."""
        fees = self.fees.bumped(sub.fees, self.node)
        tx_hash, raw = self._sign(sub.request, sub.nonce, sub.gas, fees)
        new = Submitted(sub.request, sub.nonce, sub.gas, fees, tx_hash, raw, time.time())
        self.node.send_raw(raw, tx_hash)
        # Recorded after the node took it: if refused, the old bytes stay the ones to resend.
        self.journal.mark_sent(sub.nonce, tx_hash, raw)
        log.info("replaced nonce %d: %s -> %s", sub.nonce, sub.tx_hash, tx_hash)
        return new

    def find_receipt(self, tx_hashes: list[str]) -> TxReceipt | None:
        """The receipt of whichever of ``tx_hashes`` (one nonce's attempts) was mined."""
        for h in reversed(tx_hashes):
            receipt = self.node.receipt(h)
            if receipt is not None:
                return receipt
        return None

    def confirmations_of(self, receipt: TxReceipt) -> int:
        """Blocks on top of (and including) the receipt's block."""
        return self.node.block_number() - int(receipt["blockNumber"]) + 1

    def check_status(self, receipt: TxReceipt, req: TxRequest) -> None:
        """Raise :class:`TransactionReverted` with the decoded reason if status is 0."""
        if int(receipt["status"]) == 1:
            return
        tx = self._tx_dict(req)
        tx["gas"] = int(receipt["gasUsed"]) * 2
        block = max(0, int(receipt["blockNumber"]) - 1)
        reason = self.node.replay_reason(tx, block)
        raise TransactionReverted(
            reason, stage="mined", tx_hash=HexBytes(receipt["transactionHash"]).to_0x_hex()
        )

    def wait(self, sub: Submitted, timeout_s: float | None = None) -> TxReceipt:
        """Wait until ``sub`` (or its replacement) has enough confirmations.

        Replaces it with bumped fees when unmined for ``replace_after_s``. Raises
        :class:`TransactionReverted` for status 0, :class:`ConfirmationTimeout` on timeout.
        """
        deadline = time.monotonic() + (timeout_s or self.receipt_timeout_s)
        hashes = [sub.tx_hash]
        last = sub
        while True:
            receipt = self.find_receipt(hashes)
            if receipt is not None:
                self.journal.settled(sub.nonce)
                self.check_status(receipt, sub.request)
                if self.confirmations_of(receipt) >= self.confirmations:
                    return receipt
            elif time.time() - last.sent_at >= self.replace_after_s:
                try:
                    last = self.replace(last)
                    hashes.append(last.tx_hash)
                except NonceTooLow:
                    # Mined between our receipt query and the replacement: the next
                    # receipt query finds it.
                    pass
            if time.monotonic() > deadline:
                raise ConfirmationTimeout(
                    f"no receipt with {self.confirmations} confirmation(s) for nonce "
                    f"{sub.nonce} in time; it may still be mined",
                    tx_hashes=hashes,
                )
            time.sleep(self.poll_s)

    def transact(self, req: TxRequest, timeout_s: float | None = None) -> TxReceipt:
        """Submit ``req`` and wait for its confirmed receipt."""
        return self.wait(self.submit(req), timeout_s)
