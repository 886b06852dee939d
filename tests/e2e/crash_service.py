"""The real service, made to SIGKILL itself at one stage of acting on an incident.

Usage: ``crash_service.py STAGE CONFIG``. Stages, in the order an incident meets them:

- ``incident``: the incident and its evidence are committed, nothing else happened;
- ``before_enqueue``: about to write the outbox entry;
- ``after_enqueue``: the outbox entry is written, nothing signed;
- ``after_sign``: the transaction is signed, not recorded or sent;
- ``after_send``: the node accepted the transaction, the outbox has not heard back.

Everything else is the unmodified service (``Service.from_config(...).run_forever()``).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from bpiiot.chain.node import Node
from bpiiot.chain.outbox import Outbox
from bpiiot.service import Service
from bpiiot.store import Store
from bpiiot.wallet import LocalSigner


def die(stage: str) -> None:
    print(f"CRASH at {stage}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    stage, config = sys.argv[1], sys.argv[2]
    if stage == "incident":
        orig_open = Store.open_incident

        def open_incident(self: Store, *a: Any, **kw: Any) -> int:
            iid = orig_open(self, *a, **kw)
            die(stage)
            return iid

        Store.open_incident = open_incident  # type: ignore[method-assign]
    elif stage in ("before_enqueue", "after_enqueue"):
        orig_enqueue = Outbox.enqueue

        def enqueue(self: Outbox, *a: Any, **kw: Any) -> Any:
            if stage == "before_enqueue":
                die(stage)
            out = orig_enqueue(self, *a, **kw)
            die(stage)
            return out

        Outbox.enqueue = enqueue  # type: ignore[method-assign]
    elif stage == "after_sign":
        orig_sign = LocalSigner.sign_transaction

        def sign(self: LocalSigner, tx: Any) -> Any:
            signed = orig_sign(self, tx)
            if tx.get("to") is not None:
                die(stage)
            return signed

        LocalSigner.sign_transaction = sign  # type: ignore[method-assign]
    elif stage == "after_send":
        orig_send = Node.send_raw

        def send_raw(self: Node, raw: bytes, tx_hash: str) -> str:
            out = orig_send(self, raw, tx_hash)
            die(stage)
            return out

        Node.send_raw = send_raw  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown stage {stage}")
    Service.from_config(config).run_forever()


if __name__ == "__main__":
    main()
