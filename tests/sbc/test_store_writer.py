"""The store's report writer process: nothing buffered is lost when it dies or is refused."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bpiiot.store import Store, StoreError
from tests.sbc.test_rules import Feed


def add(store: Store, feed: Feed, first: int, n: int) -> None:
    for w in range(first, first + n):
        frame, raw = feed.report(w)
        store.add_report("b1", frame, raw, time.time())


def windows(path: Path) -> list[int]:
    with sqlite3.connect(path) as c:
        return [r[0] for r in c.execute("SELECT window_seq FROM reports ORDER BY id")]


def writer_pid(store: Store) -> int:
    proc = store._writer
    assert proc is not None and proc.poll() is None
    return proc.pid


def test_reports_are_written_by_a_child_process_that_ends_with_the_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite")
    pid = writer_pid(s)
    assert pid != os.getpid()
    add(s, Feed(), 1, 10)
    assert s.flush() == 10
    assert windows(tmp_path / "s.sqlite") == list(range(1, 11))
    proc = s._writer
    s.close()
    assert proc is not None and proc.poll() == 0  # ended on end of input, not killed
    assert s.reports_written == 10


def test_a_killed_writer_is_restarted_and_the_batch_is_written_once(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite")
    feed = Feed()
    add(s, feed, 1, 5)
    s.flush()
    os.kill(writer_pid(s), signal.SIGKILL)
    time.sleep(0.2)
    add(s, feed, 6, 5)
    assert s.flush() == 5
    assert windows(tmp_path / "s.sqlite") == list(range(1, 11))
    s.close()


def test_ctrl_c_to_the_process_group_leaves_the_writer_to_the_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite")
    pid = writer_pid(s)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert writer_pid(s) == pid  # still the same process: it waits for the store's close
    add(s, Feed(), 1, 3)
    s.close()  # the buffered reports are handed over after the signals
    assert windows(tmp_path / "s.sqlite") == [1, 2, 3]


def test_refused_writes_keep_the_reports_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = Store(path)
    feed = Feed()
    with sqlite3.connect(path) as c:
        c.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON reports BEGIN SELECT RAISE(ABORT, 'disk "
            "says no'); END"
        )
    add(s, feed, 1, 4)
    with pytest.raises(StoreError, match="disk says no"):
        s.flush()
    add(s, feed, 5, 2)
    with pytest.raises(StoreError):
        s.flush()
    assert windows(path) == []
    with sqlite3.connect(path) as c:
        c.execute("DROP TRIGGER refuse")
    assert s.flush() == 6
    assert windows(path) == [1, 2, 3, 4, 5, 6]  # in order, none twice
    assert s.reports_lost == 0
    s.close()


def test_beyond_the_backlog_the_oldest_are_lost_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = Store(path)
    s.max_backlog = 5
    with sqlite3.connect(path) as c:
        c.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON reports BEGIN SELECT RAISE(ABORT, 'x'); END"
        )
    add(s, Feed(), 1, 8)
    with pytest.raises(StoreError):
        s.flush()
    assert s.reports_lost == 3
    with sqlite3.connect(path) as c:
        c.execute("DROP TRIGGER refuse")
    s.flush()
    assert windows(path) == [4, 5, 6, 7, 8]
    s.close()


def test_the_in_process_writer_gives_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = Store(path, writer_process=False)
    assert s._writer is None
    add(s, Feed(), 1, 3)
    s.close()
    assert windows(path) == [1, 2, 3]


def test_the_writer_ends_when_its_service_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from bpiiot.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "print(s._writer.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "s.sqlite")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        os.kill(pid, 0)  # running
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the writer outlived its killed parent")


class _LoseFirstReply:
    """The writer's stdout, except that its first reply is read and then 'lost'."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lost = False

    def read(self, n: int) -> bytes:
        if not self.lost:
            self.real.read(n)  # the writer committed the batch and answered...
            self.lost = True
            raise OSError("reply lost")  # ...and the answer never arrived
        return bytes(self.real.read(n))

    def close(self) -> None:
        self.real.close()


def test_a_batch_resent_after_its_reply_was_lost_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = Store(path)
    feed = Feed()
    add(s, feed, 1, 4)
    proc = s._writer
    assert proc is not None
    proc.stdout = _LoseFirstReply(proc.stdout)  # type: ignore[assignment]
    assert s.flush() == 4  # the store restarted the writer and sent the batch again
    assert s._writer is not proc
    add(s, feed, 5, 1)
    s.close()
    assert windows(path) == [1, 2, 3, 4, 5]


def test_concurrent_flushes_write_reports_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = Store(path)
    feed = Feed()
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            s.flush()

    threads = [threading.Thread(target=flusher) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for first in range(1, 6001, 100):
            add(s, feed, first, 100)
            time.sleep(0.001)  # let the flushers interleave with the adds
    finally:
        stop.set()
        for t in threads:
            t.join()
    s.close()
    assert windows(path) == list(range(1, 6001))


def test_without_a_python_to_run_the_writer_the_store_writes_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    path = tmp_path / "s.sqlite"
    s = Store(path)
    assert s._writer is None
    assert "cannot start the report writer" in caplog.text
    add(s, Feed(), 1, 3)
    s.close()
    assert windows(path) == [1, 2, 3]
