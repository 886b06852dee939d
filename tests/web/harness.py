"""TEST HARNESS: a real-parts stand-in for ``bpiiot.service.Service``, served by uvicorn.

Not the service: just enough of it, built from real parts, to drive the device manager in
tests. Each board is the MicroPython firmware in the Unix port on a pty (tools/board_host),
connected with the SDK and attached to a real :class:`~bpiiot.bus.Bus`; reports go to a
small SQLite store; rules live in a real TOML file, replaced atomically under a version;
a deliberately tiny rule engine (threshold on a feature for N windows) opens incidents and
queues ``MachineService.requestService`` in a real :class:`~bpiiot.chain.outbox.Outbox`,
drained to a real anvil node by :class:`~bpiiot.chain.outbox.OutboxSender`.

Run as ``python -m tests.web.harness --state DIR --port N [...]``: prints ``READY <url>``
on stdout once the server accepts connections. The test fixtures start it and stop it by
PID (SIGTERM: uvicorn's short graceful-shutdown timeout closes open event streams).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import signal
import sqlite3
import sys
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from board_host import FIRMWARE_SRC, BoardHost  # noqa: E402

import bpiiot  # noqa: E402
from bpiiot import messages as m  # noqa: E402
from bpiiot.board import Board  # noqa: E402
from bpiiot.bus import Bus, Event, FrameEvent, Listener  # noqa: E402
from bpiiot.files import write_private  # noqa: E402
from bpiiot.link import Link  # noqa: E402
from bpiiot.messages import Hello, Report  # noqa: E402
from bpiiot.web.service_api import EditConflict, RuleValidationError  # noqa: E402

log = logging.getLogger("harness")

METRICS = ("vel_rms_um_s", "acc_rms_mg", "acc_peak_mg")
RULE_FIELDS = {
    "name": str,
    "enabled": bool,
    "board": str,
    "metric": str,
    "threshold": int,
    "windows": int,
    "fault_code": int,
}


def sine_signal(amp_mg: int, freq_hz: int = 80) -> dict[str, Any]:
    """A sine on x only: velocity RMS about amp * 9.81 / (2 pi f) / sqrt 2 (mm/s)."""
    return {"kind": "sine", "x": [[freq_hz, amp_mg]], "y": [], "z": []}


# -- boards --------------------------------------------------------------------------


@dataclass
class HarnessBoard:
    """One board as the harness holds it (the BoardHandle protocol)."""

    board: Board
    host: BoardHost

    @property
    def link(self) -> Link:
        return self.board.link

    @property
    def hello(self) -> Hello | None:
        return self.board.hello

    @property
    def connected(self) -> bool:
        return self.board.link.connected


def start_board(state: Path, name: str, signal_cfg: dict[str, Any]) -> HarnessBoard:
    """Copy the firmware to ``state/<name>-fs``, give it ``signal_cfg``, boot it, connect."""
    fs = state / f"{name}-fs"
    if not fs.exists():
        shutil.copytree(FIRMWARE_SRC, fs, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = {"board_id": name, "sensor": {"accel": "signal", "signal": signal_cfg}}
    (fs / "bpiiot.json").write_text(json.dumps(cfg))
    host = BoardHost(fs, log_path=state / f"{name}-firmware.log")
    port = host.start()
    try:
        board = bpiiot.connect(port, timeout_s=5.0)
    except BaseException:
        host.stop()
        raise
    return HarnessBoard(board, host)


# -- store ---------------------------------------------------------------------------


class Store(Listener):
    """Reports in SQLite (the Store protocol), and the incidents the rule engine opened."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS reports (board TEXT, received REAL, payload TEXT)"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS reports_t ON reports (board, received)")
        self._lock = threading.Lock()
        self._incidents: list[dict[str, Any]] = []

    def on_frame(self, item: FrameEvent) -> None:
        if isinstance(item.frame.message, Report):
            self.add(item.board, item.received, item.frame.message)

    def add(self, board: str, received: float, rep: Report) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO reports VALUES (?,?,?)",
                (board, received, json.dumps(rep.to_payload())),
            )
            self._conn.commit()

    def add_many(self, rows: Sequence[tuple[str, float, Report]]) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT INTO reports VALUES (?,?,?)",
                [(b, t, json.dumps(r.to_payload())) for b, t, r in rows],
            )
            self._conn.commit()

    def reports_since(self, board: str, since: float) -> list[tuple[float, Report]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT received, payload FROM reports WHERE board=? AND received>=? "
                "ORDER BY received",
                (board, since),
            ).fetchall()
        return [(t, Report.from_payload(json.loads(p))) for t, p in rows]

    def open_incident(self, inc: dict[str, Any]) -> None:
        with self._lock:
            self._incidents.append(inc)

    def incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            out = [dict(i) for i in reversed(self._incidents[-limit:])]
        for inc in out:
            inc["evidence_ok"] = evidence_hash(inc["payloads"]) == inc["evidence_hash"]
            del inc["payloads"]
        return out


def evidence_hash(payloads: Sequence[str]) -> str:
    """SHA-256 over the CBOR payloads (hex) of the frames behind an incident."""
    h = hashlib.sha256()
    for p in payloads:
        h.update(bytes.fromhex(p))
    return "0x" + h.hexdigest()


# -- rules ---------------------------------------------------------------------------


def _toml(rules: list[dict[str, Any]]) -> str:
    lines = ["# bpiiot test harness rules (written by the device manager)\n"]
    for r in rules:
        lines.append("[[rules]]\n")
        for k, v in r.items():
            lines.append(f"{k} = {json.dumps(v)}\n")
        lines.append("\n")
    return "".join(lines)


def validate(rules: list[dict[str, Any]], boards: Sequence[str]) -> list[dict[str, Any]]:
    """Check every rule and field; raise RuleValidationError naming each bad field."""
    errors: dict[str, str] = {}
    names: set[str] = set()
    for i, r in enumerate(rules):
        for k in r:
            if k not in RULE_FIELDS:
                errors[f"{i}.{k}"] = "unknown field"
        for k, typ in RULE_FIELDS.items():
            v = r.get(k)
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                errors[f"{i}.{k}"] = f"required ({typ.__name__})"
        if f"{i}.name" not in errors:
            if not r["name"].strip():
                errors[f"{i}.name"] = "a rule needs a name"
            elif r["name"] in names:
                errors[f"{i}.name"] = "another rule has this name"
            names.add(r["name"])
        if f"{i}.board" not in errors and r["board"] not in boards:
            errors[f"{i}.board"] = f"no board named {r['board']!r}; boards: {', '.join(boards)}"
        if f"{i}.metric" not in errors and r["metric"] not in METRICS:
            errors[f"{i}.metric"] = f"one of {', '.join(METRICS)}"
        if f"{i}.threshold" not in errors and not 1 <= r["threshold"] <= 65535:
            errors[f"{i}.threshold"] = "from 1 to 65535"
        if f"{i}.windows" not in errors and not 1 <= r["windows"] <= 3600:
            errors[f"{i}.windows"] = "from 1 to 3600 windows"
        if f"{i}.fault_code" not in errors and not 0 <= r["fault_code"] <= 65535:
            errors[f"{i}.fault_code"] = "from 0 to 65535"
    if errors:
        raise RuleValidationError(errors)
    return [dict(r) for r in rules]


class RuleBook(Listener):
    """Rules in a TOML file, versioned by content hash; a minimal engine applies them."""

    def __init__(self, path: Path, service: HarnessService) -> None:
        self.path = path
        self.service = service
        self._lock = threading.Lock()
        raw = path.read_bytes()
        self._rules: list[dict[str, Any]] = tomllib.loads(raw.decode()).get("rules", [])
        self._version = hashlib.sha256(raw).hexdigest()[:16]
        self._state: dict[str, str] = {}
        self._run: dict[str, list[str]] = {}  # rule -> payloads of the current excursion
        self._next_incident = 1

    def current(self) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            return [dict(r) for r in self._rules], self._version

    def states(self) -> Mapping[str, str]:
        with self._lock:
            return {r["name"]: self._state.get(r["name"], "inactive") for r in self._rules}

    def replace_rules(self, rules: list[dict[str, Any]], expected_version: str) -> str:
        checked = validate(rules, list(self.service.boards))
        with self._lock:
            if expected_version != self._version:
                raise EditConflict(
                    "the rules were changed by someone else since you loaded them "
                    f"(version {expected_version or '?'} is now {self._version}); reload"
                )
            text = _toml(checked)
            write_private(self.path, text)
            self._rules = checked
            self._version = hashlib.sha256(text.encode()).hexdigest()[:16]
            self._state = {}
            self._run = {}
            return self._version

    def preview(self, rule: dict[str, Any], since: float) -> list[dict[str, Any]]:
        """Replay ``rule`` over the stored reports of its board (the same counting as live)."""
        (rule,) = validate([rule], list(self.service.boards))
        fired: list[dict[str, Any]] = []
        run = 0
        for t, rep in self.service.store.reports_since(rule["board"], since):
            if not rep.representative:
                continue
            value = max(getattr(rep, rule["metric"]))
            if value < rule["threshold"]:
                run = 0
                continue
            run += 1
            if run == rule["windows"]:
                fired.append({"time": t, "window_seq": rep.window_seq, "value": value})
        return fired

    def on_frame(self, item: FrameEvent) -> None:
        rep = item.frame.message
        if not isinstance(rep, Report) or not rep.representative:
            return
        with self._lock:
            rules = [r for r in self._rules if r["enabled"] and r["board"] == item.board]
        for r in rules:
            value = max(getattr(rep, r["metric"]))
            name = r["name"]
            if value >= r["threshold"]:
                run = self._run.setdefault(name, [])
                run.append(item.frame.payload.hex())
                if self._state.get(name) == "firing":
                    continue
                state = "firing" if len(run) >= r["windows"] else "pending"
                self._state[name] = state
                self.service.bus.publish_event(
                    "rule", {"rule": name, "state": state, "value": value,
                             "window_seq": rep.window_seq}, item.board)  # fmt: skip
                if state == "firing":
                    self._fire(r, item.board, run)
            elif self._state.get(name, "inactive") != "inactive":
                self._state[name] = "inactive"
                self._run.pop(name, None)
                self.service.bus.publish_event(
                    "rule", {"rule": name, "state": "resolved", "value": value,
                             "window_seq": rep.window_seq}, item.board)  # fmt: skip

    def _fire(self, rule: dict[str, Any], board: str, payloads: list[str]) -> None:
        inc_id = self._next_incident
        self._next_incident += 1
        ev = evidence_hash(payloads)
        key = f"{rule['name']}:{board}:{inc_id}"
        frames = []
        for p in payloads:
            rep = Report.from_payload(cbor2.loads(bytes.fromhex(p)))
            frames.append(
                {"received": time.time(), "window_seq": rep.window_seq,
                 "vel_rms_um_s": list(rep.vel_rms_um_s), "flags": m.ReportFlag.names(rep.flags)}
            )  # fmt: skip
        self.service.store.open_incident(
            {"id": inc_id, "rule": rule["name"], "board": board, "state": "open",
             "opened": time.time(), "closed": None, "key": key, "evidence_hash": ev,
             "frames": frames, "payloads": list(payloads)}
        )  # fmt: skip
        self.service.bus.publish_event(
            "incident", {"id": inc_id, "rule": rule["name"], "state": "open", "key": key,
                         "evidence_hash": ev}, board)  # fmt: skip
        self.service.outbox.enqueue(
            key, "MachineService", "requestService", [bytes.fromhex(ev[2:]), rule["fault_code"]]
        )


# -- chain ---------------------------------------------------------------------------


class Chain:
    """anvil, the machine's wallet, a deployed MachineService and the outbox drain."""

    def __init__(self, db: sqlite3.Connection, outbox: Any, bus: Bus) -> None:
        import secrets

        from bpiiot.chain.contracts import MachineService
        from bpiiot.chain.devnode import DevNode
        from bpiiot.chain.fees import FeePolicy
        from bpiiot.chain.node import Node
        from bpiiot.chain.nonces import NonceJournal
        from bpiiot.chain.outbox import OutboxSender
        from bpiiot.chain.sender import TransactionSender
        from bpiiot.wallet import LocalSigner

        self.dev = DevNode("anvil").start()
        try:
            self.signer = LocalSigner(secrets.token_bytes(32))
            self.dev.set_balance(self.signer.address, 10 * 10**18)
            self.node = Node(self.dev.url, expected_chain_id=self.dev.chain_id)
            self.node.connect()
            # The nonce journal shares the outbox's database (one transaction per incident).
            self.sender = TransactionSender(
                self.node,
                self.signer,
                NonceJournal(db, self.node.chain_id, self.signer.address),
                FeePolicy(cache_s=0),
                poll_s=0.05,
            )
            self.sender.start()
            vendor = LocalSigner(secrets.token_bytes(32)).address
            self.service = MachineService.deploy_for(self.sender, self.signer.address, vendor)
            self.drain = OutboxSender(
                outbox, self.sender, {MachineService.NAME: self.service.with_sender(self.sender)}
            )
        except BaseException:
            self.dev.stop()  # a failed start leaves no node behind
            raise
        self.outbox = outbox
        self.bus = bus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="outbox")
        self._thread.start()

    def _run(self) -> None:
        seen: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                self.drain.drain_once()
            except Exception:
                log.exception("outbox drain failed")
            for e in self.outbox.entries():
                if seen.get(e.key) != e.state:
                    seen[e.key] = e.state
                    self.bus.publish_event(
                        "tx", {"key": e.key, "contract": e.contract, "function": e.function,
                               "state": e.state, "tx_hash": e.tx_hashes[-1] if e.tx_hashes
                               else None, "nonce": e.nonce, "block": e.block_number,
                               "error": e.last_error})  # fmt: skip
            self._stop.wait(0.2)

    def status(self) -> dict[str, Any]:
        try:
            w3 = self.node.w3
            balance = int(w3.eth.get_balance(self.signer.address))
            block = int(w3.eth.block_number)
            connected = True
        except Exception:
            balance, block, connected = None, None, False  # type: ignore[assignment]
        return {
            "address": self.signer.address,
            "balance_wei": balance,
            "node": {"url": self.dev.url, "connected": connected,
                     "chain_id": self.node.chain_id, "block": block},
            "contracts": {"MachineService": self.service.address},
        }  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.dev.stop()


# -- the service -----------------------------------------------------------------------


class HarnessService:
    """The test harness's Service: real bus, boards, outbox and config file; minimal rest."""

    def __init__(
        self,
        state: Path,
        signal_cfg: dict[str, Any],
        *,
        chain: bool,
        boards: Sequence[str] = ("mill",),
    ) -> None:
        from bpiiot.chain.nonces import open_db
        from bpiiot.chain.outbox import Outbox

        self.state = state
        self.bus = Bus()
        self.store = Store(state / "reports.sqlite")
        db = open_db(state / "chain.sqlite")
        self.outbox = Outbox(db)
        self.boards: dict[str, HarnessBoard] = {}
        self.bus.subscribe(self.store, name="store")
        self.rules = RuleBook(state / "rules.toml", self)
        self.bus.subscribe(self.rules, name="rules")
        self.chain = Chain(db, self.outbox, self.bus) if chain else None
        try:
            for name in boards:
                b = start_board(state, name, signal_cfg)
                self.boards[name] = b
                self.bus.attach(name, b.link)
        except BaseException:
            self.close()  # nothing started here may outlive a failed start
            raise
        self._stats_stop = threading.Event()
        threading.Thread(target=self._stats, daemon=True).start()

    def _stats(self) -> None:
        while not self._stats_stop.wait(1.0):
            for name, b in self.boards.items():
                self.bus.publish_event(
                    "link_stats", {**b.link.stats.as_dict(), "bus": self.bus.stats()}, name
                )

    def status(self) -> dict[str, Any]:
        return {
            "boards": {n: {"connected": b.connected} for n, b in self.boards.items()},
            "bus": self.bus.stats(),
            "chain": self.chain.status() if self.chain else {},
        }

    def save_link_key(self, board: str, key: bytes) -> None:
        write_private(self.state / f"{board}.key", key.hex() + "\n")
        log.info("link key of %s saved to %s", board, self.state / f"{board}.key")

    def close(self) -> None:
        self._stats_stop = getattr(self, "_stats_stop", threading.Event())
        self._stats_stop.set()
        self.bus.close(2.0)
        for b in self.boards.values():
            b.board.close()
            b.host.stop()
        if self.chain is not None:
            self.chain.stop()


class _Events(Listener):
    """Logs every service event (so the tests can check that no secret reaches a log)."""

    def on_event(self, event: Event) -> None:
        if event.kind != "link_stats":
            log.info("event %s", json.dumps(event.to_dict()))


def prefill(store: Store, boards: Sequence[str], days: float) -> None:
    """Store ``days`` of one-per-second reports per board, ending now (for the bench)."""
    now = time.time()
    n = int(days * 86400)
    for board in boards:
        batch: list[tuple[str, float, Report]] = []
        for i in range(n):
            v = 600 + (i * 37) % 900
            flags = m.ReportFlag.SETTLING if i % 500 == 250 else 0
            rep = Report(i, i * 1000, 3200, (35, 3, 1000), (50, 5, 1000), (v, 40, 0), 3500, flags)
            batch.append((board, now - n + i, rep))
            if len(batch) == 50000:
                store.add_many(batch)
                batch = []
        store.add_many(batch)


def default_rules() -> list[dict[str, Any]]:
    """One rule, set far too high to fire until a test edits it."""
    return [
        {"name": "vibration-high", "enabled": True, "board": "mill", "metric": "vel_rms_um_s",
         "threshold": 60000, "windows": 2, "fault_code": 7},
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="device manager test harness")
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--password-file", type=Path)
    ap.add_argument("--login-window", type=float, default=60.0)
    ap.add_argument("--session-ttl", type=float, default=12 * 3600.0)
    ap.add_argument("--amp", type=int, default=50, help="sine amplitude on x, mg")
    ap.add_argument("--no-chain", action="store_true")
    ap.add_argument("--boards", default="mill", help="comma-separated board names")
    ap.add_argument(
        "--prefill-days", type=float, default=0.0, help="store this many days of 1 Hz reports first"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from bpiiot.web import Auth
    from bpiiot.web.server import WebComponent

    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True)
    rules = state / "rules.toml"
    if not rules.exists():
        write_private(rules, _toml(default_rules()))
    # As in `bpiiot run --web`: the service owns the signals, the web is one component.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service: HarnessService | None = None
    web: WebComponent | None = None
    try:
        names = args.boards.split(",")
        if args.prefill_days:
            prefill(Store(state / "reports.sqlite"), names, args.prefill_days)
        service = HarnessService(
            state, sine_signal(args.amp), chain=not args.no_chain, boards=names
        )
        service.bus.subscribe(_Events(), name="event-log")
        auth = (
            Auth.with_password_file(
                args.password_file,
                login_window_s=args.login_window,
                session_ttl_s=args.session_ttl,
            )
            if args.password_file
            else Auth.local()
        )
        web = WebComponent(port=args.port, auth=auth)
        web.start(service)
        print(f"READY {web.url}", flush=True)
        stop.wait()
        log.info("stopping")
    finally:
        if web is not None:
            web.stop()
        if service is not None:
            service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
