"""The service's SQLite store: reports, incidents with their evidence frames, rule state.

One file in WAL mode, shared by the threads of one process (a lock around one connection).
Reports arrive through :meth:`Store.add_report` into a buffer that a flusher thread hands,
in batches of one transaction each, to a writer child process (``_store_writer.py``), so
the store never limits ingest: Python's ``sqlite3`` releases the interpreter lock around
every row, and under load an in-process writer waits for it again on each one (measured:
the service dropped reports above 40,000/s with the writer in-process, none at 64,000/s
with it in its own process). ``writer_process=False`` (and ``:memory:``) keep the writes
in-process. A batch the database refuses stays buffered for the next flush (up to
``max_backlog``; beyond it the oldest are lost, counted and logged). Old reports are
removed by age (``retention_s``) and count (``max_reports``). An incident is
written in one transaction with its evidence frames (copied, so report retention never
removes them) and with the rule state that opened it, so a crash leaves either both or
neither: a restarted service can never open the same incident twice.

Every report is kept as the frame that was verified (COBS-encoded), and every evidence
frame as its body (header, payload, tag, CRC), so evidence can be re-checked later
(:mod:`bpiiot.evidence`).
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpiiot import messages as m
from bpiiot import wire
from bpiiot.errors import BpiiotError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    board TEXT NOT NULL,
    received REAL NOT NULL,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    window_seq INTEGER NOT NULL,
    board_time_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    acc_rms_x INTEGER, acc_rms_y INTEGER, acc_rms_z INTEGER,
    acc_peak_x INTEGER, acc_peak_y INTEGER, acc_peak_z INTEGER,
    vel_rms_x INTEGER, vel_rms_y INTEGER, vel_rms_z INTEGER,
    temperature_cdeg_c INTEGER,
    flags INTEGER NOT NULL,
    frame BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_board_time ON reports (board, received);
CREATE INDEX IF NOT EXISTS reports_received ON reports (received);
CREATE TABLE IF NOT EXISTS report_batches (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    board TEXT NOT NULL,
    rule TEXT NOT NULL,
    number INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    opened REAL NOT NULL,
    resolved REAL,
    evidence_hash TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    action_status TEXT,
    action_error TEXT,
    UNIQUE (board, rule, number)
);
CREATE INDEX IF NOT EXISTS incidents_evidence ON incidents (evidence_hash);
CREATE INDEX IF NOT EXISTS incidents_action ON incidents (action_status, id);
CREATE TABLE IF NOT EXISTS incident_frames (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    idx INTEGER NOT NULL,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    received REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (incident_id, idx)
);
CREATE TABLE IF NOT EXISTS rule_state (
    board TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (board, rule)
);
"""

_REPORT_COLS = (
    "board, received, session, seq, window_seq, board_time_ms, samples, "
    "acc_rms_x, acc_rms_y, acc_rms_z, acc_peak_x, acc_peak_y, acc_peak_z, "
    "vel_rms_x, vel_rms_y, vel_rms_z, temperature_cdeg_c, flags, frame"
)
_INSERT_REPORT = (
    f"INSERT INTO reports ({_REPORT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _read_reply(proc: subprocess.Popen[bytes]) -> Any:
    # One message of the report writer (see _store_writer.py): length, then marshal.
    assert proc.stdout is not None
    head = proc.stdout.read(4)
    if len(head) < 4:
        raise OSError("the writer process ended")
    return marshal.loads(proc.stdout.read(struct.unpack(">I", head)[0]))


class StoreError(BpiiotError):
    """The store's database is missing, corrupt, of another version, or not writable."""


@dataclass(frozen=True)
class EvidenceFrame:
    """One frame kept as evidence of an incident."""

    session: int
    seq: int
    received: float
    body: bytes


def _open(path: Path, create: bool) -> sqlite3.Connection:
    if str(path) != ":memory:":
        if not path.exists():
            if not create:
                raise StoreError(
                    f"store {path} does not exist; start `bpiiot run` once to create it, "
                    "or check [store] path in the config"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            log.warning("no store at %s: creating a new, empty one", path)
    try:
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"store {path} has schema version {row[0]}, this SDK reads {SCHEMA_VERSION}"
            )
        conn.execute("SELECT COUNT(*) FROM incidents").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"store {path} is corrupt or not a bpiiot store ({exc}); move it aside to keep it "
            "for inspection and start again"
        ) from None
    return conn


class Store:
    """The store (see the module docstring); thread-safe.

    ``retention_s`` and ``max_reports`` bound the reports table (0 means no bound);
    incidents and their evidence frames are kept regardless. ``flush_interval_s`` is how
    often buffered reports are written.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retention_s: float = 7 * 86400.0,
        max_reports: int = 2_000_000,
        flush_interval_s: float = 0.2,
        create: bool = True,
        writer_process: bool | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if str(path) != ":memory:" else Path(":memory:")
        self.retention_s = retention_s
        self.max_reports = max_reports
        self.flush_interval_s = flush_interval_s
        self.max_pending = 20_000
        """Reports buffered at most before :meth:`add_report` writes them itself."""
        self.batch = 2_000
        """Reports buffered that wake the flusher before its interval is up."""
        self.max_backlog = 100_000
        """Reports kept buffered while the database refuses writes; older ones are lost
        (counted in :attr:`reports_lost`, logged) beyond it."""
        self._conn = _open(self.path, create)
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_prune = 0.0
        self._failing = False
        self.reports_written = 0
        self.reports_lost = 0
        if writer_process is None:
            writer_process = str(self.path) != ":memory:"
        self._writer: subprocess.Popen[bytes] | None = None
        self._writer_lock = threading.Lock()
        self._token = os.urandom(8).hex()  # this store's batches: token:1, token:2, ...
        self._batches = 0
        self._use_writer = writer_process
        if writer_process:
            try:
                self._start_writer()
            except StoreError as exc:
                # Slower under load, but nothing is lost: write in this process instead.
                log.warning("%s; writing reports in this process", exc)
                self._use_writer = False
        self._thread = threading.Thread(target=self._flusher, name="bpiiot-store", daemon=True)
        self._thread.start()

    # -- reports ---------------------------------------------------------------------

    def add_report(self, board: str, frame: wire.Frame, encoded: bytes, received: float) -> None:
        """Buffer one verified report for the next batch write (never blocks on disk).

        ``encoded`` is the frame as received (COBS-encoded, without its delimiter).
        """
        r = frame.message
        if not isinstance(r, m.Report):
            return
        a, p, v = r.acc_rms_mg, r.acc_peak_mg, r.vel_rms_um_s
        row = (
            board,
            received,
            frame.session,
            frame.seq,
            r.window_seq,
            r.board_time_ms,
            r.samples,
            a[0],
            a[1],
            a[2],
            p[0],
            p[1],
            p[2],
            v[0],
            v[1],
            v[2],
            r.temperature_cdeg_c,
            r.flags,
            encoded,
        )
        with self._pending_lock:
            self._pending.append(row)
            n = len(self._pending)
        if n == self.batch:
            self._wake.set()  # a busy ingest: write in batches as they fill, not per interval
        elif n >= self.max_pending and not self._failing:
            # The flusher fell behind: write now, on the caller's thread, so the buffer
            # stays bounded (the bus queue in front of the caller drops and counts instead).
            self.flush()

    def flush(self) -> int:
        """Write buffered reports now (one transaction); returns how many.

        When the database refuses them the reports stay buffered (up to
        :attr:`max_backlog`) for the next flush, and :class:`StoreError` says why.
        """
        with self._flush_lock:  # one flush at a time: batches are written in arrival order
            with self._pending_lock:
                rows, self._pending = self._pending, []
            if rows:
                try:
                    self._write(rows)
                except StoreError:
                    self._failing = True
                    self._keep(rows)
                    raise
                self._failing = False
                self.reports_written += len(rows)
        now = time.monotonic()
        if now - self._last_prune > 5.0:
            self._last_prune = now
            self.prune()
        return len(rows)

    def _keep(self, rows: list[tuple[Any, ...]]) -> None:
        # Put rows that could not be written back in front of those that came since.
        with self._pending_lock:
            pending = rows + self._pending
            over = len(pending) - self.max_backlog
            if over > 0:
                del pending[:over]
                self.reports_lost += over
            self._pending = pending
        if over > 0:
            log.error("store %s: %d reports lost, the database refuses writes", self.path, over)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not self._use_writer:
            with self._lock:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.executemany(_INSERT_REPORT, rows)
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    raise StoreError(f"store {self.path}: cannot write reports: {exc}") from None
            return
        with self._writer_lock:
            self._batches += 1
            body = marshal.dumps((f"{self._token}:{self._batches}", rows))
            for attempt in (1, 2):
                proc = self._writer
                try:
                    if proc is None or proc.poll() is not None:
                        raise OSError("the writer process is not running")
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(struct.pack(">I", len(body)) + body)
                    proc.stdin.flush()
                    reply = _read_reply(proc)
                except (OSError, ValueError, EOFError) as exc:
                    # A writer that died (killed, out of memory) is restarted once and
                    # the batch sent again under the same token: if it had committed it
                    # before its reply was lost, it acknowledges without a second insert.
                    log.warning("store %s: report writer failed (%s); restarting", self.path, exc)
                    self._stop_writer()
                    if attempt == 2:
                        raise StoreError(f"store {self.path}: report writer: {exc}") from None
                    self._start_writer()
                    continue
                if reply[0] != "ok":
                    raise StoreError(f"store {self.path}: cannot write reports: {reply[1]}")
                return

    def _start_writer(self) -> None:
        script = Path(__file__).with_name("_store_writer.py")
        try:
            self._writer = subprocess.Popen(
                [sys.executable, "-I", str(script), str(self.path), _INSERT_REPORT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C on a terminal reaches the service, not it
            )
            ready = _read_reply(self._writer)
            if ready != ("ok", 0):
                raise OSError(f"unexpected greeting {ready!r}")
        except (OSError, ValueError, EOFError) as exc:
            self._stop_writer()
            raise StoreError(f"store {self.path}: cannot start the report writer: {exc}") from None

    def _stop_writer(self) -> None:
        proc, self._writer = self._writer, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # end of input: the writer exits
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def prune(self) -> int:
        """Remove reports beyond the retention bounds; returns how many went."""
        removed = 0
        with self._lock:
            if self.retention_s > 0:
                cur = self._conn.execute(
                    "DELETE FROM reports WHERE received < ?", (time.time() - self.retention_s,)
                )
                removed += cur.rowcount
            if self.max_reports > 0:
                cur = self._conn.execute(
                    "DELETE FROM reports WHERE id <= (SELECT MAX(id) FROM reports) - ?",
                    (self.max_reports,),
                )
                removed += cur.rowcount
        return removed

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except StoreError:
                log.exception("store flush failed; reports stay buffered")

    def reports(self, board: str, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """Reports of ``board`` received after ``since`` (Unix time), oldest first."""
        self.flush()
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_REPORT_COLS} FROM reports WHERE board=? AND received>? "
                "ORDER BY id DESC LIMIT ?",
                (board, since, limit),
            ).fetchall()
        out = []
        for row in reversed(rows):
            out.append(
                {
                    "board": row[0],
                    "received": row[1],
                    "session": row[2],
                    "seq": row[3],
                    "window_seq": row[4],
                    "board_time_ms": row[5],
                    "samples": row[6],
                    "acc_rms_mg": list(row[7:10]),
                    "acc_peak_mg": list(row[10:13]),
                    "vel_rms_um_s": list(row[13:16]),
                    "temperature_cdeg_c": row[16],
                    "flags": row[17],
                }
            )
        return out

    def reports_since(
        self, board: str, since: float, limit: int = 100_000
    ) -> list[tuple[float, m.Report]]:
        """(time received, :class:`~bpiiot.messages.Report`) of ``board`` received at or
        after ``since`` (Unix time), oldest first."""
        self.flush()
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_REPORT_COLS} FROM reports WHERE board=? AND received>=? "
                "ORDER BY id DESC LIMIT ?",
                (board, since, limit),
            ).fetchall()
        return [
            (
                float(r[1]),
                m.Report(
                    r[4], r[5], r[6], (r[7], r[8], r[9]), (r[10], r[11], r[12]),
                    (r[13], r[14], r[15]), r[16], r[17],
                ),
            )
            for r in reversed(rows)
        ]  # fmt: skip

    def frames_since(self, board: str, since: float) -> list[tuple[float, bytes]]:
        """(time received, the frame as received) of ``board``'s reports since ``since``."""
        self.flush()
        with self._lock:
            rows = self._conn.execute(
                "SELECT received, frame FROM reports WHERE board=? AND received>=? ORDER BY id",
                (board, since),
            ).fetchall()
        return [(float(t), bytes(f)) for t, f in rows]

    def boards(self) -> list[str]:
        """Names of the boards that have stored reports."""
        self.flush()
        with self._lock:
            return [str(r[0]) for r in self._conn.execute("SELECT DISTINCT board FROM reports")]

    def report_count(self, board: str | None = None) -> int:
        """Number of stored reports (of one board, or all)."""
        self.flush()
        with self._lock:
            if board is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0])
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM reports WHERE board=?", (board,)
                ).fetchone()[0]
            )

    # -- incidents -------------------------------------------------------------------

    def open_incident(
        self,
        board: str,
        rule: str,
        number: int,
        key: str,
        evidence_hash: str,
        frames: list[EvidenceFrame],
        action: dict[str, Any],
        detail: dict[str, Any],
        rule_state: dict[str, Any],
    ) -> int:
        """Write an incident, its evidence frames and the rule's new state in one transaction.

        Returns the incident id. If ``key`` is already there (a replay), the existing id is
        returned and nothing changes.
        """
        with self._lock:
            row = self._conn.execute("SELECT id FROM incidents WHERE key=?", (key,)).fetchone()
            if row is not None:
                return int(row[0])
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                cur = self._conn.execute(
                    "INSERT INTO incidents (board, rule, number, key, state, opened, "
                    "evidence_hash, action, detail) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        board,
                        rule,
                        number,
                        key,
                        "open",
                        time.time(),
                        evidence_hash,
                        json.dumps(action),
                        json.dumps(detail),
                    ),
                )
                iid = int(cur.lastrowid or 0)
                self._conn.executemany(
                    "INSERT INTO incident_frames VALUES (?,?,?,?,?,?)",
                    [(iid, i, f.session, f.seq, f.received, f.body) for i, f in enumerate(frames)],
                )
                self._save_rule_state(board, rule, rule_state)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(
                    f"store {self.path}: cannot record incident {key}: {exc}"
                ) from None
            return iid

    def resolve_incident(self, incident_id: int, rule_state: dict[str, Any] | None = None) -> None:
        """Mark an incident resolved (with the rule's new state, atomically)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    "UPDATE incidents SET state='resolved', resolved=? WHERE id=? AND state='open'",
                    (time.time(), incident_id),
                )
                if rule_state is not None:
                    row = self._conn.execute(
                        "SELECT board, rule FROM incidents WHERE id=?", (incident_id,)
                    ).fetchone()
                    if row is not None:
                        self._save_rule_state(row[0], row[1], rule_state)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"store {self.path}: cannot resolve incident: {exc}") from None

    def _incident_dict(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "id": row[0],
            "board": row[1],
            "rule": row[2],
            "number": row[3],
            "key": row[4],
            "state": row[5],
            "opened": row[6],
            "resolved": row[7],
            "closed": row[7],
            "evidence_hash": row[8],
            "action": json.loads(row[9]),
            "detail": json.loads(row[10]),
            "action_status": row[11],
            "action_error": row[12],
        }

    _INCIDENT_COLS = (
        "id, board, rule, number, key, state, opened, resolved, evidence_hash, action, detail, "
        "action_status, action_error"
    )

    def incidents(
        self,
        board: str | None = None,
        state: str | None = None,
        limit: int = 1000,
        *,
        frames: bool = True,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first, optionally of one board or in one state.

        Fields: ``id``, ``board``, ``rule``, ``number``, ``key`` (the idempotency key of its
        action), ``state`` (open/resolved), ``opened``, ``resolved`` (also as ``closed``),
        ``evidence_hash``, ``action``, ``detail``, ``action_status``, ``action_error``.
        With ``frames`` (the default): ``evidence_ok`` (the stored frames hash to
        ``evidence_hash``) and ``frames``, a list of ``{"received", "session", "seq", "window_seq",
        "vel_rms_um_s", "flags"}``.
        """
        out = self._incidents(board, state, limit)
        if frames:
            for inc in out:
                self._add_frames(inc)
        return out

    def _add_frames(self, inc: dict[str, Any]) -> None:
        from bpiiot import evidence

        stored = self.incident_frames(inc["id"])
        bodies = [f.body for f in stored]
        inc["evidence_ok"] = "0x" + evidence.evidence_hash(bodies).hex() == inc["evidence_hash"]
        rows = []
        for i, f in enumerate(stored):
            msg = evidence.check_frame(i, f.body, None).message or {}
            rows.append(
                {
                    "received": f.received,
                    "session": f.session,
                    "seq": f.seq,
                    "window_seq": msg.get("window_seq"),
                    "vel_rms_um_s": msg.get("vel_rms_um_s"),
                    "flags": msg.get("flags"),
                }
            )
        inc["frames"] = rows

    def _incidents(self, board: str | None, state: str | None, limit: int) -> list[dict[str, Any]]:
        where, args = [], []
        if board is not None:
            where.append("board=?")
            args.append(board)
        if state is not None:
            where.append("state=?")
            args.append(state)
        sql = f"SELECT {self._INCIDENT_COLS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [self._incident_dict(r) for r in rows]

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        """One incident by id."""
        return self._one("id=?", incident_id)

    def incident_by_key(self, key: str) -> dict[str, Any] | None:
        """One incident by its idempotency key."""
        return self._one("key=?", key)

    def incidents_by_evidence(self, evidence_hash: str) -> list[dict[str, Any]]:
        """Incidents whose evidence hash is ``evidence_hash`` (0x-hex)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._INCIDENT_COLS} FROM incidents WHERE evidence_hash=?",
                (evidence_hash.lower(),),
            ).fetchall()
        return [self._incident_dict(r) for r in rows]

    def _one(self, where: str, arg: Any) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {self._INCIDENT_COLS} FROM incidents WHERE {where}", (arg,)
            ).fetchone()
        return self._incident_dict(row) if row else None

    def incident_frames(self, incident_id: int) -> list[EvidenceFrame]:
        """The evidence frames of an incident, in hash order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT session, seq, received, body FROM incident_frames WHERE incident_id=? "
                "ORDER BY idx",
                (incident_id,),
            ).fetchall()
        return [EvidenceFrame(int(s), int(q), float(t), bytes(b)) for s, q, t, b in rows]

    def set_action_status(self, incident_id: int, status: str, error: str | None = None) -> None:
        """Record what became of an incident's action (``queued``, ``done``, ``refused``...)."""
        with self._lock:
            self._conn.execute(
                "UPDATE incidents SET action_status=?, action_error=? WHERE id=?",
                (status, error, incident_id),
            )

    def incidents_without_action(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Incidents whose action has not been carried out yet, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._INCIDENT_COLS} FROM incidents WHERE action_status IS NULL "
                "ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._incident_dict(r) for r in rows]

    # -- rule state ------------------------------------------------------------------

    def _save_rule_state(self, board: str, rule: str, state: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO rule_state VALUES (?,?,?,?) ON CONFLICT (board, rule) "
            "DO UPDATE SET state=excluded.state, updated=excluded.updated",
            (board, rule, json.dumps(state), time.time()),
        )

    def save_rule_states(self, states: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Persist several rules' state in one transaction."""
        if not states:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for (board, rule), state in states.items():
                    self._save_rule_state(board, rule, state)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"store {self.path}: cannot save rule state: {exc}") from None

    def rule_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every persisted rule state, by (board, rule)."""
        with self._lock:
            rows = self._conn.execute("SELECT board, rule, state FROM rule_state").fetchall()
        return {(b, r): json.loads(s) for b, r, s in rows}

    def next_incident_number(self, board: str, rule: str) -> int:
        """One more than the highest incident number of (board, rule)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(number) FROM incidents WHERE board=? AND rule=?", (board, rule)
            ).fetchone()
        return int(row[0] or 0) + 1

    # -- lifecycle -------------------------------------------------------------------

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Write what is buffered, stop the flusher and close the database."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        try:
            self.flush()
        finally:
            with self._writer_lock:
                self._stop_writer()
            with self._lock:
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
