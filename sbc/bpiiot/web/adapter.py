"""The running service (``bpiiot.service.Service``) as the device manager sees it.

The service already has the members of :class:`bpiiot.web.service_api.Service`; only its
rule errors have other names: a rejected table raises ``bpiiot.rules.RuleError`` (with
``errors`` keyed ``"<index>.<key>"``) and a racing edit ``bpiiot.service.RulesConflict``.
:func:`service_view` passes everything through and translates those two into
:class:`~bpiiot.web.service_api.RuleValidationError` and
:class:`~bpiiot.web.service_api.EditConflict`, so the pages answer 400 and 409/412.
``bpiiot run --web`` uses it as ``WebComponent(adapt=service_view)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from bpiiot.web.service_api import EditConflict, RuleValidationError

T = TypeVar("T")


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except EditConflict:
        raise
    except RuleValidationError:
        raise
    except Exception as exc:
        # Matched by name: the service's modules are not imported here.
        names = {c.__name__ for c in type(exc).__mro__}
        if "RulesConflict" in names:
            raise EditConflict(str(exc)) from None
        errors = getattr(exc, "errors", None)
        if "RuleError" in names and isinstance(errors, Mapping):
            raise RuleValidationError({str(k): str(v) for k, v in errors.items()}) from None
        raise


class RulesView:
    """The service's rules, with its errors translated (see the module docstring)."""

    def __init__(self, rules: Any) -> None:
        self._rules = rules

    def current(self) -> tuple[list[dict[str, Any]], str]:
        """(the rule tables in force, their version)."""
        tables, version = self._rules.current()
        return [dict(t) for t in tables], str(version)

    def states(self) -> Mapping[str, str]:
        """Rule name -> its most urgent state."""
        return dict(self._rules.states())

    def preview(self, rule: dict[str, Any], since: float) -> list[dict[str, Any]]:
        """When ``rule`` would have fired on the stored history since ``since``."""
        return list(_translated(lambda: self._rules.preview(rule, since)))

    def replace_rules(self, rules: list[dict[str, Any]], expected_version: str) -> str:
        """Validate, save atomically and apply ``rules``; returns the new version."""
        return str(_translated(lambda: self._rules.replace_rules(rules, expected_version)))


class ServiceView:
    """The service with :class:`RulesView` in place of its rules; the rest passes through."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self.rules = RulesView(service.rules)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


def service_view(service: Any) -> Any:
    """The device manager's view of the running service (``WebComponent(adapt=...)``)."""
    return ServiceView(service)
