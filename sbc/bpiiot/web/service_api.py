"""What the device manager uses of the service (``bpiiot run``), as typing Protocols.

The web app is a client of the service: it reads state through these members, listens to
the service's :class:`~bpiiot.bus.Bus` for live updates, and changes things only through
the board SDK calls the CLI also uses and :meth:`RuleBook.replace_rules`. Anything with
these members works: the real ``bpiiot.service.Service``, or the test harness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from bpiiot.board import Board
from bpiiot.bus import Bus
from bpiiot.errors import BpiiotError
from bpiiot.link import Link
from bpiiot.messages import Hello, Report


class RuleValidationError(BpiiotError, ValueError):
    """Rules were refused; ``errors`` maps ``"<rule index>.<field>"`` to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class EditConflict(BpiiotError):
    """Somebody else changed the same thing since the version this edit was based on."""


class BoardHandle(Protocol):
    """One configured board as the service holds it."""

    @property
    def board(self) -> Board:
        """The SDK board (configure, set_output, reboot, set_key, get_config...)."""

    @property
    def link(self) -> Link:
        """Its link (``stats``)."""

    @property
    def hello(self) -> Hello | None:
        """The board's last hello, None before the first."""

    @property
    def connected(self) -> bool:
        """True while the port is open and the board answers."""


class Store(Protocol):
    """The service's storage, read-only here."""

    def reports_since(self, board: str, since: float) -> Sequence[tuple[float, Report]]:
        """(time received, report) of ``board`` received at or after ``since``, oldest first."""

    def incidents(self, limit: int = 50) -> Sequence[Mapping[str, Any]]:
        """The latest incidents, newest first, as JSON-friendly dicts.

        Fields: ``id``, ``rule``, ``board``, ``state`` (open/resolved), ``opened``,
        ``closed`` (Unix times), ``key`` (the outbox key of its action),
        ``evidence_hash``, ``evidence_ok`` (the stored frames hash to ``evidence_hash``:
        True/False, None when not checked), ``frames``: list of ``{"received",
        "window_seq", "vel_rms_um_s", "flags"}``.
        """


class RuleBook(Protocol):
    """The controller's rules: their configs, their states, and the one way to change them."""

    def current(self) -> tuple[list[dict[str, Any]], str]:
        """(the rules as JSON-friendly dicts, in order; the version they are at)."""

    def states(self) -> Mapping[str, str]:
        """Rule name -> state (inactive, pending, firing)."""

    def replace_rules(self, rules: list[dict[str, Any]], expected_version: str) -> str:
        """Validate, persist atomically and apply ``rules``; returns the new version.

        Raises :class:`RuleValidationError` (nothing is changed) or :class:`EditConflict`
        when the rules are no longer at ``expected_version``.
        """


@runtime_checkable
class PreviewingRuleBook(RuleBook, Protocol):
    """A rule book that can also replay one rule over stored history (optional)."""

    def preview(self, rule: dict[str, Any], since: float) -> list[dict[str, Any]]:
        """When ``rule`` (not saved) would have fired on the reports stored since ``since``.

        Returns ``{"time", "window_seq", "value"}`` per firing, oldest first; raises
        :class:`RuleValidationError` (keys ``"0.<field>"``) for an invalid rule.
        """


class Outbox(Protocol):
    """The chain outbox (:class:`bpiiot.chain.outbox.Outbox`)."""

    def entries(self, state: str | None = None) -> Sequence[Any]:
        """Every entry (:class:`~bpiiot.chain.outbox.OutboxEntry`), optionally of one state."""

    def counts(self) -> dict[str, int]:
        """Entries per state."""


class Service(Protocol):
    """Exactly what :func:`bpiiot.web.create_app` uses of the service."""

    @property
    def bus(self) -> Bus:
        """The service's bus (the app subscribes one bounded listener)."""

    @property
    def boards(self) -> Mapping[str, BoardHandle]:
        """Configured boards by name."""

    @property
    def store(self) -> Store:
        """Stored reports and incidents."""

    @property
    def rules(self) -> RuleBook:
        """The controller's rules."""

    @property
    def outbox(self) -> Outbox | None:
        """The chain outbox (None when the service has no wallet)."""

    def status(self) -> dict[str, Any]:
        """JSON-friendly status; the app reads ``status()["chain"]``: ``address``,
        ``balance_wei``, ``node`` (``url``, ``connected``, ``chain_id``, ``block``),
        ``contracts`` (name -> address). It must hold no secret."""

    def save_link_key(self, board: str, key: bytes) -> None:
        """Persist a link key just provisioned on ``board`` (0600), for the next start."""
