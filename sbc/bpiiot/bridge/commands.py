"""Board commands that arrive from the broker, carried out through the SDK's own calls.

A :class:`CommandRequest` names a board, a command (one of
:data:`bpiiot.bridge.config.COMMANDS`) and its arguments. :func:`run_command` calls the same
:class:`bpiiot.Board` method the CLI does, after checking that ``[bridge] commands`` allows
it; the result (or the error) is a JSON-friendly dict the bridge publishes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bpiiot.board import Board
from bpiiot.bridge.errors import CommandRefused
from bpiiot.errors import BpiiotError

BoardLookup = Mapping[str, Board] | Callable[[str], Board | None]
"""How the bridge finds a board by name: the service's ``boards`` mapping or a function."""

_CONFIG_FIELDS = ("sample_rate_hz", "window_ms", "hop_ms", "channels", "machine_class")


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One command from the broker."""

    board: str | None
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    """The requester's correlation id, echoed in the result."""


def find_board(boards: BoardLookup | None, name: str | None) -> Board:
    """The board called ``name``; raises :class:`CommandRefused` when there is none."""
    board: Board | None = None
    if boards is not None and name:
        try:
            board = boards(name) if callable(boards) else boards.get(name)
        except (KeyError, LookupError):
            board = None
    if board is None:
        raise CommandRefused(f"no board called {name!r} on this SBC")
    return board


def _int_arg(args: dict[str, Any], name: str) -> int:
    value = args.get(name)
    if type(value) is not int:
        raise CommandRefused(f"argument {name} must be an integer, got {value!r}")
    return value


def run_command(
    request: CommandRequest, allowed: list[str], boards: BoardLookup | None
) -> dict[str, Any]:
    """Carry out ``request`` on its board; returns ``{"result": ...}``.

    Raises :class:`CommandRefused` when the command is not allowed or malformed, and the
    SDK's errors (:class:`bpiiot.CommandError`...) when the board refuses or does not answer.
    """
    cmd = request.command
    if cmd not in allowed:
        raise CommandRefused(
            f"command {cmd!r} is not allowed on this SBC (add it to [bridge] commands)"
        )
    board = find_board(boards, request.board)
    args = request.args
    if cmd == "ping":
        board.ping()
        return {"result": None}
    if cmd == "get_status":
        return {"result": board.get_status().to_dict()}
    if cmd == "get_config":
        return {"result": board.get_config().to_dict()}
    if cmd == "configure":
        unknown = sorted(set(args) - set(_CONFIG_FIELDS))
        if unknown or not args:
            raise CommandRefused(
                f"configure takes some of {', '.join(_CONFIG_FIELDS)}; got {sorted(args)}"
            )
        settings = {k: _int_arg(args, k) for k in args}
        return {"result": board.configure(**settings).to_dict()}
    if cmd == "set_output":
        value = args.get("value")
        if not isinstance(value, bool | int):
            raise CommandRefused(f"set_output needs value true or false, got {value!r}")
        board.set_output(_int_arg(args, "pin"), bool(value))
        return {"result": None}
    if cmd == "reboot":
        board.reboot(wait=False)
        return {"result": None}
    raise CommandRefused(f"command {cmd!r} is not a board command")


def describe_error(exc: BaseException) -> str:
    """A one-line error for the result message."""
    if isinstance(exc, BpiiotError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
