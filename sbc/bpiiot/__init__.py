"""bpiiot: the SBC side of the BPIIoT edge kit.

The data flows one way: bytes -> frames (:mod:`bpiiot.wire`) -> verified typed
messages (:mod:`bpiiot.messages`) -> subscribers of a :class:`~bpiiot.link.Link`
(storage, rules, bridges, the web page) -> outbox -> signer -> node
(:mod:`bpiiot.chain`). :func:`connect` is the front door for a custom app.
"""

from bpiiot.board import (
    Board,
    CommandError,
    CommandNacked,
    CommandTimeout,
    KeyRequired,
    Unsupported,
    UnsupportedProtocol,
    connect,
)
from bpiiot.errors import BpiiotError
from bpiiot.link import Link, LinkError, LinkStats
from bpiiot.messages import Config, Hello, Message, Report, Status
from bpiiot.wire import Frame, FrameError

__version__ = "0.1.0"

__all__ = [
    "Board",
    "BpiiotError",
    "CommandError",
    "CommandNacked",
    "CommandTimeout",
    "Config",
    "Frame",
    "FrameError",
    "Hello",
    "KeyRequired",
    "Link",
    "LinkError",
    "LinkStats",
    "Message",
    "Report",
    "Status",
    "Unsupported",
    "UnsupportedProtocol",
    "connect",
]
