"""The cloud bridge: a bus listener that queues on disk, and a thread that publishes.

The bus listener (:meth:`Bridge.on_frame`, :meth:`Bridge.on_event`) only inserts a row in
the SQLite queue, so the serial reader never waits on the broker. One publisher thread owns
the MQTT connection (paho-mqtt 2.x, QoS 1): it publishes queued rows in order, marks them
acknowledged on PUBACK, and on every (re)connect publishes again whatever was not
acknowledged (those copies carry ``resend``). Each connection uses a fresh paho client, so
paho's own in-memory resend never doubles the queue's.

A broker that acknowledged and then lost messages (killed before it saved them) is covered
by the retention: :meth:`Bridge.replay_from` (or a ``replay`` command from the broker)
publishes them again from a sequence number, marked ``replay``; and when the broker answers
a reconnect without the session it had (it lost its state), what it acknowledged since the
previous connect is replayed by itself (``replay_on_session_loss``).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bpiiot.bridge.commands import (
    BoardLookup,
    CommandRequest,
    describe_error,
    run_command,
)
from bpiiot.bridge.config import BridgeConfig
from bpiiot.bridge.errors import BrokerRefused, CommandRefused, QueueFull
from bpiiot.bridge.queue import MessageQueue, QueuedMessage
from bpiiot.bus import Event, FrameEvent, Listener
from bpiiot.messages import Report

log = logging.getLogger("bpiiot.bridge")

_PRUNE_EVERY_S = 30.0
_BATCH_BYTES = 64_000
"""Upper bound of one batched MQTT message."""


class Codec(Protocol):
    """A payload convention: topics, payloads, births and commands."""

    clean_session: bool
    batches: bool
    """Whether queued messages of one topic may share an MQTT message (:meth:`join`)."""

    def join(self, payloads: list[bytes]) -> bytes:
        """One payload carrying several encoded messages, in order."""

    def will(self) -> tuple[str, bytes] | None:
        """The last will for the next connection (Sparkplug's NDEATH), if any."""

    def births(self) -> list[tuple[str, bytes]]:
        """Messages to publish first on every connection (Sparkplug's NBIRTH, DBIRTHs)."""

    def prelude(self, message: QueuedMessage) -> list[tuple[str, bytes]]:
        """Messages that must precede ``message`` (a DBIRTH for a new board)."""

    def encode(self, message: QueuedMessage, historical: bool) -> tuple[str, bytes]:
        """``(topic, payload)`` of a queued message."""

    def death(self) -> tuple[str, bytes] | None:
        """What to publish before a clean disconnect (Sparkplug's NDEATH), if any."""

    def command_topics(self) -> list[str]:
        """Topics to subscribe to for commands."""

    def parse_command(self, topic: str, payload: bytes) -> list[CommandRequest]:
        """The commands in a received message; raises :class:`CommandRefused` if malformed."""


class SenmlCodec:
    """SenML JSON on ``<prefix>/<node>/<board>/<kind>``; commands on ``.../<board>/cmd``."""

    clean_session = False
    batches = True

    def __init__(self, prefix: str, node: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.node = node

    def join(self, payloads: list[bytes]) -> bytes:
        """Packs in one JSON array: each starts with its own base name and time."""
        return b"[" + b",".join(p[1:-1] for p in payloads) + b"]"

    def will(self) -> tuple[str, bytes] | None:
        """No last will: a consumer sees the bridge's liveness in the message flow."""
        return None

    def births(self) -> list[tuple[str, bytes]]:
        """Nothing to announce on connect."""
        return []

    def prelude(self, message: QueuedMessage) -> list[tuple[str, bytes]]:
        """Nothing precedes a message."""
        return []

    def encode(self, message: QueuedMessage, historical: bool) -> tuple[str, bytes]:
        """The SenML pack (``resend``/``replay`` mark copies; history needs no mark)."""
        from bpiiot.bridge import senml

        return senml.encode(self.prefix, self.node, message)

    def death(self) -> tuple[str, bytes] | None:
        """Nothing to say before a clean disconnect."""
        return None

    def command_topics(self) -> list[str]:
        """``<prefix>/<node>/<board>/cmd`` for every board."""
        return [f"{self.prefix}/{self.node}/+/cmd"]

    def parse_command(self, topic: str, payload: bytes) -> list[CommandRequest]:
        """``{"command": "...", "args": {...}, "id": "..."}`` on a board's cmd topic."""
        parts = topic.split("/")
        board = parts[-2] if len(parts) >= 2 else ""
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandRefused(f"command on {topic} is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("command"), str):
            raise CommandRefused(f'command on {topic} needs {{"command": "...", "args": {{...}}}}')
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise CommandRefused(f"command on {topic}: args must be an object")
        return [CommandRequest(board, body["command"], args, str(body.get("id", "")))]


@dataclass
class BridgeStatus:
    """What the bridge is doing, for logs, the web page and tests."""

    connected: bool
    broker: str
    last_error: str
    """The last connection problem (empty while connected)."""
    queue_error: str
    """Why messages are being refused right now (a full queue); empty when they are not."""
    pending: int
    published: int
    acked: int
    resent: int
    replayed: int
    dropped_full: int
    session_losses: int
    commands_run: int
    commands_refused: int
    unpublishable: int
    """Rows the codec could not encode (logged, set aside)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot."""
        return dict(self.__dict__)


class Bridge(Listener):
    """Publishes the bus's frames and events to an MQTT broker (see the module docstring).

    ``boards`` (a mapping or a function, board name -> :class:`bpiiot.Board`) is where
    commands from the broker go; None refuses them all. ``password`` overrides
    ``config.password_file`` (never logged). Call :meth:`start`, then subscribe the bridge
    to the service's :class:`~bpiiot.bus.Bus`.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        boards: BoardLookup | None = None,
        password: str | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.config = config
        self.boards = boards
        self._password = password if password is not None else config.read_password()
        self.host, self.port, self.tls = config.broker()
        self.node = config.node_id
        self.queue = MessageQueue(
            config.queue_file(),
            max_bytes=int(config.queue_max_mb * 1e6),
            retention_s=config.retention_s,
        )
        if codec is None:
            if config.format == "sparkplug":
                from bpiiot.bridge.sparkplug import SparkplugCodec

                codec = SparkplugCodec(config.group_id, self.node, self.queue)
            else:
                codec = SenmlCodec(config.topic_prefix, self.node)
        self.codec: Codec = codec
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cmd_queue: queue.Queue[CommandRequest | None] = queue.Queue()
        self._cmd_thread: threading.Thread | None = None
        self._replays: list[tuple[int, int | None]] = []
        self._connected = False
        self._last_error = ""
        self._queue_error = ""
        self._full = False
        self._counts = dict.fromkeys(
            (
                "published",
                "acked",
                "resent",
                "replayed",
                "dropped_full",
                "session_losses",
                "commands_run",
                "commands_refused",
                "unpublishable",
            ),
            0,
        )
        self._inflight: dict[int, list[int]] = {}
        self._acks: list[int] = []
        self._connack: tuple[bool, bool, str] | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Bridge:
        """Start the publisher (and command) threads; returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bpiiot-bridge", daemon=True)
            self._thread.start()
            self._cmd_thread = threading.Thread(
                target=self._run_commands, name="bpiiot-bridge-cmd", daemon=True
            )
            self._cmd_thread.start()
        return self

    def stop(self) -> None:
        """Disconnect (Sparkplug: after NDEATH) and close the queue; unsent rows stay queued."""
        self._stop.set()
        self._cmd_queue.put(None)
        for t in (self._thread, self._cmd_thread):
            if t is not None and t is not threading.current_thread():
                t.join(10)
        self._thread = self._cmd_thread = None
        self.queue.close()

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bus listener (the service's threads) ------------------------------------

    def on_frame(self, item: FrameEvent) -> None:
        """Queue a verified frame with the board's (session, seq); never waits on the broker."""
        f = item.frame
        msg = f.message
        data: dict[str, Any]
        if isinstance(msg, Report):
            # The hot path: dataclasses.asdict (to_dict) costs more than the insert.
            data = {
                "window_seq": msg.window_seq,
                "board_time_ms": msg.board_time_ms,
                "samples": msg.samples,
                "acc_rms_mg": msg.acc_rms_mg,
                "acc_peak_mg": msg.acc_peak_mg,
                "vel_rms_um_s": msg.vel_rms_um_s,
                "temperature_cdeg_c": msg.temperature_cdeg_c,
                "flags": msg.flags,
            }
        else:
            data = msg.to_dict()
            del data["kind"]
        data.update(
            session=f.session, seq=f.seq, authenticated=f.authenticated, received=item.received
        )
        self._put(item.board, msg.NAME, data, item.received)

    def on_event(self, event: Event) -> None:
        """Queue a service event (incident, tx, link_stats...) as ``event.<kind>``."""
        data = {**event.data, "time": event.time}
        self._put(event.board, f"event.{event.kind}", data, event.time)

    def on_error(self, exc: BaseException) -> None:
        """Log a failed insert once per episode (a full queue would flood the log)."""
        if isinstance(exc, QueueFull):
            if not self._full:
                self._full = True
                log.error("%s", exc)
            return
        log.error("bridge could not queue a message: %r", exc)

    def _put(self, board: str | None, kind: str, data: dict[str, Any], created: float) -> int:
        try:
            qseq = self.queue.put(board, kind, data, created)
        except QueueFull as exc:
            with self._lock:
                self._counts["dropped_full"] += 1
                self._queue_error = str(exc)
            raise
        if self._full:
            self._full = False
            with self._lock:
                self._queue_error = ""
            log.warning(
                "bridge queue accepts messages again (%d dropped while it was full)",
                self._counts["dropped_full"],
            )
        return qseq

    # -- public API ----------------------------------------------------------------

    def replay_from(self, qseq: int, until: int | None = None) -> int:
        """Publish again the kept messages from ``qseq`` (to ``until``); returns how many.

        For a consumer that saw a gap after the broker lost messages it had acknowledged.
        Copies carry ``replay``. Messages older than ``retention_s`` are gone.
        """
        n = self.queue.replay_from(qseq, until)
        with self._lock:
            self._replays.append((qseq, until))
            self._counts["replayed"] += n
        log.warning("replaying %d messages from qseq %d", n, qseq)
        return n

    def status(self) -> BridgeStatus:
        """A snapshot of the connection and the counters."""
        with self._lock:
            c = dict(self._counts)
            connected, err, qerr = self._connected, self._last_error, self._queue_error
        return BridgeStatus(
            connected=connected,
            broker=f"{self.host}:{self.port}",
            last_error=err,
            queue_error=qerr,
            pending=self.queue.pending_count(),
            **c,
        )

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued message was acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.queue.pending_count() == 0 and not self._inflight:
                return True
            time.sleep(0.02)
        return False

    # -- publisher thread ------------------------------------------------------------

    def _set_error(self, text: str) -> None:
        with self._lock:
            changed = text != self._last_error
            self._last_error = text
        if changed:
            log.warning("%s", text)

    def _run(self) -> None:
        backoff = 0.25
        cap = max(0.25, self.config.reconnect_max_s)
        last_connect: float | None = None
        while not self._stop.is_set():
            client: mqtt.Client | None = None
            try:
                client, session_present = self._connect()
            except BrokerRefused as exc:
                self._set_error(str(exc))
                # A refusal will not fix itself soon: wait longer between tries.
                self._stop.wait(min(backoff, 3 * cap))
                backoff = min(backoff * 2, 3 * cap)
                continue
            except OSError as exc:
                self._set_error(
                    f"cannot reach the MQTT broker {self.host}:{self.port}: "
                    f"{exc.strerror or exc}; messages stay queued"
                )
                self._stop.wait(min(backoff, cap))
                backoff = min(backoff * 2, cap)
                continue
            backoff = 0.25
            now = time.time()
            if (
                last_connect is not None
                and not session_present
                and not self.codec.clean_session
                and self.config.replay_on_session_loss
            ):
                n = self.queue.replay_acked_since(last_connect)
                with self._lock:
                    self._counts["session_losses"] += 1
                    self._counts["replayed"] += n
                log.warning(
                    "the broker lost this client's session (restarted without saving it?): "
                    "publishing again the %d messages it acknowledged since %s",
                    n,
                    time.strftime("%H:%M:%S", time.localtime(last_connect)),
                )
            last_connect = now
            try:
                self._serve(client, now)
            except (sqlite3.Error, QueueFull) as exc:
                self._set_error(f"bridge queue {self.queue.path}: {exc}; retrying")
                self._stop.wait(1.0)
            except Exception as exc:  # the publisher must outlive any one failure
                log.exception("bridge publisher failed; reconnecting")
                self._set_error(f"bridge publisher failed: {exc!r}; retrying")
                self._stop.wait(1.0)
            finally:
                with self._lock:
                    self._connected = False
                self._flush_acks()
                self._inflight.clear()
                _close(client)

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if acks:
            self.queue.mark_acked(acks)
            with self._lock:
                self._counts["acked"] += len(acks)

    def _connect(self) -> tuple[mqtt.Client, bool]:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.mqtt_client_id,
            clean_session=self.codec.clean_session,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        if cfg.username:
            client.username_pw_set(cfg.username, self._password)
        if self.tls:
            client.tls_set(
                ca_certs=cfg.ca_file or None,
                certfile=cfg.cert_file or None,
                keyfile=cfg.key_file or None,
            )
        will = self.codec.will()
        if will is not None:
            client.will_set(will[0], will[1], qos=1)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._connack = None
        client.connect(self.host, self.port, keepalive=cfg.keepalive_s)
        deadline = time.monotonic() + 10.0
        while self._connack is None:
            rc = client.loop(0.1)
            if self._connack is not None:
                break  # a refusal returns an error code too: the CONNACK says why
            if rc != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                _close(client)
                raise ConnectionError(f"no answer to CONNECT ({mqtt.error_string(rc)})")
        ok, session_present, reason = self._connack
        if not ok:
            _close(client)
            raise BrokerRefused(
                f"the MQTT broker {self.host}:{self.port} refused the connection: {reason} "
                f"(check [bridge] username, password_file and certificates); messages stay queued"
            )
        with self._lock:
            self._connected = True
            self._last_error = ""
        log.info("connected to the MQTT broker %s:%d", self.host, self.port)
        for topic in self.codec.command_topics():
            client.subscribe(topic, qos=1)
        if "replay" in cfg.commands and isinstance(self.codec, SenmlCodec):
            client.subscribe(f"{self.codec.prefix}/{self.node}/replay", qos=1)
        for topic, payload in self.codec.births():
            client.publish(topic, payload, qos=0)
        return client, session_present

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connack = (not reason.is_failure, bool(flags.session_present), str(reason))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        qseqs = self._inflight.pop(mid, None)
        if qseqs is not None:
            self._acks.extend(qseqs)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.endswith("/replay") and isinstance(self.codec, SenmlCodec):
                self._replay_request(bytes(msg.payload))
                return
            for request in self.codec.parse_command(msg.topic, bytes(msg.payload)):
                if request.command == "rebirth":
                    # On this (the publisher's) thread: births restart the Sparkplug seq.
                    for topic, payload in self.codec.births():
                        client.publish(topic, payload, qos=0)
                elif request.command == "replay":
                    self._replay_request(json.dumps(request.args).encode())
                else:
                    self._cmd_queue.put(request)
        except CommandRefused as exc:
            with self._lock:
                self._counts["commands_refused"] += 1
            log.warning("%s", exc)

    def _replay_request(self, payload: bytes) -> None:
        if "replay" not in self.config.commands:
            raise CommandRefused(
                "replay requests are not allowed (add replay to [bridge] commands)"
            )
        try:
            body = json.loads(payload)
            start = int(body["from"])
            until = int(body["until"]) if body.get("until") is not None else None
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandRefused(f'a replay request is {{"from": qseq}}, got {payload!r}') from exc
        self.replay_from(start, until)

    def _serve(self, client: mqtt.Client, connected_at: float) -> None:
        cursor = 0
        rewound_until = 0  # after a replay, rows up to here may be in flight already
        last_prune = 0.0
        max_inflight = self.config.max_inflight
        batch_max = self.config.batch_max if self.codec.batches else 1
        inflight = self._inflight
        while not self._stop.is_set():
            rc = client.loop(0.0 if len(inflight) < max_inflight else 0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._set_error(
                    f"lost the MQTT broker {self.host}:{self.port} (no answer within the "
                    f"keepalive, or the connection closed: {mqtt.error_string(rc)}); "
                    "reconnecting, messages stay queued"
                )
                return
            if self._acks:
                self._flush_acks()
            with self._lock:
                replays, self._replays = self._replays, []
            if replays:
                rewound_until = max(cursor, rewound_until)
                cursor = min(cursor, min(start for start, _ in replays) - 1)
            space = max_inflight - len(inflight)
            sent: list[int] = []
            if space > 0:
                busy = (
                    {q for qs in inflight.values() for q in qs} if cursor < rewound_until else set()
                )
                rows = self.queue.pending(cursor, min(space * batch_max, 2000) + len(busy))
                group: list[QueuedMessage] = []
                payloads: list[bytes] = []
                group_topic = ""
                size = 0
                opened = 0  # MQTT messages begun in this pass (at most ``space``)
                for row in rows:
                    if row.qseq in busy:
                        cursor = row.qseq
                        continue
                    if not self.codec.batches and opened >= space:
                        break  # before encoding: a Sparkplug seq must not be spent for nothing
                    try:
                        prelude = self.codec.prelude(row)
                        topic, payload = self.codec.encode(row, row.created < connected_at)
                    except Exception as exc:
                        # One bad row must not block the queue: it is set aside (acked
                        # without a broker, kept for the retention) and counted.
                        log.error("bridge cannot encode qseq %d (%s): %r", row.qseq, row.kind, exc)
                        self.queue.mark_acked([row.qseq])
                        with self._lock:
                            self._counts["unpublishable"] += 1
                        cursor = row.qseq
                        continue
                    joins = (
                        bool(group)
                        and topic == group_topic
                        and len(group) < batch_max
                        and size + len(payload) <= _BATCH_BYTES
                    )
                    if not joins:
                        if group:
                            if not self._send(client, group_topic, group, payloads, sent):
                                cursor = group[0].qseq - 1
                                group = []
                                break
                            group, payloads, size = [], [], 0
                        if opened >= space:
                            break  # this row waits for the next pass (SenML: no state spent)
                        opened += 1
                    for pre_topic, pre_payload in prelude:
                        client.publish(pre_topic, pre_payload, qos=0)
                    group.append(row)
                    payloads.append(payload)
                    group_topic = topic
                    size += len(payload)
                    cursor = row.qseq
                if group and not self._send(client, group_topic, group, payloads, sent):
                    cursor = group[0].qseq - 1
            if sent:
                if not self.queue.mark_sent(sent) and not self._full:
                    log.warning(
                        "bridge queue %s is too full to count publications: a resend of "
                        "qseq %d-%d may lack its marker",
                        self.queue.path,
                        sent[0],
                        sent[-1],
                    )
                with self._lock:
                    self._counts["published"] += len(sent)
            else:
                # Nothing to send: wait for the network (PUBACKs, commands) a little.
                rc = client.loop(0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    continue
            now = time.monotonic()
            if now - last_prune > _PRUNE_EVERY_S:
                last_prune = now
                self.queue.prune()
        death = self.codec.death()
        if death is not None:
            info = client.publish(death[0], death[1], qos=1)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break

    def _send(
        self,
        client: mqtt.Client,
        topic: str,
        rows: list[QueuedMessage],
        payloads: list[bytes],
        sent: list[int],
    ) -> bool:
        """Publish ``rows`` as one MQTT message; False if paho could not take it."""
        body = payloads[0] if len(payloads) == 1 else self.codec.join(payloads)
        info = client.publish(topic, body, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        qseqs = [r.qseq for r in rows]
        self._inflight[info.mid] = qseqs
        sent.extend(qseqs)
        resent = sum(1 for r in rows if r.attempts)
        if resent:
            with self._lock:
                self._counts["resent"] += resent
        return True

    # -- commands ------------------------------------------------------------------

    def _run_commands(self) -> None:
        while True:
            request = self._cmd_queue.get()
            if request is None:
                return
            result: dict[str, Any] = {"command": request.command, "id": request.id}
            try:
                result.update(run_command(request, self.config.commands, self.boards))
                result["ok"] = True
                counter = "commands_run"
                log.info("command %s on %s done", request.command, request.board)
            except Exception as exc:
                result.update(ok=False, error=describe_error(exc))
                counter = "commands_refused" if isinstance(exc, CommandRefused) else "commands_run"
                log.warning("command %s on %s failed: %s", request.command, request.board, exc)
            with self._lock:
                self._counts[counter] += 1
            try:
                self._put(request.board, "cmd_result", result, time.time())
            except QueueFull as exc:
                self.on_error(exc)


def _close(client: mqtt.Client) -> None:
    """Disconnect politely if possible, and always close the socket."""
    try:
        client.disconnect()
        client.loop(0.05)
    except OSError:
        pass
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
