"""Chain benchmarks: signing rate, and build-sign-submit latency to a local anvil.

Prints only ``BENCH <name> <value> <unit>`` lines on stdout; logs go to stderr.

- ``chain.sign_tps``: EIP-1559 transactions signed per second through the SDK's signer.
- ``chain.sign_vs_bare``: that rate over bare ``Account.sign_transaction`` (coincurve backend),
  measured side by side in interleaved rounds (goal >= 0.9).
- ``chain.submit_ms_p50`` / ``chain.submit_ms_p99``: build, sign and eth_sendRawTransaction
  through :class:`TransactionSender` until the node returns the hash (goal p50 <= 10 ms),
  against an anvil this script starts and stops.
"""

from __future__ import annotations

import logging
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from bpiiot.chain.devnode import DevNode
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.sender import TransactionSender, TxRequest
from bpiiot.wallet import LocalSigner, signing_backend

log = logging.getLogger("bench_chain")


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
