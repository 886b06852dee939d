"""The nonce journal on its own: threads, reconcile, persistence."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from bpiiot.chain.nonces import NonceJournal, open_db, write_transaction

ADDR = "0x" + "ab" * 20


def test_threads_get_unique_nonces_with_no_gap(tmp_path: Path) -> None:
    journal = NonceJournal(tmp_path / "j.sqlite", 1, ADDR)
    journal.reconcile(0, startup=True)
    used: list[int] = []
    lock = threading.Lock()
    rng = random.Random(7)
    plan = [[rng.random() < 0.3 for _ in range(40)] for _ in range(8)]

    def worker(fails: list[bool]) -> None:
        for fail in fails:
            n = journal.reserve()
            if fail:
                journal.release(n)  # as if the node refused it
            else:
                journal.mark_sent(n, f"0x{n:064x}", b"raw")
                with lock:
                    used.append(n)

    threads = [threading.Thread(target=worker, args=(p,)) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(used) == len(set(used))  # no reuse
    # No gap: the sent nonces plus the released ones form 0..head-1, and the next reserve
    # hands out the lowest released one first.
    head = journal.next_nonce()
    assert head is not None
    released = sorted(set(range(head)) - set(used))
    if released:
        assert journal.reserve() == released[0]
    assert sorted(used) == [n for n in range(head) if n not in released]


def test_reconcile_moves_up_and_down(tmp_path: Path) -> None:
    journal = NonceJournal(tmp_path / "j.sqlite", 1, ADDR)
    journal.reconcile(5, startup=True)
    assert journal.reserve() == 5
    # Another holder of the key used nonces up to 9: jump past them.
    journal.reconcile(10)
    assert journal.reserve() == 10
    journal.mark_sent(10, "0xa", b"a")
    assert journal.reserve() == 11
    journal.release(11)
    # The node forgot everything above 10 (restart): head stays above the sent nonce 10.
    journal.reconcile(10)
    assert [f.nonce for f in journal.in_flight()] == [10]
    assert journal.reserve() == 11
    # Mined (the node's count passed it) but not yet with enough confirmations: the bytes
    # stay, a node restarted without its mempool may need them again.
    journal.reconcile(11)
    assert [f.raw for f in journal.in_flight()] == [b"a"]
    # Once 10 is mined deep enough it is dropped.
    journal.reconcile(11, confirmed=11)
    assert journal.in_flight() == []


def test_startup_releases_reservations_of_a_dead_process(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    j1 = NonceJournal(db, 1, ADDR)
    j1.reconcile(0, startup=True)
    assert [j1.reserve(), j1.reserve()] == [0, 1]
    j1.mark_sent(1, "0x1", b"one")
    # New process: nonce 0 was reserved but never sent; 1 was sent (will be re-broadcast).
    j2 = NonceJournal(open_db(db), 1, ADDR)
    j2.reconcile(0, startup=True)
    assert j2.reserve() == 0
    assert j2.reserve() == 2
    assert [(f.nonce, f.raw) for f in j2.in_flight()] == [(1, b"one")]


def test_accounts_and_chains_are_separate(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "j.sqlite")
    a = NonceJournal(conn, 1, ADDR)
    b = NonceJournal(conn, 2, ADDR)
    c = NonceJournal(conn, 1, "0x" + "cd" * 20)
    for j, start in ((a, 0), (b, 100), (c, 7)):
        j.reconcile(start, startup=True)
    assert (a.reserve(), b.reserve(), c.reserve()) == (0, 100, 7)


def test_commit_before_a_send_is_synchronous_then_the_level_is_restored(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "j.sqlite")
    levels: list[int] = []
    with write_transaction(conn, "submitted", sync=True) as c:
        levels.append(int(c.execute("PRAGMA synchronous").fetchone()[0]))
        c.execute("CREATE TABLE t (x INTEGER)")
    levels.append(int(conn.execute("PRAGMA synchronous").fetchone()[0]))
    assert levels == [2, 1]  # FULL for the commit before a send, NORMAL otherwise
    # A failed transaction rolls back and still restores the level.
    try:
        with write_transaction(conn, "submitted", sync=True) as c:
            c.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("crash inside the transaction")
    except RuntimeError:
        pass
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    assert int(conn.execute("PRAGMA synchronous").fetchone()[0]) == 1
