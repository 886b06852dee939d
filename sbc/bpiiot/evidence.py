"""Evidence: the hash that ties an on-chain request to the exact verified frames behind it.

The canonical form is defined in ``protocol/EVIDENCE.md``::

    evidence_hash = SHA-256( b"BPIIOT-EVIDENCE-1\\x00"
                             || for each frame, in the order received:
                                u32_be(len(body)) || body )

where ``body`` is a frame as it was on the wire after COBS decoding: header, payload,
tag (when present) and CRC-32. Because the bodies are kept byte for byte, anyone holding
them can recompute the hash and re-check every frame's CRC (and tag, with the board's
key) long after the fact. A bundle (:func:`export_bundle`) is a JSON document holding the
bodies, the incident and the transaction; :func:`verify_bundle` checks it offline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cobs.cobs as cobs_mod

from bpiiot import wire
from bpiiot.errors import BpiiotError

DOMAIN = b"BPIIOT-EVIDENCE-1\x00"
"""Domain separation prefix of the evidence hash (version 1)."""

BUNDLE_FORMAT = "bpiiot-evidence-bundle/1"


class EvidenceError(BpiiotError):
    """Evidence could not be found, read or checked (the message says which part)."""


def evidence_hash(bodies: Iterable[bytes]) -> bytes:
    """The 32-byte evidence hash over frame ``bodies`` in order (see the module docstring)."""
    h = hashlib.sha256(DOMAIN)
    for body in bodies:
        h.update(len(body).to_bytes(4, "big"))
        h.update(body)
    return h.digest()


def body_of(encoded: bytes) -> bytes:
    """The frame body (COBS decoded, header through CRC) of one encoded frame."""
    try:
        return bytes(cobs_mod.decode(bytes(encoded).rstrip(b"\0")))
    except cobs_mod.DecodeError as exc:
        raise EvidenceError(f"not a COBS frame: {exc}") from None


@dataclass
class FrameCheck:
    """The verdict on one stored frame."""

    index: int
    session: int
    seq: int
    crc_ok: bool
    tagged: bool
    tag_ok: bool | None
    """True/False when a key was given and the frame is tagged; None when not checked."""
    message: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """CRC good, decodable, and the tag good when it was checked."""
        return self.crc_ok and self.error is None and self.tag_ok is not False


@dataclass
class Verdict:
    """The result of checking a set of evidence frames against an expected hash."""

    expected: str
    computed: str
    frames: list[FrameCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the hash matches and every frame checks out."""
        return (
            self.expected == self.computed
            and not self.problems
            and all(f.ok for f in self.frames)
            and bool(self.frames)
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "ok": self.ok,
            "expected": self.expected,
            "computed": self.computed,
            "frames": [
                {
                    "index": f.index,
                    "session": f.session,
                    "seq": f.seq,
                    "crc_ok": f.crc_ok,
                    "tagged": f.tagged,
                    "tag_ok": f.tag_ok,
                    "error": f.error,
                    "message": f.message,
                }
                for f in self.frames
            ],
            "problems": self.problems,
        }


def check_frame(index: int, body: bytes, key: bytes | None) -> FrameCheck:
    """Re-verify one stored body: CRC, header, schema, and the tag when ``key`` is given."""
    if len(body) < wire.MIN_BODY:
        return FrameCheck(index, 0, 0, False, False, None, error="truncated body")
    crc_ok = zlib.crc32(body) == wire.CRC_RESIDUE
    vf, _type, session, seq = wire.HEADER.unpack_from(body)
    tagged = bool(vf & wire.FLAG_AUTH)
    end = len(body) - wire.CRC_LEN - (wire.TAG_LEN if tagged else 0)
    tag_ok: bool | None = None
    if tagged and key is not None:
        tag = hmac.new(wire.check_key(key) or b"", body[:end], hashlib.sha256)
        tag_ok = tag.digest()[: wire.TAG_LEN] == body[end : end + wire.TAG_LEN]
    check = FrameCheck(index, session, seq, crc_ok, tagged, tag_ok)
    try:
        # A fresh verifier checks version, direction, type and schema exactly as the link did.
        verifier = wire.FrameVerifier("host", key if tagged else None)
        frame = verifier.verify(cobs_mod.encode(body))
        check.message = frame.message.to_dict()
    except wire.FrameError as exc:
        if exc.reason not in ("crc", "mac"):
            check.error = str(exc)
    return check


def verify_frames(
    bodies: Sequence[bytes], expected: bytes | str, key: bytes | None = None
) -> Verdict:
    """Recompute the hash of ``bodies`` and re-verify each; compare with ``expected``."""
    exp = expected if isinstance(expected, str) else "0x" + expected.hex()
    exp = exp.lower() if exp.startswith("0x") else "0x" + exp.lower()
    verdict = Verdict(exp, "0x" + evidence_hash(bodies).hex())
    for i, body in enumerate(bodies):
        verdict.frames.append(check_frame(i, body, key))
    if not bodies:
        verdict.problems.append("no frames")
    if verdict.expected != verdict.computed:
        verdict.problems.append("the hash of the stored frames differs from the expected hash")
    return verdict


def export_bundle(
    incident: dict[str, Any], bodies: Sequence[bytes], tx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A self-contained JSON-friendly bundle: incident, frame bodies (hex), transaction."""
    return {
        "format": BUNDLE_FORMAT,
        "hash": "sha256 over DOMAIN || (u32_be(len) || body)* (protocol/EVIDENCE.md)",
        "incident": incident,
        "evidence_hash": incident.get("evidence_hash"),
        "frames": [b.hex() for b in bodies],
        "transaction": tx,
    }


def load_bundle(text: str) -> dict[str, Any]:
    """Parse a bundle file's text; raises :class:`EvidenceError` if it is not one."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise EvidenceError(f"not a JSON bundle: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise EvidenceError(f"not an evidence bundle (format must be {BUNDLE_FORMAT!r})")
    return doc


def verify_bundle(doc: dict[str, Any], key: bytes | None = None) -> Verdict:
    """Check a bundle offline: the frames' hash against the bundle's evidence hash, and
    against the hash in the transaction's input when the bundle carries it."""
    try:
        bodies = [bytes.fromhex(h) for h in doc["frames"]]
        expected = str(doc["evidence_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceError(f"bundle is missing or has a malformed field: {exc}") from None
    verdict = verify_frames(bodies, expected, key)
    tx = doc.get("transaction") or {}
    on_chain = tx.get("evidence_hash")
    if on_chain is not None and str(on_chain).lower() != verdict.computed:
        verdict.problems.append("the transaction's evidence hash differs from the frames' hash")
    return verdict


def tx_evidence(config: Any, tx_hash: str) -> dict[str, Any]:
    """Read transaction ``tx_hash`` from the configured node, decode its evidence hash, find
    the incident in the configured store and return a bundle (see :func:`export_bundle`).

    ``config`` is a loaded :class:`bpiiot.config.Config`. Raises :class:`EvidenceError`
    when the transaction is not a call of the configured agreements or no incident matches.
    """
    from hexbytes import HexBytes
    from web3.exceptions import TransactionNotFound

    from bpiiot.chain.contracts import BINDINGS, load_artifact
    from bpiiot.chain.factory import node_from_config
    from bpiiot.controller import store_from_config

    node = node_from_config(config.chain)
    node.connect()
    w3 = node.w3
    try:
        with node.rpc("eth_getTransactionByHash"):
            tx = w3.eth.get_transaction(HexBytes(tx_hash))
        with node.rpc("eth_getTransactionReceipt"):
            receipt = w3.eth.get_transaction_receipt(HexBytes(tx_hash))
    except TransactionNotFound:
        raise EvidenceError(f"transaction {tx_hash} is not known to {node.url}") from None
    to = str(tx.get("to") or "").lower()
    addresses = {
        "MachineService": config.chain.machine_service.lower(),
        "PartReplacement": config.chain.part_replacement.lower(),
    }
    name = next((n for n, a in addresses.items() if a and a == to), None)
    if name is None or name not in BINDINGS:
        raise EvidenceError(f"transaction {tx_hash} does not call the configured agreements")
    contract = w3.eth.contract(address=tx["to"], abi=load_artifact(name).abi)
    func, args = contract.decode_function_input(tx["input"])
    if "evidenceHash" not in args:
        raise EvidenceError(f"{name}.{func.fn_name} carries no evidence hash")
    on_chain = "0x" + bytes(args["evidenceHash"]).hex()
    store = store_from_config(config)
    try:
        matches = store.incidents_by_evidence(on_chain)
        if not matches:
            raise EvidenceError(
                f"no incident in {store.path} has evidence hash {on_chain} (tx {tx_hash})"
            )
        incident = matches[0]
        bodies = [f.body for f in store.incident_frames(incident["id"])]
    finally:
        store.close()
    tx_info = {
        "hash": HexBytes(tx_hash).to_0x_hex(),
        "contract": name,
        "address": tx["to"],
        "function": func.fn_name,
        "args": {
            k: ("0x" + bytes(v).hex() if isinstance(v, bytes) else v) for k, v in args.items()
        },
        "evidence_hash": on_chain,
        "value_wei": int(tx["value"]),
        "from": tx["from"],
        "block": int(receipt["blockNumber"]),
        "status": int(receipt["status"]),
        "chain_id": node.chain_id,
    }
    return export_bundle(incident, bodies, tx_info)
