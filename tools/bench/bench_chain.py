"""Chain benchmarks: signing rate, and build-sign-submit latency to a local anvil.

Prints only ``BENCH <name> <value> <unit>`` lines on stdout; logs go to stderr.

- ``chain.sign_tps``: EIP-1559 transactions signed per second through the SDK's signer.
- ``chain.sign_vs_bare``: that rate over bare ``Account.sign_transaction`` (coincurve backend),
  measured side by side in interleaved rounds (goal >= 0.9).
- ``chain.submit_ms_p50`` / ``chain.submit_ms_p99``: build, sign, commit (nonce + signed
  bytes, SQLite synchronous=FULL) and eth_sendRawTransaction through
  :class:`TransactionSender` until the node returns the hash (goal p50 <= 10 ms), against an
  anvil this script starts and stops.
- ``chain.exactly_once_kills``: SIGKILLs survived by an outbox sender worker in a crash run
  (at least 100, at random instants and named points, over 100 actions, with a third of the
  send replies dropped by a proxy); the script exits non-zero if the chain shows any
  duplicate, missing action or nonce gap.
"""

from __future__ import annotations

import logging
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from bpiiot.chain.contracts import MachineService
from bpiiot.chain.devnode import DevNode
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.sender import TransactionSender, TxRequest
from bpiiot.wallet import LocalSigner, signing_backend

log = logging.getLogger("bench_chain")

ROOT = Path(__file__).resolve().parents[2]


def bench(name: str, value: float, unit: str) -> None:
    """Print one result line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def _txs(n: int) -> list[dict[str, Any]]:
    to = "0x" + "42" * 20
    return [
        {
            "chainId": 31337,
            "nonce": i,
            "gas": 60_000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "to": to,
            "value": i,
            "data": b"\x12\x34" * 34,
        }
        for i in range(n)
    ]


def sign_rates(rounds: int = 5, per_round: int = 600) -> tuple[float, float]:
    """(SDK signer tx/s, bare eth-account tx/s), best round of each, interleaved."""
    key = secrets.token_bytes(32)
    signer = LocalSigner(key)
    txs = _txs(per_round)
    ours: list[float] = []
    bare: list[float] = []
    signer.sign_transaction(txs[0])  # warm-up
    Account.sign_transaction(txs[0], key)
    for _ in range(rounds):
        t = time.perf_counter()
        for tx in txs:
            signer.sign_transaction(tx)
        ours.append(per_round / (time.perf_counter() - t))
        t = time.perf_counter()
        for tx in txs:
            Account.sign_transaction(tx, key)
        bare.append(per_round / (time.perf_counter() - t))
    return max(ours), max(bare)


def submit_latencies(count: int = 300) -> list[float]:
    """Milliseconds from TxRequest to the node's answer, ``count`` sends, after warm-up."""
    with DevNode("anvil") as dev, tempfile.TemporaryDirectory() as tmp:
        signer = LocalSigner(secrets.token_bytes(32))
        dev.set_balance(signer.address, 10**20)
        node = Node(dev.url, expected_chain_id=dev.chain_id)
        node.connect()
        journal = NonceJournal(open_db(Path(tmp) / "state.sqlite"), node.chain_id, signer.address)
        sender = TransactionSender(node, signer, journal, FeePolicy())
        sender.start()
        req = TxRequest(to="0x" + "42" * 20, value=1)
        for _ in range(20):
            sender.submit(req)
        out = []
        for _ in range(count):
            t = time.perf_counter()
            sender.submit(req)
            out.append((time.perf_counter() - t) * 1000)
        return out


def crash_run(kills: int = 100, actions: int = 100, seed: int = 2026) -> tuple[int, bool, str]:
    """(kills survived, exactly once?, verdict text) of one random crash run on anvil."""
    sys.path.insert(0, str(ROOT))  # the crash harness lives with the chain tests
    from tests.sbc.chain.crash import CrashDriver, Scenario, verdict
    from tests.sbc.chain.proxy import DropReplyProxy, drops_sends

    with DevNode("anvil") as dev, tempfile.TemporaryDirectory() as tmp:
        machine_key, deployer_key = secrets.token_bytes(32), secrets.token_bytes(32)
        for key in (machine_key, deployer_key):
            dev.set_balance(LocalSigner(key).address, 10**21)
        node = Node(dev.url, expected_chain_id=dev.chain_id)
        node.connect()
        deployer = LocalSigner(deployer_key)
        journal = NonceJournal(
            open_db(Path(tmp) / "deployer.sqlite"), node.chain_id, deployer.address
        )
        sender = TransactionSender(node, deployer, journal, FeePolicy(), poll_s=0.02)
        service = MachineService.deploy_for(
            sender, LocalSigner(machine_key).address, "0x" + "77" * 20
        )
        sc = Scenario(
            url=dev.url,
            chain_id=dev.chain_id,
            db_path=Path(tmp) / "worker.sqlite",
            key=machine_key,
            service=service.address,
            actions=1,
        )
        lossy = random.Random(seed + 1)
        # A third of the send replies are lost on the way back, on top of the kills.
        with DropReplyProxy(dev.url, lambda r: drops_sends(r) and lossy.random() < 0.3) as proxy:
            sc.url = proxy.url
            driver = CrashDriver(sc)
            driver.random_kills(kills, actions, random.Random(seed))
            driver.finish(timeout_s=600)
            log.info("crash run: %d send replies dropped", proxy.dropped)
        v = verdict(dev.url, sc.service, sc.machine, range(sc.actions))
        log.info("crash run: %d kills at %s", driver.kills, dict(driver.points))
        text = (
            f"{v.events} events for {sc.actions} actions, duplicates {v.duplicates}, "
            f"missing {v.missing}, gaps {v.gaps}, latest {v.latest}, pending {v.pending}"
        )
        return driver.kills, v.exactly_once and v.events == sc.actions, text


def main() -> int:
    """Run the benchmarks and print BENCH lines."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    log.info("signing backend: %s", signing_backend())
    ours, bare = sign_rates()
    bench("chain.sign_tps", ours, "tx/s")
    bench("chain.sign_vs_bare", ours / bare, "ratio")
    lat = sorted(submit_latencies())
    bench("chain.submit_ms_p50", statistics.median(lat), "ms")
    bench("chain.submit_ms_p99", lat[min(len(lat) - 1, int(len(lat) * 0.99))], "ms")
    kills, once, text = crash_run()
    log.info("crash run verdict: %s", text)
    if not once:
        sys.stderr.write(f"EXACTLY-ONCE VIOLATED: {text}\n")
        return 1
    bench("chain.exactly_once_kills", kills, "kills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
