"""A ser2net-style TCP bridge to a serial port, for link tests that need a port
that disappears and comes back, or garbage injected into the board's stream."""

from __future__ import annotations

import socket
import threading

import serial


class TcpBridge:
    """Serve ``serial_url`` to one TCP client at a time on 127.0.0.1:``port``."""

    def __init__(self, serial_url: str, port: int = 0) -> None:
        self.serial = serial.serial_for_url(serial_url, timeout=0.02)
        self.port = port
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._up = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._pump_serial, daemon=True).start()

    @property
    def url(self) -> str:
        """The pyserial URL a client uses."""
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the same port."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        self.port = srv.getsockname()[1]
        srv.listen(1)
        self._server = srv
        self._up.set()
        t = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        t.start()

    def stop(self) -> None:
        """Close the listening socket and the client: the port disappears."""
        self._up.clear()
        with self._lock:
            for s in (self._server, self._client):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
            self._server = self._client = None

    def close(self) -> None:
        """Stop for good and close the serial side."""
        self._closed.set()
        self.stop()
        self.serial.close()

    def inject(self, data: bytes) -> None:
        """Send bytes to the client as if the board had sent them."""
        with self._lock:
            if self._client is not None:
                self._client.sendall(data)

    def _accept(self, srv: socket.socket) -> None:
        while self._up.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with self._lock:
                self._client = conn
            self._pump_client(conn)

    def _pump_client(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                with self._lock:
                    if self._client is conn:
                        self._client = None
                return
            self.serial.write(data)

    def _pump_serial(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.serial.read(4096)
            except (serial.SerialException, OSError, TypeError):
                return
            if data:
                with self._lock:
                    if self._client is not None:
                        try:
                            self._client.sendall(data)
                        except OSError:
                            pass
