"""Running the device manager: uvicorn, loopback by default, a login everywhere else.

``bpiiot run --web`` calls :func:`serve` with the service. Bound to a loopback address the
app needs no login (but still checks CSRF tokens and refuses other clients); bound to any
other address it refuses to start until ``bpiiot web passwd`` has set a password.
"""

from __future__ import annotations

import ipaddress
import signal
from pathlib import Path

import uvicorn

from bpiiot.web.app import create_app
from bpiiot.web.auth import Auth, default_password_path
from bpiiot.web.service_api import Service

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Seconds uvicorn waits for open requests (event streams never end by themselves) on
#: SIGTERM before it closes them.
GRACEFUL_SHUTDOWN_S = 2


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
