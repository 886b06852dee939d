"""Errors of the cloud bridge (a leaf module: imports nothing of the bridge)."""

from __future__ import annotations

from bpiiot.errors import BpiiotError


class BridgeError(BpiiotError):
    """Base class of the bridge's errors."""


class BridgeConfigError(BridgeError, ValueError):
    """The ``[bridge]`` table has a bad value, or a file it names is unusable."""


class QueueFull(BridgeError, OSError):
    """The on-disk queue reached its size limit (``queue_max_mb``) or the disk is full.

    The message that did not fit is not queued; every message queued before is kept.
    """


class BrokerRefused(BridgeError, ConnectionError):
    """The broker refused the connection (bad credentials, not authorised, ...)."""


class CommandRefused(BridgeError, PermissionError):
    """A command from the broker is not allowed by ``[bridge] commands`` or is malformed."""
