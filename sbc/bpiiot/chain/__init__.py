"""The chain layer: signed transactions to an external Ethereum node, and the two agreements.

Data flow: rules enqueue intended calls into the :class:`~bpiiot.chain.outbox.Outbox`; the
:class:`~bpiiot.chain.outbox.OutboxSender` drains it through a
:class:`~bpiiot.chain.sender.TransactionSender`, which takes nonces from the SDK's
:class:`~bpiiot.chain.nonces.NonceJournal`, fees from the
:class:`~bpiiot.chain.fees.FeePolicy`, signs with the wallet's signer and hands the signed
bytes to the :class:`~bpiiot.chain.node.Node`.
"""

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
