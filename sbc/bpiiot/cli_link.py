"""`bpiiot monitor` and `bpiiot conformance`: the board link on the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bpiiot import messages as m
from bpiiot.errors import BpiiotError
from bpiiot.files import LINK_KEY_ENV, KeyFileError, read_link_key

__all__ = [
    "KEY_ENV",
    "KeyFileError",
    "add_insecure_permissions",
    "int_range",
    "load_link_key",
    "non_negative_float",
    "positive_float",
    "register",
]

KEY_ENV = LINK_KEY_ENV


def load_link_key(path: str | None, *, insecure_permissions: bool = False) -> bytes | None:
    """The board link's MAC key from a file (hex) or $BPIIOT_LINK_KEY (hex).

    The shared loader (:func:`bpiiot.files.read_link_key`): never from the command line,
    where other users could read it in the process list.
    """
    return read_link_key(path, insecure_permissions=insecure_permissions)


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number, 0 or above."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return positive_float(text)


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in lo..hi (no upper bound when hi is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"{lo} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def add_insecure_permissions(p: argparse.ArgumentParser) -> None:
    """The explicit opt-out of the 0600 rule for files holding secrets."""
    p.add_argument(
        "--insecure-permissions",
        action="store_true",
        help="use key and keystore files even if group or others can read them",
    )


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "url", help="serial device or pyserial URL (socket://host:port, rfc2217://, loop://)"
    )
    p.add_argument("--baud", type=int_range(1), default=115200, help="baud rate (default 115200)")
    p.add_argument(
        "--key-file",
        help=f"file holding the board's MAC key in hex (or set ${KEY_ENV}); "
        "never on the command line",
    )
    p.add_argument(
        "--timeout", type=positive_float, default=2.0, help="seconds to wait for each ack"
    )
    add_insecure_permissions(p)


def register(sub: Any) -> None:
    """Add the link sub-commands to the `bpiiot` parser."""
    p = sub.add_parser(
        "monitor",
        allow_abbrev=False,
        help="show live verified frames from a board and the link counters",
        description="Say hello to the board, then print every verified frame and, "
        "every few seconds, the link counters (frames ok, dropped by reason, gaps, reboots).",
    )
    _add_link_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--count", type=int_range(0), default=0, help="stop after N reports (default: never)"
    )
    p.add_argument(
        "--seconds",
        type=non_negative_float,
        default=0,
        help="stop after S seconds (default: never)",
    )
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "conformance",
        allow_abbrev=False,
        help="run the protocol conformance suite against a live board",
        description="Prove a board speaks protocol 1.0: hello and version, every command with "
        "its ack, nacks for malformed and unknown commands, sessions and sequence numbers, "
        "MAC on and off, and every board frame against the CDDL schema. The board's "
        "configuration and key are left as they were.",
    )
    _add_link_args(p)
    p.add_argument(
        "--output-pin", type=int_range(0, 255), help="a digital output that is safe to toggle"
    )
    p.add_argument("--reboot", action="store_true", help="include the reboot checks")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_conformance)


def _line(frame_msg: m.Message, seq: int, session: int, authenticated: bool) -> str:
    d = frame_msg.to_dict()
    kind = d.pop("kind")
    fields = " ".join(f"{k}={v}" for k, v in d.items())
    tag = " [mac]" if authenticated else ""
    return f"{session}:{seq:<6} {kind:<7}{tag} {fields}"


def cmd_monitor(args: argparse.Namespace) -> int:
    """Print verified frames until interrupted (or --count / --seconds)."""
    from bpiiot.board import connect
    from bpiiot.service import ServiceClient

    found = ServiceClient.for_port(args.url)
    if found is not None:
        # A running service owns the port: read its stream instead (like gpsd's clients).
        return _monitor_service(args, *found)
    key = load_link_key(args.key_file, insecure_permissions=args.insecure_permissions)
    board = connect(args.url, key=key, baudrate=args.baud, timeout_s=args.timeout)
    hello = board.hello
    if hello is None:  # connect() returns only after a hello; kept for the type checker
        raise BpiiotError(f"{args.url}: no hello from the board")
    out = sys.stdout
    if not args.json:
        print(
            f"board {hello.board_id} firmware {'.'.join(map(str, hello.firmware_version))} "
            f"protocol {hello.protocol_version[0]}.{hello.protocol_version[1]} "
            f"on {args.url}{' (authenticated)' if key else ''}",
            file=out,
        )
    reports = 0
    start = last_stats = time.monotonic()
    frames = board.link.queue()
    try:
        with board:
            while not (args.seconds and time.monotonic() - start >= args.seconds):
                frame = frames.get(timeout=0.25)
                now = time.monotonic()
                if not args.json and now - last_stats > 5:
                    last_stats = now
                    print(f"-- link {json.dumps(board.stats.as_dict())}", file=out, flush=True)
                if frame is None:
                    continue
                if args.json:
                    rec = {
                        "session": frame.session,
                        "seq": frame.seq,
                        "authenticated": frame.authenticated,
                        **frame.message.to_dict(),
                    }
                    print(json.dumps(rec), file=out, flush=True)
                else:
                    line = _line(frame.message, frame.seq, frame.session, frame.authenticated)
                    print(line, file=out, flush=True)
                if isinstance(frame.message, m.Report):
                    reports += 1
                    if args.count and reports >= args.count:
                        break
    except KeyboardInterrupt:
        pass
    stats = board.stats.as_dict()
    print(json.dumps({"link": stats}) if args.json else f"-- link {json.dumps(stats)}", file=out)
    return 0


def _monitor_service(args: argparse.Namespace, client: Any, board: str) -> int:
    """``monitor`` through the service's socket: the same lines, from its stream."""
    out = sys.stdout
    if not args.json:
        print(f"board {board} on {args.url} (through the running service)", file=out)
    client.request({"cmd": "watch", "frames": True, "events": False})
    reports = 0
    start = time.monotonic()
    try:
        for obj in client.stream(idle_s=0.5):
            if args.seconds and time.monotonic() - start >= args.seconds:
                break
            if obj.get("kind") != "frame" or obj.get("board") != board:
                continue
            msg = obj["message"]
            if args.json:
                rec = {
                    "session": obj["session"],
                    "seq": obj["seq"],
                    "authenticated": obj["authenticated"],
                    **msg,
                }
                print(json.dumps(rec), file=out, flush=True)
            else:
                fields = " ".join(f"{k}={v}" for k, v in msg.items() if k != "kind")
                tag = " [mac]" if obj["authenticated"] else ""
                line = f"{obj['session']}:{obj['seq']:<6} {msg['kind']:<7}{tag} {fields}"
                print(line, file=out, flush=True)
            if msg["kind"] == "report":
                reports += 1
                if args.count and reports >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    """Run the suite and print the report; exit status 0 only if every check passed."""
    from bpiiot.conformance import run

    key = load_link_key(args.key_file, insecure_permissions=args.insecure_permissions)
    result = run(
        args.url,
        key=key,
        baudrate=args.baud,
        timeout_s=args.timeout,
        output_pin=args.output_pin,
        reboot=args.reboot,
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.render())
    return 0 if result.passed else 1
