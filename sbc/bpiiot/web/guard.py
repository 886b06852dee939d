"""The ASGI middleware that enforces :class:`~bpiiot.web.auth.Auth` on every request.

One place decides, before any page or API handler runs:

- without a login policy, only loopback clients with a loopback ``Host`` header are
  served (the header check stops DNS rebinding from turning a web page into a client);
- with one, every path but ``/login``, ``/api/login`` and ``/static/`` needs a logged-in
  session (pages redirect to the login form, the API and the event stream answer 401);
- every state-changing request (anything but GET, HEAD, OPTIONS) must carry the
  session's CSRF token: the ``X-CSRF-Token`` header, or a ``csrf_token`` field of a
  url-encoded form. Other bodies are refused. ``/api/login`` takes JSON only, which a
  cross-site form cannot send.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

from bpiiot.web.auth import Auth

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Sent with every answer: scripts and styles from this server only (the overview's data
#: block is JSON, not script; zone colours are style attributes), no framing by other sites.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/login", "/api/login", "/favicon.ico"})
MAX_BODY = 256 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def is_loopback(host: str | None) -> bool:
    """True for a loopback IP address."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _host_name(host: str) -> str:
    # "127.0.0.1:8080" -> "127.0.0.1", "[::1]:8080" -> "[::1]"
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0]


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


async def _respond(
    send: Send, status: int, body: bytes, ctype: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype.encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, message: str, api: bool) -> None:
    if api:
        body = json.dumps({"error": message}).encode()
        await _respond(send, status, body, "application/json")
    else:
        await _respond(send, status, message.encode(), "text/plain; charset=utf-8")


class Guard:
    """Wraps the app: sessions, login, loopback-only mode and CSRF (module docstring)."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send, SECURITY_HEADERS)
        path: str = scope["path"]
        if path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        auth = self.auth
        headers = _headers(scope)
        api = path.startswith("/api/") or path == "/events"
        if not auth.login_required:
            client = scope.get("client")
            host = _host_name(headers.get("host", ""))
            if not is_loopback(client[0] if client else None) or host not in LOOPBACK_HOSTS:
                await _refuse(
                    send,
                    403,
                    "this device manager answers only on the loopback interface without a "
                    "login; set a password (bpiiot web passwd) to serve other addresses",
                    api,
                )
                return
        session = auth.session(_cookie(headers, auth.cookie_name))
        new_cookie: str | None = None
        if session is None:
            session = auth.new_session(logged_in=not auth.login_required)
            new_cookie = session.token
        scope.setdefault("state", {})["session"] = session
        if auth.login_required and not session.logged_in and path not in PUBLIC_PATHS:
            if api:
                await _refuse(send, 401, "login required: POST /api/login", True)
            else:
                target = path + (
                    "?" + scope["query_string"].decode() if scope["query_string"] else ""
                )
                await _respond(
                    send,
                    303,
                    b"",
                    "text/plain",
                    (
                        (b"location", f"/login?next={quote(target, safe='')}".encode()),
                        *self._cookie_header(new_cookie, scope),
                    ),
                )
            return
        method: str = scope["method"]
        if method not in SAFE_METHODS:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            body = b""
            more = True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > MAX_BODY:
                    await _refuse(send, 413, "request body too large", api)
                    return
            if path == "/api/login":
                if ctype != "application/json":
                    await _refuse(send, 415, "POST /api/login takes application/json", True)
                    return
            else:
                token = headers.get("x-csrf-token")
                if token is None and ctype == "application/x-www-form-urlencoded":
                    fields = parse_qs(body.decode("utf-8", "replace"))
                    token = (fields.get("csrf_token") or [""])[0]
                elif token is None:
                    ctype_ok = ctype in ("application/x-www-form-urlencoded", "application/json")
                    if not ctype_ok:
                        await _refuse(send, 415, f"unsupported content type {ctype!r}", api)
                        return
                if not Auth.csrf_ok(session, token):
                    await _refuse(
                        send,
                        403,
                        "CSRF token missing or wrong: reload the page (API: send the "
                        "X-CSRF-Token header that /api/login returned)",
                        api,
                    )
                    return
            receive = _replay(body)
        await self.app(scope, receive, self._with_cookie(send, new_cookie, scope))

    def _cookie_header(self, token: str | None, scope: Scope) -> list[tuple[bytes, bytes]]:
        if token is None:
            return []
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        value = f"{self.auth.cookie_name}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        return [(b"set-cookie", value.encode())]

    def _with_cookie(self, send: Send, token: str | None, scope: Scope) -> Send:
        if token is None:
            return send
        extra = self._cookie_header(token, scope)
        name = self.auth.cookie_name.encode() + b"="

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                hdrs = list(message.get("headers", []))
                # A handler that set the cookie itself (login) wins.
                if not any(k == b"set-cookie" and v.startswith(name) for k, v in hdrs):
                    message["headers"] = hdrs + extra
            await send(message)

        return wrapped


def _with_headers(send: Send, extra: tuple[tuple[bytes, bytes], ...]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, wait like a real receive would: the client is still there.
        return {"type": "http.disconnect"}

    return receive
