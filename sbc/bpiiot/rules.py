"""Rules: conditions on verified reports, counted over windows, with one incident per excursion.

A rule is a condition on a report (velocity RMS on any or one axis, acceleration RMS or
peak, temperature, ISO 20816 zone), a count ("5 of the last 10 windows", counted by
``window_seq`` so a lost frame is never a window that passed; or "for 30 s"), a clear
condition (hysteresis) held for a number of consecutive windows, and a cooldown. Each rule
moves through the states of a Prometheus alerting rule::

    inactive -> pending -> firing -> resolved -> (pending ...)

Windows the board flags as not representative (:class:`bpiiot.messages.ReportFlag`:
settling, overrun, clipping...) never count, neither as a hit nor as a clear window.

Going to ``firing`` opens one incident: its number, its idempotency key
``"{board}/{rule}/{number}"``, the evidence hash over the exact frames that made it fire
(:mod:`bpiiot.evidence`) and the rule's new state are written to the store in one
transaction, so a restart, a replayed frame or a rule that keeps firing never opens it
twice. The incident's action (a contract call, a board output, a log line) is carried out
by :mod:`bpiiot.controller`.

Rules come from TOML (``[[rule]]`` tables, :func:`rules_from_config`) or from Python
(:class:`Rule` with any callable condition)::

    Rule("bearing-hot", when=lambda r: (r.temperature_cdeg_c or 0) > 7000, for_s=30,
         action=Action("order_part", part_id=7, quantity=1))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bpiiot import evidence, iso20816, wire
from bpiiot import messages as m
from bpiiot.errors import BpiiotError
from bpiiot.store import EvidenceFrame, Store

log = logging.getLogger(__name__)

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
STATES = (INACTIVE, PENDING, FIRING, RESOLVED)

#: Report fields a configured rule can test, with their unit.
FIELDS = {
    "vel_rms_mm_s": "mm/s",
    "acc_rms_mg": "mg",
    "acc_peak_mg": "mg",
    "temperature_c": "degrees C",
    "zone": "ISO 20816 zone A-D",
}
AXES = ("any", "x", "y", "z")
OPS = (">", ">=", "<", "<=")
ACTIONS = ("request_service", "order_part", "output", "log")

#: Most frames kept as evidence of one incident (a long "for" streak keeps its last ones).
MAX_EVIDENCE_FRAMES = 256


class RuleError(BpiiotError, ValueError):
    """A rule definition is invalid (the message names the rule and the key).

    ``field`` is the key at fault; from :func:`rules_from_config`, ``errors`` maps
    ``"<rule index>.<key>"`` to a message for every invalid table.
    """

    def __init__(
        self, message: str, field: str = "rule", errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.errors = errors if errors is not None else {f"0.{field}": message}


@dataclass(frozen=True)
class Action:
    """What an incident does: ``kind`` is one of :data:`ACTIONS`, ``params`` its arguments.

    - ``request_service``: ``fault_code`` -> ``MachineService.requestService``
    - ``order_part``: ``part_id``, ``quantity`` -> paid ``PartReplacement.orderPart``
    - ``output``: ``output`` (a name the output driver knows, or a pin number), ``value``
    - ``log``: a log line (and a ``log`` event)
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __init__(self, kind: str, **params: Any) -> None:
        if kind not in ACTIONS:
            raise RuleError(f"unknown action {kind!r} (known: {', '.join(ACTIONS)})")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", dict(params))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {"kind": self.kind, **self.params}


Measure = Callable[[m.Report], float | None]
Condition = Callable[[m.Report], bool]


@dataclass
class Rule:
    """One rule (see the module docstring).

    ``when`` decides whether a window is a hit; ``clear`` whether it counts towards
    resolving (default: not ``when``); ``measure`` gives the value shown in events.
    ``count`` of the last ``of`` windows (``of`` 0 means ``count``), or ``for_s`` seconds
    of consecutive hits (board time). ``clear_windows`` consecutive clear windows resolve
    a firing rule; after that, ``cooldown_s`` must pass before it can fire again.
    ``boards`` limits the rule to some boards (empty: every board).
    """

    name: str
    when: Condition
    clear: Condition | None = None
    measure: Measure | None = None
    count: int = 1
    of: int = 0
    for_s: float = 0.0
    clear_windows: int = 3
    cooldown_s: float = 0.0
    action: Action | None = None
    boards: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    """The TOML table this rule came from (None for a rule written in Python)."""
    evaluate: Callable[[m.Report], tuple[bool, float | None]] | None = None
    """Optional: ``(hit, value)`` in one call (what ``when`` and ``measure`` give apart)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise RuleError(f"rule name {self.name!r} must be non-empty and contain no '/'")
        if self.count < 1:
            raise RuleError(f"rule {self.name}: count must be at least 1", "count")
        if self.of == 0:
            self.of = self.count
        if self.of < self.count:
            raise RuleError(f"rule {self.name}: count {self.count} of {self.of} windows", "of")
        if self.of > 10000:
            raise RuleError(
                f"rule {self.name}: of = {self.of} windows is too many (max 10000)", "of"
            )
        if self.for_s < 0 or self.cooldown_s < 0 or self.clear_windows < 1:
            raise RuleError(f"rule {self.name}: for_s, cooldown_s >= 0 and clear_windows >= 1")

    def applies_to(self, board: str) -> bool:
        """True if the rule watches ``board``."""
        return not self.boards or board in self.boards

    def is_clear(self, report: m.Report) -> bool:
        """True if the window counts towards resolving."""
        return self.clear(report) if self.clear is not None else not self.when(report)


# -- rule helpers for custom apps ------------------------------------------------------------


def vel_rms_mm_s(axis: str = "any") -> Measure:
    """Velocity RMS in mm/s on ``axis`` (``any``: the highest of the three)."""
    return _axis_measure("vel_rms_um_s", axis, 1000.0)


def acc_rms_mg(axis: str = "any") -> Measure:
    """Acceleration RMS in mg on ``axis``."""
    return _axis_measure("acc_rms_mg", axis, 1.0)


def acc_peak_mg(axis: str = "any") -> Measure:
    """Acceleration peak in mg on ``axis``."""
    return _axis_measure("acc_peak_mg", axis, 1.0)


def temperature_c(report: m.Report) -> float | None:
    """Temperature in degrees C (None when the board has none)."""
    t = report.temperature_cdeg_c
    return None if t is None else t / 100.0


def zone(machine_class: str = "group2-rigid", axis: str = "any") -> Measure:
    """ISO 20816 zone (0..3 for A..D) of the velocity RMS on ``axis``."""
    if machine_class not in iso20816.MACHINE_CLASSES:
        raise RuleError(f"unknown machine class {machine_class!r}")
    vel = _axis_measure("vel_rms_um_s", axis, 1.0)

    def measure(report: m.Report) -> float | None:
        v = vel(report)
        return None if v is None else float(iso20816.zone(int(v), machine_class))

    return measure


def _axis_measure(attr: str, axis: str, scale: float) -> Measure:
    if axis not in AXES:
        raise RuleError(f"axis {axis!r} is not one of {', '.join(AXES)}")
    if axis == "any":

        def any_axis(report: m.Report) -> float | None:
            return float(max(getattr(report, attr))) / scale

        return any_axis
    i = AXES.index(axis) - 1

    def one_axis(report: m.Report) -> float | None:
        return getattr(report, attr)[i] / scale  # type: ignore[no-any-return]

    return one_axis


def compare(measure: Measure, op: str, threshold: float) -> Condition:
    """A condition ``measure(report) <op> threshold`` (a missing value is never a hit)."""
    if op not in OPS:
        raise RuleError(f"operator {op!r} is not one of {', '.join(OPS)}")

    def cond(report: m.Report) -> bool:
        v = measure(report)
        if v is None:
            return False
        if op == ">":
            return v > threshold
        if op == ">=":
            return v >= threshold
        if op == "<":
            return v < threshold
        return v <= threshold

    return cond


def above(measure: Measure, threshold: float) -> Condition:
    """A condition: ``measure(report) > threshold``."""
    return compare(measure, ">", threshold)


def below(measure: Measure, threshold: float) -> Condition:
    """A condition: ``measure(report) < threshold`` (e.g. a clear condition)."""
    return compare(measure, "<", threshold)


def measured_compare(
    measure: Measure, op: str, threshold: float
) -> Callable[[m.Report], tuple[bool, float | None]]:
    """``(measure(report) <op> threshold, measure(report))`` with one measurement."""
    if op not in OPS:
        raise RuleError(f"operator {op!r} is not one of {', '.join(OPS)}")
    if op == ">":

        def gt(report: m.Report) -> tuple[bool, float | None]:
            v = measure(report)
            return (v is not None and v > threshold), v

        return gt
    if op == ">=":

        def ge(report: m.Report) -> tuple[bool, float | None]:
            v = measure(report)
            return (v is not None and v >= threshold), v

        return ge
    if op == "<":

        def lt(report: m.Report) -> tuple[bool, float | None]:
            v = measure(report)
            return (v is not None and v < threshold), v

        return lt

    def le(report: m.Report) -> tuple[bool, float | None]:
        v = measure(report)
        return (v is not None and v <= threshold), v

    return le


_OPPOSITE = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


def rule_from_table(table: dict[str, Any]) -> Rule:
    """Build a :class:`Rule` from one ``[[rule]]`` TOML table (see README "Rules")."""
    known = {
        "name",
        "field",
        "axis",
        "op",
        "threshold",
        "clear_threshold",
        "count",
        "of",
        "for_s",
        "clear_windows",
        "cooldown_s",
        "machine_class",
        "boards",
        "action",
        "fault_code",
        "part_id",
        "quantity",
        "output",
        "value",
        "message",
        "enabled",
    }
    name = table.get("name")
    if not isinstance(name, str):
        raise RuleError("every [[rule]] needs a name (text)", "name")
    unknown = set(table) - known
    if unknown:
        raise RuleError(
            f"rule {name}: unknown key(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})",
            sorted(unknown)[0],
        )

    def get(key: str, types: tuple[type, ...], default: Any) -> Any:
        v = table.get(key, default)
        if v is not default and (not isinstance(v, types) or isinstance(v, bool)):
            if not (bool in types and isinstance(v, bool)):
                names = "/".join(t.__name__ for t in types)
                raise RuleError(f"rule {name}: {key} must be {names}, got {v!r}", key)
        return v

    fld = get("field", (str,), None)
    if fld not in FIELDS:
        raise RuleError(f"rule {name}: field must be one of {', '.join(FIELDS)}", "field")
    axis = get("axis", (str,), "any")
    op = get("op", (str,), ">=")
    if op not in OPS:
        raise RuleError(f"rule {name}: op must be one of {', '.join(OPS)}", "op")
    machine_class = get("machine_class", (str,), "group2-rigid")
    if fld == "zone":
        raw = table.get("threshold")
        if not isinstance(raw, str) or raw.upper() not in iso20816.ZONE_NAMES:
            raise RuleError(
                f"rule {name}: a zone threshold is a letter A-D, got {raw!r}", "threshold"
            )
        threshold = float(iso20816.ZONE_NAMES.index(raw.upper()))
        clear_raw = table.get("clear_threshold")
        clear_t: float | None = None
        if clear_raw is not None:
            if not isinstance(clear_raw, str) or clear_raw.upper() not in iso20816.ZONE_NAMES:
                raise RuleError(
                    f"rule {name}: clear_threshold is a zone letter A-D", "clear_threshold"
                )
            clear_t = float(iso20816.ZONE_NAMES.index(clear_raw.upper()))
    else:
        threshold = float(get("threshold", (int, float), None) or 0.0)
        if "threshold" not in table:
            raise RuleError(f"rule {name}: threshold is missing", "threshold")
        ct = get("clear_threshold", (int, float), None)
        clear_t = None if ct is None else float(ct)
    try:
        measure: Measure
        if fld == "vel_rms_mm_s":
            measure = vel_rms_mm_s(axis)
        elif fld == "acc_rms_mg":
            measure = acc_rms_mg(axis)
        elif fld == "acc_peak_mg":
            measure = acc_peak_mg(axis)
        elif fld == "temperature_c":
            measure = temperature_c
        else:
            measure = zone(machine_class, axis)
    except RuleError as exc:
        raise RuleError(f"rule {name}: {exc}", "axis") from None
    when = compare(measure, op, threshold)
    clear = compare(measure, _OPPOSITE[op], clear_t) if clear_t is not None else None
    kind = get("action", (str,), "log")
    if kind not in ACTIONS:
        raise RuleError(f"rule {name}: action must be one of {', '.join(ACTIONS)}", "action")
    params: dict[str, Any] = {}
    if kind == "request_service":
        params["fault_code"] = get("fault_code", (int,), 1)
    elif kind == "order_part":
        params["part_id"] = get("part_id", (int,), None)
        if params["part_id"] is None:
            raise RuleError(f"rule {name}: order_part needs part_id", "part_id")
        params["quantity"] = get("quantity", (int,), 1)
    elif kind == "output":
        out = table.get("output")
        if not isinstance(out, str | int) or isinstance(out, bool):
            raise RuleError(f"rule {name}: output needs output = a name or a pin number", "output")
        params["output"] = out
        params["value"] = int(get("value", (int, bool), 1))
    if "message" in table:
        params["message"] = str(table["message"])
    if not isinstance(table.get("enabled", True), bool):
        raise RuleError(f"rule {name}: enabled must be true or false", "enabled")
    boards = table.get("boards", [])
    if not isinstance(boards, list) or not all(isinstance(b, str) for b in boards):
        raise RuleError(f"rule {name}: boards must be a list of board names", "boards")
    return Rule(
        name,
        when,
        clear,
        measure,
        count=get("count", (int,), 1),
        of=get("of", (int,), 0),
        for_s=float(get("for_s", (int, float), 0.0)),
        clear_windows=get("clear_windows", (int,), 3),
        cooldown_s=float(get("cooldown_s", (int, float), 0.0)),
        action=Action(kind, **params),
        boards=tuple(boards),
        config=dict(table),
        evaluate=measured_compare(measure, op, threshold),
    )


def rules_from_config(tables: Iterable[dict[str, Any]]) -> list[Rule]:
    """Build every ``[[rule]]``; names must be unique. A rule with ``enabled = false`` is
    checked like the others but not returned: it stays in the file and evaluates nothing."""
    rules: list[Rule] = []
    errors: dict[str, str] = {}
    disabled: set[str] = set()
    for i, table in enumerate(tables):
        try:
            if not isinstance(table, dict):
                raise RuleError("a rule must be a table")
            rule = rule_from_table(table)
            rules.append(rule)
            if table.get("enabled", True) is False:
                disabled.add(rule.name)
        except RuleError as exc:
            errors[f"{i}.{exc.field}"] = str(exc)
    if errors:
        raise RuleError("; ".join(errors.values()), next(iter(errors)).split(".", 1)[1], errors)
    names = [r.name for r in rules]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        first = names.index(sorted(dup)[0], names.index(sorted(dup)[0]) + 1)
        message = f"rule names must be unique: {', '.join(sorted(dup))}"
        raise RuleError(message, "name", {f"{first}.name": message})
    return [r for r in rules if r.name not in disabled]


# -- evaluation ------------------------------------------------------------------------------


@dataclass
class RuleState:
    """Where one rule stands for one board (persisted in the store)."""

    state: str = INACTIVE
    #: (window_seq, hit, evidence frame or None) of the recent windows, oldest first.
    history: list[tuple[int, bool, EvidenceFrame | None]] = field(default_factory=list)
    streak_start_ms: int | None = None
    clear_run: int = 0
    last_window: int | None = None
    cooldown_until: float = 0.0
    incident_id: int | None = None
    incidents: int = 0
    value: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The persisted form."""
        return {
            "state": self.state,
            "history": [
                [w, h, None if f is None else [f.session, f.seq, f.received, f.body.hex()]]
                for w, h, f in self.history
            ],
            "streak_start_ms": self.streak_start_ms,
            "clear_run": self.clear_run,
            "last_window": self.last_window,
            "cooldown_until": self.cooldown_until,
            "incident_id": self.incident_id,
            "incidents": self.incidents,
            "value": self.value,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RuleState:
        """Read the persisted form back."""
        hist = [
            (
                int(w),
                bool(h),
                None if f is None else EvidenceFrame(f[0], f[1], f[2], bytes.fromhex(f[3])),
            )
            for w, h, f in d.get("history", [])
        ]
        return cls(
            state=d.get("state", INACTIVE),
            history=hist,
            streak_start_ms=d.get("streak_start_ms"),
            clear_run=int(d.get("clear_run", 0)),
            last_window=d.get("last_window"),
            cooldown_until=float(d.get("cooldown_until", 0.0)),
            incident_id=d.get("incident_id"),
            incidents=int(d.get("incidents", 0)),
            value=d.get("value"),
        )


@dataclass(frozen=True)
class Transition:
    """A rule moved from ``old`` to ``new`` on one board's window."""

    board: str
    rule: str
    old: str
    new: str
    value: float | None
    window_seq: int
    incident: dict[str, Any] | None = None
    """For ``firing``: the incident opened (id, number, key, evidence_hash, action)."""
    resolved_incident: int | None = None
    """For ``resolved``: the id of the incident that closed."""

    def event(self) -> dict[str, Any]:
        """The ``rule`` event's data (see :mod:`bpiiot.bus`)."""
        return {
            "rule": self.rule,
            "state": self.new,
            "value": self.value,
            "window_seq": self.window_seq,
        }


class _LazyFrame:
    """A frame's evidence form, COBS-decoded once and only if some rule needs it."""

    __slots__ = ("_ev", "encoded", "received", "seq", "session")

    def __init__(self, session: int, seq: int, received: float, encoded: bytes) -> None:
        self.session = session
        self.seq = seq
        self.received = received
        self.encoded = encoded
        self._ev: EvidenceFrame | None = None

    def get(self) -> EvidenceFrame:
        if self._ev is None:
            body = evidence.body_of(self.encoded)
            self._ev = EvidenceFrame(self.session, self.seq, self.received, body)
        return self._ev


def incident_key(board: str, rule: str, number: int) -> str:
    """The idempotency key of incident ``number`` of ``rule`` on ``board``."""
    return f"{board}/{rule}/{number}"


class RuleEngine:
    """Evaluates rules over one or more boards' reports; persists through a :class:`Store`.

    :meth:`process` is called with each verified frame (in order per board) and returns the
    transitions it caused. Thread-safe (one lock; evaluation is cheap).
    """

    def __init__(
        self, rules: Iterable[Rule], store: Store, *, save_interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.save_interval_s = save_interval_s
        self._lock = threading.RLock()
        self._rules: dict[str, Rule] = {}
        self._states: dict[tuple[str, str], RuleState] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._last_save = time.monotonic()
        self._saved = store.rule_states()
        self.set_rules(rules)

    @property
    def rules(self) -> list[Rule]:
        """The rules in force."""
        with self._lock:
            return list(self._rules.values())

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rules; a rule kept by name keeps its state."""
        new = {}
        for r in rules:
            if r.name in new:
                raise RuleError(f"two rules are named {r.name!r}")
            new[r.name] = r
        with self._lock:
            self._rules = new
            for key in [k for k in self._states if k[1] not in new]:
                del self._states[key]

    def state(self, board: str, rule: str) -> RuleState:
        """The state of ``rule`` on ``board`` (loaded from the store on first use)."""
        key = (board, rule)
        with self._lock:
            st = self._states.get(key)
            if st is None:
                saved = self._saved.get(key)
                st = RuleState.from_json(saved) if saved else RuleState()
                if not saved:
                    st.incidents = self.store.next_incident_number(board, rule) - 1
                self._states[key] = st
            return st

    def states(self) -> list[dict[str, Any]]:
        """Every known (board, rule) state, JSON-friendly."""
        with self._lock:
            return [
                {
                    "board": b,
                    "rule": r,
                    "state": s.state,
                    "value": s.value,
                    "incidents": s.incidents,
                    "incident_id": s.incident_id,
                    "last_window": s.last_window,
                }
                for (b, r), s in sorted(self._states.items())
            ]

    def process(
        self, board: str, frame: wire.Frame, encoded: bytes, received: float | None = None
    ) -> list[Transition]:
        """Evaluate every rule of ``board`` on one verified frame (reports only).

        ``encoded`` is the frame as received (COBS-encoded); it is decoded to its body only
        when the window is a hit and may become evidence.
        """
        report = frame.message
        if not isinstance(report, m.Report) or not report.representative:
            return []
        now = time.time() if received is None else received
        ev = _LazyFrame(frame.session, frame.seq, now, encoded)
        out: list[Transition] = []
        with self._lock:
            for rule in self._rules.values():
                if rule.applies_to(board):
                    t = self._step(board, rule, report, ev, now)
                    if t is not None:
                        out.append(t)
            if time.monotonic() - self._last_save >= self.save_interval_s:
                self.save()
        return out

    def save(self) -> None:
        """Persist the states that changed since the last save."""
        with self._lock:
            dirty = {k: self._states[k].to_json() for k in self._dirty if k in self._states}
            self._dirty.clear()
            self._last_save = time.monotonic()
        self.store.save_rule_states(dirty)

    def _step(
        self, board: str, rule: Rule, r: m.Report, lazy: _LazyFrame, now: float
    ) -> Transition | None:
        key = (board, rule.name)
        st = self._states.get(key) or self.state(board, rule.name)
        self._dirty.add(key)
        w = r.window_seq
        if st.last_window is not None and w <= st.last_window:
            if w == st.last_window:
                return None  # a replayed window: already counted
            # window_seq went back: the board rebooted; old windows no longer line up.
            st.history.clear()
            st.streak_start_ms = None
            st.clear_run = 0
        gap = st.last_window is not None and w != st.last_window + 1
        st.last_window = w
        try:
            if rule.evaluate is not None:
                hit, value = rule.evaluate(r)
            else:
                hit = bool(rule.when(r))
                value = rule.measure(r) if rule.measure is not None else float(hit)
        except Exception as exc:  # a custom rule's bug must not stop the others
            log.warning("rule %s failed on %s: %r", rule.name, board, exc)
            return None
        st.value = value
        if not hit and not st.history and st.state in (INACTIVE, RESOLVED):
            return None  # the common case: nothing to count, nothing moves
        ev = lazy.get() if hit else None
        hist = st.history
        hist.append((w, hit, ev))
        if rule.for_s <= 0:
            lo = w - rule.of
            while hist and hist[0][0] <= lo:
                hist.pop(0)
        else:
            if hit and not gap and st.streak_start_ms is not None:
                pass
            elif hit:
                st.streak_start_ms = r.board_time_ms
                st.history = [(w, True, ev)]
                hist = st.history
            else:
                st.streak_start_ms = None
                st.history = []
                hist = st.history
            if len(hist) > MAX_EVIDENCE_FRAMES:
                del hist[: len(hist) - MAX_EVIDENCE_FRAMES]
        old = st.state
        if old == FIRING:
            if rule.is_clear(r) and not gap:
                st.clear_run += 1
            elif rule.is_clear(r):
                st.clear_run = 1
            else:
                st.clear_run = 0
            if st.clear_run >= rule.clear_windows:
                return self._resolve(board, rule, st, value, w, now)
            return None
        hits = [f for _, h, f in hist if h and f is not None]
        if rule.for_s > 0:
            met = (
                st.streak_start_ms is not None
                and hit
                and ((r.board_time_ms - st.streak_start_ms) & 0xFFFFFFFF) / 1000.0 >= rule.for_s
            )
        else:
            met = len(hits) >= rule.count
        if met and now >= st.cooldown_until:
            return self._fire(board, rule, st, value, w, hits, old)
        new = PENDING if hits else (RESOLVED if old == RESOLVED else INACTIVE)
        if new != old:
            st.state = new
            return Transition(board, rule.name, old, new, value, w)
        return None

    def _fire(
        self,
        board: str,
        rule: Rule,
        st: RuleState,
        value: float | None,
        w: int,
        hits: list[EvidenceFrame],
        old: str,
    ) -> Transition:
        number = st.incidents + 1
        key = incident_key(board, rule.name, number)
        ehash = "0x" + evidence.evidence_hash(f.body for f in hits).hex()
        action = rule.action.as_dict() if rule.action else {"kind": "log"}
        detail = {"value": value, "window_seq": w, "frames": len(hits)}
        new_state = RuleState(
            state=FIRING,
            history=[],
            streak_start_ms=None,
            clear_run=0,
            last_window=w,
            cooldown_until=st.cooldown_until,
            incident_id=None,
            incidents=number,
            value=value,
        )
        iid = self.store.open_incident(
            board, rule.name, number, key, ehash, hits, action, detail, new_state.to_json()
        )
        new_state.incident_id = iid
        self._states[(board, rule.name)] = new_state
        incident = {
            "id": iid,
            "number": number,
            "key": key,
            "evidence_hash": ehash,
            "action": action,
            "board": board,
            "rule": rule.name,
        }
        log.warning("%s: rule %s firing (value %s): incident %s", board, rule.name, value, key)
        return Transition(board, rule.name, old, FIRING, value, w, incident=incident)

    def _resolve(
        self, board: str, rule: Rule, st: RuleState, value: float | None, w: int, now: float
    ) -> Transition:
        iid = st.incident_id
        st.state = RESOLVED
        st.clear_run = 0
        st.history = []
        st.streak_start_ms = None
        st.cooldown_until = now + rule.cooldown_s
        st.incident_id = None
        if iid is not None:
            self.store.resolve_incident(iid, st.to_json())
        log.info("%s: rule %s resolved", board, rule.name)
        return Transition(board, rule.name, FIRING, RESOLVED, value, w, resolved_incident=iid)
