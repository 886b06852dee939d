"""Named points in the send path where a crash test may stop the process.

The outbox and the sender call :func:`reach` at each step whose loss a crash could expose:
between reserving a nonce and committing it, after signing, after each database commit,
after a send, after a receipt. In production no hook is installed and :func:`reach` is a
single attribute test. The crash harness (``tests/sbc/chain/crash.py``) installs a hook
that reports the point to its driver and waits there to be killed with SIGKILL.
"""

from __future__ import annotations

from collections.abc import Callable

#: Every point the send path reaches, in the order a transaction meets them.
POINTS = (
    "nonce_reserved",  # inside the database transaction, nothing committed yet
    "signed",  # inside the database transaction, signed bytes in hand
    "commit:submitted",  # entry, nonce and signed bytes committed; not sent yet
    "sent",  # the node answered eth_sendRawTransaction
    "receipt",  # a receipt was found, the entry is not updated yet
    "commit:confirmed",  # the entry is confirmed (or failed) and its nonce settled
    "commit:replaced",  # a replacement is recorded, not sent yet
    "replacement_sent",  # the node answered the replacement's eth_sendRawTransaction
    "commit:requeued",  # a refused attempt's nonce was proven free and released
    "commit:failed",  # the entry failed (revert, or nonce used by another transaction)
    "commit:reconciled",  # the journal was lined up with the node (start-up, recovery)
    "commit:reserved",  # a nonce reserved on its own (NonceJournal.reserve without conn)
)

_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the function called at every point."""
    global _hook
    _hook = hook


def reach(point: str) -> None:
    """Tell the installed hook, if any, that the send path is at ``point``."""
    if _hook is not None:
        _hook(point)
