"""Fixtures of the chain suite: real anvil and Hardhat 2 nodes, funded accounts, senders.

No mocks of the node. Every process a fixture starts is stopped by it. A missing component
(``npm ci`` not run) makes the fixture fail with a clear message rather than skip.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bpiiot.chain.devnode import DevNode
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.sender import TransactionSender
from bpiiot.wallet import LocalSigner
from tests.sbc.chain.helpers import Parties, SenderFactory


@pytest.fixture(scope="session")
def anvil() -> Iterator[DevNode]:
    """One anvil for the session; tests deploy their own contracts on it."""
    with DevNode("anvil") as node:
        yield node


@pytest.fixture(scope="session")
def hardhat() -> Iterator[DevNode]:
    """One Hardhat 2 node for the session (compatibility set)."""
    with DevNode("hardhat") as node:
        yield node


@pytest.fixture(params=["anvil", "hardhat"])
def devnode(request: pytest.FixtureRequest) -> DevNode:
    """Each node kind in turn, for the tests that must behave the same on both."""
    node: DevNode = request.getfixturevalue(request.param)
    return node


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh state database (nonce journal + outbox) per test."""
    conn = open_db(tmp_path / "state.sqlite")
    yield conn
    conn.close()


@pytest.fixture
def make_sender(db: sqlite3.Connection) -> SenderFactory:
    """Build a started sender for a signer on a dev node."""

    def make(
        dev: DevNode, signer: LocalSigner, *, conn: sqlite3.Connection | None = None, **kw: Any
    ) -> TransactionSender:
        node = Node(dev.url, expected_chain_id=dev.chain_id)
        node.connect()
        policy = kw.pop("fees", None) or FeePolicy(cache_s=0)
        kw.setdefault("poll_s", 0.02)
        sender = TransactionSender(
            node, signer, NonceJournal(conn or db, node.chain_id, signer.address), policy, **kw
        )
        sender.start()
        return sender

    return make


@pytest.fixture
def parties(devnode: DevNode, make_sender: SenderFactory) -> Parties:
    """Fresh agreements with fresh accounts on each node kind."""
    return Parties(devnode, make_sender, shipping_window_s=3600)


@pytest.fixture
def anvil_parties(anvil: DevNode, make_sender: SenderFactory) -> Parties:
    """Fresh agreements with fresh accounts on anvil only."""
    return Parties(anvil, make_sender, shipping_window_s=3600)
