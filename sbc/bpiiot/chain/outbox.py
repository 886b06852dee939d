"""The outbox: a SQLite-persisted queue of intended contract calls, and the sender that drains it.

Rules enqueue calls (``MachineService.requestService``, a paid ``PartReplacement.orderPart``)
with an idempotency key, so a rule that fires again for the same cause does not order twice.
:class:`OutboxSender` drains the queue: it builds, signs and submits each call through a
:class:`~bpiiot.chain.sender.TransactionSender`, follows receipts to the configured number of
confirmations, replaces stuck transactions, and survives a node that is down or restarted:
entries stay in the database with their state and last error for anyone to see.

Entry states: ``queued`` -> ``submitted`` (nonce and tx hashes known) -> ``confirmed`` or
``failed`` (reverted with a reason, or nonce taken by a foreign transaction).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexbytes import HexBytes

from bpiiot.chain.contracts import ContractClient
from bpiiot.chain.errors import (
    ChainError,
    FeeCapExceeded,
    NodeRejected,
    NodeUnavailable,
    TransactionReverted,
)
from bpiiot.chain.fees import Fees
from bpiiot.chain.nonces import open_db
from bpiiot.chain.sender import Submitted, TransactionSender, TxRequest
from bpiiot.errors import BpiiotError

log = logging.getLogger(__name__)

QUEUED, SUBMITTED, CONFIRMED, FAILED = "queued", "submitted", "confirmed", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    contract TEXT NOT NULL,
    function TEXT NOT NULL,
    args TEXT NOT NULL,
    value TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    revert_reason TEXT,
    nonce INTEGER,
    tx_to TEXT,
    tx_data TEXT,
    gas INTEGER,
    fees TEXT,
    tx_hashes TEXT NOT NULL DEFAULT '[]',
    sent_at REAL,
    block_number INTEGER,
    mined_hash TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
"""


class OutboxConflict(BpiiotError):
    """An idempotency key was reused for a different call."""


@dataclass(frozen=True)
class OutboxEntry:
    """One intended contract call and where it stands."""

    id: int
    key: str
    contract: str
    function: str
    args: list[Any]
    value: int
    state: str
    attempts: int
    last_error: str | None
    revert_reason: str | None
    nonce: int | None
    tx_hashes: list[str]
    block_number: int | None
    mined_hash: str | None
    created: float
    updated: float
    _tx: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def submitted(self) -> Submitted:
        """The latest signed attempt, for tracking and replacement."""
        fees = Fees(**json.loads(self._tx["fees"]))
        req = TxRequest(self._tx["to"], self._tx["data"], self.value, self._tx["gas"])
        raw = b""  # the signed bytes live in the nonce journal; replacement re-signs
        assert self.nonce is not None
        return Submitted(
            req, self.nonce, req.gas or 0, fees, self.tx_hashes[-1], raw, float(self._tx["sent_at"])
        )


class Outbox:
    """The queue itself; share one per state database. Thread-safe."""

    def __init__(self, db: Path | str | sqlite3.Connection) -> None:
        self._conn = db if isinstance(db, sqlite3.Connection) else open_db(db)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def enqueue(
        self, key: str, contract: str, function: str, args: list[Any], value: int = 0
    ) -> tuple[OutboxEntry, bool]:
        """Queue a call unless ``key`` is already there. Returns (entry, newly queued).

        The same key with another call raises :class:`OutboxConflict`.
        """
        args_json = json.dumps(ContractClient.json_args(*args))
        now = time.time()
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO outbox (key, contract, function, args, value, state, "
                "created, updated) VALUES (?,?,?,?,?,?,?,?)",
                (key, contract, function, args_json, str(value), QUEUED, now, now),
            )
            created = cur.rowcount == 1
        entry = self.get(key)
        assert entry is not None
        if not created and (
            (entry.contract, entry.function, entry.value) != (contract, function, value)
            or json.dumps(entry.args) != args_json
        ):
            raise OutboxConflict(
                f"outbox key {key!r} already names {entry.contract}.{entry.function}"
                f"{tuple(entry.args)}; use a new key for a different call"
            )
        if created:
            log.info("queued %s %s.%s", key, contract, function)
        return entry, created

    def _entry(self, row: sqlite3.Row | tuple[Any, ...]) -> OutboxEntry:
        (
            id_,
            key,
            contract,
            function,
            args,
            value,
            state,
            attempts,
            last_error,
            reason,
            nonce,
            to,
            data,
            gas,
            fees,
            hashes,
            sent_at,
            block,
            mined,
            created,
            updated,
        ) = row
        return OutboxEntry(
            id_,
            key,
            contract,
            function,
            json.loads(args),
            int(value),
            state,
            attempts,
            last_error,
            reason,
            nonce,
            json.loads(hashes),
            block,
            mined,
            created,
            updated,
            {"to": to, "data": data, "gas": gas, "fees": fees, "sent_at": sent_at},
        )

    def get(self, key: str) -> OutboxEntry | None:
        """The entry with idempotency key ``key``."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM outbox WHERE key=?", (key,)).fetchone()
        return self._entry(row) if row else None

    def entries(self, state: str | None = None) -> list[OutboxEntry]:
        """Entries in queue order, optionally only those in ``state``."""
        with self._lock:
            if state is None:
                rows = self._conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM outbox WHERE state=? ORDER BY id", (state,)
                ).fetchall()
        return [self._entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of entries per state."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {str(s): int(n) for s, n in rows}

    def _update(self, entry_id: int, **fields: Any) -> None:
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._conn.execute(f"UPDATE outbox SET {cols} WHERE id=?", (*fields.values(), entry_id))

    def mark_submitted(self, entry: OutboxEntry, sub: Submitted) -> None:
        """Record a signed attempt (first or replacement) of ``entry``."""
        hashes = [*entry.tx_hashes, sub.tx_hash] if entry.nonce == sub.nonce else [sub.tx_hash]
        self._update(
            entry.id,
            state=SUBMITTED,
            nonce=sub.nonce,
            tx_to=sub.request.to,
            tx_data=sub.request.data,
            gas=sub.gas,
            fees=json.dumps(
                {
                    "max_fee_per_gas": sub.fees.max_fee_per_gas,
                    "max_priority_fee_per_gas": sub.fees.max_priority_fee_per_gas,
                    "gas_price": sub.fees.gas_price,
                }
            ),
            tx_hashes=json.dumps(hashes),
            sent_at=sub.sent_at,
            attempts=entry.attempts + 1,
            last_error=None,
        )

    def mark_confirmed(self, entry: OutboxEntry, block: int, tx_hash: str) -> None:
        """The call is on chain with enough confirmations."""
        self._update(
            entry.id, state=CONFIRMED, block_number=block, mined_hash=tx_hash, last_error=None
        )

    def mark_failed(self, entry: OutboxEntry, error: str, reason: str | None = None) -> None:
        """The call will not happen (reverted, or its nonce went to another transaction)."""
        self._update(entry.id, state=FAILED, last_error=error, revert_reason=reason)

    def note_paused(self, error: str) -> None:
        """Show on every open entry why nothing moves (the node is down)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET last_error=?, updated=? WHERE state IN (?, ?)",
                (error, time.time(), QUEUED, SUBMITTED),
            )

    def note_error(self, entry: OutboxEntry, error: str) -> None:
        """Keep the entry where it is, but show why it has not moved."""
        self._update(entry.id, last_error=error, attempts=entry.attempts + 1)


@dataclass
class DrainReport:
    """What one :meth:`OutboxSender.drain_once` pass did."""

    submitted: int = 0
    replaced: int = 0
    confirmed: int = 0
    failed: int = 0
    rebroadcast: int = 0
    node_error: str | None = None


class OutboxSender:
    """Drains an :class:`Outbox` through a sender, for the given contract bindings.

    ``contracts`` maps a contract name (``"MachineService"``) to its binding. An entry that
    the node refuses for a passing reason (funds, fee cap) stays queued with its last error.
    """

    def __init__(
        self,
        outbox: Outbox,
        sender: TransactionSender,
        contracts: dict[str, ContractClient],
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.contracts = contracts
        self._recover = True

    def drain_once(self) -> DrainReport:
        """One pass: recover after a node outage, follow submitted entries, submit queued ones."""
        report = DrainReport()
        try:
            if self._recover:
                if not self.sender._started:
                    self.sender.start()
                else:
                    report.rebroadcast = self.sender.recover()
                self._recover = False
            for entry in self.outbox.entries(SUBMITTED):
                try:
                    self._track(entry, report)
                except NodeUnavailable:
                    raise
                except ChainError as e:
                    # A node error about one entry must not block the rest of the queue.
                    self.outbox.note_error(entry, str(e))
            for entry in self.outbox.entries(QUEUED):
                self._submit(entry, report)
        except NodeUnavailable as e:
            # Nothing is lost: entries stay queued/submitted; next pass starts with recover().
            self._recover = True
            report.node_error = str(e)
            self.outbox.note_paused(str(e))
            log.warning("outbox paused: %s", e)
        return report

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Drain until ``stop`` is set (for a service thread)."""
        while not stop.is_set():
            try:
                self.drain_once()
            except Exception:
                # Keep draining: entries stay in SQLite, the error is in the log.
                log.exception("outbox drain failed")
            stop.wait(interval_s)

    def _request(self, entry: OutboxEntry) -> TxRequest:
        client = self.contracts.get(entry.contract)
        if client is None:
            raise ChainError(f"no binding for contract {entry.contract!r}")
        return client.call_request(entry.function, *entry.args, value=entry.value)

    def _submit(self, entry: OutboxEntry, report: DrainReport) -> None:
        try:
            sub = self.sender.submit(self._request(entry))
        except NodeUnavailable as e:
            if e.submitted is not None:
                self.outbox.mark_submitted(entry, e.submitted)
            else:
                self.outbox.note_error(entry, str(e))
            raise
        except TransactionReverted as e:
            self.outbox.mark_failed(entry, str(e), e.reason)
            report.failed += 1
            return
        except (NodeRejected, FeeCapExceeded) as e:
            self.outbox.note_error(entry, str(e))
            return
        except (ChainError, ValueError, TypeError) as e:
            # A call that cannot even be encoded will never work: fail it visibly.
            self.outbox.mark_failed(entry, f"cannot build the call: {e}")
            report.failed += 1
            return
        self.outbox.mark_submitted(entry, sub)
        report.submitted += 1

    def _track(self, entry: OutboxEntry, report: DrainReport) -> None:
        sender = self.sender
        receipt = sender.find_receipt(entry.tx_hashes)
        if receipt is None:
            assert entry.nonce is not None
            if sender.node.nonce(sender.address, "latest") > entry.nonce:
                # Its nonce is used on chain: by one of our hashes (look again, it may have
                # just been mined) or by a foreign transaction (key used elsewhere).
                receipt = sender.find_receipt(entry.tx_hashes)
                if receipt is None:
                    self.outbox.mark_failed(
                        entry, f"nonce {entry.nonce} was used by another transaction"
                    )
                    report.failed += 1
                    return
            elif not sender.node.knows(entry.tx_hashes[-1]):
                # The node forgot it (restart without its mempool): send the same bytes again.
                report.rebroadcast += sender.recover()
                return
            elif time.time() - float(entry._tx["sent_at"]) >= sender.replace_after_s:
                try:
                    new = sender.replace(entry.submitted())
                except (NodeRejected, FeeCapExceeded) as e:
                    self.outbox.note_error(entry, f"replacement refused: {e}")
                    return
                self.outbox.mark_submitted(entry, new)
                report.replaced += 1
                return
            else:
                return
        mined_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        assert entry.nonce is not None
        sender.journal.settled(entry.nonce)
        try:
            sender.check_status(receipt, self._request(entry))
        except TransactionReverted as e:
            self.outbox.mark_failed(entry, str(e), e.reason)
            report.failed += 1
            return
        if sender.confirmations_of(receipt) >= sender.confirmations:
            self.outbox.mark_confirmed(entry, int(receipt["blockNumber"]), mined_hash)
            report.confirmed += 1
