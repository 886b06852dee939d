"""The store's report writer: a child process that inserts batches of reports into SQLite.

Run by :class:`bpiiot.store.Store` as ``python -I _store_writer.py DB INSERT_SQL`` (a script
of the standard library only, so it starts in milliseconds). Why a process: Python's
``sqlite3`` gives up the GIL around every row it steps, and a thread that gives the GIL up
once per row waits up to a switch interval (5 ms) to get it back while the port readers
and the rules are busy, so an in-process writer slows to a crawl exactly when the ingest
is highest. In its own process the writer has its own interpreter lock.

Protocol on stdin/stdout, each message a 4-byte big-endian length then a ``marshal`` body
(only tuples, ints, floats, str and bytes cross). The writer says ``("ok", 0)`` once when
it is ready; then for each list of row tuples the parent sends it answers ``("ok", n)``
after committing them in one transaction, or ``("error", text)`` after rolling back. End
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
        rows = marshal.loads(body)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
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
