"""Outputs a rule can drive (a relay that stops the machine, a lamp): one small interface.

An :class:`OutputDriver` sets a named output. :class:`BoardOutputs` drives the interface
board's digital outputs through the protocol (``set_output``); the cloud bridge's Blinka
backend drives the SBC's own GPIO behind the same interface. The controller's ``output``
action calls ``driver.set(name, value)`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bpiiot.board import Board
from bpiiot.errors import BpiiotError


class OutputError(BpiiotError):
    """An output is unknown or could not be set."""


@runtime_checkable
class OutputDriver(Protocol):
    """Sets named digital outputs."""

    def set(self, name: str, value: int) -> None:
        """Drive output ``name`` to ``value`` (0 or 1); raise :class:`OutputError` on failure."""


class BoardOutputs:
    """Outputs on interface boards: ``names`` maps an output name to ``(board, pin)``.

    A name that is a number (``"5"``) means that pin on the only board, or on ``default``.
    ``boards`` is a callable returning the current :class:`Board` of a board name.
    """

    def __init__(
        self,
        boards: Callable[[str], Board | None],
        names: dict[str, tuple[str, int]] | None = None,
        default: str | None = None,
    ) -> None:
        self._boards = boards
        self.names = dict(names or {})
        self.default = default

    def resolve(self, name: str) -> tuple[str, int]:
        """(board, pin) of output ``name``."""
        if name in self.names:
            return self.names[name]
        if name.isdigit() and self.default is not None:
            return self.default, int(name)
        raise OutputError(
            f"unknown output {name!r}: name it in [[board]] outputs = {{ {name} = PIN }}"
        )

    def set(self, name: str, value: int) -> None:
        """Drive ``name`` through its board's ``set_output`` command (waits for the ack)."""
        board_name, pin = self.resolve(name)
        board = self._boards(board_name)
        if board is None:
            raise OutputError(f"output {name!r}: board {board_name!r} is not connected")
        try:
            board.set_output(pin, bool(value))
        except BpiiotError as exc:
            raise OutputError(f"output {name!r} (board {board_name} pin {pin}): {exc}") from exc
