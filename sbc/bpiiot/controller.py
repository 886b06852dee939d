"""The controller: verified reports -> rules -> incidents -> evidence-backed transactions.

The paper's controller as a custom app, correct by construction::

    import bpiiot
    from bpiiot.controller import Controller
    from bpiiot.rules import Rule, above, below, temperature_c, vel_rms_mm_s

    with Controller.from_config() as ctl:            # wallet, node, contracts, outbox, drain
        ctl.add_rule(Rule("vibration", when=above(vel_rms_mm_s(), 4.5), count=5, of=10,
                          clear=below(vel_rms_mm_s(), 3.5),
                          action=ctl.request_service(fault_code=1)))
        ctl.add_rule(Rule("bearing-hot", when=above(temperature_c, 70.0), for_s=30,
                          action=ctl.order_part(part_id=7, quantity=1)))
        with bpiiot.connect("/dev/ttyACM0") as board:
            ctl.watch("press-1", board)
            for tx in ctl.transactions():            # each confirmed (or failed) call
                print(tx.function, tx.mined_hash)

What it guarantees: an incident (one firing of one rule on one board) is written with its
evidence frames before anything acts on it; its contract call goes into the outbox under
the incident's idempotency key, so a restart, a replayed frame or a rule that keeps firing
never sends a second transaction; a paid order's value is the contract's listed price times
the quantity, refused above ``[controller] max_order_value_wei``. The node may be down:
reports are still stored and rules evaluated; the calls wait in the outbox.

The controller publishes the ``rule``, ``incident``, ``tx`` and ``log`` events of
:mod:`bpiiot.bus` on its :attr:`Controller.bus`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot.board import Board
from bpiiot.bus import Bus, Event, FrameEvent, Listener
from bpiiot.chain.contracts import (
    ContractClient,
    MachineService,
    PartReplacement,
    to_bytes32,
)
from bpiiot.chain.errors import ChainError, NodeUnavailable
from bpiiot.chain.outbox import Outbox, OutboxConflict, OutboxEntry, OutboxSender
from bpiiot.chain.sender import TransactionSender
from bpiiot.errors import BpiiotError
from bpiiot.link import Link
from bpiiot.outputs import OutputDriver, OutputError
from bpiiot.rules import Action, Rule, RuleEngine, Transition
from bpiiot.store import Store
from bpiiot.wallet import Signer

log = logging.getLogger(__name__)

#: Actions that are contract calls: action kind -> (contract name, ABI function).
CHAIN_ACTIONS: dict[str, tuple[str, str]] = {
    "request_service": (MachineService.NAME, "requestService"),
    "order_part": (PartReplacement.NAME, "orderPart"),
}

#: Outbox entry states after which nothing more happens.
FINAL_STATES = ("confirmed", "failed")
#: Outbox entry states that still move ("replaced" exists in the exactly-once outbox).
OPEN_STATES = ("queued", "submitted", "replaced")


class ControllerError(BpiiotError):
    """The controller cannot do what was asked (the message says why and what to change)."""


class OrderRefused(ControllerError):
    """A paid order was not placed: part not listed, or its value above the ceiling."""


@dataclass
class ControllerConfig:
    """``[controller]``: limits and timing of the controller."""

    #: Highest value (wei) one order may pay; price x quantity above it is refused.
    max_order_value_wei: int = 10**18
    #: Seconds between outbox passes when nothing wakes the drain thread.
    drain_interval_s: float = 0.5


@dataclass
class StoreConfig:
    """``[store]``: where reports, incidents and rule state live, and for how long."""

    path: str = "~/.local/state/bpiiot/store.sqlite"
    retention_days: float = 7.0
    max_reports: int = 2_000_000


def section(cfg: config_mod.Config, name: str, cls: type[Any]) -> Any:
    """A typed section read from ``cfg.extra`` (strict keys); defaults if absent."""
    table = cfg.extra.get(name)
    if table is None:
        return cls()
    if isinstance(table, cls):
        return table
    return config_mod.build_section(cls, table, name, cfg.path or Path("config"))


def store_from_config(cfg: config_mod.Config) -> Store:
    """The :class:`Store` of ``[store]``."""
    sc: StoreConfig = section(cfg, "store", StoreConfig)
    return Store(sc.path, retention_s=sc.retention_days * 86400.0, max_reports=sc.max_reports)


class _StoreListener(Listener):
    def __init__(self, store: Store) -> None:
        self.store = store

    def on_frame(self, item: FrameEvent) -> None:
        self.store.add_report(item.board, item.frame, item.raw, item.received)


class _RulesListener(Listener):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def on_frame(self, item: FrameEvent) -> None:
        ctl = self.controller
        for t in ctl.engine.process(item.board, item.frame, item.raw, item.received):
            ctl._on_transition(t)

    def stop(self) -> None:
        self.controller.engine.save()


class Controller:
    """Rules, incidents and actions over a :class:`~bpiiot.bus.Bus` (see the module docstring).

    ``config``: the loaded config (``[chain]``, ``[wallet]``, ``[controller]``, ``[store]``);
    ``signer``: the machine's wallet (None: no chain actions, e.g. a monitoring-only box);
    ``outputs``: the driver of ``output`` actions. Nothing starts until :meth:`start`.
    """

    def __init__(
        self,
        config: config_mod.Config,
        *,
        signer: Signer | None = None,
        store: Store | None = None,
        bus: Bus | None = None,
        rules: list[Rule] | None = None,
        outputs: OutputDriver | None = None,
    ) -> None:
        self.config = config
        self.settings: ControllerConfig = section(config, "controller", ControllerConfig)
        self.signer = signer
        self.store = store or store_from_config(config)
        self.bus = bus or Bus()
        self._own_bus = bus is None
        self.engine = RuleEngine(rules or [], self.store)
        self.outputs = outputs
        self.outbox: Outbox | None = None
        self.sender: TransactionSender | None = None
        self.contracts: dict[str, ContractClient] = {}
        self.outbox_sender: OutboxSender | None = None
        self.chain_error: str | None = None
        """Why the chain side is not working right now (None when it is)."""
        self._chain_db: Any = None
        if signer is not None:
            from bpiiot.chain.nonces import open_db

            self._chain_db = open_db(Path(config.chain.state_db).expanduser())
            self.outbox = Outbox(self._chain_db)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._tx_cond = threading.Condition()
        self._tx_seen: dict[str, tuple[str, tuple[str, ...], int | None]] = {}
        self._finished: collections.deque[OutboxEntry] = collections.deque(maxlen=1000)
        self._finished_count = 0
        self._thread: threading.Thread | None = None
        self._actions = ThreadPoolExecutor(1, thread_name_prefix="bpiiot-actions")
        self._listeners: list[Listener] = []
        self._watched: dict[str, Link] = {}
        self._started = False

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        path: Path | str | None = None,
        *,
        rules: list[Rule] | None = None,
        outputs: OutputDriver | None = None,
        interactive: bool | None = False,
        bus: Bus | None = None,
    ) -> Controller:
        """Load the config (default path), unlock the wallet, open the store; started.

        Rules in the config's ``[[rule]]`` tables are added to ``rules``. The wallet's
        password comes from ``[wallet] password_env`` / ``password_file``.
        """
        from bpiiot.chain.factory import unlock_from_config
        from bpiiot.rules import rules_from_config
        from bpiiot.service import register_sections

        register_sections()  # the same file may carry [bridge] and [gpio]
        cfg = config_mod.load(path, missing_ok=False)
        signer = unlock_from_config(cfg.wallet, interactive=interactive)
        all_rules = [*rules_from_config(cfg.extra.get("rule", [])), *(rules or [])]
        ctl = cls(cfg, signer=signer, rules=all_rules, outputs=outputs, bus=bus)
        return ctl.start()

    # -- rules and actions -----------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Evaluate ``rule`` from now on (its state resumes if it ran before)."""
        self.engine.set_rules([*self.engine.rules, rule])
        return rule

    @staticmethod
    def request_service(fault_code: int) -> Action:
        """Action: ``MachineService.requestService(evidenceHash, faultCode)``."""
        return Action("request_service", fault_code=fault_code)

    @staticmethod
    def order_part(part_id: int, quantity: int = 1) -> Action:
        """Action: ``PartReplacement.orderPart(partId, quantity, evidenceHash)`` paying the
        listed price x quantity (refused above ``[controller] max_order_value_wei``)."""
        return Action("order_part", part_id=part_id, quantity=quantity)

    @staticmethod
    def output(name: str, value: int = 1) -> Action:
        """Action: drive output ``name`` (through the controller's :class:`OutputDriver`)."""
        return Action("output", output=name, value=value)

    @staticmethod
    def log(message: str = "") -> Action:
        """Action: a log line and a ``log`` event."""
        return Action("log", message=message)

    # -- boards ----------------------------------------------------------------------

    def watch(self, name: str, board: Board | Link) -> None:
        """Feed ``board``'s verified frames (under ``name``) to the store and the rules."""
        link = board.link if isinstance(board, Board) else board
        self.bus.attach(name, link)
        self._watched[name] = link

    def unwatch(self, name: str) -> None:
        """Stop feeding ``name``'s frames."""
        self.bus.detach(name)
        self._watched.pop(name, None)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Controller:
        """Subscribe the store and the rules to the bus; start the outbox drain thread."""
        if self._started:
            return self
        self._started = True
        for listener, qname in (
            (_StoreListener(self.store), "store"),
            (_RulesListener(self), "rules"),
        ):
            self.bus.subscribe(listener, name=qname, maxsize=20_000)
            self._listeners.append(listener)
        self._stop.clear()
        self._thread = threading.Thread(target=self._chain_loop, name="bpiiot-outbox", daemon=True)
        self._thread.start()
        # Incidents recorded before a crash whose output/log action never ran.
        self._actions.submit(self._recover_local_actions)
        return self

    def close(self) -> None:
        """Stop the drain thread, drain the bus's queues, save rule state, close the store."""
        if not self._started:
            return
        self._started = False
        for name in list(self._watched):
            self.unwatch(name)
        for listener in self._listeners:
            self.bus.unsubscribe(listener)
        self._listeners.clear()
        if self._own_bus:
            self.bus.close()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._actions.shutdown(wait=True)
        self.engine.save()
        self.store.close()
        if self._chain_db is not None:
            with contextlib.suppress(Exception):
                self._chain_db.close()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transitions -----------------------------------------------------------------

    def _on_transition(self, t: Transition) -> None:
        self.bus.publish_event("rule", t.event(), board=t.board)
        if t.incident is not None:
            inc = t.incident
            self.bus.publish_event(
                "incident",
                {
                    "id": inc["id"],
                    "rule": t.rule,
                    "state": "open",
                    "key": inc["key"],
                    "evidence_hash": inc["evidence_hash"],
                    "action": inc["action"],
                },
                board=t.board,
            )
            kind = inc["action"].get("kind")
            if kind in CHAIN_ACTIONS:
                self._wake.set()
            else:
                self._actions.submit(self._run_local_action, inc)
        elif t.resolved_incident is not None:
            stored = self.store.incident(t.resolved_incident)
            self.bus.publish_event(
                "incident",
                {
                    "id": t.resolved_incident,
                    "rule": t.rule,
                    "state": "resolved",
                    "key": stored["key"] if stored else None,
                    "evidence_hash": stored["evidence_hash"] if stored else None,
                },
                board=t.board,
            )

    def _run_local_action(self, inc: dict[str, Any]) -> None:
        action = inc["action"]
        kind = action.get("kind")
        try:
            if kind == "output":
                if self.outputs is None:
                    raise OutputError("no output driver configured for output actions")
                self.outputs.set(str(action["output"]), int(action.get("value", 1)))
                text = (
                    f"incident {inc['key']}: output {action['output']} = {action.get('value', 1)}"
                )
            else:
                text = f"incident {inc['key']}: {action.get('message') or 'rule fired'}"
            log.warning("%s", text)
            self.bus.publish_event(
                "log", {"level": "warning", "text": text}, board=inc.get("board")
            )
            self.store.set_action_status(inc["id"], "done")
        except BpiiotError as exc:
            log.error("incident %s: action failed: %s", inc["key"], exc)
            self.store.set_action_status(inc["id"], "error", str(exc))
            self.bus.publish_event(
                "log",
                {"level": "error", "text": f"incident {inc['key']}: {exc}"},
                board=inc.get("board"),
            )

    def _recover_local_actions(self) -> None:
        for inc in self.store.incidents_without_action():
            if inc["action"].get("kind") not in CHAIN_ACTIONS:
                self._run_local_action(inc)

    # -- chain -----------------------------------------------------------------------

    def _connect_chain(self) -> None:
        from bpiiot.chain.factory import contracts_from_config, sender_from_config

        assert self.signer is not None  # only called with a signer
        sender = sender_from_config(self.config.chain, self.signer, db=self._chain_db)
        self.contracts = contracts_from_config(self.config.chain, sender)
        assert self.outbox is not None
        self.outbox_sender = OutboxSender(self.outbox, sender, self.contracts)
        self.sender = sender
        self.chain_error = None
        log.info("chain: %s on %s, contracts %s", sender.address, sender.node.url, self.contracts)

    def _chain_loop(self) -> None:
        if self.signer is None:
            return
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self.outbox_sender is None:
                    self._connect_chain()
                    backoff = 0.5
                self._enqueue_actions()
                assert self.outbox_sender is not None
                report = self.outbox_sender.drain_once()
                self.chain_error = report.node_error
                self._publish_tx_changes()
                if report.submitted or report.confirmed:
                    continue  # follow up at once: receipts of what was just sent
            except (ChainError, BpiiotError) as exc:
                self.chain_error = str(exc)
                log.warning("chain: %s (retrying in %.1f s)", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                log.exception("outbox pass failed")
            self._wake.wait(self.settings.drain_interval_s)
            self._wake.clear()

    def _call_for(self, inc: dict[str, Any]) -> tuple[str, str, list[Any], int]:
        action = inc["action"]
        kind = action["kind"]
        contract_name, function = CHAIN_ACTIONS[kind]
        client = self.contracts.get(contract_name)
        if client is None:
            raise ControllerError(
                f"incident {inc['key']}: no {contract_name} address in [chain]; "
                "deploy the contracts (bpiiot dev up or bpiiot contracts deploy)"
            )
        evidence = to_bytes32(inc["evidence_hash"])
        if kind == "request_service":
            return contract_name, function, [evidence, int(action["fault_code"])], 0
        part_id, quantity = int(action["part_id"]), int(action.get("quantity", 1))
        assert isinstance(client, PartReplacement)
        price = client.price_of(part_id)
        if price <= 0:
            raise OrderRefused(
                f"incident {inc['key']}: part {part_id} has no listed price on "
                f"{client.address}; the supplier must setPrice first"
            )
        value = price * quantity
        ceiling = self.settings.max_order_value_wei
        if value > ceiling:
            raise OrderRefused(
                f"incident {inc['key']}: ordering {quantity} x part {part_id} costs {value} wei, "
                f"above [controller] max_order_value_wei = {ceiling}; raise it to allow this"
            )
        return contract_name, function, [part_id, quantity, evidence], value

    def _enqueue_actions(self) -> None:
        outbox = self.outbox
        assert outbox is not None
        for inc in self.store.incidents_without_action():
            if inc["action"].get("kind") not in CHAIN_ACTIONS:
                continue
            existing = outbox.get(inc["key"])
            if existing is not None and not _same_incident(existing, inc):
                # The key already names another incident's call: the store was reset while
                # the chain state was kept. Never act under a reused key.
                text = (
                    f"incident {inc['key']} not acted on: the outbox already holds "
                    f"{existing.contract}.{existing.function}{tuple(existing.args)} under that "
                    "key (was the store reset?)"
                )
                log.error("%s", text)
                self.store.set_action_status(inc["id"], "refused", text)
                self.bus.publish_event("log", {"level": "error", "text": text}, inc["board"])
                continue
            if existing is None:
                try:
                    contract, function, args, value = self._call_for(inc)
                except NodeUnavailable:
                    raise
                except ControllerError as exc:
                    log.error("%s", exc)
                    self.store.set_action_status(inc["id"], "refused", str(exc))
                    self.bus.publish_event(
                        "log", {"level": "error", "text": str(exc)}, board=inc["board"]
                    )
                    continue
                try:
                    outbox.enqueue(inc["key"], contract, function, args, value)
                except OutboxConflict as exc:
                    # The key already names another call: the store was reset while the
                    # chain state was kept. Never send under a reused key.
                    text = f"incident {inc['key']} not acted on: {exc}"
                    log.error("%s", text)
                    self.store.set_action_status(inc["id"], "refused", text)
                    self.bus.publish_event("log", {"level": "error", "text": text}, inc["board"])
                    continue
            self.store.set_action_status(inc["id"], "queued")

    def _publish_tx_changes(self) -> None:
        outbox = self.outbox
        if outbox is None:
            return
        changed = False
        # Only entries still moving, and those that just stopped: a pass costs the same
        # after ten thousand transactions as after one.
        current = {e.key: e for st in OPEN_STATES for e in outbox.entries(st)}
        for key in [k for k in self._tx_seen if k not in current]:
            gone = outbox.get(key)
            if gone is not None:
                current[key] = gone
        for e in current.values():
            state = str(getattr(e.state, "value", e.state))
            sig = (state, tuple(e.tx_hashes), e.block_number)
            if self._tx_seen.get(e.key) == sig:
                continue
            if state in FINAL_STATES:
                self._tx_seen.pop(e.key, None)
                with self._tx_cond:
                    self._finished.append(e)
                    self._finished_count += 1
            else:
                self._tx_seen[e.key] = sig
            changed = True
            tx_hash = e.mined_hash or (e.tx_hashes[-1] if e.tx_hashes else None)
            log.info(
                "tx %s %s.%s %s%s%s",
                e.key,
                e.contract,
                e.function,
                state,
                f" {tx_hash}" if tx_hash else "",
                f" in block {e.block_number}" if e.block_number is not None else "",
            )
            self.bus.publish_event(
                "tx",
                {
                    "key": e.key,
                    "contract": e.contract,
                    "function": e.function,
                    "state": state,
                    "tx_hash": e.mined_hash or (e.tx_hashes[-1] if e.tx_hashes else None),
                    "nonce": e.nonce,
                    "block": e.block_number,
                    "error": e.last_error,
                },
                board=e.key.split("/", 1)[0],
            )
        if changed:
            with self._tx_cond:
                self._tx_cond.notify_all()

    # -- awaiting --------------------------------------------------------------------

    def wait_tx(
        self, key: str, states: tuple[str, ...] = FINAL_STATES, timeout_s: float = 60.0
    ) -> OutboxEntry:
        """Wait until the outbox entry ``key`` is in one of ``states``; returns it.

        Raises :class:`TimeoutError` (a :class:`ControllerError`) on timeout.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            entry = self.outbox.get(key) if self.outbox is not None else None
            if entry is not None and str(getattr(entry.state, "value", entry.state)) in states:
                return entry
            left = deadline - time.monotonic()
            if left <= 0:
                raise TxWaitTimeout(
                    f"outbox entry {key} not {'/'.join(states)} after {timeout_s:g} s "
                    f"(now {entry.state if entry else 'not queued'}; chain: {self.chain_error})"
                )
            with self._tx_cond:
                self._tx_cond.wait(min(left, 0.2))

    def transactions(self, timeout_s: float | None = None) -> Iterator[OutboxEntry]:
        """Yield each outbox entry that becomes confirmed or failed from now on, once
        (``timeout_s`` None: forever)."""
        with self._tx_cond:
            seen = self._finished_count
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            with self._tx_cond:
                new = self._finished_count - seen
                fresh = list(self._finished)[-new:] if new > 0 else []
                seen = self._finished_count
                if not fresh:
                    self._tx_cond.wait(0.2)
            yield from fresh

    def incidents(self, **kw: Any) -> list[dict[str, Any]]:
        """Incidents from the store (newest first); see :meth:`Store.incidents`."""
        return self.store.incidents(**kw)

    def status(self) -> dict[str, Any]:
        """JSON-friendly chain side (no secret): ``address``, ``balance_wei``, ``node``
        (``url``, ``connected``, ``chain_id``, ``block``), ``node_ok``, ``error``,
        ``outbox`` (entries per state), ``contracts`` (name -> address)."""
        ok = self.sender is not None and self.chain_error is None
        node: dict[str, Any] = {
            "url": self.config.chain.node_url,
            "connected": ok,
            "chain_id": None,
            "block": None,
        }
        out: dict[str, Any] = {
            "address": self.signer.address if self.signer else None,
            "balance_wei": None,
            "node": node,
            "node_ok": ok,
            "error": self.chain_error,
            "outbox": self.outbox.counts() if self.outbox else {},
            "contracts": {k: v.address for k, v in self.contracts.items()},
        }
        if self.sender is not None and ok:
            with contextlib.suppress(ChainError):
                n = self.sender.node
                node["chain_id"] = n.chain_id
                node["block"] = n.block_number()
                out["balance_wei"] = n.balance(self.sender.address)
        return out


def _same_incident(entry: OutboxEntry, inc: dict[str, Any]) -> bool:
    """True if outbox ``entry`` is the call of incident ``inc`` (same function, its evidence)."""
    contract, function = CHAIN_ACTIONS.get(inc["action"].get("kind"), ("", ""))
    evidence = str(inc["evidence_hash"]).lower()
    args = [str(a).lower() for a in entry.args]
    return (entry.contract, entry.function) == (contract, function) and evidence in args


class TxWaitTimeout(ControllerError, TimeoutError):
    """An awaited transaction did not reach the wanted state in time."""


def events_of(bus: Bus, kinds: tuple[str, ...] = ()) -> EventQueue:
    """Subscribe a queue of ``bus``'s events (optionally only ``kinds``)."""
    q = EventQueue(bus, kinds)
    bus.subscribe(q, name="events")
    return q


class EventQueue(Listener):
    """Collects a bus's events for a custom app or a test: :meth:`get`, :meth:`wait_for`."""

    def __init__(self, bus: Bus, kinds: tuple[str, ...] = ()) -> None:
        self.bus = bus
        self.kinds = kinds
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def on_event(self, event: Event) -> None:
        """Keep ``event`` (if of a wanted kind) and wake waiters."""
        if self.kinds and event.kind not in self.kinds:
            return
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, timeout_s: float = 30.0, **match: Any) -> Event:
        """The first event whose ``kind``/``board``/data fields equal ``match``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for ev in self.events:
                    d = ev.to_dict()
                    if all(d.get(k) == v for k, v in match.items()):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TxWaitTimeout(f"no event matching {match} within {timeout_s:g} s")
                self._cond.wait(left)

    def close(self) -> None:
        """Unsubscribe."""
        self.bus.unsubscribe(self)
