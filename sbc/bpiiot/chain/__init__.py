"""The chain layer: signed transactions to an external Ethereum node, and the two agreements.

Data flow: rules enqueue intended calls into the :class:`~bpiiot.chain.outbox.Outbox`; the
:class:`~bpiiot.chain.outbox.OutboxSender` drains it through a
:class:`~bpiiot.chain.sender.TransactionSender`, which takes nonces from the SDK's
:class:`~bpiiot.chain.nonces.NonceJournal`, fees from the
:class:`~bpiiot.chain.fees.FeePolicy`, signs with the wallet's signer and hands the signed
bytes to the :class:`~bpiiot.chain.node.Node`.
"""
