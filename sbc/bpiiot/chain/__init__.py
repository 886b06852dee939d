"""The chain layer: signed transactions to an external Ethereum node, and the two agreements.

Data flow: rules enqueue intended calls into the :class:`~bpiiot.chain.outbox.Outbox`; the
:class:`~bpiiot.chain.outbox.OutboxSender` drains it through a
:class:`~bpiiot.chain.sender.TransactionSender`, which takes nonces from the SDK's
:class:`~bpiiot.chain.nonces.NonceJournal`, fees from the
:class:`~bpiiot.chain.fees.FeePolicy`, signs with the wallet's signer and hands the signed
bytes to the :class:`~bpiiot.chain.node.Node`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bpiiot.chain.contracts import (
        ContractClient,
        MachineService,
        OrderStatus,
        PartReplacement,
        ServiceStatus,
    )
    from bpiiot.chain.devnode import DevNode
    from bpiiot.chain.errors import (
        ChainError,
        ChainIdMismatch,
        ConfirmationTimeout,
        ContractError,
        FeeCapExceeded,
        InsufficientFunds,
        NodeRejected,
        NodeUnavailable,
        NonceTooLow,
        TransactionReverted,
    )
    from bpiiot.chain.factory import (
        contracts_from_config,
        node_from_config,
        sender_from_config,
        unlock_from_config,
    )
    from bpiiot.chain.fees import FeePolicy, Fees
    from bpiiot.chain.node import Node
    from bpiiot.chain.nonces import NonceJournal, open_db
    from bpiiot.chain.outbox import Outbox, OutboxConflict, OutboxEntry, OutboxSender
    from bpiiot.chain.sender import Submitted, TransactionSender, TxRequest

# Exported lazily, so importing a leaf module (errors, types) loads nothing else.
_EXPORTS = {
    "ChainError": "bpiiot.chain.errors",
    "ChainIdMismatch": "bpiiot.chain.errors",
    "ConfirmationTimeout": "bpiiot.chain.errors",
    "ContractClient": "bpiiot.chain.contracts",
    "ContractError": "bpiiot.chain.errors",
    "DevNode": "bpiiot.chain.devnode",
    "FeeCapExceeded": "bpiiot.chain.errors",
    "FeePolicy": "bpiiot.chain.fees",
    "Fees": "bpiiot.chain.fees",
    "InsufficientFunds": "bpiiot.chain.errors",
    "MachineService": "bpiiot.chain.contracts",
    "Node": "bpiiot.chain.node",
    "NodeRejected": "bpiiot.chain.errors",
    "NodeUnavailable": "bpiiot.chain.errors",
    "NonceJournal": "bpiiot.chain.nonces",
    "NonceTooLow": "bpiiot.chain.errors",
    "OrderStatus": "bpiiot.chain.contracts",
    "Outbox": "bpiiot.chain.outbox",
    "OutboxConflict": "bpiiot.chain.outbox",
    "OutboxEntry": "bpiiot.chain.outbox",
    "OutboxSender": "bpiiot.chain.outbox",
    "PartReplacement": "bpiiot.chain.contracts",
    "ServiceStatus": "bpiiot.chain.contracts",
    "Submitted": "bpiiot.chain.sender",
    "TransactionReverted": "bpiiot.chain.errors",
    "TransactionSender": "bpiiot.chain.sender",
    "TxRequest": "bpiiot.chain.sender",
    "contracts_from_config": "bpiiot.chain.factory",
    "node_from_config": "bpiiot.chain.factory",
    "open_db": "bpiiot.chain.nonces",
    "sender_from_config": "bpiiot.chain.factory",
    "unlock_from_config": "bpiiot.chain.factory",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bpiiot.chain' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ChainError",
    "ChainIdMismatch",
    "ConfirmationTimeout",
    "ContractClient",
    "ContractError",
    "DevNode",
    "FeeCapExceeded",
    "FeePolicy",
    "Fees",
    "InsufficientFunds",
    "MachineService",
    "Node",
    "NodeRejected",
    "NodeUnavailable",
    "NonceJournal",
    "NonceTooLow",
    "OrderStatus",
    "Outbox",
    "OutboxConflict",
    "OutboxEntry",
    "OutboxSender",
    "PartReplacement",
    "ServiceStatus",
    "Submitted",
    "TransactionReverted",
    "TransactionSender",
    "TxRequest",
    "contracts_from_config",
    "node_from_config",
    "open_db",
    "sender_from_config",
    "unlock_from_config",
]
