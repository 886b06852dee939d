"""A real Mosquitto for bridge tests, a TCP proxy that can cut the network, and a
subscriber that counts every message.

Mosquitto (Debian's package) runs with its own config and data directory on a free
127.0.0.1 port, in the foreground, and is stopped by its PID. Run as root it would drop to
the ``mosquitto`` user, which cannot enter pytest's private temporary directories: the
config says ``user root`` then, and nothing else changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from board_host import BoardHost
from paho.mqtt.enums import CallbackAPIVersion

import bpiiot
from bpiiot.bridge import senml


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Any, timeout: float, what: str, step: float = 0.02) -> None:
    """Poll ``cond()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


class Mosquitto:
    """One broker process: :meth:`start`, :meth:`stop` (SIGTERM, it saves), :meth:`kill`."""

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        tls: dict[str, Path] | None = None,
    ) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError("mosquitto not found: bash tools/install-system-deps.sh")
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.data}/",
            # Saved only on a clean exit (and hourly): a SIGKILL loses what came after.
            "autosave_interval 3600",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if tls:
            # Clients must show a certificate signed by the CA; its CN is the user name.
            lines += [
                f"cafile {tls['ca']}",
                f"certfile {tls['cert']}",
                f"keyfile {tls['key']}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        if users:
            pw = root / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = root / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        with open(self.root / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited {self.proc.returncode}: "
                    f"{(self.root / 'stderr.log').read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM by PID: Mosquitto saves its state and exits."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL by PID: whatever was not saved yet is gone."""
        self._signal(signal.SIGKILL)

    @property
    def url(self) -> str:
        """The bridge's ``broker_url``."""
        return f"mqtt://127.0.0.1:{self.port}"


def make_pki(root: Path, clients: tuple[str, ...]) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and client certificates (openssl)."""
    root.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key",
        "-out", "ca.crt")  # fmt: skip
    out = {"ca": root / "ca.crt"}
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", *clients):
        cn = "127.0.0.1" if name == "server" else name
        run("req", *key, "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        ext = ["-extfile", "san.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext)  # fmt: skip
        out[f"{name}.crt"] = root / f"{name}.crt"
        out[f"{name}.key"] = root / f"{name}.key"
        (root / f"{name}.key").chmod(0o600)
    return out


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to the broker; :meth:`cut` stops forwarding.

    A cut connection stays open but silent (as when a cable or a route goes), until
    :meth:`restore`, which closes it: the client must notice by itself (keepalive).
    """

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._forwarding.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        try:
            while not self._stop.is_set():
                if not self._forwarding.is_set():
                    time.sleep(0.05)  # what arrives stays unread, as on a dead route
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Stop forwarding in both directions; refuse new connections."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Drop the cut connections and forward again."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.close()
            except OSError:
                pass
        self._forwarding.set()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self.restore()


@dataclass
class Copy:
    """One received copy of a message."""

    topic: str
    values: dict[str, Any]
    dup: bool

    @property
    def marked(self) -> bool:
        """The kit (resend, replay) or the broker (DUP) said this may be a second copy."""
        return bool(self.values.get("resend") or self.values.get("replay") or self.dup)


class Counter:
    """A subscriber with a persistent session that keeps every message it gets."""

    def __init__(
        self,
        port: int,
        topic: str = "#",
        client_id: str = "counter",
        auth: tuple[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.port = port
        self.topic = topic
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        if auth is not None:
            self.client.username_pw_set(*auth)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        # Always subscribe: after a broker lost its state, the session is gone too.
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def start(self) -> Counter:
        self.subscribed.clear()
        self.client.connect("127.0.0.1", self.port, keepalive=5)  # before loop_start: fails loudly
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "the counter's subscription")
        return self

    def stop(self) -> None:
        """Disconnect; the broker keeps the session and queues for it."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's acknowledgement."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def on_topic(self, suffix: str) -> list[mqtt.MQTTMessage]:
        """Messages received on topics ending with ``suffix``."""
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def copies(self) -> dict[int, list[Copy]]:
        """SenML messages by qseq."""
        with self._lock:
            msgs = list(self.messages)
        out: dict[int, list[Copy]] = defaultdict(list)
        for msg in msgs:
            if msg.topic.endswith(("/cmd", "/replay")) or msg.topic.startswith("spBv1.0/"):
                continue
            for values in senml.unpack(msg.payload):  # a backlog may come batched
                out[int(values["qseq"])].append(Copy(msg.topic, values, bool(msg.dup)))
        return out

    def batches(self) -> int:
        """How many received MQTT messages carried more than one queued message."""
        with self._lock:
            msgs = list(self.messages)
        return sum(
            1
            for m in msgs
            if not m.topic.startswith("spBv1.0/")
            and not m.topic.endswith(("/cmd", "/replay"))
            and len(senml.unpack(m.payload)) > 1
        )

    def qseqs(self) -> set[int]:
        return set(self.copies())


def verdict(counter: Counter, expected: range) -> tuple[list[int], list[int], int]:
    """``(lost, unmarked duplicates, marked duplicates)`` of ``expected`` qseqs."""
    copies = counter.copies()
    lost = [q for q in expected if q not in copies]
    unmarked = [q for q, cs in copies.items() if sum(1 for c in cs if not c.marked) > 1]
    marked = sum(len(cs) - 1 for cs in copies.values())
    return lost, unmarked, marked


def board_seqs_contiguous(counter: Counter, board: str) -> dict[int, list[int]]:
    """Missing board seqs per session among the frames of ``board`` (empty: none missing)."""
    by_session: dict[int, set[int]] = defaultdict(set)
    for cs in counter.copies().values():
        v = cs[0].values
        if "session" in v and f":{board}:" in v.get("_bn", ""):
            by_session[int(v["session"])].add(int(v["seq"]))
    missing = {}
    for session, seqs in by_session.items():
        gap = sorted(set(range(min(seqs), max(seqs) + 1)) - seqs)
        if gap:
            missing[session] = gap
    return missing


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def firmware() -> Iterator[tuple[BoardHost, bpiiot.Board]]:
    """The real firmware on a pty, sending 20 reports a second, and the board on it."""
    for attempt in range(3):
        host = BoardHost()
        host.start()
        board = None
        try:
            board = bpiiot.connect(host.port, timeout_s=5)
            board.configure(window_ms=100, hop_ms=50)
        except bpiiot.CommandTimeout:
            # Seen on this shared machine now and then: the firmware in the Unix port stops
            # answering right after boot (not a bridge matter); boot a fresh one.
            if board is not None:
                board.close()
            host.stop()
            if attempt == 2:
                raise
            continue
        try:
            yield host, board
        finally:
            board.close()
            host.stop()
        return


@pytest.fixture
def streaming_board(firmware: tuple[BoardHost, bpiiot.Board]) -> bpiiot.Board:
    """The board of :func:`firmware`."""
    return firmware[1]
