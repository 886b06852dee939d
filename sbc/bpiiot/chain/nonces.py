"""The SDK's own nonce journal, persisted in SQLite.

Nonces are handed out from the journal, not read from the node per transaction: a node's
pending count lags behind concurrent senders and forgets its mempool when restarted, which
gives reused nonces or gaps. Each nonce goes ``reserved`` -> ``sent`` (with the signed bytes,
written *before* they go to the node, so they can be re-broadcast) or back to ``released``,
and a released nonce is handed out again before any new one, so there is never a gap.
:meth:`NonceJournal.reconcile` lines the journal up with the node's pending count at
start-up and after errors. Rows below the node's count are final and are dropped.

SQLite runs in WAL mode with ``synchronous=NORMAL``: commits do not wait for fsync, so a
power cut may lose the last entries, but the file stays consistent and reconcile repairs
the rest from the node.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonce_head (
    chain_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    next_nonce INTEGER NOT NULL,
    PRIMARY KEY (chain_id, address)
);
CREATE TABLE IF NOT EXISTS nonce_use (
    chain_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'sent', 'released')),
    tx_hash TEXT,
    raw BLOB,
    updated REAL NOT NULL,
    PRIMARY KEY (chain_id, address, nonce)
);
"""


def open_db(path: Path | str) -> sqlite3.Connection:
    """Open (and create) an SDK state database shared by the journal and the outbox."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: every write below runs in an explicit BEGIN IMMEDIATE transaction.
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@dataclass(frozen=True)
class InFlight:
    """A nonce whose transaction was sent but is not yet below the node's count."""

    nonce: int
    tx_hash: str
    raw: bytes


class NonceJournal:
    """Nonces of one account on one chain. Safe to share between threads."""

    def __init__(self, db: Path | str | sqlite3.Connection, chain_id: int, address: str) -> None:
        self._conn = db if isinstance(db, sqlite3.Connection) else open_db(db)
        self._conn.executescript(_SCHEMA)
        self.chain_id = chain_id
        self.address = address.lower()
        self._lock = threading.Lock()

    def _key(self) -> tuple[int, str]:
        return (self.chain_id, self.address)

    def _head(self) -> int | None:
        row = self._conn.execute(
            "SELECT next_nonce FROM nonce_head WHERE chain_id=? AND address=?", self._key()
        ).fetchone()
        return int(row[0]) if row else None

    def reserve(self) -> int:
        """Hand out the lowest released nonce, else the next new one."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT MIN(nonce) FROM nonce_use WHERE chain_id=? AND address=? "
                    "AND state='released'",
                    self._key(),
                ).fetchone()
                if row[0] is not None:
                    nonce = int(row[0])
                    c.execute(
                        "UPDATE nonce_use SET state='reserved', updated=? "
                        "WHERE chain_id=? AND address=? AND nonce=?",
                        (time.time(), *self._key(), nonce),
                    )
                else:
                    head = self._head()
                    if head is None:
                        raise RuntimeError("nonce journal not reconciled with the node yet")
                    nonce = head
                    c.execute(
                        "UPDATE nonce_head SET next_nonce=? WHERE chain_id=? AND address=?",
                        (nonce + 1, *self._key()),
                    )
                    c.execute(
                        "INSERT OR REPLACE INTO nonce_use "
                        "VALUES (?, ?, ?, 'reserved', NULL, NULL, ?)",
                        (*self._key(), nonce, time.time()),
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return nonce

    def mark_sent(self, nonce: int, tx_hash: str, raw: bytes) -> None:
        """Record the signed transaction that uses ``nonce`` (latest replacement wins)."""
        with self._lock:
            self._conn.execute(
                "UPDATE nonce_use SET state='sent', tx_hash=?, raw=?, updated=? "
                "WHERE chain_id=? AND address=? AND nonce=?",
                (tx_hash, raw, time.time(), *self._key(), nonce),
            )

    def release(self, nonce: int) -> None:
        """Give back a nonce whose transaction never reached the node."""
        with self._lock:
            self._conn.execute(
                "UPDATE nonce_use SET state='released', tx_hash=NULL, raw=NULL, updated=? "
                "WHERE chain_id=? AND address=? AND nonce=?",
                (time.time(), *self._key(), nonce),
            )

    def settled(self, nonce: int) -> None:
        """Forget a nonce whose transaction is mined (it can never be reused)."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND nonce=? AND state='sent'",
                (*self._key(), nonce),
            )

    def in_flight(self) -> list[InFlight]:
        """Sent transactions not yet known to be below the node's count, lowest nonce first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT nonce, tx_hash, raw FROM nonce_use WHERE chain_id=? AND address=? "
                "AND state='sent' ORDER BY nonce",
                self._key(),
            ).fetchall()
        return [InFlight(int(n), str(h), bytes(r)) for n, h, r in rows]

    def next_nonce(self) -> int | None:
        """The next new nonce, or None before the first reconcile."""
        with self._lock:
            return self._head()

    def reconcile(self, node_pending: int, *, startup: bool = False) -> None:
        """Line the journal up with the node's pending transaction count.

        Nonces below it are used on chain: their rows are dropped. The head moves up to it
        if the account was used elsewhere, and down (never below a sent transaction, which
        will be re-broadcast) if the node forgot transactions, so no gap is left. With
        ``startup`` the reservations of a previous process (which died between reserving and
        sending) are released; otherwise they may belong to a live thread and are kept.
        """
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                if startup:
                    c.execute(
                        "UPDATE nonce_use SET state='released' WHERE chain_id=? AND address=? "
                        "AND state='reserved'",
                        self._key(),
                    )
                c.execute(
                    "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND nonce<?",
                    (*self._key(), node_pending),
                )
                row = c.execute(
                    "SELECT MAX(nonce) FROM nonce_use WHERE chain_id=? AND address=? "
                    "AND state IN ('sent', 'reserved')",
                    self._key(),
                ).fetchone()
                head = max(node_pending, int(row[0]) + 1 if row[0] is not None else 0)
                c.execute(
                    "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND nonce>=?",
                    (*self._key(), head),
                )
                c.execute("INSERT OR REPLACE INTO nonce_head VALUES (?,?,?)", (*self._key(), head))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
