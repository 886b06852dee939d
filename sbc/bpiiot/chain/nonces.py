"""The SDK's own nonce journal, persisted in SQLite.

Nonces are handed out from the journal, not read from the node per transaction: a node's
pending count lags behind concurrent senders and forgets its mempool when restarted, which
gives reused nonces or gaps.

A nonce is reserved, its transaction signed and the signed bytes recorded in *one* database
transaction, committed before the bytes go to the node: a crash before the commit leaves
nothing (the nonce was never used), a crash after it leaves bytes that are re-broadcast,
never signed anew (the same bytes can only be mined once). A row keeps its signed bytes
until the transaction is mined with the configured confirmations, so a node that restarts
without its mempool any number of times gets them again. A nonce goes back to ``released``
(handed out again before any new one, so there is no gap) only when the node proved it
free: it refused the transaction, does not know it, and its pending count is not above it.

SQLite runs in WAL mode with ``synchronous=NORMAL``: every commit survives a killed
process. The commits that come before a send (a new transaction, a replacement) are made
with ``synchronous=FULL`` (``write_transaction(..., sync=True)``): they reach the disk
before the signed bytes can reach the node, so not even a power cut between the two makes
the SDK forget a transaction it sent. Other commits (confirmations, reconcile) can be
redone from the node and skip the fsync.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bpiiot.chain import killpoints

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

# Keyed by id(): connections take no weak references. A recycled id only ever maps a new
# connection to an idle lock, so a stale entry is harmless.
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def conn_lock(conn: sqlite3.Connection) -> threading.RLock:
    """The one lock of a connection, shared by every object that writes through it.

    A connection carries one transaction at a time: the journal and the outbox on the same
    connection must not interleave statements, so they take the same (re-entrant) lock.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(id(conn))
        if lock is None:
            lock = _LOCKS[id(conn)] = threading.RLock()
        return lock


def open_db(path: Path | str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open (and create) an SDK state database shared by the journal and the outbox.

    ``synchronous`` is SQLite's setting for ordinary commits: NORMAL (default) survives a
    killed process; FULL also survives power cuts, at one fsync per commit. Commits that
    precede a send are always made with FULL (see :func:`write_transaction`).
    """
    if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError(f"synchronous={synchronous!r}: use FULL, EXTRA or NORMAL")
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: every write below runs in an explicit BEGIN IMMEDIATE transaction.
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return conn


def db_file(conn: sqlite3.Connection) -> str:
    """Path of the main database file of ``conn`` ("" for an in-memory database)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file or "")
    return ""


_FULL = 2  # PRAGMA synchronous value of FULL


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, label: str, *, sync: bool = False
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the connection's lock; rolls back on error.

    ``sync`` makes this commit reach the disk (``synchronous=FULL``) before it returns: use
    it when the next step sends what was just recorded. After the commit the kill point
    ``commit:<label>`` is reached.
    """
    with conn_lock(conn):
        restore: int | None = None
        if sync:
            level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            if level < _FULL:
                restore = level
                conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            if restore is not None:
                conn.execute(f"PRAGMA synchronous={restore}")
    killpoints.reach(f"commit:{label}")


@dataclass(frozen=True)
class InFlight:
    """A nonce whose signed transaction is recorded and not yet mined deep enough."""

    nonce: int
    tx_hash: str
    raw: bytes = field(repr=False)


class NonceJournal:
    """Nonces of one account on one chain. Safe to share between threads.

    Methods that take ``conn`` run inside a transaction the caller holds on that connection
    (the outbox does so to write an entry and its nonce together); the journal's tables are
    created there on first use.
    """

    def __init__(self, db: Path | str | sqlite3.Connection, chain_id: int, address: str) -> None:
        self._conn = db if isinstance(db, sqlite3.Connection) else open_db(db)
        self._conn.executescript(_SCHEMA)
        self.chain_id = chain_id
        self.address = address.lower()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection the journal writes through by default."""
        return self._conn

    def attach(self, conn: sqlite3.Connection) -> None:
        """Make sure ``conn`` reaches this journal's rows (same database file).

        Raises ValueError if it is another database: an entry and its nonce must be written
        in one transaction, which SQLite gives only within one database.
        """
        if conn is self._conn:
            return
        mine, theirs = db_file(self._conn), db_file(conn)
        if not mine or mine != theirs:
            raise ValueError(
                f"the outbox ({theirs or 'in-memory'}) and the nonce journal "
                f"({mine or 'in-memory'}) must share one state database ([chain] state_db)"
            )
        conn.executescript(_SCHEMA)

    def _key(self) -> tuple[int, str]:
        return (self.chain_id, self.address)

    def _head(self, c: sqlite3.Connection) -> int | None:
        row = c.execute(
            "SELECT next_nonce FROM nonce_head WHERE chain_id=? AND address=?", self._key()
        ).fetchone()
        return int(row[0]) if row else None

    def _reserve_in(self, c: sqlite3.Connection) -> int:
        row = c.execute(
            "SELECT MIN(nonce) FROM nonce_use WHERE chain_id=? AND address=? AND state='released'",
            self._key(),
        ).fetchone()
        if row[0] is not None:
            nonce = int(row[0])
            c.execute(
                "UPDATE nonce_use SET state='reserved', updated=? "
                "WHERE chain_id=? AND address=? AND nonce=?",
                (time.time(), *self._key(), nonce),
            )
            return nonce
        head = self._head(c)
        if head is None:
            raise RuntimeError("nonce journal not reconciled with the node yet: call start()")
        c.execute(
            "UPDATE nonce_head SET next_nonce=? WHERE chain_id=? AND address=?",
            (head + 1, *self._key()),
        )
        c.execute(
            "INSERT OR REPLACE INTO nonce_use VALUES (?, ?, ?, 'reserved', NULL, NULL, ?)",
            (*self._key(), head, time.time()),
        )
        return head

    def reserve(self, conn: sqlite3.Connection | None = None) -> int:
        """Hand out the lowest released nonce, else the next new one.

        With ``conn`` it runs in the caller's open transaction; alone it commits at once
        (then a crash before :meth:`mark_sent` leaves a reservation that the next
        ``reconcile(startup=True)`` releases).
        """
        if conn is not None:
            return self._reserve_in(conn)
        with write_transaction(self._conn, "reserved") as c:
            return self._reserve_in(c)

    def mark_sent(
        self, nonce: int, tx_hash: str, raw: bytes, *, conn: sqlite3.Connection | None = None
    ) -> None:
        """Record the signed transaction that uses ``nonce`` (a replacement overwrites it).

        Call it before the bytes go to the node.
        """
        c = conn or self._conn
        with conn_lock(c):
            c.execute(
                "UPDATE nonce_use SET state='sent', tx_hash=?, raw=?, updated=? "
                "WHERE chain_id=? AND address=? AND nonce=?",
                (tx_hash, raw, time.time(), *self._key(), nonce),
            )

    def release(self, nonce: int, *, conn: sqlite3.Connection | None = None) -> None:
        """Give back a nonce the node proved free (refused, unknown, not below its count)."""
        c = conn or self._conn
        with conn_lock(c):
            c.execute(
                "UPDATE nonce_use SET state='released', tx_hash=NULL, raw=NULL, updated=? "
                "WHERE chain_id=? AND address=? AND nonce=?",
                (time.time(), *self._key(), nonce),
            )

    def settled(self, nonce: int, *, conn: sqlite3.Connection | None = None) -> None:
        """Forget a nonce whose transaction is mined with enough confirmations."""
        c = conn or self._conn
        with conn_lock(c):
            c.execute(
                "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND nonce=? AND state='sent'",
                (*self._key(), nonce),
            )

    def settle_below(self, confirmed_count: int) -> int:
        """Forget every sent nonce below ``confirmed_count`` (the account's transaction count
        at the newest block with enough confirmations). Returns how many were dropped."""
        with conn_lock(self._conn):
            cur = self._conn.execute(
                "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND nonce<? AND state='sent'",
                (*self._key(), confirmed_count),
            )
            return int(cur.rowcount)

    def in_flight(self) -> list[InFlight]:
        """Recorded transactions not yet mined deep enough, lowest nonce first."""
        with conn_lock(self._conn):
            rows = self._conn.execute(
                "SELECT nonce, tx_hash, raw FROM nonce_use WHERE chain_id=? AND address=? "
                "AND state='sent' ORDER BY nonce",
                self._key(),
            ).fetchall()
        return [InFlight(int(n), str(h), bytes(r)) for n, h, r in rows]

    def next_nonce(self) -> int | None:
        """The next new nonce, or None before the first reconcile."""
        with conn_lock(self._conn):
            return self._head(self._conn)

    def reconcile(self, node_pending: int, *, confirmed: int = 0, startup: bool = False) -> None:
        """Line the journal up with the node's pending transaction count.

        Sent rows below ``confirmed`` (the count at the newest block with enough
        confirmations) are final and dropped; sent rows above it keep their bytes, even
        below ``node_pending``, because a node restarted without its mempool forgets them.
        Released or reserved rows below ``node_pending`` were used elsewhere and are dropped.
        The head moves up to ``node_pending`` if the account was used elsewhere, and down
        (never below a recorded transaction) if the node forgot transactions, so no gap is
        left. With ``startup`` the reservations of a previous process (which died between
        reserving and recording) are released; otherwise they may belong to a live thread.
        """
        with write_transaction(self._conn, "reconciled") as c:
            if startup:
                c.execute(
                    "UPDATE nonce_use SET state='released' WHERE chain_id=? AND address=? "
                    "AND state='reserved'",
                    self._key(),
                )
            c.execute(
                "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND state='sent' AND nonce<?",
                (*self._key(), confirmed),
            )
            c.execute(
                "DELETE FROM nonce_use WHERE chain_id=? AND address=? AND state!='sent' "
                "AND nonce<?",
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
