"""Protocol conformance suite, run against a live board on any port.

This is the tool a firmware author uses to prove a board speaks protocol 1.x
(SPEC.md section 7): hello and version, every command with its ack, nacks with
the right codes for malformed and unknown commands, silent drops for frames that
fail checks 1-8, session and sequence behaviour, replay state, MAC on and off,
status counters, and every frame the board sends checked against the CDDL schema
and for deterministic encoding. ``protocol/CONFORMANCE.md`` lists every MUST of
the spec with the check that covers it. The board is left as it was found: same
configuration, same key (or the report says exactly what to do).

Every check runs and is reported, or is reported as not run with the reason; a
board's fault never stops the suite with one line, and the failure names the
real fault (frames the link dropped and why, acks naming another sequence number,
replies after their ack).

    from bpiiot.conformance import run
    result = run("/dev/ttyACM0", key=None)
    print(result.render())
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import cbor2
from cobs import cobs

from bpiiot import messages as m
from bpiiot import wire
from bpiiot.board import Board, CommandError, CommandTimeout
from bpiiot.errors import BpiiotError
from bpiiot.link import Link

NC = m.NackCode
UNKNOWN_COMMAND = 0x7E
#: How long a board may take to boot and send its hello after a reboot's ack (SPEC.md 5.3).
REBOOT_HELLO_S = 10.0
#: How long the suite waits after a frame the board must drop silently (SPEC.md 3.3).
SILENCE_S = 0.3
_STATUSES = ("pass", "fail", "n/a", "not run")


@dataclass
class Check:
    """One check: ``status`` is pass, fail, n/a (not applicable, with why) or not run."""

    name: str
    status: str
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
        """True when at least one check ran and none failed or was left not run."""
        return bool(self.checks) and all(c.status in ("pass", "n/a") for c in self.checks)

    def counts(self) -> dict[str, int]:
        """How many checks passed, failed, did not apply and were not run."""
        out = dict.fromkeys(_STATUSES, 0)
        for c in self.checks:
            out[c.status] += 1
        return out

    def check(self, name: str) -> Check | None:
        """The check called ``name``, if it was recorded."""
        for c in self.checks:
            if c.name == name:
                return c
        return None

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
        mark = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A ", "not run": "SKIP"}
        for c in self.checks:
            lines.append(f"  {mark[c.status]} {c.name}" + (f" - {c.detail}" if c.detail else ""))
        n = self.counts()
        lines.append(
            f"{n['pass']} passed, {n['fail']} failed"
            + (f", {n['n/a']} not applicable" if n["n/a"] else "")
            + (f", {n['not run']} not run" if n["not run"] else "")
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


@dataclass
class _Seen:
    """One verified board frame, in arrival order."""

    frame: wire.Frame
    at: float


class _Watch:
    """Subscriber that keeps every verified board frame and checks it against the schema."""

    def __init__(self) -> None:
        import pycddl

        text = (resources.files("bpiiot") / "data" / "bpiiot.cddl").read_text()
        self._schemas = {t: pycddl.Schema(f"root = {r}\n{text}") for t, r in _RULES.items()}
        self._error = pycddl.ValidationError
        self.frames: list[_Seen] = []
        self.failures: list[str] = []
        self.noncanonical: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, frame: wire.Frame) -> None:
        with self.lock:
            self.frames.append(_Seen(frame, time.monotonic()))
            try:
                self._schemas[frame.type].validate_cbor(frame.payload)
            except self._error as exc:
                self.failures.append(f"{frame.message.NAME} seq {frame.seq}: {exc}")
            if wire.encode_payload(frame.message.to_payload()) != frame.payload:
                self.noncanonical.append(
                    f"{frame.message.NAME} seq {frame.seq} ({frame.payload.hex()})"
                )

    def since(self, index: int) -> list[wire.Frame]:
        """Frames that arrived after the first ``index`` ones."""
        with self.lock:
            return [s.frame for s in self.frames[index:]]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _RawFrame:
    """Header of a board frame as it came off the wire, before verification."""

    flags: int
    type: int
    seq: int
    payload: bytes


class _TapLink(Link):
    """A link that also notes the sequence numbers it sends and the raw frames it gets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[int] = []
        self.raw: list[_RawFrame] = []
        self._tap = wire.Deframer()
        self.key: bytes | None = kwargs.get("key")

    def set_key(self, key: bytes | None) -> None:
        super().set_key(key)
        self.key = key

    def _write(self, data: bytes, frames: int) -> None:
        super()._write(data, frames)
        for chunk in wire.split_stream(data):
            body = _cobs_body(chunk)
            if body is not None:
                self.sent.append(struct.unpack_from(">I", body, 4)[0])

    def feed(self, data: bytes) -> None:
        for chunk in self._tap.feed(data):
            body = _cobs_body(chunk)
            if body is not None:
                end = len(body) - wire.CRC_LEN - (wire.TAG_LEN if body[0] & wire.FLAG_AUTH else 0)
                self.raw.append(
                    _RawFrame(
                        body[0] & 0x0F,
                        body[1],
                        struct.unpack_from(">I", body, 4)[0],
                        body[wire.HEADER_LEN : end],
                    )
                )
        super().feed(data)


def _cobs_body(chunk: bytes) -> bytes | None:
    try:
        body: bytes = cobs.decode(chunk)
    except cobs.DecodeError:
        return None
    return body if len(body) >= wire.MIN_BODY else None


def command_frame(
    type_: int,
    payload: bytes,
    *,
    session: int,
    seq: int,
    key: bytes | None,
    version: int = wire.PROTOCOL_MAJOR,
    flags: int = wire.FLAG_HOST,
    bad_crc: bool = False,
) -> bytes:
    """Wire bytes of a hand-made host frame; the suite's way to send what an SDK never would.

    ``flags`` are the header flags without AUTH (added when ``key`` is given);
    ``bad_crc`` flips the CRC's lowest bit.
    """
    vf = (version << 4) | flags | (wire.FLAG_AUTH if key else 0)
    body = struct.pack(">BBHI", vf, type_, session & wire.U16, seq & wire.U32) + payload
    if key:
        body += hmac.new(key, body, hashlib.sha256).digest()[: wire.TAG_LEN]
    crc = zlib.crc32(body) ^ (1 if bad_crc else 0)
    encoded: bytes = cobs.encode(body + crc.to_bytes(4, "little"))
    return encoded + b"\0"


class _Fail(Exception):
    """A check's verdict: the board broke a rule (never an assert: python -O drops those)."""


class _NotApplicable(Exception):
    pass


class _NotRun(Exception):
    """The check could not run because an earlier one failed (the reason says which)."""


def _require(ok: object, message: str) -> None:
    if not ok:
        raise _Fail(message)


class _Runner:
    def __init__(
        self, board: Board, link: _TapLink, watch: _Watch, result: Result, output_pin: int | None
    ) -> None:
        self.board = board
        self.link = link
        self.watch = watch
        self.result = result
        self.output_pin = output_pin
        self.stopped = ""
        self._silent_commands = 0

    def check(self, name: str, fn: Callable[[], str | None]) -> bool:
        """Run one check and record it; True if it passed. Never raises for the board."""
        if self.stopped:
            self.result.checks.append(Check(name, "not run", self.stopped))
            return False
        link = self.link
        dropped = Counter(link.stats.dropped)
        bytes_in = link.stats.bytes_in
        index = len(self.watch)
        sent = len(link.sent)
        try:
            detail = fn()
        except _NotApplicable as exc:
            self.result.checks.append(Check(name, "n/a", str(exc)))
            return False
        except _NotRun as exc:
            self.result.checks.append(Check(name, "not run", str(exc)))
            return False
        except _Fail as exc:
            self._silent_commands = 0
            self.result.checks.append(Check(name, "fail", str(exc)))
            return False
        except BpiiotError as exc:
            why = self.explain(dropped, index, sent)
            # The real fault first: a reply dropped for crc is not "no answer".
            text = f"{why.removeprefix('; ')}; {exc}" if why else str(exc)
            self.result.checks.append(Check(name, "fail", text))
            if isinstance(exc, CommandTimeout):
                self._silent_commands += 1
                if self._silent_commands >= 3:
                    got = "no byte" if link.stats.bytes_in == bytes_in else "no answer"
                    self.stopped = f"3 commands in a row got {got}: the board is not answering"
            else:
                self._silent_commands = 0
            return False
        except Exception as exc:  # a bug in the suite must not hide the rest of the report
            self.result.checks.append(
                Check(name, "fail", f"the suite failed: {type(exc).__name__}: {exc}")
            )
            return False
        self._silent_commands = 0
        self.result.checks.append(Check(name, "pass", detail or ""))
        return True

    def explain(self, dropped: Counter[str], index: int, sent: int) -> str:
        """What the board did while a command went unanswered, for the failure message."""
        parts = []
        lost = Counter(self.link.stats.dropped)
        lost.subtract(dropped)
        reasons = {k: v for k, v in lost.items() if v > 0}
        if reasons:
            listed = ", ".join(f"{v} for {k}" for k, v in sorted(reasons.items()))
            parts.append(
                f"the link dropped board frames meanwhile (the answer among them?): {listed}"
            )
        ours = set(self.link.sent[sent:])
        got = self.watch.since(index)
        stray = [
            f.message
            for f in got
            if isinstance(f.message, m.Ack | m.Nack) and f.message.ref_seq not in ours
        ]
        if stray:
            names = ", ".join(f"{s.NAME} ref_seq {s.ref_seq}" for s in stray[:3])
            parts.append(f"the board answered {names} while the command had seq {sorted(ours)}")
        kinds = [f.message.NAME for f in got if not isinstance(f.message, m.Report)]
        if kinds and not stray:
            parts.append(f"frames received in order: {', '.join(kinds[:6])}")
        return "; " + "; ".join(parts) if parts else ""

    def expect_nack(self, reply: m.Ack | m.Nack, code: int) -> str:
        _require(isinstance(reply, m.Nack), f"expected nack {NC.NAMES[code]}, got an ack")
        nack = reply
        if not isinstance(nack, m.Nack):  # narrowed for the type checker
            raise _Fail("not a nack")
        _require(
            nack.code == code,
            f"expected nack {NC.NAMES[code]} ({code}), got {nack.code_name} ({nack.code})",
        )
        return f"nack {nack.code_name}: {nack.detail}" if nack.detail else ""

    def expect_ack(self, reply: m.Ack | m.Nack, what: str) -> None:
        if isinstance(reply, m.Nack):
            raise _Fail(f"{what}: nack {reply.code_name} ({reply.code}) {reply.detail}")

    def last_frame_authenticated(self) -> bool:
        frames = self.watch.since(max(0, len(self.watch) - 1))
        return bool(frames) and frames[-1].authenticated

    def reply_before_ack(self, cls: type[m.Message]) -> None:
        """Fail unless the last command's ``cls`` reply arrived before its ack."""
        seq = self.link.encoder.seq
        frames = self.watch.since(0)
        acks = [
            i
            for i, f in enumerate(frames)
            if isinstance(f.message, m.Ack | m.Nack) and f.message.ref_seq == seq
        ]
        _require(acks, f"no ack for seq {seq}")
        replies = [i for i, f in enumerate(frames) if isinstance(f.message, cls)]
        _require(
            replies and replies[-1] < acks[-1],
            f"the {cls.NAME} reply came after its ack (SPEC.md 5.3: data first, then the ack)",
        )

    def caps(self) -> int:
        hello = self.board.hello
        return hello.capabilities if hello is not None else 0

    @property
    def session(self) -> int:
        return self.board.hello_session or 0


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
    includes the reboot checks (the board restarts once). ``timeout_s`` bounds each
    command; a board that leaves three commands in a row without a byte is reported
    as not answering and the remaining checks as not run.
    """
    result = Result(url)
    watch = _Watch()
    link = _TapLink(url, baudrate=baudrate, key=key, reconnect=False)
    board = Board(link, timeout_s=timeout_s)
    link.subscribe(watch)
    r = _Runner(board, link, watch, result, output_pin)
    try:
        link.open()
    except BpiiotError as exc:
        result.checks.append(Check("open port", "fail", str(exc)))
        return result
    try:
        _suite(r, key, report_timeout_s, reboot)
    finally:
        board.close()
    _closing_checks(r)
    return result


def _closing_checks(r: _Runner) -> None:
    watch, link, result = r.watch, r.link, r.result
    result.frames_checked = len(watch)
    stats = link.stats
    none = "no board frame was seen" if not len(watch) else ""

    def add(name: str, failure: str, ok: str) -> None:
        result.checks.append(Check(name, "fail" if failure else "pass", failure or ok))

    add(
        "every board frame matches the CDDL schema",
        none or "; ".join(watch.failures[:3]),
        f"{len(watch)} frames",
    )
    add(
        "every board frame uses deterministic CBOR",
        none or ", ".join(watch.noncanonical[:3]),
        f"{len(watch)} frames",
    )
    # Replays are their own check; a partial frame is one the port opened in the middle of.
    dropped = {k: v for k, v in stats.dropped.items() if k not in ("replay", "partial")}
    add(
        "no board frame failed verification",
        none or (f"dropped {dropped}" if dropped else ""),
        f"{stats.frames_ok} frames verified",
    )
    repeats = stats.dropped.get("replay", 0)
    # A frame dropped for another reason leaves a gap of one behind it; more is lost frames.
    unexplained = stats.gaps - sum(dropped.values())
    add(
        "board sequence numbers grow by one per frame",
        none
        or (
            f"{repeats} frames repeated an old sequence number (dropped as replay)"
            if repeats
            else ""
        )
        or (f"{unexplained} sequence numbers skipped" if unexplained > 0 else ""),
        f"{stats.frames_ok} frames, no repeat, no gap",
    )
    # Exactly one ack or nack per command sent, naming the command's seq.
    replies: Counter[int] = Counter()
    strays = []
    sent = Counter(link.sent)
    for s in watch.frames:
        msg = s.frame.message
        if isinstance(msg, m.Ack | m.Nack):
            replies[msg.ref_seq] += 1
            if msg.ref_seq not in sent:
                strays.append(f"{msg.NAME} ref_seq {msg.ref_seq}")
    doubles = [f"seq {k} got {v}" for k, v in replies.items() if v > max(1, sent[k])]
    add(
        "every ack and nack names a command's seq, one answer per command",
        none
        or (f"answers to no command sent: {', '.join(strays[:3])}" if strays else "")
        or (f"commands answered twice: {', '.join(doubles[:3])}" if doubles else ""),
        f"{sum(replies.values())} answers",
    )


def _suite(r: _Runner, key: bytes | None, report_timeout_s: float, reboot: bool) -> None:
    b = r.board
    link = r.link

    def hello() -> str:
        try:
            h = b.sync(retries=2)
        except CommandTimeout:
            if b.hello is None:
                raise
            why = r.explain(Counter(), 0, 0)  # the first check: everything so far is its own
            raise _Fail(f"a hello came, but no ack naming the hello_request's seq{why}") from None
        r.result.hello = h
        _require(h.protocol_version[0] == wire.PROTOCOL_MAJOR, f"protocol {h.protocol_version}")
        return f"session {b.hello_session}, boot counter {h.boot_counter}"

    if not r.check("hello on request, protocol 1.x", hello) and b.hello is None:
        r.stopped = "no hello from the board"
    r.result.hello = b.hello
    original: list[m.Config] = []

    def get_config() -> str:
        original.append(b.get_config())
        r.reply_before_ack(m.Config)
        return str(original[0].to_dict())

    r.check("get_config returns the whole config before the ack", get_config)
    if not original and not r.stopped:
        r.stopped = "the board's config is unknown (get_config failed), so nothing may change it"

    def hello_any_session() -> str:
        wrong = (r.session + 1) & wire.U16
        r.expect_ack(b.raw_command(m.HelloRequest.TYPE, b"\x80", session=wrong), "hello_request")
        return "answered with a foreign session number"

    r.check("hello_request is answered in any session", hello_any_session)

    def hello_old_seq() -> str:
        b.ping()
        r.expect_ack(
            b.raw_command(m.HelloRequest.TYPE, b"\x80", seq=link.encoder.seq), "hello_request"
        )
        return "answered with a repeated sequence number"

    r.check("hello_request is answered whatever its sequence number", hello_old_seq)
    r.check("ping is acked", lambda: b.ping())

    def status_counts() -> str:
        st = b.get_status()
        r.reply_before_ack(m.Status)
        frames = [f for f in r.watch.since(0) if isinstance(f.message, m.Status)]
        _require(frames, "no status frame seen")
        seq = frames[-1].seq
        _require(
            st.frames_sent == seq - 1,
            f"frames_sent {st.frames_sent}, but the status frame has seq {seq}: frames_sent "
            "counts every frame sent before the status (seq starts at 1)",
        )
        return str(st.to_dict())

    r.check("get_status returns status before the ack, frames_sent = its seq - 1", status_counts)

    def set_same() -> str:
        cfg = original[0]
        new = b.configure(
            sample_rate_hz=cfg.sample_rate_hz, window_ms=cfg.window_ms, hop_ms=cfg.hop_ms
        )
        _require(new == cfg, f"{new} != {cfg}")
        r.reply_before_ack(m.Config)
        return ""

    r.check("set_config with the current values is acked with the config", set_same)

    def unchanged() -> None:
        _require(b.get_config() == original[0], "the config changed after a refused set_config")

    def bad_rate() -> str:
        detail = r.expect_nack(
            b.raw_command(m.SetConfig.TYPE, wire.encode_payload({1: 1})), NC.BAD_VALUE
        )
        unchanged()
        return detail

    r.check("set_config with a sample rate of 1 Hz: nack bad_value, nothing changes", bad_rate)

    def hop_over_window() -> str:
        w = original[0].window_ms
        payload = wire.encode_payload({2: w, 3: w + 1})
        detail = r.expect_nack(b.raw_command(m.SetConfig.TYPE, payload), NC.BAD_VALUE)
        unchanged()
        return detail

    r.check("set_config with hop longer than the window: nack bad_value", hop_over_window)
    r.check(
        "unknown command type: nack unknown_type",
        lambda: r.expect_nack(b.raw_command(UNKNOWN_COMMAND, b"\x80"), NC.UNKNOWN_TYPE),
    )
    malformed = {
        "ping with an argument": (m.Ping.TYPE, wire.encode_payload([1])),
        "ping with a trailing byte": (m.Ping.TYPE, b"\x80\x00"),
        "ping that is not CBOR": (m.Ping.TYPE, b"\xff"),
        "ping with a tagged payload": (m.Ping.TYPE, b"\xc1\x80"),
        "set_output value 2": (m.SetOutput.TYPE, wire.encode_payload([1, 2])),
        "set_output value true": (m.SetOutput.TYPE, b"\x82\x01\xf5"),
        "set_config with a float": (m.SetConfig.TYPE, cbor2.dumps({1: 3200.0})),
        "set_config with keys out of order": (m.SetConfig.TYPE, bytes.fromhex("a20318640119 0c80")),
        "set_config with a repeated key": (
            m.SetConfig.TYPE,
            bytes.fromhex("a201190c8001190c80"),
        ),
        "set_output as an indefinite-length array": (m.SetOutput.TYPE, b"\x9f\x01\x01\xff"),
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
        wrong = (r.session + 7) & wire.U16
        return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", session=wrong), NC.BAD_SESSION)

    r.check("a command for another session: nack bad_session", wrong_session)

    def refused_keeps_state() -> str:
        base = link.encoder.seq
        r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x81\x01", seq=base + 50), NC.BAD_ARGS)
        reply = b.raw_command(m.Ping.TYPE, b"\x80", seq=base + 1)
        link.encoder.seq = base + 1
        _require(
            isinstance(reply, m.Ack),
            f"a refused command (seq {base + 50}) moved the replay state: seq {base + 1} got "
            f"{reply}",
        )
        return ""

    r.check("a refused command does not advance the replay state", refused_keeps_state)

    def foreign_hello_keeps_state() -> str:
        base = link.encoder.seq
        wrong = (r.session + 3) & wire.U16
        r.expect_ack(
            b.raw_command(m.HelloRequest.TYPE, b"\x80", session=wrong, seq=base + 50),
            "hello_request",
        )
        link.encoder.seq = base  # undo what the hello's last_host_seq taught the encoder
        hello = b.hello
        _require(
            hello is not None and hello.last_host_seq == base,
            f"hello after a foreign-session hello_request reports last_host_seq "
            f"{hello.last_host_seq if hello else None}, expected {base}",
        )
        reply = b.raw_command(m.Ping.TYPE, b"\x80", seq=base + 1)
        link.encoder.seq = base + 1
        _require(isinstance(reply, m.Ack), f"seq {base + 1} after it got {reply}")
        return ""

    r.check(
        "a hello_request from another session does not advance the replay state",
        foreign_hello_keeps_state,
    )

    def last_host_seq() -> str:
        h = b.sync(retries=1)
        want = link.encoder.seq
        r.reply_before_ack(m.Hello)
        _require(h.last_host_seq == want, f"last_host_seq {h.last_host_seq}, expected {want}")
        return f"last_host_seq {want}"

    r.check("hello reports the last accepted host seq", last_host_seq)
    _silent_checks(r)

    def outputs() -> str:
        if not r.caps() & m.CAP_OUTPUTS:
            raise _NotApplicable("board does not announce OUTPUTS")
        if r.output_pin is None:
            raise _NotApplicable("no --output-pin given")
        b.set_output(r.output_pin, 1)
        b.set_output(r.output_pin, 0)
        return f"pin {r.output_pin} high then low"

    r.check("set_output on a safe pin is acked", outputs)

    def missing_capability() -> str:
        missing = [
            (cap, t, p)
            for cap, t, p in (
                (m.CAP_AUTH, m.ClearKey.TYPE, b"\x80"),
                (m.CAP_OUTPUTS, m.SetOutput.TYPE, b"\x82\x00\x00"),
            )
            if not r.caps() & cap
        ]
        if not missing:
            raise _NotApplicable("board announces AUTH and OUTPUTS (REBOOT is not probed)")
        return "; ".join(r.expect_nack(b.raw_command(t, p), NC.UNSUPPORTED) for _, t, p in missing)

    r.check("a command of a capability not announced: nack unsupported", missing_capability)

    def reports() -> str:
        got = []
        window_ms = original[0].window_ms if original else 1000
        deadline = report_timeout_s + window_ms / 1000
        for rep in b.reports(timeout_s=deadline):
            got.append(rep)
            if len(got) == 3:
                break
        _require(len(got) == 3, f"fewer than 3 reports in {deadline:g} s")
        steps = [b2.window_seq - a.window_seq for a, b2 in itertools.pairwise(got)]
        _require(
            steps == [1, 1] or link.stats.frames_dropped,
            f"window_seq {[g.window_seq for g in got]} does not step by one",
        )
        _require(got[0].samples > 0, "a window of 0 samples")
        return f"window_seq {got[0].window_seq} -> {got[-1].window_seq}, {got[0].samples} samples"

    r.check("window reports arrive, window_seq steps by one", reports)
    _mac_checks(r, key)
    _reboot_checks(r, reboot)


_BATCH_GAP_S = 0.1
"""Pause between the frames of the silent-drop batch (a slow board drains its buffer)."""


def _silent_checks(r: _Runner) -> None:
    """Frames failing checks 1-8 are dropped without an answer and counted (SPEC.md 3.3)."""
    b, link = r.board, r.link
    names = [
        ("a chunk over 515 bytes is dropped silently (oversize)", "oversize"),
        ("a chunk that is not COBS is dropped silently (cobs)", "cobs"),
        ("a body under 13 bytes is dropped silently (truncated)", "short"),
        ("a command with a bad CRC is dropped silently (crc)", "crc"),
        ("a command of protocol major version 2 is dropped silently (version)", "version"),
        ("a command with a reserved flag bit is dropped silently (flags)", "flags"),
        ("a command without the HOST flag is dropped silently (direction)", "direction"),
        ("a command flagged AUTH without room for a tag is dropped silently", "notag"),
    ]
    answered: dict[str, str] = {}
    counted: list[str] = []

    def batch() -> str:
        before = b.get_status().frames_rejected
        base = link.encoder.seq
        key = link.key
        seqs: dict[int, str] = {}
        frames = []
        for i, (_, kind) in enumerate(names):
            seq = base + 1 + i
            seqs[seq] = kind
            common: dict[str, Any] = {"session": r.session, "seq": seq, "key": key}
            ping = (m.Ping.TYPE, b"\x80")
            if kind == "oversize":
                frames.append(b"\x55" * 600 + b"\0")
            elif kind == "cobs":
                frames.append(b"\x05\x01\0")
            elif kind == "short":
                frames.append(cobs.encode(bytes(10)) + b"\0")
            elif kind == "crc":
                frames.append(command_frame(*ping, bad_crc=True, **common))
            elif kind == "version":
                frames.append(command_frame(*ping, version=2, **common))
            elif kind == "flags":
                frames.append(command_frame(*ping, flags=wire.FLAG_HOST | 0x04, **common))
            elif kind == "direction":
                frames.append(command_frame(*ping, flags=0, **common))
            else:  # AUTH flag, one payload byte, no tag
                frames.append(_authless_frame(r.session, seq))
        index = len(r.watch)
        # One frame at a time, a little apart: a board with a small receive buffer (an
        # Uno holds 64 bytes) is judged on its frame checks, not on absorbing a burst
        # while it is busy computing a tag.
        link.send_raw(b"\0")
        for frame in frames:
            link.send_raw(frame)
            time.sleep(_BATCH_GAP_S)
        link.encoder.seq = base + len(names)
        b.ping()  # answered only after every frame before it was handled
        time.sleep(SILENCE_S)
        for f in r.watch.since(index):
            msg = f.message
            if isinstance(msg, m.Ack | m.Nack) and msg.ref_seq in seqs:
                answered[seqs[msg.ref_seq]] = f"answered with {msg.NAME} {msg.to_dict()}"
        after = b.get_status().frames_rejected
        counted.append(f"frames_rejected {before} -> {after}, {len(names)} frames refused")
        _require(
            after - before == len(names),
            f"frames_rejected grew by {after - before} for {len(names)} refused frames",
        )
        return counted[0]

    ok = r.check("status frames_rejected counts every refused frame", batch)
    for name, kind in names:

        def verdict(kind: str = kind) -> str:
            if kind in answered:
                raise _Fail(answered[kind])
            if not ok and not counted:
                raise _Fail("the batch of refused frames could not be sent (see above)")
            return ""

        r.check(name, verdict)


def _authless_frame(session: int, seq: int) -> bytes:
    # AUTH set, one payload byte and the CRC: no room for the 8-byte tag (check 8).
    vf = (wire.PROTOCOL_MAJOR << 4) | wire.FLAG_HOST | wire.FLAG_AUTH
    body = struct.pack(">BBHI", vf, m.Ping.TYPE, session & wire.U16, seq) + b"\x80"
    encoded: bytes = cobs.encode(body + zlib.crc32(body).to_bytes(4, "little"))
    return encoded + b"\0"


_MAC_CHECKS = (
    "set_key is acked under the old key, then the board tags its frames",
    "untagged command at a keyed board: nack unauthenticated",
    "untagged hello_request at a keyed board: nack unauthenticated, no hello",
    "command tagged with the wrong key: nack unauthenticated",
    "a frame failing the MAC check does not advance the replay state",
    "a tagged command replayed: nack replay",
    "replay state survives set_key",
    "clear_key is acked under the key, then authentication is off",
    "clear_key on a board without a key is acked",
    "the board's key is left as it was found",
)


def _mac_checks(r: _Runner, key: bytes | None) -> None:
    b, link = r.board, r.link
    if not r.caps() & m.CAP_AUTH:
        for name in _MAC_CHECKS:
            r.check(name, _raise(_NotApplicable("board does not announce AUTH")))
        return
    test_key = os.urandom(32)
    before_key: list[int] = []
    names = iter(_MAC_CHECKS)

    def set_key() -> str:
        b.ping()
        before_key.append(link.encoder.seq)
        raw = len(link.raw)
        b.set_key(test_key)
        seq = link.encoder.seq
        acks = [f for f in link.raw[raw:] if f.type == m.Ack.TYPE and _ref(f) == seq]
        _require(acks, "the set_key ack was not seen")
        tagged = bool(acks[-1].flags & wire.FLAG_AUTH)
        _require(
            tagged == (key is not None),
            "the set_key ack was " + ("tagged" if tagged else "untagged") + ": it must be sent "
            "under the old key (" + ("none" if key is None else "the board's key") + ")",
        )
        b.ping()
        _require(link.stats.frames_ok and r.last_frame_authenticated(), "frames are not tagged")
        return "frames from the board carry a valid tag"

    keyed = r.check(next(names), set_key)
    if not keyed and link.key != test_key:
        # Without the test key in place the keyed checks would test the wrong thing.
        for name in names:
            if name != _MAC_CHECKS[-1]:
                r.check(name, _raise(_NotRun("set_key failed: the test key is not in place")))
        _restore_key(r, key, test_key)
        return
    r.check(
        next(names),
        lambda: r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", key=None), NC.UNAUTHENTICATED),
    )

    def untagged_hello() -> str:
        index = len(r.watch)
        detail = r.expect_nack(
            b.raw_command(m.HelloRequest.TYPE, b"\x80", key=None), NC.UNAUTHENTICATED
        )
        _require(
            not any(isinstance(f.message, m.Hello) for f in r.watch.since(index)),
            "the board sent a hello to an untagged hello_request",
        )
        return detail

    r.check(next(names), untagged_hello)
    r.check(
        next(names),
        lambda: r.expect_nack(
            b.raw_command(m.Ping.TYPE, b"\x80", key=os.urandom(32)), NC.UNAUTHENTICATED
        ),
    )

    def forged_keeps_state() -> str:
        base = link.encoder.seq
        r.expect_nack(
            b.raw_command(m.Ping.TYPE, b"\x80", key=os.urandom(32), seq=base + 50),
            NC.UNAUTHENTICATED,
        )
        reply = b.raw_command(m.Ping.TYPE, b"\x80", seq=base + 1)
        link.encoder.seq = base + 1
        _require(
            isinstance(reply, m.Ack),
            f"one forged frame (seq {base + 50}) locked the real SBC out: seq {base + 1} got "
            f"{reply}",
        )
        return ""

    r.check(next(names), forged_keeps_state)

    def replay_tagged() -> str:
        b.ping()
        seq = link.encoder.seq
        return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", seq=seq), NC.REPLAY)

    r.check(next(names), replay_tagged)

    def survives() -> str:
        old = before_key[0]
        return r.expect_nack(b.raw_command(m.Ping.TYPE, b"\x80", seq=old), NC.REPLAY)

    r.check(next(names), survives)

    def clear() -> str:
        raw = len(link.raw)
        b.clear_key()
        seq = link.encoder.seq
        acks = [f for f in link.raw[raw:] if f.type == m.Ack.TYPE and _ref(f) == seq]
        _require(acks and acks[-1].flags & wire.FLAG_AUTH, "the clear_key ack was not tagged")
        reply = b.raw_command(m.Ping.TYPE, b"\x80", key=None)
        _require(isinstance(reply, m.Ack), f"untagged ping refused after clear_key: {reply}")
        _require(not r.last_frame_authenticated(), "the board still tags its frames")
        return "untagged commands accepted again"

    cleared = r.check(next(names), clear)

    def clear_twice() -> str:
        if link.key is not None:
            raise _NotRun("clear_key failed")
        b.clear_key()
        return ""

    r.check(next(names), clear_twice if cleared else _raise(_NotRun("clear_key failed")))
    _restore_key(r, key, test_key)


def _raise(exc: Exception) -> Callable[[], str]:
    def fn() -> str:
        raise exc

    return fn


def _ref(raw: _RawFrame) -> int | None:
    try:
        obj = cbor2.loads(raw.payload)
    except Exception:
        return None
    return obj[0] if isinstance(obj, list) and obj and type(obj[0]) is int else None


def _restore_key(r: _Runner, key: bytes | None, test_key: bytes) -> None:
    """Leave the board with ``key``; find out which key it holds if a step went wrong."""
    b, link = r.board, r.link

    def holds(candidate: bytes | None) -> bool | None:
        # With a key on the link, only a board holding that key gets its reply through.
        link.set_key(candidate)
        try:
            reply = b.raw_command(m.HelloRequest.TYPE, b"\x80")
        except CommandError:
            return False
        if candidate is None:
            return isinstance(reply, m.Ack)
        return True

    def restore() -> str:
        current = link.key
        for candidate in (current, key, test_key, None):
            if holds(candidate):
                break
        else:
            path = _save_test_key(test_key)
            raise _Fail(
                "the board answers neither its original key, nor no key, nor the suite's test "
                f"key (saved in {path}, mode 0600): re-provision it, e.g. `bpiiot flash PORT "
                + ("--key-file YOUR_KEY_FILE`" if key else "--clear-key`")
            )
        if candidate == key:
            return "board holds its original key" + (" (none)" if key is None else "")
        try:
            if key is None:
                b.clear_key()
            else:
                b.set_key(key)
        except CommandError as exc:
            if holds(key):
                return "key restored (the board switched keys before its ack)"
            path = _save_test_key(test_key) if candidate == test_key else ""
            where = f" (the suite's test key is saved in {path}, mode 0600)" if path else ""
            raise _Fail(
                f"could not set the board's key back: {exc}; the board holds "
                + ("no key" if candidate is None else "a key")
                + where
                + ": re-provision it with `bpiiot flash PORT "
                + ("--key-file YOUR_KEY_FILE`" if key else "--clear-key`")
            ) from None
        return "key restored"

    r.check(_MAC_CHECKS[-1], restore)


def _save_test_key(test_key: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="bpiiot-conformance-key-", suffix=".hex")
    with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600
        f.write(test_key.hex() + "\n")
    return path


def _reboot_checks(r: _Runner, asked: bool) -> None:
    b = r.board

    def reboot() -> str:
        if not asked:
            raise _NotApplicable("not asked for (--reboot restarts the board once)")
        if not r.caps() & m.CAP_REBOOT:
            raise _NotApplicable("board does not announce REBOOT")
        before = b.hello
        session = b.hello_session
        if before is None or session is None:
            raise _Fail("no hello before the reboot")
        index = len(r.watch)
        b.reboot(wait=False)
        deadline = time.monotonic() + REBOOT_HELLO_S
        hello = None
        while hello is None and time.monotonic() < deadline:
            for f in r.watch.since(index):
                if isinstance(f.message, m.Hello):
                    hello = f
                    break
            time.sleep(0.02)
        _require(hello is not None, f"no hello within {REBOOT_HELLO_S:g} s of the reboot's ack")
        if hello is None:
            raise _Fail("no hello")
        after = hello.message
        if not isinstance(after, m.Hello):
            raise _Fail("not a hello")
        _require(hello.seq == 1, f"the first frame after boot has seq {hello.seq}, not 1")
        _require(
            after.boot_counter == (before.boot_counter + 1) & wire.U32,
            f"boot counter {before.boot_counter} -> {after.boot_counter}",
        )
        _require(wire.newer(hello.session, 1, session, 0), "session did not advance")
        _require(after.last_host_seq == 0, f"last_host_seq {after.last_host_seq} after boot")
        r.link.encoder.seq = 0
        st = b.get_status()
        _require(st.frames_rejected == 0, f"frames_rejected {st.frames_rejected} after boot")
        return f"session {session} -> {hello.session}, hello seq 1, counters reset"

    r.check("reboot: acked, hello with seq 1 unasked, boot counter + 1, counters reset", reboot)
