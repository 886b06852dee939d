"""A JSON-RPC Ethereum node reached by URL, with its errors turned into :mod:`chain.errors`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from eth_abi.abi import decode as abi_decode
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration
from web3.types import TxReceipt

from bpiiot.chain.errors import (
    AlreadyKnown,
    ChainIdMismatch,
    InsufficientFunds,
    NodeRejected,
    NodeUnavailable,
    NonceTooLow,
    TransactionReverted,
)

log = logging.getLogger(__name__)

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_HARDHAT_REASON = re.compile(r"reverted with reason string '(.*)'", re.S)
_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")
# What geth, anvil and Hardhat answer to a transaction they already hold.
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")
# web3 retries failed requests by itself; a send must not be: its outcome is unknown and is
# resolved by asking the node, one request at a time (see bpiiot.chain.outbox).
_RETRY_METHODS = [m for m in REQUEST_RETRY_ALLOWLIST if m != "eth_sendRawTransaction"]


def decode_revert_data(data: bytes | str | None) -> str | None:
    """Decode ABI revert data (``Error(string)`` or ``Panic(uint256)``) into a short text."""
    if data is None:
        return None
    raw = HexBytes(data) if isinstance(data, str) else bytes(data)
    try:
        if raw[:4] == _ERROR_SELECTOR:
            return str(abi_decode(["string"], raw[4:])[0])
        if raw[:4] == _PANIC_SELECTOR:
            return f"panic 0x{abi_decode(['uint256'], raw[4:])[0]:02x}"
    except Exception:  # malformed revert data: report what we have rather than fail
        return None
    return None


def _find_revert_data(obj: Any) -> str | None:
    """Look for hex revert data anywhere in an error payload (nodes nest it differently)."""
    if isinstance(obj, str):
        m = _HEX.search(obj)
        return m.group(0) if m and obj.startswith("0x") else None
    if isinstance(obj, dict):
        for key in ("data", "originalError", "result"):
            found = _find_revert_data(obj.get(key))
            if found:
                return found
    return None


def revert_reason(exc: BaseException) -> str | None:
    """Best-effort revert string from a web3 exception of any node flavour."""
    data: Any = getattr(exc, "data", None)
    rpc = getattr(exc, "rpc_response", None)
    if rpc and isinstance(rpc, dict):
        data = data or rpc.get("error", {})
    reason = decode_revert_data(_find_revert_data(data))
    if reason is not None:
        return reason
    message = str(getattr(exc, "message", None) or exc)
    m = _HARDHAT_REASON.search(message)
    if m:
        return m.group(1)
    if "execution reverted: " in message:
        return message.split("execution reverted: ", 1)[1].strip()
    return None


def _rpc_error(exc: Web3RPCError) -> tuple[int | None, str, dict[str, Any]]:
    error: dict[str, Any] = {}
    if isinstance(exc.rpc_response, dict):
        error = dict(exc.rpc_response.get("error") or {})
    code = error.get("code")
    message = str(error.get("message") or exc.message)
    return (int(code) if isinstance(code, int) else None), message, error


def _refused(exc: BaseException) -> bool:
    """True if the connection was refused, i.e. nothing was sent."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Node:
    """One Ethereum node. ``expected_chain_id`` is checked by :meth:`connect`."""

    def __init__(self, url: str, *, expected_chain_id: int | None = None, timeout: float = 10.0):
        self.url = url
        self.expected_chain_id = expected_chain_id
        retry = ExceptionRetryConfiguration(
            errors=(ConnectionError, requests.HTTPError, requests.Timeout),  # web3 default
            method_allowlist=_RETRY_METHODS,
        )
        self.w3 = Web3(
            HTTPProvider(
                url, request_kwargs={"timeout": timeout}, exception_retry_configuration=retry
            )
        )
        self._chain_id: int | None = None

    def __repr__(self) -> str:
        return f"Node({self.url!r})"

    @contextmanager
    def rpc(self, what: str, *, tx_hash: str | None = None) -> Iterator[None]:
        """Run web3 calls, translating transport and node errors into chain errors."""
        try:
            yield
        except (requests.ConnectionError, requests.Timeout, ProviderConnectionError, OSError) as e:
            # A refused connection means the request never left; a timeout or a connection
            # dropped while waiting for the answer means it may have been delivered.
            delivered = not isinstance(e, requests.ConnectTimeout) and not _refused(e)
            raise NodeUnavailable(
                f"Ethereum node at {self.url} is not reachable ({what}): {type(e).__name__}",
                delivered=delivered,
            ) from e
        except ContractLogicError as e:
            raise TransactionReverted(revert_reason(e), stage=what, tx_hash=tx_hash) from e
        except Web3RPCError as e:
            code, message, error = _rpc_error(e)
            lower = message.lower()
            if "revert" in lower:
                data = error.get("data")
                mined = data.get("txHash") if isinstance(data, dict) else None
                raise TransactionReverted(
                    revert_reason(e), stage=what, tx_hash=mined or tx_hash
                ) from e
            if "insufficient funds" in lower:
                raise InsufficientFunds(f"insufficient funds ({what}): {message}", code=code) from e
            if any(text in lower for text in _ALREADY_KNOWN):
                raise AlreadyKnown(f"node already has it ({what}): {message}", code=code) from e
            if "nonce too low" in lower:
                raise NonceTooLow(f"nonce too low ({what}): {message}", code=code) from e
            raise NodeRejected(f"node refused {what}: {message}", code=code) from e

    def connect(self) -> int:
        """Read the chain id, check it against the expected one and return it."""
        with self.rpc("eth_chainId"):
            chain_id = int(self.w3.eth.chain_id)
        if self.expected_chain_id is not None and chain_id != self.expected_chain_id:
            raise ChainIdMismatch(
                f"node at {self.url} serves chain id {chain_id}, but the config says "
                f"{self.expected_chain_id}: fix [chain] chain_id or node_url"
            )
        self._chain_id = chain_id
        return chain_id

    @property
    def chain_id(self) -> int:
        """Chain id of the node (read once, by :meth:`connect` if not yet done)."""
        return self._chain_id if self._chain_id is not None else self.connect()

    def base_fee(self) -> int | None:
        """Base fee of the latest block, or None where the node has no EIP-1559."""
        with self.rpc("eth_getBlockByNumber"):
            block = self.w3.eth.get_block("latest")
        fee = block.get("baseFeePerGas")
        return int(fee) if fee is not None else None

    def max_priority_fee(self) -> int:
        """The node's suggested tip (eth_maxPriorityFeePerGas)."""
        with self.rpc("eth_maxPriorityFeePerGas"):
            return int(self.w3.eth.max_priority_fee)

    def gas_price(self) -> int:
        """The node's legacy gas price (eth_gasPrice)."""
        with self.rpc("eth_gasPrice"):
            return int(self.w3.eth.gas_price)

    def nonce(self, address: str, block: str | int = "pending") -> int:
        """Transaction count of ``address`` at ``block`` ("pending", "latest" or a number)."""
        with self.rpc("eth_getTransactionCount"):
            return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), block))  # type: ignore[arg-type]

    def balance(self, address: str) -> int:
        """Balance of ``address`` in wei."""
        with self.rpc("eth_getBalance"):
            return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def block_number(self) -> int:
        """Number of the latest block."""
        with self.rpc("eth_blockNumber"):
            return int(self.w3.eth.block_number)

    def estimate_gas(self, tx: dict[str, Any]) -> int:
        """eth_estimateGas; a revert raises :class:`TransactionReverted` (stage "estimate")."""
        with self.rpc("estimate"):
            return int(self.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]

    def send_raw(self, raw: bytes, tx_hash: str) -> str:
        """eth_sendRawTransaction; returns the hash the node reports."""
        with self.rpc("send", tx_hash=tx_hash):
            return HexBytes(self.w3.eth.send_raw_transaction(raw)).to_0x_hex()

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        """Receipt of a mined transaction, or None if it is not mined (or unknown)."""
        with self.rpc("eth_getTransactionReceipt"):
            try:
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None

    def knows(self, tx_hash: str) -> bool:
        """True if the node has the transaction (pending or mined)."""
        with self.rpc("eth_getTransactionByHash"):
            try:
                self.w3.eth.get_transaction(HexBytes(tx_hash))
                return True
            except TransactionNotFound:
                return False

    def replay_reason(self, tx: dict[str, Any], block: int) -> str | None:
        """Re-run a transaction with eth_call at ``block`` to learn its revert reason."""
        try:
            with self.rpc("mined"):
                self.w3.eth.call(tx, block)  # type: ignore[arg-type]
        except TransactionReverted as e:
            return e.reason
        return None
