"""Wire the chain layer from the config: node, fee policy, journal, sender, contract bindings,
outbox and the outbox sender."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bpiiot.chain.contracts import ContractClient, MachineService, PartReplacement
from bpiiot.chain.fees import GWEI, FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.outbox import Outbox, OutboxSender
from bpiiot.chain.sender import TransactionSender
from bpiiot.config import ChainConfig, WalletConfig
from bpiiot.wallet import KdfParams, LocalSigner, Signer, WalletError, resolve_password, unlock


def node_from_config(cfg: ChainConfig) -> Node:
    """A :class:`Node` for ``[chain] node_url`` expecting ``[chain] chain_id`` (0: any)."""
    return Node(cfg.node_url, expected_chain_id=cfg.chain_id or None, timeout=cfg.rpc_timeout_s)


def fee_policy_from_config(cfg: ChainConfig) -> FeePolicy:
    """The fee policy of ``[chain]``."""
    tip = None if cfg.priority_fee_gwei < 0 else int(cfg.priority_fee_gwei * GWEI)
    return FeePolicy(max_fee_cap_wei=int(cfg.max_fee_cap_gwei * GWEI), priority_fee_wei=tip)


def kdf_from_config(cfg: WalletConfig) -> KdfParams:
    """KDF settings for new keystores."""
    kind = cfg.kdf.lower()
    if kind == "scrypt":
        return KdfParams("scrypt", cfg.kdf_iterations)
    if kind == "pbkdf2":
        return KdfParams("pbkdf2", cfg.kdf_iterations)
    raise WalletError(f"[wallet] kdf = {cfg.kdf!r}: use scrypt or pbkdf2")


def unlock_from_config(cfg: WalletConfig, *, interactive: bool | None = None) -> LocalSigner:
    """Unlock the configured keystore with the configured password source."""
    password = resolve_password(
        password_env=cfg.password_env,
        password_file=cfg.password_file or None,
        interactive=interactive,
    )
    return unlock(Path(cfg.keystore).expanduser(), password)


def sender_from_config(
    cfg: ChainConfig,
    signer: Signer,
    *,
    node: Node | None = None,
    db: sqlite3.Connection | None = None,
) -> TransactionSender:
    """A started sender: chain id checked, journal reconciled, backend logged."""
    node = node or node_from_config(cfg)
    node.connect()
    conn = db or open_db(Path(cfg.state_db).expanduser())
    journal = NonceJournal(conn, node.chain_id, signer.address)
    sender = TransactionSender(
        node,
        signer,
        journal,
        fee_policy_from_config(cfg),
        confirmations=cfg.confirmations,
        replace_after_s=cfg.replace_after_s,
        receipt_timeout_s=cfg.receipt_timeout_s,
    )
    sender.start()
    return sender


def contracts_from_config(cfg: ChainConfig, sender: TransactionSender) -> dict[str, ContractClient]:
    """Bindings of the deployed agreements named in ``[chain]`` (missing ones left out)."""
    out: dict[str, ContractClient] = {}
    if cfg.machine_service:
        out[MachineService.NAME] = MachineService(sender, cfg.machine_service)
    if cfg.part_replacement:
        out[PartReplacement.NAME] = PartReplacement(sender, cfg.part_replacement)
    return out


def outbox_for(sender: TransactionSender) -> Outbox:
    """The outbox in the sender's state database (``[chain] state_db``).

    It shares the sender's connection: an entry, its nonce and its signed bytes are
    committed in one SQLite transaction, which needs one database.
    """
    return Outbox(sender.journal.conn)


def outbox_sender_from_config(
    cfg: ChainConfig, sender: TransactionSender, outbox: Outbox | None = None
) -> OutboxSender:
    """An :class:`OutboxSender` draining ``outbox`` (default: :func:`outbox_for`)
    through ``sender`` for the agreements configured in ``[chain]``."""
    return OutboxSender(outbox or outbox_for(sender), sender, contracts_from_config(cfg, sender))
