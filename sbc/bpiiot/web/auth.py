"""Who may use the device manager: password file, sessions, CSRF tokens, login rate limit.

The password is never stored: a salted scrypt hash (``hashlib.scrypt``) sits in a 0600
JSON file written by ``bpiiot web passwd``. There is no default password: a device manager
bound to anything but the loopback interface refuses to start until one is set.

Every browser gets a session (a random cookie value) carrying its own CSRF token, also on
the loopback interface where no login is needed: a web page elsewhere can make the user's
browser POST to ``127.0.0.1``, and the token is what it cannot forge. Sessions expire after
``session_ttl_s`` of life and after ``idle_ttl_s`` without a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bpiiot.errors import BpiiotError
from bpiiot.files import write_private

DEFAULT_PASSWORD_PATH = Path("~/.config/bpiiot/web-password.json")
#: Shortest password ``bpiiot web passwd`` accepts.
MIN_PASSWORD_LENGTH = 10
#: scrypt cost: 2^15 x 8 x 128 bytes = 32 MiB and about 0.1 s on a Raspberry Pi 4.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class PasswordError(BpiiotError):
    """The password file is missing, unreadable or malformed, or a new password is too weak."""


def default_password_path() -> Path:
    """``$BPIIOT_WEB_PASSWORD_FILE``, else ``~/.config/bpiiot/web-password.json``."""
    env = os.environ.get("BPIIOT_WEB_PASSWORD_FILE")
    return Path(env).expanduser() if env else DEFAULT_PASSWORD_PATH.expanduser()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def hash_password(password: str, *, n: int = SCRYPT_N) -> dict[str, object]:
    """A salted scrypt record of ``password`` (what the password file holds)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    salt = secrets.token_bytes(16)
    return {
        "kdf": "scrypt",
        "n": n,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "hash": _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P).hex(),
    }


def set_password(path: Path, password: str, *, n: int = SCRYPT_N) -> None:
    """Write the hash of ``password`` to ``path`` (atomically, mode 0600)."""
    write_private(path, json.dumps(hash_password(password, n=n)) + "\n")


def load_password_record(path: Path) -> dict[str, object]:
    """Read and check a password file; raises :class:`PasswordError` naming what is wrong."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise PasswordError(
            f"no web password is set ({path} does not exist): run `bpiiot web passwd` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise PasswordError(f"cannot read the web password file {path}: {exc}") from None
    ok = (
        isinstance(record, dict)
        and record.get("kdf") == "scrypt"
        and all(isinstance(record.get(k), int) for k in ("n", "r", "p"))
        and all(isinstance(record.get(k), str) for k in ("salt", "hash"))
    )
    if not ok:
        raise PasswordError(f"{path} is not a bpiiot web password file: run `bpiiot web passwd`")
    return dict(record)


def verify_password(record: dict[str, object], password: str) -> bool:
    """True when ``password`` matches the scrypt ``record`` (constant-time comparison)."""
    salt = bytes.fromhex(str(record["salt"]))
    n, r, p = (int(str(record[k])) for k in ("n", "r", "p"))
    got = _scrypt(password, salt, n, r, p)
    return hmac.compare_digest(got, bytes.fromhex(str(record["hash"])))


@dataclass
class Session:
    """One browser's session: its CSRF token, whether it logged in, when it expires."""

    token: str
    csrf: str
    created: float
    last_seen: float
    logged_in: bool = False


class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key (a sliding window)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        now = time.monotonic()
        with self._lock:
            return self._wait(self._recent(key, now), now)

    def _wait(self, q: deque[float], now: float) -> float:
        if len(q) < self.limit:
            return 0.0
        return max(1e-3, q[0] + self.window_s - now)

    def hit(self, key: str) -> None:
        """Count one event (a failed login) for ``key``."""
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)

    def attempt(self, key: str) -> float:
        """Count an attempt now, unless ``key`` is over its limit: then return the wait.

        Checking and counting in one step means parallel attempts cannot all slip in
        under the limit; :meth:`succeeded` takes back the count of one that succeeded.
        """
        now = time.monotonic()
        with self._lock:
            q = self._recent(key, now)
            wait = self._wait(q, now)
            if wait == 0.0:
                q.append(now)
            return wait

    def succeeded(self, key: str) -> None:
        """The latest attempt of ``key`` was not a failure: stop counting it."""
        with self._lock:
            q = self._events.get(key)
            if q:
                q.pop()


@dataclass
class Auth:
    """The device manager's access policy.

    ``password_file`` None: no login (only for the loopback interface; the app then also
    refuses requests from other addresses). Otherwise every page and API call needs a
    session that logged in with the password in that file.
    """

    password_file: Path | None = None
    session_ttl_s: float = 12 * 3600.0
    idle_ttl_s: float = 30 * 60.0
    login_limit: int = 5
    """Failed logins allowed per client address in ``login_window_s``."""
    login_window_s: float = 60.0
    cookie_name: str = "bpiiot_session"
    _sessions: dict[str, Session] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _record: dict[str, object] | None = field(default=None, repr=False)
    _limiter: RateLimiter | None = field(default=None, repr=False)

    @classmethod
    def local(cls) -> Auth:
        """No login: for a device manager on 127.0.0.1 only."""
        return cls()

    @classmethod
    def with_password_file(cls, path: Path | str, **kw: float | int) -> Auth:
        """Login required, checked against the scrypt hash in ``path`` (read now)."""
        auth = cls(Path(path), **kw)  # type: ignore[arg-type]
        auth._record = load_password_record(Path(path))
        return auth

    @property
    def login_required(self) -> bool:
        """True when every page and API call needs a logged-in session."""
        return self.password_file is not None

    @property
    def limiter(self) -> RateLimiter:
        """The failed-login rate limiter."""
        if self._limiter is None:
            self._limiter = RateLimiter(self.login_limit, self.login_window_s)
        return self._limiter

    def check_password(self, password: str) -> bool:
        """True when ``password`` is right (slow on purpose: scrypt)."""
        if self._record is None:
            return False
        return verify_password(self._record, password)

    # -- sessions --------------------------------------------------------------------

    def new_session(self, *, logged_in: bool = False) -> Session:
        """A fresh session with its own token and CSRF token."""
        now = time.monotonic()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, logged_in)
        with self._lock:
            self._expire(now)
            self._sessions[s.token] = s
        return s

    def session(self, token: str | None) -> Session | None:
        """The live session for a cookie value (None when unknown or expired); touches it."""
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._sessions.get(token)
            if s is None:
                return None
            if now - s.created > self.session_ttl_s or now - s.last_seen > self.idle_ttl_s:
                del self._sessions[token]
                return None
            s.last_seen = now
            return s

    def end_session(self, token: str | None) -> None:
        """Forget a session (logout)."""
        if token:
            with self._lock:
                self._sessions.pop(token, None)

    def _expire(self, now: float) -> None:
        dead = [
            t
            for t, s in self._sessions.items()
            if now - s.created > self.session_ttl_s or now - s.last_seen > self.idle_ttl_s
        ]
        for t in dead:
            del self._sessions[t]

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        """True when ``token`` is the session's CSRF token (constant-time comparison)."""
        return bool(token) and hmac.compare_digest(session.csrf, token or "")
