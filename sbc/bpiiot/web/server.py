"""Running the device manager: uvicorn, loopback by default, a login everywhere else.

``bpiiot run --web`` calls :func:`serve` with the service. Bound to a loopback address the
app needs no login (but still checks CSRF tokens and refuses other clients); bound to any
other address it refuses to start until ``bpiiot web passwd`` has set a password.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from bpiiot.errors import BpiiotError
from bpiiot.web.app import create_app
from bpiiot.web.auth import Auth, default_password_path
from bpiiot.web.service_api import Service

log = logging.getLogger("bpiiot.web")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Seconds uvicorn waits for open requests (event streams never end by themselves) on
#: SIGTERM before it closes them.
GRACEFUL_SHUTDOWN_S = 2


class WebError(BpiiotError):
    """The device manager could not be started."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_auth(host: str, password_file: Path | None = None, *, require_login: bool = False) -> Auth:
    """The access policy for ``host``: a login (password file required) unless loopback.

    Raises :class:`~bpiiot.web.auth.PasswordError` when a login is needed and no password
    was ever set.
    """
    if is_loopback_host(host) and not require_login:
        return Auth.local()
    return Auth.with_password_file(password_file or default_password_path())


def config(
    service: Service,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    password_file: Path | None = None,
    require_login: bool = False,
    auth: Auth | None = None,
) -> uvicorn.Config:
    """The uvicorn configuration of the device manager for ``service``."""
    auth = auth or make_auth(host, password_file, require_login=require_login)
    return uvicorn.Config(
        create_app(service, auth=auth),
        host=host,
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        log_level="info",
        server_header=False,
    )


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(service: Service, **kw: object) -> None:
    """Run the device manager until SIGINT/SIGTERM (arguments as :func:`config`).

    uvicorn shuts down gracefully on SIGTERM, then raises the signal again; with no handler
    of the caller's in place, that becomes ``SystemExit`` here, so the caller's ``finally``
    blocks (closing the boards, the outbox) still run.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _exit)
    try:
        uvicorn.Server(config(service, **kw)).run()  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, previous)


class WebComponent:
    """The device manager as a component of a running service (``Service.add_component``).

    :meth:`start` serves the app on a thread of its own (the service keeps its signal
    handling); :meth:`stop` asks uvicorn to exit, which closes open event streams after at
    most :data:`GRACEFUL_SHUTDOWN_S` seconds, and waits for it.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        password_file: Path | None = None,
        require_login: bool = False,
        auth: Auth | None = None,
        adapt: Callable[[Any], Service] | None = None,
    ) -> None:
        # The policy is decided now: a missing password fails `bpiiot run --web` at once.
        self.auth = auth or make_auth(host, password_file, require_login=require_login)
        self.host = host
        self.port = port
        self.adapt = adapt
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the device manager answers."""
        return f"http://{self.host}:{self.port}"

    def start(self, service: Any, timeout_s: float = 30.0) -> None:
        """Serve ``service`` (through ``adapt`` if given); returns once it accepts requests."""
        svc: Service = self.adapt(service) if self.adapt is not None else service
        server = uvicorn.Server(config(svc, host=self.host, port=self.port, auth=self.auth))
        self.server = server
        self._thread = threading.Thread(target=server.run, name="bpiiot-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise WebError(f"the device manager did not start on {self.url} (port in use?)")
            time.sleep(0.02)
        policy = "login required" if self.auth.login_required else "loopback only, no login"
        log.info("device manager on %s (%s)", self.url, policy)

    def stop(self) -> None:
        """Stop serving (open event streams are closed within the graceful timeout)."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_SHUTDOWN_S + 10)
            self._thread = None
