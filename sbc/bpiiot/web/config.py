"""``[web]``: the device manager served by ``bpiiot run``.

Registered with :func:`bpiiot.config.register_section` on import (it loads no web
framework), so a config file may carry::

    [web]
    host = "127.0.0.1"   # the default; any other address needs `bpiiot web passwd` first
    port = 8080
    # password_file = "~/.config/bpiiot/web-password"   (the default location)
    # require_login = false                             (true: a login on loopback too)

Without a ``[web]`` table the service serves no web page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bpiiot.config import ConfigError, register_section


@dataclass
class WebConfig:
    """Where the device manager listens, and who may use it."""

    host: str = "127.0.0.1"
    port: int = 8080
    password_file: str | None = None
    require_login: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"[web] port must be 1..65535, got {self.port}")
        if not self.host:
            raise ConfigError("[web] host must not be empty")

    def password_path(self) -> Path | None:
        """The password file, with ``~`` expanded, or None for the default location."""
        return Path(os.path.expanduser(self.password_file)) if self.password_file else None


register_section("web", WebConfig)
