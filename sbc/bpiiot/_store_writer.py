"""The store's report writer: a child process that inserts batches of reports into SQLite.

Run by :class:`bpiiot.store.Store` as ``python -I _store_writer.py DB INSERT_SQL`` (a script
of the standard library only, so it starts in milliseconds). Why a process: Python's
``sqlite3`` gives up the GIL around every row it steps, and a thread that gives the GIL up
once per row waits up to a switch interval (5 ms) to get it back while the port readers
and the rules are busy, so an in-process writer slows to a crawl exactly when the ingest
is highest. In its own process the writer has its own interpreter lock.

Protocol on stdin/stdout, each message a 4-byte big-endian length then a ``marshal`` body
(only tuples, ints, floats, str and bytes cross). The writer says ``("ok", 0)`` once when
it is ready; then for each ``(token, rows)`` the parent sends it answers ``("ok", n)``
after committing the rows and the token in one transaction, or ``("error", text)``
after rolling back. A token it has committed before is answered without inserting
again, so a batch resent after a lost reply is written once. End
of input (the parent closed the pipe or died) ends the writer. It runs in its own session
(Ctrl-C on a terminal does not reach it) and ignores SIGINT and SIGTERM (a service
manager's stop reaches every process of the service): the parent may still have buffered
rows to hand over before it closes the pipe.
"""

from __future__ import annotations

import marshal
import signal
import sqlite3
import struct
import sys
from typing import BinaryIO

KEEP_TOKENS = 1000
"""Batch tokens remembered: far more than a store ever resends."""
_SEEN = "SELECT 1 FROM report_batches WHERE token = ?"
_NOTE = "INSERT INTO report_batches (token) VALUES (?)"
_FORGET = "DELETE FROM report_batches WHERE id <= ?"


def _reply(out: BinaryIO, body: tuple[str, int | str]) -> None:
    data = marshal.dumps(body)
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def main(argv: list[str]) -> int:
    """Serve write requests for the database ``argv[0]`` with the statement ``argv[1]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    path, insert = argv
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL mode is a property of the file
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    _reply(out, ("ok", 0))  # ready: the signals are ignored and the database is open
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return 0
        (size,) = struct.unpack(">I", head)
        body = inp.read(size)
        if len(body) < size:
            return 0
        token, rows = marshal.loads(body)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # A batch sent again (its reply was lost: the writer died after COMMIT) is
            # acknowledged without a second insert.
            if conn.execute(_SEEN, (token,)).fetchone() is None:
                conn.executemany(insert, rows)
                cur = conn.execute(_NOTE, (token,))
                conn.execute(_FORGET, ((cur.lastrowid or 0) - KEEP_TOKENS,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            _reply(out, ("error", str(exc)))
        else:
            _reply(out, ("ok", len(rows)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
