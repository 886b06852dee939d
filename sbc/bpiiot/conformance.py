"""Protocol conformance suite, run against a live board on any port.

This is the tool a firmware author uses to prove a board speaks protocol 1.0
(SPEC.md section 7): hello and version, every command with its ack, nacks with
the right codes for malformed and unknown commands, session and sequence
behaviour, MAC on and off, and every frame the board sends checked against the
CDDL schema and for deterministic encoding. The board is left as it was found:
same configuration, same key.

    from bpiiot.conformance import run
    result = run("/dev/ttyACM0", key=None)
    print(result.render())
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import cbor2

from bpiiot import messages as m
from bpiiot import wire
from bpiiot.board import Board, CommandError
from bpiiot.errors import BpiiotError
from bpiiot.link import Link

NC = m.NackCode
UNKNOWN_COMMAND = 0x7E


@dataclass
class Check:
    """One check: passed, failed, or not applicable to this board (with why)."""

    name: str
    status: str  # "pass" | "fail" | "n/a"
    detail: str = ""


@dataclass
class Result:
    """All checks of one run, plus what the board said about itself."""

    url: str
    checks: list[Check] = field(default_factory=list)
    hello: m.Hello | None = None
    frames_checked: int = 0

    @property
    def passed(self) -> bool:
        """True when no check failed (and at least one ran)."""
        return bool(self.checks) and all(c.status != "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        """How many checks passed, failed and did not apply."""
        out = {"pass": 0, "fail": 0, "n/a": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def render(self) -> str:
        """A plain-text report, one line per check and a closing summary."""
        lines = [f"bpiiot conformance against {self.url}"]
        if self.hello:
            h = self.hello
            lines.append(
                f"board {h.board_id}, firmware {'.'.join(map(str, h.firmware_version))}, "
                f"protocol {h.protocol_version[0]}.{h.protocol_version[1]}, "
                f"capabilities 0x{h.capabilities:02x}"
            )
        mark = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A "}
        for c in self.checks:
            lines.append(f"  {mark[c.status]} {c.name}" + (f" - {c.detail}" if c.detail else ""))
        n = self.counts()
        lines.append(
            f"{n['pass']} passed, {n['fail']} failed"
            + (f", {n['n/a']} not applicable" if n["n/a"] else "")
            + f" ({self.frames_checked} board frames checked against the schema)"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form of the result."""
        return {
            "url": self.url,
            "passed": self.passed,
            "counts": self.counts(),
            "hello": self.hello.to_dict() if self.hello else None,
            "frames_checked": self.frames_checked,
            "checks": [c.__dict__ for c in self.checks],
        }


_RULES = {1: "hello", 2: "report", 3: "status", 4: "ack", 5: "nack", 6: "log", 7: "config"}


class _SchemaWatch:
    """Subscriber that checks every board frame against the CDDL schema."""

    def __init__(self) -> None:
        import pycddl

        text = (resources.files("bpiiot") / "data" / "bpiiot.cddl").read_text()
        self._schemas = {t: pycddl.Schema(f"root = {r}\n{text}") for t, r in _RULES.items()}
        self._error = pycddl.ValidationError
        self.count = 0
        self.failures: list[str] = []
        self.noncanonical: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, frame: wire.Frame) -> None:
        with self.lock:
            self.count += 1
            try:
                self._schemas[frame.type].validate_cbor(frame.payload)
            except self._error as exc:
                self.failures.append(f"{frame.message.NAME} seq {frame.seq}: {exc}")
            if wire.encode_payload(frame.message.to_payload()) != frame.payload:
                self.noncanonical.append(f"{frame.message.NAME} seq {frame.seq}")


class _Runner:
    def __init__(self, board: Board, result: Result, output_pin: int | None, reboot: bool):
        self.board = board
        self.result = result
        self.output_pin = output_pin
        self.reboot = reboot

    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        try:
            detail = fn()
            self.result.checks.append(Check(name, "pass", detail or ""))
        except _NotApplicable as exc:
            self.result.checks.append(Check(name, "n/a", str(exc)))
        except (AssertionError, BpiiotError) as exc:
            self.result.checks.append(Check(name, "fail", str(exc) or type(exc).__name__))

    def expect_nack(self, reply: m.Ack | m.Nack, code: int) -> str:
        assert isinstance(reply, m.Nack), f"expected nack {NC.NAMES[code]}, got an ack"
        assert reply.code == code, (
            f"expected nack {NC.NAMES[code]} ({code}), got {reply.code_name} ({reply.code})"
        )
        return f"nack {reply.code_name}: {reply.detail}" if reply.detail else ""

    def caps(self) -> int:
        assert self.board.hello is not None
        return self.board.hello.capabilities


class _NotApplicable(Exception):
    pass


def run(
    url: str,
    *,
    key: bytes | None = None,
    baudrate: int = 115200,
    timeout_s: float = 2.0,
    output_pin: int | None = None,
    reboot: bool = False,
    report_timeout_s: float = 5.0,
) -> Result:
    """Run the suite against the board at ``url``; never raises for a board's fault.

    ``key`` is the board's current MAC key, if it has one. ``output_pin`` names a
    pin that is safe to drive (set_output is otherwise not exercised). ``reboot``
    includes the reboot checks (the board restarts once).
    """
    result = Result(url)
    watch = _SchemaWatch()
    link = Link(url, baudrate=baudrate, key=key, reconnect=False)
    board = Board(link, timeout_s=timeout_s)
    link.subscribe(watch)
    r = _Runner(board, result, output_pin, reboot)
    try:
        link.open()
    except BpiiotError as exc:
        result.checks.append(Check("open port", "fail", str(exc)))
        return result
    try:
        _suite(r, key, report_timeout_s)
    finally:
        board.close()
    result.frames_checked = watch.count
    result.checks.append(
        Check(
            "every board frame matches the CDDL schema",
            "fail" if watch.failures else "pass",
            "; ".join(watch.failures[:3]) or f"{watch.count} frames",
        )
    )
    result.checks.append(
        Check(
            "every board frame uses deterministic CBOR",
            "fail" if watch.noncanonical else "pass",
            ", ".join(watch.noncanonical[:5]),
        )
    )
    dropped = dict(link.stats.dropped)
    result.checks.append(
        Check(
            "no board frame failed verification",
            "fail" if dropped else "pass",
            f"dropped {dropped}" if dropped else f"{link.stats.frames_ok} frames verified",
        )
    )
    return result


def _suite(r: _Runner, key: bytes | None, report_timeout_s: float) -> None:
    b = r.board
    link = b.link

    def hello() -> str:
        h = b.sync()
        r.result.hello = h
        assert h.protocol_version[0] == wire.PROTOCOL_MAJOR, f"protocol {h.protocol_version}"
        return f"session {b.hello_session}, boot counter {h.boot_counter}"

    r.check("hello on request, protocol 1.x", hello)
    if b.hello is None:
        return
    original = b.get_config()

    def hello_any_session() -> str:
        payload = wire.encode_payload([])
        wrong = ((b.hello_session or 0) + 1) & wire.U16
        reply = b.raw_command(m.HelloRequest.TYPE, payload, session=wrong)
        assert isinstance(reply, m.Ack), f"got {reply}"
        return "answered with a foreign session number"

    r.check("hello_request is answered in any session", hello_any_session)
    r.check("ping is acked", lambda: b.ping())
    r.check("get_status returns status before the ack", lambda: str(b.get_status().to_dict()))
    r.check("get_config returns the whole config", lambda: str(original.to_dict()))

    def set_same() -> str:
        new = b.configure(
            sample_rate_hz=original.sample_rate_hz,
            window_ms=original.window_ms,
            hop_ms=original.hop_ms,
        )
        assert new == original, f"{new} != {original}"
        return ""

    r.check("set_config with the current values is acked with the config", set_same)

    def bad_rate() -> str:
        reply = b.raw_command(m.SetConfig.TYPE, wire.encode_payload({1: 1}))
        detail = r.expect_nack(reply, NC.BAD_VALUE)
        assert b.get_config() == original, "the config changed after a refused set_config"
        return detail

    r.check("set_config with a sample rate of 1 Hz: nack bad_value, nothing changes", bad_rate)

    def hop_over_window() -> str:
        payload = wire.encode_payload({2: original.window_ms, 3: original.window_ms + 1})
        detail = r.expect_nack(b.raw_command(m.SetConfig.TYPE, payload), NC.BAD_VALUE)
        assert b.get_config() == original, "the config changed after a refused set_config"
        return detail

    r.check("set_config with hop longer than the window: nack bad_value", hop_over_window)
    r.check(
        "unknown command type: nack unknown_type",
        lambda: r.expect_nack(
            b.raw_command(UNKNOWN_COMMAND, wire.encode_payload([])), NC.UNKNOWN_TYPE
        ),
    )
    malformed = {
        "ping with an argument": (m.Ping.TYPE, wire.encode_payload([1])),
        "ping with a trailing byte": (m.Ping.TYPE, wire.encode_payload([]) + b"\x00"),
        "ping that is not CBOR": (m.Ping.TYPE, b"\xff"),
        "set_output value 2": (m.SetOutput.TYPE, wire.encode_payload([1, 2])),
        "set_config with a float": (m.SetConfig.TYPE, cbor2.dumps({1: 3200.0})),
        "set_config with keys out of order": (
            m.SetConfig.TYPE,
            b"\xa2\x03\x18\x64\x01\x19\x0c\x80",
        ),
    }
    for what, (t, payload) in malformed.items():

        def bad_args(t: int = t, payload: bytes = payload) -> str:
            return r.expect_nack(b.raw_command(t, payload), NC.BAD_ARGS)

        r.check(f"{what}: nack bad_args", bad_args)

    def replay() -> str:
        b.ping()  # refused frames do not move the board's state: replay an accepted one
        seq = link.encoder.seq
        return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", seq=seq), NC.REPLAY)

    r.check("a command with an old sequence number: nack replay", replay)

    def wrong_session() -> str:
        wrong = ((b.hello_session or 0) + 7) & wire.U16
        return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", session=wrong), NC.BAD_SESSION)

    r.check("a command for another session: nack bad_session", wrong_session)

    def outputs() -> str:
        if not r.caps() & m.CAP_OUTPUTS:
            raise _NotApplicable("board does not announce OUTPUTS")
        if r.output_pin is None:
            raise _NotApplicable("no --output-pin given")
        b.set_output(r.output_pin, 1)
        b.set_output(r.output_pin, 0)
        return f"pin {r.output_pin} high then low"

    r.check("set_output on a safe pin is acked", outputs)

    def reports() -> str:
        got = []
        deadline = report_timeout_s + original.window_ms / 1000
        for rep in b.reports(timeout_s=deadline):
            got.append(rep)
            if len(got) == 2:
                break
        assert len(got) == 2, f"fewer than 2 reports in {deadline:g} s"
        assert got[1].window_seq > got[0].window_seq, "window_seq did not grow"
        assert got[0].samples > 0, "a window of 0 samples"
        return f"window_seq {got[0].window_seq} -> {got[1].window_seq}, {got[0].samples} samples"

    r.check("window reports arrive with growing window_seq", reports)
    _mac_checks(r, key)
    if r.reboot:
        _reboot_checks(r)


def _mac_checks(r: _Runner, key: bytes | None) -> None:
    b = r.board
    if not r.caps() & m.CAP_AUTH:
        r.result.checks.append(Check("MAC on and off", "n/a", "board does not announce AUTH"))
        return
    test_key = os.urandom(32)
    acks: list[wire.Frame] = []

    def watch(frame: wire.Frame) -> None:
        if isinstance(frame.message, m.Ack):
            acks.append(frame)

    b.link.subscribe(watch)
    try:

        def set_key() -> str:
            b.set_key(test_key)
            b.ping()
            time.sleep(0.05)
            assert acks and acks[-1].authenticated, "the ack after set_key was not tagged"
            return "frames from the board carry a valid tag"

        r.check("set_key is acked and the board authenticates its frames", set_key)
        r.check(
            "untagged command at a keyed board: nack unauthenticated",
            lambda: r.expect_nack(
                b.raw_command(m.Ping.TYPE, b"\x80", key=None), NC.UNAUTHENTICATED
            ),
        )
        r.check(
            "command tagged with the wrong key: nack unauthenticated",
            lambda: r.expect_nack(
                b.raw_command(m.Ping.TYPE, b"\x80", key=os.urandom(32)), NC.UNAUTHENTICATED
            ),
        )

        def replay_tagged() -> str:
            b.ping()
            seq = b.link.encoder.seq
            return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", seq=seq), NC.REPLAY)

        r.check("a tagged command replayed: nack replay", replay_tagged)

        def clear() -> str:
            b.clear_key()
            b.ping()
            time.sleep(0.05)
            assert acks and not acks[-1].authenticated, "the board still tags its frames"
            reply = b.raw_command(m.Ping.TYPE, b"\x80", key=None)
            assert isinstance(reply, m.Ack), f"untagged ping refused after clear_key: {reply}"
            return "untagged commands accepted again"

        r.check("clear_key is acked and authentication is off", clear)
    finally:
        b.link.unsubscribe(watch)
        _restore_key(r, key)


def _restore_key(r: _Runner, key: bytes | None) -> None:
    b = r.board
    try:
        if key is not None:
            if b.link.encoder.authenticated:
                b.clear_key()
            b.set_key(key)
        elif b.link.encoder.authenticated:
            b.clear_key()
    except CommandError as exc:
        r.result.checks.append(Check("restore the board's key", "fail", str(exc)))


def _reboot_checks(r: _Runner) -> None:
    b = r.board

    def reboot() -> str:
        if not r.caps() & m.CAP_REBOOT:
            raise _NotApplicable("board does not announce REBOOT")
        before = b.hello
        session = b.hello_session
        assert before is not None and session is not None
        after = b.reboot(wait=True)
        assert after is not None, "no hello after reboot"
        assert after.boot_counter == before.boot_counter + 1, (
            f"boot counter {before.boot_counter} -> {after.boot_counter}"
        )
        assert wire.newer(b.hello_session or 0, 1, session, 0), "session did not advance"
        b.ping()
        return f"session {session} -> {b.hello_session}"

    r.check("reboot: acked, new session, boot counter + 1, commands work", reboot)
