"""A JSON-RPC proxy that forwards every request to the node but may drop the answer.

It models the worst network failure for a sender: the request arrived and the node acted on
it (a transaction is in its pool), but the reply is lost and the connection closed, so the
client sees a connection error and cannot know the outcome. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlparse


def drops_sends(request: dict[str, Any]) -> bool:
    """Drop the reply of every eth_sendRawTransaction."""
    return request.get("method") == "eth_sendRawTransaction"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port)
        try:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                length = 0
                while True:
                    header = self.rfile.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = self.rfile.read(length)
                upstream.request("POST", "/", body, {"Content-Type": "application/json"})
                reply = upstream.getresponse().read()
                try:
                    request = json.loads(body)
                except ValueError:
                    request = {}
                if isinstance(request, dict) and self.server.drop(request):
                    with self.server.lock:
                        self.server.dropped += 1
                    # The node has it; the client gets a closed connection and no answer.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                self.wfile.flush()
        except (ConnectionError, OSError):
            return
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, drop: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.drop = drop
        self.dropped = 0
        self.lock = threading.Lock()


class DropReplyProxy:
    """Forward JSON-RPC to ``upstream``; requests for which ``drop`` is true lose their reply."""

    def __init__(self, upstream: str, drop: Callable[[dict[str, Any]], bool] = drops_sends) -> None:
        self._server = _Server(upstream, drop)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def dropped(self) -> int:
        """Replies dropped so far."""
        return self._server.dropped

    def __enter__(self) -> DropReplyProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
