"""Crash harness: a sender worker process killed with SIGKILL, and the on-chain verdict.

The worker is a child process forked from the driver (so it starts in milliseconds with
web3 already imported); it opens its own database connection and node client, enqueues the
scenario's actions (idempotently, as a rule that fires again after a restart would) and
drains the outbox until every entry is confirmed. A hook on
:mod:`bpiiot.chain.killpoints` lets the driver stop it at a named point: the worker
reports the point on a pipe and waits there, and the driver kills it with SIGKILL. Random
kills instead come after a random delay, at whatever instruction the worker is on.

The verdict is read from the chain, not from the outbox: every action's
``ServiceRequested`` event must appear exactly once, and the machine account's nonces must
run from 0 with no gap and nothing left pending.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from hexbytes import HexBytes
from web3 import Web3

from bpiiot.chain import killpoints
from bpiiot.chain.contracts import MachineService, load_artifact
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.outbox import CONFIRMED, Outbox, OutboxSender
from bpiiot.chain.sender import TransactionSender
from bpiiot.wallet import LocalSigner

#: Points every drain of a fresh action passes on an automining node.
SEND_POINTS = (
    "nonce_reserved",
    "signed",
    "commit:submitted",
    "sent",
    "receipt",
    "commit:confirmed",
    "commit:reconciled",
)
#: Points of a replacement (a node that does not mine, replace_after_s=0).
REPLACE_POINTS = ("commit:replaced", "replacement_sent")


def action_key(i: int) -> str:
    """Idempotency key of action ``i``."""
    return f"crash:{i}"


def evidence(i: int) -> bytes:
    """Evidence hash of action ``i`` (its fault code is ``i``)."""
    return bytes(Web3.keccak(text=f"evidence {i}"))


@dataclass
class Scenario:
    """What the worker drains: ``actions`` requestService calls of ``key``'s account."""

    url: str
    chain_id: int
    db_path: Path
    key: bytes = field(repr=False)
    service: str
    actions: int
    confirmations: int = 1
    replace_after_s: float = 60.0
    interval_s: float = 0.005

    @property
    def machine(self) -> str:
        """Address of the machine account."""
        return LocalSigner(self.key).address


def open_outbox_sender(sc: Scenario) -> OutboxSender:
    """Build the worker's outbox sender from scratch (own connection, own node client)."""
    conn = open_db(sc.db_path)
    node = Node(sc.url, expected_chain_id=sc.chain_id, timeout=5.0)
    node.connect()
    signer = LocalSigner(sc.key)
    sender = TransactionSender(
        node,
        signer,
        NonceJournal(conn, node.chain_id, signer.address),
        FeePolicy(cache_s=0.5),
        confirmations=sc.confirmations,
        replace_after_s=sc.replace_after_s,
        poll_s=0.01,
    )
    service = MachineService(sender, sc.service)
    return OutboxSender(Outbox(conn), sender, {MachineService.NAME: service})


def _worker(sc: Scenario, kill_at: str | None, hit: int, wfd: int) -> NoReturn:
    """Body of the child process; never returns."""
    try:
        seen = 0

        def hook(point: str) -> None:
            nonlocal seen
            if point != kill_at:
                return
            seen += 1
            if seen == hit:
                os.write(wfd, f"AT {point}\n".encode())
                while True:  # the driver kills us here
                    time.sleep(1)

        killpoints.set_hook(hook)
        ob = open_outbox_sender(sc)
        last = sc.actions
        for i in range(last):
            ob.outbox.enqueue(action_key(i), "MachineService", "requestService", [evidence(i), i])
        while True:
            ob.drain_once()
            if ob.outbox.counts() == {CONFIRMED: last}:
                os.write(wfd, b"DONE\n")
                os._exit(0)
            time.sleep(sc.interval_s)
    except BaseException:
        os.write(wfd, ("ERR " + traceback.format_exc()).encode())
        os._exit(3)


class WorkerError(RuntimeError):
    """The worker died of an exception (not of our SIGKILL), or hung."""


@dataclass
class CrashDriver:
    """Starts workers for one scenario and kills them; counts what it did."""

    scenario: Scenario
    kills: int = 0
    points: Counter[str] = field(default_factory=Counter)

    def life(
        self,
        *,
        kill_at: str | None = None,
        hit: int = 1,
        kill_after_s: float | None = None,
        timeout_s: float = 60.0,
    ) -> str:
        """Run one worker life. Returns "killed at <point>", "killed" (random time) or "done"."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _worker(self.scenario, kill_at, hit, wfd)
        os.close(wfd)
        start = time.monotonic()
        buf = b""
        outcome: str | None = None
        try:
            while outcome is None:
                now = time.monotonic() - start
                if kill_after_s is not None and now >= kill_after_s:
                    outcome = "killed"
                    break
                if now >= timeout_s:
                    raise WorkerError(f"worker hung for {timeout_s} s ({kill_at=}, {hit=})")
                limit = timeout_s if kill_after_s is None else kill_after_s
                ready, _, _ = select.select([rfd], [], [], max(0.0, limit - now))
                if not ready:
                    continue
                chunk = os.read(rfd, 65536)
                if not chunk:
                    raise WorkerError(f"worker exited without a word:\n{buf.decode()}")
                buf += chunk
                if buf.startswith(b"ERR"):
                    while chunk:
                        chunk = os.read(rfd, 65536)
                        buf += chunk
                    raise WorkerError(buf.decode())
                if b"\n" in buf:
                    line = buf.split(b"\n", 1)[0].decode()
                    outcome = "done" if line == "DONE" else f"killed at {line[3:]}"
        finally:
            if outcome != "done":
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(rfd)
        if outcome.startswith("killed"):
            self.kills += 1
            self.points[outcome[10:] or "random"] += 1
        return outcome

    def sweep(self, points: Iterable[str], hit: int = 1, add: int = 0) -> list[str]:
        """Kill once at each of ``points`` (at its ``hit``-th pass), in order; ``add`` new
        actions before each life, so that every point has fresh work to reach."""
        outcomes = []
        for p in points:
            self.scenario.actions += add
            outcomes.append(self.life(kill_at=p, hit=hit))
        return outcomes

    def random_kills(
        self, count: int, actions: int, rng: random.Random, max_delay_s: float = 0.1
    ) -> None:
        """``count`` kills, alternately at a random instant and at a random named point (at
        a random pass), while the scenario grows to ``actions`` actions in step with them."""
        start = self.scenario.actions
        lives = 0
        while self.kills < count:
            lives += 1
            if lives > 4 * count:
                raise WorkerError(f"only {self.kills} kills in {lives} lives")
            self.scenario.actions = max(
                self.scenario.actions, start + -(-(actions - start) * self.kills // count)
            )
            if lives % 2:
                outcome = self.life(kill_after_s=rng.uniform(0.0, max_delay_s))
            else:
                outcome = self.life(kill_at=rng.choice(SEND_POINTS), hit=rng.randint(1, 4))
            if outcome == "done":
                # The worker finished before the kill: the next life gets one more action,
                # so a fast machine cannot run out of work to be killed in.
                self.scenario.actions += 1
        self.scenario.actions = max(self.scenario.actions, actions)

    def finish(self, timeout_s: float = 120.0) -> None:
        """Let a worker run (unkilled) until every action is confirmed."""
        outcome = self.life(timeout_s=timeout_s)
        if outcome != "done":
            raise WorkerError(f"final worker did not finish: {outcome}")


@dataclass
class Verdict:
    """What the chain says about a crash run."""

    events: int
    duplicates: dict[int, int]
    missing: list[int]
    nonces: list[int]
    gaps: list[int]
    latest: int
    pending: int

    @property
    def exactly_once(self) -> bool:
        """Every action mined once, nonces 0..n-1 without gap, nothing left pending."""
        return (
            not self.duplicates
            and not self.missing
            and not self.gaps
            and (self.latest == self.pending == len(self.nonces))
        )


def verdict(url: str, service: str, machine: str, actions: Iterable[int]) -> Verdict:
    """Read the ServiceRequested events of ``service`` and the machine's nonces from chain."""
    w3 = Web3(Web3.HTTPProvider(url))
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(service), abi=load_artifact("MachineService").abi
    )
    logs = contract.events.ServiceRequested().get_logs(from_block=0)
    counts = Counter(int(ev["args"]["faultCode"]) for ev in logs)
    wanted = list(actions)
    nonces: list[int] = []
    for ev in logs:
        tx = w3.eth.get_transaction(HexBytes(ev["transactionHash"]))
        if str(tx["from"]).lower() == machine.lower():
            nonces.append(int(tx["nonce"]))
    nonces.sort()
    top = max(nonces, default=-1)
    addr = Web3.to_checksum_address(machine)
    return Verdict(
        events=len(logs),
        duplicates={k: n for k, n in counts.items() if n > 1},
        missing=[i for i in wanted if counts[i] == 0],
        nonces=nonces,
        gaps=sorted(set(range(top + 1)) - set(nonces)),
        latest=int(w3.eth.get_transaction_count(addr, "latest")),
        pending=int(w3.eth.get_transaction_count(addr, "pending")),
    )
