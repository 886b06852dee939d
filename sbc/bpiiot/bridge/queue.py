"""The bridge's store-and-forward queue: one SQLite file, every message until acknowledged.

A message is a row: its queue sequence number ``qseq`` (SQLite's AUTOINCREMENT id, so it
only grows, across restarts too), the board it concerns, its kind (``report``,
``link_stats``...), its neutral JSON form, when it was queued, how many times it was
published, and when the broker acknowledged it (PUBACK). Rows stay ``retention_s`` after
their acknowledgement so that they can be published again from a sequence number
(:meth:`MessageQueue.replay_from`) when a broker acknowledged and then lost them.

The bus listener thread inserts, the publisher thread reads and marks: each thread has its
own connection (WAL mode lets a reader and a writer work at once).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpiiot.bridge.errors import QueueFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    qseq INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    board TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    acked REAL,
    replay INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages(qseq) WHERE acked IS NULL;
CREATE INDEX IF NOT EXISTS messages_acked ON messages(acked) WHERE acked IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_SQLITE_FULL = 13
_RESERVE = 0.1
"""Share of ``max_bytes`` (two pages at least) new messages may not fill: it is kept for
marking them sent and acknowledged, which needs room too."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One row of the queue, as the publisher reads it."""

    qseq: int
    created: float
    board: str | None
    kind: str
    data: dict[str, Any]
    attempts: int
    """How many times it was published before this time."""
    replay: bool
    """It was acknowledged once and is published again on request."""


class MessageQueue:
    """The on-disk queue (see the module docstring); thread-safe.

    ``max_bytes`` bounds the file (SQLite's ``max_page_count``; 0: no bound but the disk).
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 0, retention_s: float = 86400.0):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._page_size = 4096
        self._insert_pages = 0  # pages new messages may fill (0: no bound)
        db = self._db()
        db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process (not a power cut of the SBC).
            db.execute("PRAGMA synchronous=NORMAL")
            self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            if self.max_bytes:
                # A per-connection limit: SQLite answers SQLITE_FULL beyond it, as on a
                # full disk.
                pages = max(8, self.max_bytes // self._page_size)
                db.execute(f"PRAGMA max_page_count={pages}")
                self._insert_pages = pages - max(2, int(pages * _RESERVE))
            self._local.db = db
            with self._lock:
                self._conns.append(db)
        return db

    def _full(self, what: str) -> QueueFull:
        limit = f"the limit queue_max_mb={self.max_bytes / 1e6:g}" if self.max_bytes else "disk"
        return QueueFull(
            f"bridge queue {self.path} is full ({limit}; {self.size_bytes()} bytes, "
            f"{self.pending_count()} messages wait for the broker): {what} was not queued"
        )

    def put(self, board: str | None, kind: str, data: dict[str, Any], created: float) -> int:
        """Queue one message; returns its ``qseq``. Raises :class:`QueueFull`.

        When the file is full, acknowledged messages kept for replay are dropped (oldest
        first) to make room; only when none is left does the new message fail.
        """
        text = json.dumps(data, separators=(",", ":"))
        db = self._db()
        if self._insert_pages and self._used_pages() >= self._insert_pages:
            # Keep the last pages for the publisher's bookkeeping (attempts, acks).
            if not self._make_room() or self._used_pages() >= self._insert_pages:
                raise self._full(f"a {kind} message from {board or 'the service'}")
        sql = "INSERT INTO messages(created, board, kind, data) VALUES (?, ?, ?, ?)"
        try:
            return int(db.execute(sql, (created, board, kind, text)).lastrowid or 0)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL:
                raise
            if not self._make_room():
                raise self._full(f"a {kind} message from {board or 'the service'}") from None
        try:
            return int(db.execute(sql, (created, board, kind, text)).lastrowid or 0)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL:
                raise
            raise self._full(f"a {kind} message from {board or 'the service'}") from None

    def _make_room(self) -> bool:
        """Drop the older half of the acknowledged rows; True if any was dropped."""
        db = self._db()
        n = int(db.execute("SELECT count(*) FROM messages WHERE acked IS NOT NULL").fetchone()[0])
        if n == 0:
            return False
        db.execute(
            "DELETE FROM messages WHERE qseq IN (SELECT qseq FROM messages "
            "WHERE acked IS NOT NULL ORDER BY qseq LIMIT ?)",
            (max(1, n // 2),),
        )
        return True

    def pending(self, after: int = 0, limit: int = 1000) -> list[QueuedMessage]:
        """Unacknowledged messages with ``qseq > after``, oldest first."""
        rows = (
            self._db()
            .execute(
                "SELECT qseq, created, board, kind, data, attempts, replay FROM messages "
                "WHERE acked IS NULL AND qseq > ? ORDER BY qseq LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        return [
            QueuedMessage(q, c, b, k, json.loads(d), a, bool(r)) for q, c, b, k, d, a, r in rows
        ]

    def _update(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        db = self._db()
        db.execute("BEGIN")
        try:
            db.executemany(sql, params)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def mark_sent(self, qseqs: list[int]) -> bool:
        """Count one more publication of each message (the ``resend`` marker comes from it).

        False when even the reserve of a full file had no room for it (then a later copy
        of these messages may go out without its ``resend`` marker).
        """
        if not qseqs:
            return True
        sql = "UPDATE messages SET attempts = attempts + 1 WHERE qseq = ?"
        params = [(q,) for q in qseqs]
        for attempt in range(2):
            try:
                self._update(sql, params)
                return True
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL:
                    raise
                if attempt or not self._make_room():
                    return False
        return False

    def mark_acked(self, qseqs: list[int], now: float | None = None) -> None:
        """The broker acknowledged these messages (PUBACK).

        When the file is too full even for that, they are deleted at once: delivered
        messages give up their retention before anything waiting is touched.
        """
        if not qseqs:
            return
        when = time.time() if now is None else now
        try:
            self._update(
                "UPDATE messages SET acked = ? WHERE qseq = ? AND acked IS NULL",
                [(when, q) for q in qseqs],
            )
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL:
                raise
            self._update("DELETE FROM messages WHERE qseq = ?", [(q,) for q in qseqs])

    def replay_from(self, qseq: int, until: int | None = None) -> int:
        """Publish again the acknowledged messages from ``qseq`` on (to ``until``).

        Returns how many were still kept (messages older than the retention are gone).
        """
        cur = self._db().execute(
            "UPDATE messages SET acked = NULL, replay = 1 WHERE acked IS NOT NULL "
            "AND qseq >= ? AND qseq <= ?",
            (qseq, until if until is not None else 2**63 - 1),
        )
        return cur.rowcount

    def replay_acked_since(self, since: float) -> int:
        """Publish again every message acknowledged at or after ``since`` (Unix time)."""
        cur = self._db().execute(
            "UPDATE messages SET acked = NULL, replay = 1 WHERE acked IS NOT NULL AND acked >= ?",
            (since,),
        )
        return cur.rowcount

    def prune(self, now: float | None = None) -> int:
        """Delete acknowledged messages older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        cur = self._db().execute(
            "DELETE FROM messages WHERE acked IS NOT NULL AND acked < ?", (cutoff,)
        )
        return cur.rowcount

    def pending_count(self) -> int:
        """Messages not yet acknowledged."""
        row = self._db().execute("SELECT count(*) FROM messages WHERE acked IS NULL").fetchone()
        return int(row[0])

    def acked_count(self) -> int:
        """Acknowledged messages kept for replay."""
        row = self._db().execute("SELECT count(*) FROM messages WHERE acked IS NOT NULL").fetchone()
        return int(row[0])

    def last_qseq(self) -> int:
        """The highest sequence number ever given (0 before the first message)."""
        row = self._db().execute("SELECT seq FROM sqlite_sequence WHERE name='messages'").fetchone()
        return int(row[0]) if row else 0

    def boards(self) -> list[str]:
        """Every board name among the kept messages, sorted."""
        rows = (
            self._db()
            .execute("SELECT DISTINCT board FROM messages WHERE board IS NOT NULL ORDER BY board")
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    def _used_pages(self) -> int:
        db = self._db()
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        return pages - int(db.execute("PRAGMA freelist_count").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes used by the database pages."""
        db = self._db()
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def attempts(self) -> dict[int, int]:
        """``qseq -> times published`` for every kept message (tests, diagnostics)."""
        rows = self._db().execute("SELECT qseq, attempts FROM messages").fetchall()
        return {int(q): int(a) for q, a in rows}

    def next_counter(self, name: str) -> int:
        """Increment and return a persistent counter (the bridge's session, bdSeq)."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            value = (int(row[0]) + 1) if row else 0
            db.execute("INSERT OR REPLACE INTO counters(name, value) VALUES (?, ?)", (name, value))
        finally:
            db.execute("COMMIT")
        return value

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._conns = self._conns, []
        for db in conns:
            try:
                db.close()
            except sqlite3.Error:
                pass  # already closed
        self._local = threading.local()
