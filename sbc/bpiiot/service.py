"""``bpiiot run``: the long-running service that owns the boards' ports.

Data flows one way: each board's :class:`~bpiiot.link.Link` -> the :class:`~bpiiot.bus.Bus`
-> subscribers (the store, the rules, the local socket's clients, the web page, the cloud
bridge) -> the outbox -> the signer -> the node. One process owns each port; other programs
are clients of its local socket (like gpsd), never of the port.

:class:`Service` is also what the web device manager and the bridge mount. Stable API:

- ``service.bus``: the :class:`~bpiiot.bus.Bus` (events: ``board``, ``link_stats``,
  ``rule``, ``incident``, ``tx``, ``log``; see :mod:`bpiiot.bus`).
- ``service.boards``: board name -> :class:`BoardHandle` with ``.board``
  (:class:`~bpiiot.board.Board`), ``.link``, ``.hello``, ``.connected``, ``.url``,
  ``.released``.
- ``service.store``: the :class:`~bpiiot.store.Store` (``reports(board, since)``,
  ``incidents(...)``, ``incident_frames(id)``, ``rule_states()``), and
  :meth:`Service.incident_detail` (an incident with its frames and transaction).
- ``service.rules``: :class:`RulesHandle`: ``configs()``, ``version``,
  ``replace_rules(tables, expected_version)``, ``states()``.
- ``service.outbox``: the :class:`~bpiiot.chain.outbox.Outbox`, or None without a wallet.
- ``service.controller``: the :class:`~bpiiot.controller.Controller`.
- :meth:`Service.status`: JSON-friendly boards, link stats, bus stats, chain status.
- :meth:`Service.command`, :meth:`Service.release`, :meth:`Service.resume`.
- :meth:`Service.add_component`: something started with the service and stopped before
  it (the web page, the MQTT bridge): an object with ``start(service)`` and ``stop()``.

Configuration (the one config file)::

    [[board]]
    name = "press-1"
    url = "/dev/ttyACM0"          # any pyserial URL
    key_file = "/etc/bpiiot/press-1.key"   # optional, hex, mode 0600
    outputs = { relay = 5 }       # optional output names for output actions

    [service]
    socket = "/run/bpiiot/bpiiot.sock"
    socket_mode = "0660"
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot import messages as m
from bpiiot.board import Board
from bpiiot.bus import Bus, Event, FrameEvent, Listener
from bpiiot.chain.outbox import Outbox
from bpiiot.controller import Controller, section
from bpiiot.errors import BpiiotError
from bpiiot.files import KeyFileError, read_link_key
from bpiiot.link import Link
from bpiiot.outputs import BoardOutputs
from bpiiot.rules import Rule, RuleError, rules_from_config
from bpiiot.store import Store

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "~/.local/state/bpiiot/bpiiot.sock"


class ServiceError(BpiiotError):
    """The service cannot start or cannot carry out a request."""


class RulesConflict(ServiceError):
    """The rules changed since the version the caller edited (a racing edit)."""


@dataclass
class ServiceConfig:
    """``[service]``: the local socket and periodic events."""

    socket: str = DEFAULT_SOCKET
    #: Permissions of the socket, octal text; owner and group by default.
    socket_mode: str = "0660"
    #: Seconds between ``link_stats`` events.
    stats_interval_s: float = 2.0


@dataclass
class BoardConfig:
    """One ``[[board]]`` table."""

    name: str = ""
    url: str = ""
    key_file: str = ""
    baudrate: int = 115200
    outputs: dict[str, int] = field(default_factory=dict)


def read_key_file(path: str) -> bytes:
    """A board's MAC key from a hex file readable by its owner only (the SDK's one
    loader, :func:`bpiiot.files.read_link_key`); raises :class:`~bpiiot.files.KeyFileError`."""
    key = read_link_key(str(Path(path).expanduser()), env=None)
    if key is None:
        raise KeyFileError(f"no key file named for {path!r}")
    return key


def boards_from_config(cfg: config_mod.Config) -> list[BoardConfig]:
    """The ``[[board]]`` tables, checked (names unique and non-empty, URL present)."""
    tables = cfg.extra.get("board", [])
    if not isinstance(tables, list):
        raise ServiceError(f"{cfg.path}: [[board]] must be an array of tables")
    out = []
    for t in tables:
        bc: BoardConfig = config_mod.build_section(BoardConfig, t, "board", cfg.path or Path())
        if not bc.name or "/" in bc.name or not bc.url:
            raise ServiceError(f"{cfg.path}: every [[board]] needs a name (no '/') and a url")
        out.append(bc)
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise ServiceError(f"{cfg.path}: board names must be unique")
    return out


class BoardHandle:
    """One configured board in the service: its link, its :class:`Board`, its state."""

    def __init__(self, cfg: BoardConfig, bus: Bus) -> None:
        self.name = cfg.name
        self.url = cfg.url
        self.config = cfg
        key = read_key_file(cfg.key_file) if cfg.key_file else None
        self.link = Link(cfg.url, baudrate=cfg.baudrate, key=key)
        self.board = Board(self.link)
        self.released = False
        self._bus = bus
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def hello(self) -> m.Hello | None:
        """The board's last hello (None before the first)."""
        return self.board.hello

    @property
    def connected(self) -> bool:
        """True while the port is open and the board has said hello."""
        return self.link.connected and self.board.hello is not None and not self.released

    def start(self) -> None:
        """Open the port and say hello, retrying in the background until it works."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._connect_loop, name=f"bpiiot-board {self.name}", daemon=True
        )
        self._thread.start()

    def _connect_loop(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.board.start()
                self.last_error = None
                hello = self.board.hello
                log.info("%s: board %s on %s", self.name, self.board.hello_id, self.url)
                self._bus.publish_event("board", hello_event(hello), board=self.name)
                return
            except BpiiotError as exc:
                if self.last_error != str(exc):
                    log.warning("%s: %s (retrying)", self.name, exc)
                self.last_error = str(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        """Close the port."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.link.close()

    def status(self) -> dict[str, Any]:
        """JSON-friendly state."""
        return {
            "name": self.name,
            "url": self.url,
            "connected": self.connected,
            "released": self.released,
            "hello": self.hello.to_dict() if self.hello else None,
            "link": self.link.stats.snapshot(),
            "error": self.last_error,
        }


def hello_event(hello: m.Hello | None) -> dict[str, Any]:
    """The data of a ``board`` event in state ``hello``."""
    if hello is None:
        return {"state": "connected"}
    return {
        "state": "hello",
        "board_id": hello.board_id,
        "firmware_version": list(hello.firmware_version),
        "protocol_version": list(hello.protocol_version),
        "boot_counter": hello.boot_counter,
    }


class BridgeComponent:
    """The MQTT bridge (``[bridge]``) as a service component: a bus listener of its own."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self._bus: Bus | None = None

    def start(self, service: Service) -> None:
        """Start the bridge's threads and subscribe it to the service's bus."""
        self.bridge.start()
        self._bus = service.bus
        service.bus.subscribe(self.bridge, name="bridge")

    def stop(self) -> None:
        """Unsubscribe (what is queued is handed over first), then stop the bridge."""
        if self._bus is not None:
            self._bus.unsubscribe(self.bridge)
        self.bridge.stop()


def register_sections() -> None:
    """Let a config file carry the tables of the bridge (``[bridge]``), the SBC's GPIO
    (``[gpio]``) and the device manager (``[web]``): they are typed by their own modules."""
    import bpiiot.bridge.config
    import bpiiot.outputs_blinka
    import bpiiot.web.config  # noqa: F401


class RulesHandle:
    """The service's rules: read them, and replace them atomically without a restart."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._lock = threading.Lock()

    def configs(self) -> list[dict[str, Any]]:
        """The ``[[rule]]`` tables in force (Python rules added by an app are not listed)."""
        return [dict(t) for t in self._service.config.extra.get("rule", [])]

    @property
    def version(self) -> str:
        """A digest of the rules in force; pass it back to :meth:`replace_rules`."""
        text = json.dumps(self.configs(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def current(self) -> tuple[list[dict[str, Any]], str]:
        """(the ``[[rule]]`` tables in force, their version)."""
        with self._lock:
            return self.configs(), self.version

    def states(self) -> dict[str, str]:
        """Rule name -> its most urgent state over the boards (firing, pending, resolved,
        inactive); per board: :meth:`board_states`."""
        rank = {"inactive": 0, "resolved": 1, "pending": 2, "firing": 3}
        out: dict[str, str] = {r.name: "inactive" for r in self._service.controller.engine.rules}
        for s in self.board_states():
            if rank.get(s["state"], 0) > rank.get(out.get(s["rule"], "inactive"), 0):
                out[s["rule"]] = s["state"]
        return out

    def preview(self, rule: dict[str, Any], since: float) -> list[dict[str, Any]]:
        """When ``rule`` (not saved) would have fired on the reports stored since ``since``:
        ``{"time", "board", "window_seq", "value"}`` per firing, oldest first. Raises
        :class:`~bpiiot.rules.RuleError` (``errors`` keyed ``"0.<key>"``) if invalid."""
        from bpiiot import wire
        from bpiiot.rules import FIRING, RuleEngine

        (built,) = rules_from_config([rule])
        scratch = Store(":memory:", retention_s=0, max_reports=0)
        out: list[dict[str, Any]] = []
        try:
            engine = RuleEngine([built], scratch)
            store = self._service.store
            for board in store.boards():
                verifier = wire.FrameVerifier("host")  # stored frames were verified already
                for received, raw in store.frames_since(board, since):
                    try:
                        frame = verifier.verify(raw)
                    except wire.FrameError:
                        verifier.forget()  # a board reboot in the history
                        frame = verifier.verify(raw)
                    for t in engine.process(board, frame, raw, received):
                        if t.new == FIRING:
                            out.append(
                                {"time": received, "board": board,
                                 "window_seq": t.window_seq, "value": t.value}
                            )  # fmt: skip
        finally:
            scratch.close()
        out.sort(key=lambda d: d["time"])
        return out

    def board_states(self) -> list[dict[str, Any]]:
        """Each (board, rule)'s state, value, incident count and last window."""
        return self._service.controller.engine.states()

    def replace_rules(self, tables: list[dict[str, Any]], expected_version: str) -> str:
        """Validate ``tables``, write them to the config file atomically, use them now.

        Raises :class:`RulesConflict` if the rules changed since ``expected_version`` and
        :class:`~bpiiot.rules.RuleError` if a table is invalid (nothing changes then).
        Returns the new version.
        """
        svc = self._service
        with self._lock:
            if expected_version != self.version:
                raise RulesConflict(
                    "the rules were changed by someone else; reload them and edit again"
                )
            new_rules: list[Rule] = rules_from_config(tables)
            cfg = svc.config
            old = cfg.extra.get("rule")
            cfg.extra["rule"] = [dict(t) for t in tables]
            if cfg.path is not None:
                try:
                    config_mod.save(cfg)
                except (OSError, BpiiotError) as exc:
                    if old is None:
                        cfg.extra.pop("rule", None)
                    else:
                        cfg.extra["rule"] = old
                    raise ServiceError(f"cannot write {cfg.path}: {exc}") from None
            svc.controller.engine.set_rules([*new_rules, *svc.extra_rules])
            svc.bus.publish_event(
                "log", {"level": "info", "text": f"rules replaced ({len(new_rules)} rules)"}
            )
            return self.version


class Service:
    """The service (see the module docstring). Build, :meth:`start`, :meth:`stop`."""

    def __init__(
        self,
        config: config_mod.Config,
        *,
        signer: Any = None,
        extra_rules: list[Rule] | None = None,
        socket_path: str | None = None,
    ) -> None:
        self.config = config
        self.settings: ServiceConfig = section(config, "service", ServiceConfig)
        self._components: list[Any] = []
        self.started_at = 0.0
        self.bus = Bus()
        self.extra_rules = list(extra_rules or [])
        rules = [*rules_from_config(config.extra.get("rule", [])), *self.extra_rules]
        self.boards: dict[str, BoardHandle] = {}
        for bc in boards_from_config(config):
            self.boards[bc.name] = BoardHandle(bc, self.bus)
        outputs = BoardOutputs(
            self._board_of,
            {
                n: (bc.name, pin)
                for bc in map(lambda h: h.config, self.boards.values())
                for n, pin in bc.outputs.items()
            },
            default=next(iter(self.boards), None),
        )
        self.board_outputs = outputs
        """The driver of the boards' outputs; wrap it (e.g. with the SBC's own GPIO) and
        assign ``service.controller.outputs`` to route some outputs elsewhere."""
        self.controller = Controller(
            config, signer=signer, bus=self.bus, rules=rules, outputs=outputs
        )
        gpio = config.extra.get("gpio")
        if gpio is not None:
            # [gpio] names outputs on the SBC's own pins; every other name stays on a board.
            from bpiiot.outputs_blinka import BlinkaOutputs, RoutedOutputs

            self.controller.outputs = RoutedOutputs(BlinkaOutputs.from_config(gpio), outputs)
        bridge = config.extra.get("bridge")
        if bridge is not None:
            from bpiiot.bridge import Bridge

            self.add_component(BridgeComponent(Bridge(bridge, boards=self._board_of)))
        web = config.extra.get("web")
        if web is not None:
            # Built now so that a missing password fails at start-up, not at the first page.
            from bpiiot.web.adapter import service_view
            from bpiiot.web.server import WebComponent

            self.add_component(
                WebComponent(
                    host=web.host,
                    port=web.port,
                    password_file=web.password_path(),
                    require_login=web.require_login,
                    adapt=service_view,
                )
            )
        self.rules = RulesHandle(self)
        self.socket_path = Path(socket_path or self.settings.socket).expanduser()
        self._server: SocketServer | None = None
        self._stop = threading.Event()
        self._stats_thread: threading.Thread | None = None
        self.started_at = 0.0

    @classmethod
    def from_config(cls, path: Path | str | None = None, **kw: Any) -> Service:
        """Load the config; unlock the wallet when the config names one that exists."""
        from bpiiot.chain.factory import unlock_from_config

        register_sections()
        cfg = config_mod.load(path, missing_ok=False)
        signer = None
        if Path(cfg.wallet.keystore).expanduser().exists():
            signer = unlock_from_config(cfg.wallet, interactive=False)
        else:
            log.warning(
                "no wallet at %s: rules run, contract actions are not sent", cfg.wallet.keystore
            )
        return cls(cfg, signer=signer, **kw)

    def _board_of(self, name: str) -> Board | None:
        h = self.boards.get(name)
        return h.board if h is not None and h.connected else None

    @property
    def store(self) -> Store:
        """The store."""
        return self.controller.store

    @property
    def outbox(self) -> Outbox | None:
        """The outbox (None without a wallet)."""
        return self.controller.outbox

    # -- lifecycle -------------------------------------------------------------------

    @property
    def components(self) -> list[Any]:
        """The components added (the bridge from ``[bridge]``, the web page...)."""
        return list(self._components)

    def add_component(self, component: Any) -> None:
        """Start ``component.start(self)`` with the service (last) and ``component.stop()``
        when it stops (first); added to a running service, it starts at once."""
        self._components.append(component)
        if self.started_at:
            component.start(self)

    def start(self) -> Service:
        """Start the controller, the socket, and every board's link (in that order)."""
        self.started_at = time.time()
        self.controller.start()
        self._server = SocketServer(self, self.socket_path, int(self.settings.socket_mode, 8))
        self._server.start()
        for name, h in self.boards.items():
            self.bus.attach(name, h.link)
            h.start()
        self._stop.clear()
        self._stats_thread = threading.Thread(
            target=self._stats_loop, name="bpiiot-stats", daemon=True
        )
        self._stats_thread.start()
        for component in self._components:
            component.start(self)
        log.info("service running: %d board(s), socket %s", len(self.boards), self.socket_path)
        return self

    def stop(self) -> None:
        """Stop everything: boards first (no new frames), then socket, controller, bus."""
        self._stop.set()
        for component in reversed(self._components):
            try:
                component.stop()
            except Exception:
                log.exception("%r failed to stop", component)
        for h in self.boards.values():
            h.stop()
        if self._server is not None:
            self._server.stop()
        if self._stats_thread is not None:
            self._stats_thread.join(timeout=5)
        self.controller.close()
        self.bus.close()
        log.info("service stopped")

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            done.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not done.wait(1.0):
                pass
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def _stats_loop(self) -> None:
        seen: dict[str, tuple[bool, int | None]] = {}
        while not self._stop.wait(self.settings.stats_interval_s):
            bus_stats = self.bus.stats()
            for name, h in self.boards.items():
                conn = (h.connected, h.board.hello_session)
                if seen.get(name) != conn and name in seen:
                    data = (
                        hello_event(h.hello)
                        if conn[0]
                        else {"state": "released" if h.released else "disconnected"}
                    )
                    self.bus.publish_event("board", data, board=name)
                seen[name] = conn
                self.bus.publish_event(
                    "link_stats", {**h.link.stats.snapshot(), "bus": bus_stats}, board=name
                )

    # -- requests --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """JSON-friendly: boards with link stats, bus stats, chain, store, rules."""
        return {
            "uptime_s": time.time() - self.started_at if self.started_at else 0.0,
            "boards": {n: h.status() for n, h in self.boards.items()},
            "bus": self.bus.stats(),
            "chain": self.controller.status(),
            "rules": {"version": self.rules.version, "states": self.rules.board_states()},
            "store": {
                "path": str(self.store.path),
                "reports_written": self.store.reports_written,
                "reports_lost": self.store.reports_lost,
            },
            "socket": {
                "path": str(self.socket_path),
                "clients": self._server.clients if self._server is not None else 0,
            },
        }

    def save_link_key(self, board: str, key: bytes) -> None:
        """Persist a link key just provisioned on ``board``: a 0600 hex file next to the
        config (``keys/<board>.key``), named as the board's ``key_file`` in the config."""
        from bpiiot.files import write_private

        h = self.handle(board)
        if not 16 <= len(key) <= 32:
            raise ServiceError(f"a link key is 16 to 32 bytes, this one is {len(key)}")
        base = (self.config.path or Path(DEFAULT_SOCKET).expanduser()).parent
        path = base / "keys" / f"{board}.key"
        write_private(path, key.hex() + "\n")
        os.chmod(path.parent, 0o700)
        tables = self.config.extra.get("board", [])
        for t in tables:
            if t.get("name") == board:
                t["key_file"] = str(path)
        h.config.key_file = str(path)
        if self.config.path is not None:
            config_mod.save(self.config)
        log.info("%s: link key saved to %s", board, path)

    def incident_detail(self, incident_id: int) -> dict[str, Any] | None:
        """An incident with its evidence frames (hex bodies) and its outbox entry."""
        inc = self.store.incident(incident_id)
        if inc is None:
            return None
        inc["frames"] = [
            {"session": f.session, "seq": f.seq, "received": f.received, "body": f.body.hex()}
            for f in self.store.incident_frames(incident_id)
        ]
        entry = self.outbox.get(inc["key"]) if self.outbox is not None else None
        inc["transaction"] = (
            None
            if entry is None
            else {
                "state": str(getattr(entry.state, "value", entry.state)),
                "contract": entry.contract,
                "function": entry.function,
                "tx_hashes": entry.tx_hashes,
                "mined_hash": entry.mined_hash,
                "block": entry.block_number,
                "error": entry.last_error,
            }
        )
        return inc

    def handle(self, name: str) -> BoardHandle:
        """The :class:`BoardHandle` called ``name``; :class:`ServiceError` if unknown."""
        h = self.boards.get(name)
        if h is None:
            raise ServiceError(f"no board named {name!r} (known: {', '.join(self.boards)})")
        return h

    def command(self, board: str, name: str, args: dict[str, Any] | None = None) -> Any:
        """Run a board command (``ping``, ``get_status``, ``get_config``, ``configure``,
        ``set_output``, ``reboot``) and return its JSON-friendly result."""
        h = self.handle(board)
        if h.released:
            raise ServiceError(f"board {board} is released for flashing; resume it first")
        b = h.board
        args = dict(args or {})
        if name == "ping":
            b.ping()
            return None
        if name == "get_status":
            return b.get_status().to_dict()
        if name == "get_config":
            return b.get_config().to_dict()
        if name == "configure":
            return b.configure(**args).to_dict()
        if name == "set_output":
            b.set_output(int(args["pin"]), int(args["value"]))
            return None
        if name == "reboot":
            hello = b.reboot(wait=True)
            return hello.to_dict() if hello else None
        raise ServiceError(
            f"unknown board command {name!r} "
            "(ping, get_status, get_config, configure, set_output, reboot)"
        )

    def release(self, board: str) -> None:
        """Close ``board``'s port so another program (the flasher) can open it."""
        h = self.handle(board)
        if h.released:
            return
        h.released = True
        h.stop()
        self.bus.publish_event("board", {"state": "released"}, board=board)
        log.info("%s: port %s released", board, h.url)

    def resume(self, board: str) -> None:
        """Take ``board``'s port back after :meth:`release`."""
        h = self.handle(board)
        if not h.released:
            return
        h.released = False
        h.start()
        self.bus.publish_event("board", {"state": "resumed"}, board=board)
        log.info("%s: port %s resumed", board, h.url)


# -- the local socket --------------------------------------------------------------------------


def frame_json(item: FrameEvent) -> dict[str, Any]:
    """A frame as one JSON line of the socket stream."""
    f = item.frame
    return {
        "kind": "frame",
        "board": item.board,
        "received": item.received,
        "session": f.session,
        "seq": f.seq,
        "authenticated": f.authenticated,
        "message": f.message.to_dict(),
    }


class _Client(Listener):
    """One socket client: a bus listener writing JSON lines, and a command reader."""

    def __init__(self, server: SocketServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.frames = True
        self.events = True
        self.closed = threading.Event()
        self._wlock = threading.Lock()
        conn.settimeout(server.write_timeout_s)

    def send(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with self._wlock:
            if self.closed.is_set():
                return
            try:
                self.conn.sendall(data)
            except OSError:
                # A client that stalls past the timeout or vanished is dropped.
                self.close()

    def on_frame(self, item: FrameEvent) -> None:
        if self.frames:
            self.send(frame_json(item))

    def on_event(self, event: Event) -> None:
        if self.events:
            self.send(event.to_dict())

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.conn.close()

    def stop(self) -> None:
        self.close()

    def serve(self) -> None:
        """Read command lines until the client goes away."""
        buf = b""
        svc = self.server.service
        try:
            while not self.closed.is_set():
                try:
                    # The socket's timeout bounds the listener's writes (a stalled client
                    # is dropped); a quiet client only makes this read time out and retry.
                    chunk = self.conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 65536:
                    break  # a line that long is not a command
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.send(self._answer(svc, line))
        finally:
            self.server.bus.unsubscribe(self, timeout_s=0.5)
            self.close()

    def _answer(self, svc: Service, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ServiceError('a request is a JSON object with "cmd"')
            cmd = req["cmd"]
            out: Any = None
            if cmd == "watch":
                self.frames = bool(req.get("frames", True))
                self.events = bool(req.get("events", True))
            elif cmd == "status":
                out = svc.status()
            elif cmd == "command":
                out = svc.command(str(req.get("board")), str(req.get("name")), req.get("args"))
            elif cmd == "release":
                svc.release(str(req.get("board")))
            elif cmd == "resume":
                svc.resume(str(req.get("board")))
            elif cmd == "incidents":
                out = svc.store.incidents(limit=int(req.get("limit", 100)))
            else:
                raise ServiceError(
                    f"unknown cmd {cmd!r} (watch, status, command, release, resume, incidents)"
                )
            return {"kind": "reply", "cmd": cmd, "ok": True, "result": out}
        except (ValueError, KeyError, TypeError, BpiiotError, RuleError) as exc:
            return {"kind": "reply", "ok": False, "error": str(exc)}


class SocketServer:
    """The gpsd-like local Unix socket: JSON lines out, commands in (see the README)."""

    def __init__(
        self, service: Service, path: Path, mode: int = 0o660, write_timeout_s: float = 2.0
    ) -> None:
        self.service = service
        self.bus = service.bus
        self.path = path
        self.mode = mode
        self.write_timeout_s = write_timeout_s
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[_Client] = []

    def start(self) -> None:
        """Bind (replacing a stale socket file), set permissions, accept in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_socket():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
                probe.close()
                raise ServiceError(f"another service is running on {self.path}")
            except OSError:
                self.path.unlink()
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="bpiiot-socket", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            client = _Client(self, conn)
            self._clients = [c for c in self._clients if not c.closed.is_set()] + [client]
            self.bus.subscribe(client, maxsize=1000, name="socket-client")
            threading.Thread(target=client.serve, name="bpiiot-client", daemon=True).start()

    @property
    def clients(self) -> int:
        """Connected clients."""
        return sum(1 for c in self._clients if not c.closed.is_set())

    def stop(self) -> None:
        """Close the listening socket and every client; remove the socket file."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for c in self._clients:
            c.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def connect_socket(path: Path | str, timeout_s: float = 2.0) -> socket.socket | None:
    """A connection to a running service's socket, or None if no service answers there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(str(Path(path).expanduser()))
    except OSError:
        s.close()
        return None
    return s


def default_socket_path(cfg: config_mod.Config) -> Path:
    """The socket path of ``[service]`` in ``cfg``."""
    sc: ServiceConfig = section(cfg, "service", ServiceConfig)
    return Path(sc.socket).expanduser()


class ServiceClient:
    """A client of a running service's socket (what ``bpiiot monitor`` and ``flash`` use).

    :meth:`request` sends one command and returns its reply's result; :meth:`stream` yields
    the JSON objects the service pushes (frames and events).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._backlog: list[dict[str, Any]] = []

    @classmethod
    def connect(cls, path: Path | str, timeout_s: float = 2.0) -> ServiceClient | None:
        """Connect to the service at ``path``; None if no service answers there."""
        s = connect_socket(path, timeout_s)
        return None if s is None else cls(s)

    @classmethod
    def for_port(
        cls, url: str, cfg: config_mod.Config | None = None
    ) -> tuple[ServiceClient, str] | None:
        """(client, board name) if a running service owns the port ``url``, else None."""
        if cfg is None:
            register_sections()
            cfg = config_mod.load(missing_ok=True)
        client = cls.connect(default_socket_path(cfg))
        if client is None:
            return None
        try:
            boards = client.request({"cmd": "status"})["boards"]
        except (ServiceError, OSError, ValueError, KeyError):
            client.close()
            return None
        for name, b in boards.items():
            if b.get("url") == url:
                return client, name
        client.close()
        return None

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)  # TimeoutError leaves the buffer intact
            if not chunk:
                raise ServiceError("the service closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj

    def request(self, req: dict[str, Any], timeout_s: float = 30.0) -> Any:
        """Send ``req`` (``{"cmd": ...}``) and return the result; :class:`ServiceError` if
        the service refuses it."""
        self.sock.settimeout(timeout_s)
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while True:
            obj = self._read()
            if obj.get("kind") == "reply":
                if not obj.get("ok"):
                    raise ServiceError(f"service refused {req.get('cmd')}: {obj.get('error')}")
                return obj.get("result")
            self._backlog.append(obj)

    def stream(self, idle_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield pushed objects (frames, events) as they come, and ``{"kind": "idle"}``
        after each ``idle_s`` without any (so a caller can check its own clock)."""
        self.sock.settimeout(idle_s)
        while True:
            while self._backlog:
                yield self._backlog.pop(0)
            try:
                yield self._read()
            except TimeoutError:
                yield {"kind": "idle"}

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self.sock.close()
