"""Helpers of the chain suite (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bpiiot.chain.contracts import MachineService, PartReplacement
from bpiiot.chain.devnode import DEV_PRIVATE_KEYS, DevNode
from bpiiot.chain.sender import TransactionSender
from bpiiot.wallet import KdfParams, LocalSigner

ARTIFACTS = Path(__file__).parent / "artifacts"
ETHER = 10**18
#: Cheap KDF for tests only (see bpiiot.wallet for the trade-off).
TEST_KDF = KdfParams("scrypt", 2**14)

SenderFactory = Callable[..., TransactionSender]


def fresh_signer(dev: DevNode, wei: int = 100 * ETHER) -> LocalSigner:
    """A new random account, funded on ``dev``: each test gets a machine of its own."""
    signer = LocalSigner(secrets.token_bytes(32))
    if wei:
        dev.set_balance(signer.address, wei)
    return signer


def fresh_key(dev: DevNode, wei: int = 100 * ETHER) -> bytes:
    """A new random private key whose account is funded on ``dev`` (for worker processes)."""
    key = secrets.token_bytes(32)
    dev.set_balance(LocalSigner(key).address, wei)
    return key


def dev_key(index: int) -> bytes:
    """Private key of one of the nodes' well-known dev accounts (funded at genesis)."""
    return bytes.fromhex(DEV_PRIVATE_KEYS[index][2:])


def dev_signer(index: int) -> LocalSigner:
    """One of the nodes' well-known dev accounts (vendor, supplier...)."""
    return LocalSigner(dev_key(index))


class Parties:
    """Machine, vendor and supplier senders plus both agreements, deployed fresh."""

    def __init__(self, dev: DevNode, make_sender: SenderFactory, shipping_window_s: int) -> None:
        self.dev = dev
        self.machine = make_sender(dev, fresh_signer(dev))
        self.vendor = make_sender(dev, fresh_signer(dev))
        self.supplier = make_sender(dev, fresh_signer(dev))
        self.stranger = make_sender(dev, fresh_signer(dev))
        self.service = MachineService.deploy_for(
            self.machine, self.machine.address, self.vendor.address
        )
        self.parts = PartReplacement.deploy_for(
            self.machine, self.machine.address, self.supplier.address, shipping_window_s
        )


def load_test_artifact(name: str) -> dict[str, Any]:
    """A test-only contract artifact (built by contracts/build.js from contracts/test)."""
    doc: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return doc
