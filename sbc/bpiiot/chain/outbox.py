"""The outbox: a SQLite-persisted queue of intended contract calls, and the sender that drains it.

Rules enqueue calls (``MachineService.requestService``, a paid ``PartReplacement.orderPart``)
with an idempotency key, so a rule that fires again for the same cause does not order twice.
:class:`OutboxSender` drains the queue through a
:class:`~bpiiot.chain.sender.TransactionSender`, follows receipts to the configured number of
confirmations, replaces stuck transactions, and survives a node that is down or restarted
and a process killed at any instruction: entries stay in the database with their state and
last error for anyone to see.

Exactly once. Each entry is one durable record: its nonce and *every* signed version of its
transaction (the original and each fee-bumped replacement) are written in the same SQLite
transaction as the nonce journal's row, and committed *before* the bytes go to the node.
After that, the entry is followed only through the node: a receipt for any of its hashes
settles it; a node that does not know any of them gets the same bytes again; a nonce mined
by none of them means a foreign transaction took it. An entry is never signed anew with
another nonce unless the node proved its nonce free (it refused the bytes, knows none of
them, and its pending count is not above the nonce). That proof is the word of the one node
the SDK talks to: behind a load balancer, pin the SDK to one node.

Entry states (:class:`~bpiiot.chain.types.EntryState`): ``queued`` -> ``submitted`` ->
(``replaced``) -> ``confirmed`` or ``failed``; ``submitted`` goes back to ``queued`` only when
the node proved the nonce free.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexbytes import HexBytes

from bpiiot.chain import killpoints
from bpiiot.chain.contracts import ContractClient
from bpiiot.chain.errors import (
    AlreadyKnown,
    ChainError,
    FeeCapExceeded,
    NodeRejected,
    NodeUnavailable,
    NonceTooLow,
    TransactionReverted,
)
from bpiiot.chain.nonces import conn_lock, open_db, write_transaction
from bpiiot.chain.sender import TransactionSender
from bpiiot.chain.types import Attempt, EntryState, Fees, SenderState, Submitted, TxRequest
from bpiiot.errors import BpiiotError

__all__ = [
    "CONFIRMED",
    "FAILED",
    "QUEUED",
    "REPLACED",
    "SUBMITTED",
    "DrainReport",
    "EntryState",
    "Outbox",
    "OutboxConflict",
    "OutboxEntry",
    "OutboxSender",
    "SenderState",
]

log = logging.getLogger(__name__)

#: The states under their old names (each is an :class:`EntryState`, equal to its string).
QUEUED = EntryState.QUEUED
SUBMITTED = EntryState.SUBMITTED
REPLACED = EntryState.REPLACED
CONFIRMED = EntryState.CONFIRMED
FAILED = EntryState.FAILED

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
# Added after the first release; older databases get the column on open.
_SIGNED_COLUMN = "signed"

_COLUMNS = (
    "id, key, contract, function, args, value, state, attempts, last_error, revert_reason, "
    "nonce, tx_to, tx_data, gas, fees, tx_hashes, sent_at, block_number, mined_hash, "
    "created, updated, signed"
)


class OutboxConflict(BpiiotError):
    """An idempotency key was reused for a different call."""


def _attempts_json(attempts: tuple[Attempt, ...]) -> str:
    return json.dumps(
        [
            {
                "tx_hash": a.tx_hash,
                "raw": "0x" + a.raw.hex(),
                "fees": a.fees.to_json(),
                "signed_at": a.signed_at,
            }
            for a in attempts
        ]
    )


def _attempts_from_json(text: str | None) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(
            str(a["tx_hash"]), bytes(HexBytes(a["raw"])), Fees(**a["fees"]), float(a["signed_at"])
        )
        for a in json.loads(text or "[]")
    )


@dataclass(frozen=True)
class OutboxEntry:
    """One intended contract call and where it stands.

    ``tx_hashes`` lists every signed version (original first, then replacements), any of
    which may be the one mined; ``signed`` holds the same versions with their raw bytes.
    ``attempts`` counts signing and send attempts (for display).
    """

    id: int
    key: str
    contract: str
    function: str
    args: list[Any]
    value: int
    state: EntryState
    attempts: int
    last_error: str | None
    revert_reason: str | None
    nonce: int | None
    tx_hashes: list[str]
    block_number: int | None
    mined_hash: str | None
    created: float
    updated: float
    signed: tuple[Attempt, ...] = field(default=(), repr=False)
    _tx: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def submitted(self) -> Submitted:
        """The latest signed version, for tracking and replacement.

        Raises :class:`ChainError` for an entry that has not been signed yet.
        """
        if self.nonce is None or not self.signed:
            raise ChainError(f"outbox entry {self.key!r} has no signed transaction yet")
        last = self.signed[-1]
        req = TxRequest(self._tx["to"], self._tx["data"], self.value, self._tx["gas"])
        sent_at = float(self._tx["sent_at"] or last.signed_at)
        return Submitted(
            req, self.nonce, int(self._tx["gas"] or 0), last.fees, last.tx_hash, last.raw, sent_at
        )


class Outbox:
    """The queue itself; share one per state database. Thread-safe."""

    def __init__(self, db: Path | str | sqlite3.Connection) -> None:
        self._conn = db if isinstance(db, sqlite3.Connection) else open_db(db)
        with conn_lock(self._conn):
            self._conn.executescript(_SCHEMA)
            cols = {row[1] for row in self._conn.execute("PRAGMA table_info(outbox)")}
            if _SIGNED_COLUMN not in cols:
                self._conn.execute(
                    f"ALTER TABLE outbox ADD COLUMN {_SIGNED_COLUMN} TEXT NOT NULL DEFAULT '[]'"
                )

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection the outbox writes through."""
        return self._conn

    @property
    def _lock(self) -> threading.RLock:
        return conn_lock(self._conn)

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
                (key, contract, function, args_json, str(value), QUEUED.value, now, now),
            )
            created = cur.rowcount == 1
            entry = self.get(key)
        if entry is None:
            raise OutboxConflict(f"outbox key {key!r} vanished while it was queued")
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
            signed,
        ) = row
        return OutboxEntry(
            id_,
            key,
            contract,
            function,
            json.loads(args),
            int(value),
            EntryState(state),
            attempts,
            last_error,
            reason,
            nonce,
            json.loads(hashes),
            block,
            mined,
            created,
            updated,
            _attempts_from_json(signed),
            {"to": to, "data": data, "gas": gas, "fees": fees, "sent_at": sent_at},
        )

    def _get_in(self, c: sqlite3.Connection, entry_id: int) -> OutboxEntry | None:
        row = c.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id=?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def get(self, key: str) -> OutboxEntry | None:
        """The entry with idempotency key ``key``."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE key=?", (key,)
            ).fetchone()
        return self._entry(row) if row else None

    def entries(self, state: EntryState | str | None = None) -> list[OutboxEntry]:
        """Entries in queue order, optionally only those in ``state``."""
        with self._lock:
            if state is None:
                rows = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY id").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM outbox WHERE state=? ORDER BY id",
                    (EntryState(state).value,),
                ).fetchall()
        return [self._entry(r) for r in rows]

    def pending(self) -> list[OutboxEntry]:
        """Submitted and replaced entries (signed, not settled), in nonce order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state IN (?, ?) ORDER BY nonce, id",
                (SUBMITTED.value, REPLACED.value),
            ).fetchall()
        return [self._entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of entries per state (states with no entry are left out).

        The keys are :class:`EntryState` members, which are also the plain state strings.
        """
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {EntryState(s): int(n) for s, n in rows}

    def transaction(
        self, label: str, *, sync: bool = False
    ) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the outbox's connection (``BEGIN IMMEDIATE``): the journal
        writes its rows through it too, so an entry and its nonce commit together. ``sync``
        makes the commit reach the disk before it returns (before a send)."""
        return write_transaction(self._conn, label, sync=sync)

    def _update(self, entry_id: int, conn: sqlite3.Connection | None = None, **fields: Any) -> None:
        fields["updated"] = time.time()
        for k, v in fields.items():
            if isinstance(v, EntryState):
                fields[k] = v.value
        cols = ", ".join(f"{k}=?" for k in fields)
        c = conn or self._conn
        with conn_lock(c):
            c.execute(f"UPDATE outbox SET {cols} WHERE id=?", (*fields.values(), entry_id))

    def record_signed(
        self, conn: sqlite3.Connection, entry: OutboxEntry, sub: Submitted, state: EntryState
    ) -> None:
        """Append a signed version of ``entry`` (inside the caller's transaction on ``conn``)."""
        signed = (*entry.signed, Attempt(sub.tx_hash, sub.raw, sub.fees, sub.sent_at))
        if entry.nonce != sub.nonce:
            signed = signed[-1:]
        self._update(
            entry.id,
            conn,
            state=state,
            nonce=sub.nonce,
            tx_to=sub.request.to,
            tx_data=sub.request.data,
            gas=sub.gas,
            fees=json.dumps(sub.fees.to_json()),
            tx_hashes=json.dumps([a.tx_hash for a in signed]),
            signed=_attempts_json(signed),
            sent_at=sub.sent_at,
            attempts=entry.attempts + 1,
            last_error=None,
        )

    def requeue(self, conn: sqlite3.Connection, entry: OutboxEntry, error: str) -> None:
        """Back to ``queued`` after the node proved its nonce free (caller's transaction)."""
        self._update(
            entry.id,
            conn,
            state=QUEUED,
            nonce=None,
            tx_hashes="[]",
            signed="[]",
            sent_at=None,
            last_error=error,
        )

    def mark_confirmed(
        self, entry: OutboxEntry, block: int, tx_hash: str, conn: sqlite3.Connection | None = None
    ) -> None:
        """The call is on chain with enough confirmations."""
        self._update(
            entry.id, conn, state=CONFIRMED, block_number=block, mined_hash=tx_hash, last_error=None
        )

    def mark_failed(
        self,
        entry: OutboxEntry,
        error: str,
        reason: str | None = None,
        conn: sqlite3.Connection | None = None,
        *,
        mined_hash: str | None = None,
        block: int | None = None,
    ) -> None:
        """The call will not happen (reverted, or its nonce went to another transaction)."""
        self._update(
            entry.id,
            conn,
            state=FAILED,
            last_error=error,
            revert_reason=reason,
            mined_hash=mined_hash,
            block_number=block,
        )

    def note_paused(self, error: str) -> None:
        """Show on every open entry why nothing moves (the node is down)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET last_error=?, updated=? WHERE state IN (?, ?, ?)",
                (error, time.time(), QUEUED.value, SUBMITTED.value, REPLACED.value),
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
    requeued: int = 0
    node_error: str | None = None


class OutboxSender:
    """Drains an :class:`Outbox` through a sender, for the given contract bindings.

    ``contracts`` maps a contract name (``"MachineService"``) to its binding. The outbox and
    the sender's nonce journal must live in the same state database (ValueError otherwise).
    An entry that the node refuses for a passing reason (funds, fee cap) stays queued with
    its last error. Drain from one thread (or process) per account at a time.
    """

    def __init__(
        self,
        outbox: Outbox,
        sender: TransactionSender,
        contracts: dict[str, ContractClient],
    ) -> None:
        sender.journal.attach(outbox.conn)
        self.outbox = outbox
        self.sender = sender
        self.contracts = contracts
        self.state = SenderState.IDLE
        self._recover = True

    def drain_once(self) -> DrainReport:
        """One pass: recover after a start or a node outage, follow signed entries (receipts,
        re-broadcasts, replacements), then sign and send queued ones."""
        report = DrainReport()
        try:
            if self._recover:
                if not self.sender.started:
                    report.rebroadcast = self.sender.start()
                else:
                    report.rebroadcast = self.sender.recover()
                self._recover = False
            for entry in self.outbox.pending():
                try:
                    self._track(entry, report)
                except NodeUnavailable:
                    raise
                except ChainError as e:
                    # A node error about one entry must not block the rest of the queue.
                    self.outbox.note_error(entry, str(e))
            for entry in self.outbox.entries(QUEUED):
                self._submit(entry, report)
            self.state = SenderState.RUNNING
        except NodeUnavailable as e:
            # Nothing is lost: entries stay queued/submitted; next pass starts with recover().
            self._recover = True
            self.state = SenderState.PAUSED
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
        self.state = SenderState.STOPPED

    def _request(self, entry: OutboxEntry) -> TxRequest:
        client = self.contracts.get(entry.contract)
        if client is None:
            raise ChainError(f"no binding for contract {entry.contract!r}")
        return client.call_request(entry.function, *entry.args, value=entry.value)

    def _submit(self, entry: OutboxEntry, report: DrainReport) -> None:
        sender = self.sender
        try:
            req = self._request(entry)
        except (ChainError, ValueError, TypeError) as e:
            # A call that cannot even be encoded will never work: fail it visibly.
            self.outbox.mark_failed(entry, f"cannot build the call: {e}")
            report.failed += 1
            return
        try:
            gas, fees = sender.prepare(req)
        except NodeUnavailable as e:
            self.outbox.note_error(entry, str(e))
            raise
        except TransactionReverted as e:
            self.outbox.mark_failed(entry, str(e), e.reason)
            report.failed += 1
            return
        except (NodeRejected, FeeCapExceeded) as e:
            self.outbox.note_error(entry, str(e))
            return
        # One transaction: nonce, signed bytes and entry, committed before anything is sent.
        with self.outbox.transaction("submitted", sync=sender.fsync_before_send) as c:
            current = self.outbox._get_in(c, entry.id)
            if current is None or current.state != QUEUED:
                return  # taken by another drainer meanwhile
            nonce = sender.journal.reserve(conn=c)
            killpoints.reach("nonce_reserved")
            sub = sender.sign(req, nonce, gas, fees)
            killpoints.reach("signed")
            sender.journal.mark_sent(nonce, sub.tx_hash, sub.raw, conn=c)
            self.outbox.record_signed(c, current, sub, SUBMITTED)
        report.submitted += 1
        self._send(entry.key, sub, "sent", report)

    def _send(self, key: str, sub: Submitted, point: str, report: DrainReport) -> None:
        """Send recorded bytes. A refusal is resolved against the node; an unknown outcome
        (NodeUnavailable) leaves the entry as it is, to be resolved by the next passes."""
        try:
            self.sender.node.send_raw(sub.raw, sub.tx_hash)
        except AlreadyKnown:
            pass
        except NonceTooLow:
            return  # the nonce is mined: by one of ours (receipt) or not (failed), next pass
        except (NodeRejected, TransactionReverted) as e:
            entry = self.outbox.get(key)
            if entry is not None:
                self._refused(entry, e, report)
            return
        killpoints.reach(point)

    def _refused(self, entry: OutboxEntry, error: ChainError, report: DrainReport) -> None:
        """The node answered a send of ``entry`` with an error: release the nonce only if the
        node proves it free, else keep following the bytes it may still have."""
        sender = self.sender
        nonce = entry.nonce
        if nonce is None:
            return
        try:
            pending = sender.node.nonce(sender.address, "pending")
            known = any(sender.node.knows(h) for h in reversed(entry.tx_hashes))
        except NodeUnavailable:
            self.outbox.note_error(entry, str(error))
            return
        reason = error.reason if isinstance(error, TransactionReverted) else None
        if pending <= nonce and not known:
            with self.outbox.transaction("requeued") as c:
                sender.journal.release(nonce, conn=c)
                if isinstance(error, TransactionReverted):
                    self.outbox.mark_failed(entry, str(error), reason, c)
                    report.failed += 1
                else:
                    self.outbox.requeue(c, entry, f"refused, will be signed again: {error}")
                    report.requeued += 1
            return
        if isinstance(error, TransactionReverted) and known:
            # Hardhat 2 mined it with status 0 and answered with the reason.
            with self.outbox.transaction("failed") as c:
                self.outbox.mark_failed(entry, str(error), reason, c, mined_hash=error.tx_hash)
            report.failed += 1
            return
        self.outbox.note_error(entry, f"send refused: {error}")

    def _track(self, entry: OutboxEntry, report: DrainReport) -> None:
        sender = self.sender
        nonce = entry.nonce
        if nonce is None:
            raise ChainError(f"outbox entry {entry.key!r} is {entry.state} without a nonce")
        receipt = sender.find_receipt(entry.tx_hashes)
        if receipt is None and sender.node.nonce(sender.address, "latest") > nonce:
            # Its nonce is mined: by one of our versions (look again, it may have been mined
            # between the two queries) or by a transaction that is not ours.
            receipt = sender.find_receipt(entry.tx_hashes)
            if receipt is None:
                with self.outbox.transaction("failed") as c:
                    self.outbox.mark_failed(
                        entry,
                        f"nonce {nonce} was used by another transaction (none of "
                        f"{', '.join(entry.tx_hashes)}); the call was not executed",
                        conn=c,
                    )
                    sender.journal.settled(nonce, conn=c)
                report.failed += 1
                return
        if receipt is None:
            self._unmined(entry, report)
            return
        killpoints.reach("receipt")
        if sender.confirmations_of(receipt) < sender.confirmations:
            return  # keep the bytes: a node restart could still lose the block
        mined_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        block = int(receipt["blockNumber"])
        try:
            sender.check_status(receipt, self._request(entry))
        except TransactionReverted as e:
            with self.outbox.transaction("failed") as c:
                self.outbox.mark_failed(
                    entry, str(e), e.reason, c, mined_hash=mined_hash, block=block
                )
                sender.journal.settled(nonce, conn=c)
            report.failed += 1
            return
        with self.outbox.transaction("confirmed") as c:
            self.outbox.mark_confirmed(entry, block, mined_hash, c)
            sender.journal.settled(nonce, conn=c)
        report.confirmed += 1

    def _unmined(self, entry: OutboxEntry, report: DrainReport) -> None:
        """Neither mined nor its nonce used: does the node have it? If not, the same bytes
        again (a node restarted without its mempool, a send cut short by a crash)."""
        sender = self.sender
        if not any(sender.node.knows(h) for h in reversed(entry.tx_hashes)):
            refusal: ChainError | None = None
            for version in reversed(entry.signed):
                try:
                    sender.node.send_raw(version.raw, version.tx_hash)
                except (AlreadyKnown, NonceTooLow):
                    return
                except (NodeRejected, TransactionReverted) as e:
                    refusal = e
                    continue
                report.rebroadcast += 1
                log.info("re-broadcast %s nonce %s (%s)", entry.key, entry.nonce, version.tx_hash)
                return
            if refusal is not None:
                self._refused(entry, refusal, report)
            return
        last = entry.submitted()
        if time.time() - last.sent_at >= sender.replace_after_s:
            self._replace(entry, last, report)

    def _replace(self, entry: OutboxEntry, last: Submitted, report: DrainReport) -> None:
        """Re-sign with bumped fees; recorded (with the earlier versions) before it is sent."""
        sender = self.sender
        try:
            fees = sender.fees.bumped(last.fees, sender.node)
        except FeeCapExceeded as e:
            self.outbox.note_error(entry, f"replacement not sent: {e}")
            return
        new = sender.sign(last.request, last.nonce, last.gas, fees)
        with self.outbox.transaction("replaced", sync=sender.fsync_before_send) as c:
            current = self.outbox._get_in(c, entry.id)
            if current is None or current.tx_hashes != entry.tx_hashes:
                return  # moved on meanwhile
            sender.journal.mark_sent(last.nonce, new.tx_hash, new.raw, conn=c)
            self.outbox.record_signed(c, current, new, REPLACED)
        report.replaced += 1
        log.info(
            "replacing %s nonce %d: %s -> %s", entry.key, last.nonce, last.tx_hash, new.tx_hash
        )
        self._send(entry.key, new, "replacement_sent", report)
