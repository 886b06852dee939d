"""Fee policy like geth's: max fee = 2 x base fee + tip, capped; replacements bump both fees."""

from __future__ import annotations

import threading
import time

from bpiiot.chain.errors import FeeCapExceeded
from bpiiot.chain.node import Node
from bpiiot.chain.types import Fees

__all__ = ["GWEI", "FeePolicy", "Fees", "bump"]

GWEI = 10**9


def bump(value: int, permille: int) -> int:
    """``value`` raised by ``permille``/1000, rounded up, and by at least 1 wei."""
    return value + max(1, -(-value * permille // 1000))


class FeePolicy:
    """Chooses fees for new and replacement transactions.

    ``max_fee_cap_wei`` bounds max fee (or gas price); a network that needs more gets a
    :class:`FeeCapExceeded` instead of a transaction. ``priority_fee_wei`` None asks the node
    for a tip. ``bump_permille`` (default 125 = 12.5%) stays above the 10% nodes require
    for a replacement. The base fee is cached for ``cache_s`` seconds to spare an RPC per
    transaction; the 2x headroom absorbs a stale value.
    """

    def __init__(
        self,
        *,
        max_fee_cap_wei: int = 500 * GWEI,
        priority_fee_wei: int | None = None,
        bump_permille: int = 125,
        cache_s: float = 1.0,
    ) -> None:
        if bump_permille < 100:
            raise ValueError("bump_permille below 100 (10%): nodes refuse such replacements")
        self.max_fee_cap_wei = max_fee_cap_wei
        self.priority_fee_wei = priority_fee_wei
        self.bump_permille = bump_permille
        self.cache_s = cache_s
        self._cached: tuple[float, Fees] | None = None
        self._lock = threading.Lock()

    def _fresh(self, node: Node) -> Fees:
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        base = node.base_fee()
        if base is None:
            fees = Fees(gas_price=node.gas_price())
        else:
            tip = self.priority_fee_wei
            if tip is None:
                tip = node.max_priority_fee()
            fees = Fees(max_fee_per_gas=2 * base + tip, max_priority_fee_per_gas=tip)
        with self._lock:
            self._cached = (now, fees)
        return fees

    def suggest(self, node: Node) -> Fees:
        """Fees for a new transaction at current network conditions."""
        fees = self._fresh(node)
        cap = self.max_fee_cap_wei
        if fees.legacy:
            if fees.gas_price > cap:
                raise FeeCapExceeded(
                    f"gas price {fees.gas_price / GWEI:.3f} gwei is above the cap "
                    f"{cap / GWEI:.3f} gwei ([chain] max_fee_cap_gwei)"
                )
            return fees
        need = fees.max_fee_per_gas - (fees.max_fee_per_gas - fees.max_priority_fee_per_gas) // 2
        if need > cap:
            raise FeeCapExceeded(
                f"base fee + tip = {need / GWEI:.3f} gwei is above the cap {cap / GWEI:.3f} gwei "
                "([chain] max_fee_cap_gwei); the transaction could not be included"
            )
        return Fees(
            max_fee_per_gas=min(fees.max_fee_per_gas, cap),
            max_priority_fee_per_gas=min(fees.max_priority_fee_per_gas, cap),
        )

    def bumped(self, old: Fees, node: Node) -> Fees:
        """Fees for a replacement: every field up by the bump, and at least the current quote."""
        self._cached = None
        fresh = self._fresh(node)
        cap = self.max_fee_cap_wei
        if old.legacy:
            price = max(bump(old.gas_price, self.bump_permille), fresh.gas_price)
            if price > cap:
                raise FeeCapExceeded(
                    f"replacement gas price {price / GWEI:.3f} gwei would exceed the cap "
                    f"{cap / GWEI:.3f} gwei; the transaction is left as it is"
                )
            return Fees(gas_price=price)
        tip = max(
            bump(old.max_priority_fee_per_gas, self.bump_permille), fresh.max_priority_fee_per_gas
        )
        max_fee = max(bump(old.max_fee_per_gas, self.bump_permille), fresh.max_fee_per_gas, tip)
        if max_fee > cap:
            raise FeeCapExceeded(
                f"replacement max fee {max_fee / GWEI:.3f} gwei would exceed the cap "
                f"{cap / GWEI:.3f} gwei; the transaction is left as it is"
            )
        return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip)
