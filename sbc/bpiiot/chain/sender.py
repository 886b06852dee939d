"""Build, sign, submit and track transactions of one account.

The :class:`TransactionSender` is the one path from an intended call to the node: it takes a
nonce from the SDK's journal, chooses fees with the :class:`FeePolicy`, estimates gas, signs
with the :class:`~bpiiot.wallet.Signer` and hands only the signed bytes to the node
(``eth_sendRawTransaction``).

Exactly once: the nonce, the signed bytes and (for the outbox) the entry are committed in one
database transaction *before* the bytes go to the node. A send whose outcome is unknown (the
process died, the node timed out or dropped the connection after the request left) counts as
possibly delivered: it is resolved by asking the node (by hash, by the account's mined
count) and by re-broadcasting the same bytes, which can never execute a call twice, never
by signing anew. A nonce is released only when the node proved it free.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hexbytes import HexBytes
from web3.types import TxReceipt

from bpiiot.chain import killpoints
from bpiiot.chain.errors import (
    AlreadyKnown,
    ConfirmationTimeout,
    NodeRejected,
    NodeUnavailable,
    NonceTooLow,
    TransactionReverted,
)
from bpiiot.chain.fees import FeePolicy, Fees
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, write_transaction
from bpiiot.chain.types import Submitted, TxRequest
from bpiiot.wallet import Signer, log_signing_backend

__all__ = ["Submitted", "TransactionSender", "TxRequest"]

log = logging.getLogger(__name__)


class TransactionSender:
    """Sends the transactions of one signer through one node; safe to share between threads.

    ``confirmations`` is how many blocks (the including one counts) a receipt needs;
    ``replace_after_s`` is how long a transaction may wait unmined before :meth:`transact`
    replaces it with bumped fees; ``gas_headroom_permille`` is added to estimates because
    anvil and Hardhat estimate exactly the gas used, with no margin for state changes.
    ``fsync_before_send`` (default True) makes the commit that records signed bytes reach
    the disk before they are sent, so even a power cut cannot make the SDK forget a
    transaction it sent; False saves one fsync per send and still survives a killed process.
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
        fsync_before_send: bool = True,
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
        self.fsync_before_send = fsync_before_send
        self._started = False

    @property
    def address(self) -> str:
        """Address the sender signs for."""
        return self.signer.address

    @property
    def started(self) -> bool:
        """True once :meth:`start` reconciled the journal with the node."""
        return self._started

    def start(self) -> int:
        """Log the signing backend, reconcile the nonce journal and re-broadcast lost sends.

        Returns how many recorded transactions were re-broadcast.
        """
        log_signing_backend()
        count = self.recover(startup=True)
        self._started = True
        return count

    def confirmed_count(self) -> int:
        """The account's transaction count at the newest block with enough confirmations:
        every nonce below it is mined that deep and its bytes may be forgotten."""
        block = self.node.block_number() - self.confirmations + 1
        return self.node.nonce(self.address, block) if block >= 0 else 0

    def recover(self, *, startup: bool = False) -> int:
        """Reconcile the journal with the node and re-broadcast every recorded transaction the
        node does not know (after a restart it forgets its mempool). Returns how many were
        re-broadcast."""
        self.journal.reconcile(
            self.node.nonce(self.address, "pending"),
            confirmed=self.confirmed_count(),
            startup=startup,
        )
        mined = self.node.nonce(self.address, "latest")
        count = 0
        for item in self.journal.in_flight():
            if item.nonce < mined or self.node.knows(item.tx_hash):
                continue
            if self.rebroadcast(item.nonce, item.tx_hash, item.raw):
                count += 1
        if count:
            self.journal.reconcile(self.node.nonce(self.address, "pending"))
        return count

    def rebroadcast(self, nonce: int, tx_hash: str, raw: bytes) -> bool:
        """Send recorded bytes again. True if the node took them (or had them already).

        A refusal is logged, not raised: one refused re-broadcast must not stop the others,
        and its owner sees the outcome by hash and nonce later.
        """
        try:
            self.node.send_raw(raw, tx_hash)
        except AlreadyKnown:
            return True
        except NonceTooLow:
            return False  # mined meanwhile (this or another of its versions)
        except (NodeRejected, TransactionReverted) as e:
            log.warning("re-broadcast of nonce %d (%s) refused: %s", nonce, tx_hash, e)
            return False
        log.info("re-broadcast nonce %d (%s)", nonce, tx_hash)
        return True

    def _tx_dict(self, req: TxRequest) -> dict[str, Any]:
        tx: dict[str, Any] = {"from": self.address, "value": req.value, "data": req.data}
        if req.to is not None:
            tx["to"] = req.to
        return tx

    def estimate_gas(self, req: TxRequest) -> int:
        """Gas for ``req`` with headroom; a revert raises :class:`TransactionReverted`."""
        estimate = self.node.estimate_gas(self._tx_dict(req))
        return estimate + estimate * self.gas_headroom_permille // 1000

    def prepare(self, req: TxRequest) -> tuple[int, Fees]:
        """Gas and fees for ``req`` (asks the node; nothing is signed or reserved)."""
        gas = req.gas if req.gas is not None else self.estimate_gas(req)
        return gas, self.fees.suggest(self.node)

    def sign(self, req: TxRequest, nonce: int, gas: int, fees: Fees) -> Submitted:
        """Sign ``req`` with ``nonce``; nothing is recorded or sent."""
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
        return Submitted(
            req,
            nonce,
            gas,
            fees,
            HexBytes(signed.hash).to_0x_hex(),
            bytes(signed.raw_transaction),
            time.time(),
        )

    def _record_new(self, req: TxRequest, gas: int, fees: Fees) -> Submitted:
        """Reserve a nonce, sign with it and record the bytes in one committed transaction."""
        with write_transaction(self.journal.conn, "submitted", sync=self.fsync_before_send) as c:
            nonce = self.journal.reserve(conn=c)
            killpoints.reach("nonce_reserved")
            sub = self.sign(req, nonce, gas, fees)
            killpoints.reach("signed")
            self.journal.mark_sent(nonce, sub.tx_hash, sub.raw, conn=c)
        return sub

    def submit(self, req: TxRequest) -> Submitted:
        """Build, sign, record and send ``req``; returns once the node has accepted it.

        Errors: :class:`TransactionReverted` (at estimate, or at send on Hardhat),
        :class:`InsufficientFunds`, :class:`FeeCapExceeded`, :class:`NodeUnavailable`. A
        :class:`NodeUnavailable` with ``submitted`` set means the signed bytes are recorded
        and may have reached the node: they are re-broadcast by :meth:`recover`, and
        :meth:`wait` on ``submitted`` still follows them.
        """
        if not self._started:
            self.start()
        gas, fees = self.prepare(req)
        for attempt in range(2):
            sub = self._record_new(req, gas, fees)
            try:
                self.node.send_raw(sub.raw, sub.tx_hash)
            except AlreadyKnown:
                pass
            except NodeUnavailable as e:
                raise NodeUnavailable(
                    f"{e}; the signed transaction (nonce {sub.nonce}, {sub.tx_hash}) is kept "
                    "and re-broadcast when the node answers",
                    delivered=e.delivered,
                    submitted=sub,
                ) from e
            except NonceTooLow:
                # The account was used elsewhere: line up with the node and try once more.
                self.refused(sub.nonce, [sub.tx_hash])
                if attempt:
                    raise
                continue
            except (NodeRejected, TransactionReverted):
                self.refused(sub.nonce, [sub.tx_hash])
                raise
            killpoints.reach("sent")
            log.debug("sent nonce %d %s", sub.nonce, sub.tx_hash)
            return sub
        raise RuntimeError("unreachable: the second attempt returns or raises")

    def refused(self, nonce: int, tx_hashes: list[str]) -> bool:
        """After the node refused a transaction: release its nonce if the node proves it
        free. Returns True if released.

        Hardhat 2 mines a reverting transaction and still answers with an error, so the
        nonce is used; other refusals leave it free. If the node cannot be asked, the
        nonce and its bytes stay recorded (resolved later, never released blindly).
        """
        try:
            pending = self.node.nonce(self.address, "pending")
            known = any(self.node.knows(h) for h in tx_hashes)
        except NodeUnavailable:
            return False
        free = pending <= nonce and not known
        if free:
            self.journal.release(nonce)
        elif not known:
            # Used by a transaction that is not one of these: nothing of ours to keep.
            self.journal.settled(nonce)
        self.journal.reconcile(pending)
        return free

    def replace(self, sub: Submitted) -> Submitted:
        """Replace a stuck transaction: same nonce and call, both fees bumped (>= 10%).

        The replacement is recorded before it is sent, so whichever version is mined is
        recognised; if the node refuses it, the earlier bytes stay valid for the nonce.
        """
        fees = self.fees.bumped(sub.fees, self.node)
        new = self.sign(sub.request, sub.nonce, sub.gas, fees)
        with write_transaction(self.journal.conn, "replaced", sync=self.fsync_before_send) as c:
            self.journal.mark_sent(sub.nonce, new.tx_hash, new.raw, conn=c)
        self.node.send_raw(new.raw, new.tx_hash)
        killpoints.reach("replacement_sent")
        log.info("replaced nonce %d: %s -> %s", sub.nonce, sub.tx_hash, new.tx_hash)
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

        Replaces it with bumped fees when unmined for ``replace_after_s``; re-broadcasts it
        if the node forgot it. Raises :class:`TransactionReverted` for status 0,
        :class:`ConfirmationTimeout` on timeout.
        """
        deadline = time.monotonic() + (timeout_s or self.receipt_timeout_s)
        hashes = [sub.tx_hash]
        last = sub
        while True:
            receipt = self.find_receipt(hashes)
            if receipt is not None:
                self.check_status(receipt, sub.request)
                if self.confirmations_of(receipt) >= self.confirmations:
                    self.journal.settled(sub.nonce)
                    return receipt
            elif time.time() - last.sent_at >= self.replace_after_s:
                try:
                    last = self.replace(last)
                    hashes.append(last.tx_hash)
                except NonceTooLow:
                    # Mined between our receipt query and the replacement: the next
                    # receipt query finds it.
                    pass
            elif not any(self.node.knows(h) for h in hashes):
                # The node forgot it (restarted without its mempool): the same bytes again.
                self.rebroadcast(last.nonce, last.tx_hash, last.raw)
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
