"""``[bridge]``: where the cloud bridge publishes, how, and what it may do.

Registered with :func:`bpiiot.config.register_section` on import, so ``bpiiot.config.load``
returns a typed :class:`BridgeConfig` as ``config.section("bridge")``. Example::

    [bridge]
    broker_url = "mqtts://broker.example.net:8883"
    ca_file = "/etc/bpiiot/broker-ca.pem"
    username = "sbc-17"
    password_file = "/etc/bpiiot/broker.pass"   # mode 0600; never logged
    format = "senml"                            # or "sparkplug"
    topic_prefix = "bpiiot/plant-a"
    edge_node_id = "line3-sbc17"
    commands = ["ping", "get_status", "set_output"]
    queue_path = "/var/lib/bpiiot/bridge.sqlite"
    retention_s = 86400
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bpiiot.bridge.errors import BridgeConfigError
from bpiiot.config import register_section

FORMATS = ("senml", "sparkplug")
"""Payload conventions the bridge speaks."""
COMMANDS = ("ping", "get_status", "get_config", "configure", "set_output", "reboot", "replay")
"""Commands a broker may ask for; each must be named in ``commands`` to be carried out."""


@dataclass
class BridgeConfig:
    """``[bridge]``: the MQTT broker, the payload convention, the queue and the commands."""

    #: ``mqtt://host:port`` (plain TCP, default port 1883) or ``mqtts://host:port`` (TLS, 8883).
    broker_url: str = "mqtt://127.0.0.1:1883"
    #: MQTT client id; empty means ``bpiiot-<edge_node_id>``. Keep it stable: the broker
    #: keeps the persistent session under it.
    client_id: str = ""
    keepalive_s: int = 30
    #: Longest wait between two connection attempts (they start at 0.25 s and double).
    reconnect_max_s: float = 10.0
    #: CA bundle to verify the broker with (TLS); empty uses the system's.
    ca_file: str = ""
    #: Client certificate and key, for brokers that authenticate clients by certificate.
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    #: File holding the broker password (first line); must not be readable by others.
    password_file: str = ""
    #: ``senml`` (RFC 8428 JSON, the default) or ``sparkplug`` (Eclipse Sparkplug B).
    format: str = "senml"
    #: SenML topics start with this (``<prefix>/<edge_node_id>/<board>/<kind>``).
    topic_prefix: str = "bpiiot"
    #: Sparkplug group id (``spBv1.0/<group_id>/...``).
    group_id: str = "bpiiot"
    #: This SBC's name in topics; empty means the host name.
    edge_node_id: str = ""
    #: Commands a broker may trigger (see :data:`COMMANDS`); empty: none.
    commands: list[str] = field(default_factory=list)
    #: SQLite file of the store-and-forward queue.
    queue_path: str = "~/.local/state/bpiiot/bridge.sqlite"
    #: Upper bound of the queue file in MB (0: until the disk is full).
    queue_max_mb: float = 0.0
    #: Seconds a message stays in the queue after the broker acknowledged it (for replay).
    retention_s: float = 86400.0
    #: Messages published and not yet acknowledged, at most (paho walks this list on
    #: every PUBACK, so more is not faster).
    max_inflight: int = 100
    #: SenML: when a backlog waits, up to this many queued messages of one topic travel in
    #: one MQTT message (one pack after the other in a JSON array); 1 sends each alone.
    batch_max: int = 50
    #: When the broker answers that it lost this client's session (it restarted without
    #: having saved its state), publish again what it acknowledged since the last connect.
    replay_on_session_loss: bool = True

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise BridgeConfigError(
                f"[bridge] format must be one of {', '.join(FORMATS)}, got {self.format!r}"
            )
        if not isinstance(self.commands, list) or not all(
            isinstance(c, str) for c in self.commands
        ):
            raise BridgeConfigError("[bridge] commands must be a list of command names")
        unknown = sorted(set(self.commands) - set(COMMANDS))
        if unknown:
            raise BridgeConfigError(
                f"[bridge] commands: unknown {', '.join(unknown)} (known: {', '.join(COMMANDS)})"
            )
        if self.retention_s < 0 or self.queue_max_mb < 0:
            raise BridgeConfigError("[bridge] retention_s and queue_max_mb must be >= 0")
        if not 1 <= self.max_inflight <= 60000:
            raise BridgeConfigError("[bridge] max_inflight must be 1..60000")
        if not 1 <= self.batch_max <= 1000:
            raise BridgeConfigError("[bridge] batch_max must be 1..1000")
        self.broker()  # fail early on a malformed URL

    def broker(self) -> tuple[str, int, bool]:
        """``(host, port, tls)`` from :attr:`broker_url`."""
        url = urlsplit(self.broker_url)
        if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
            raise BridgeConfigError(
                f"[bridge] broker_url must look like mqtt://host:1883 or mqtts://host:8883, "
                f"got {self.broker_url!r}"
            )
        tls = url.scheme in ("mqtts", "ssl")
        try:
            port = url.port or (8883 if tls else 1883)
        except ValueError:
            raise BridgeConfigError(
                f"[bridge] broker_url has a bad port: {self.broker_url!r}"
            ) from None
        return url.hostname, port, tls

    @property
    def node_id(self) -> str:
        """The edge node id (the host name when not configured)."""
        return self.edge_node_id or socket.gethostname().split(".")[0]

    @property
    def mqtt_client_id(self) -> str:
        """The MQTT client id (``bpiiot-<node_id>`` when not configured)."""
        return self.client_id or f"bpiiot-{self.node_id}"

    def read_password(self) -> str | None:
        """The broker password from :attr:`password_file`, or None when none is configured.

        Refuses a file that group or others may read: it holds a secret.
        """
        if not self.password_file:
            return None
        path = Path(self.password_file).expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BridgeConfigError(
                f"[bridge] cannot read password_file {path}: {exc.strerror}"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BridgeConfigError(
                f"[bridge] password_file {path} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        lines = text.splitlines()
        return lines[0] if lines else ""

    def queue_file(self) -> Path:
        """:attr:`queue_path` with ``~`` expanded."""
        return Path(os.path.expanduser(self.queue_path))


register_section("bridge", BridgeConfig)
