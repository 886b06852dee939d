"""`bpiiot monitor` and `bpiiot conformance`: the board link on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bpiiot import messages as m
from bpiiot.errors import BpiiotError

KEY_ENV = "BPIIOT_LINK_KEY"


class KeyFileError(BpiiotError):
    """The link key file is missing, unreadable or not a 16-32 byte key."""


def load_link_key(path: str | None) -> bytes | None:
    """The board link's MAC key from a file (hex or raw bytes) or $BPIIOT_LINK_KEY (hex).

    Never from the command line, where other users could read it in the process list.
    """
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        text = raw.strip()
        try:
            key = bytes.fromhex(text.decode()) if text else b""
        except (UnicodeDecodeError, ValueError):
            key = raw
        where = f"key file {path}"
    elif os.environ.get(KEY_ENV):
        try:
            key = bytes.fromhex(os.environ[KEY_ENV])
        except ValueError:
            raise KeyFileError(f"${KEY_ENV} must be hex") from None
        where = f"${KEY_ENV}"
    else:
        return None
    if not 16 <= len(key) <= 32:
        raise KeyFileError(f"{where}: a link key is 16 to 32 bytes, this one is {len(key)}")
    return key


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "url", help="serial device or pyserial URL (socket://host:port, rfc2217://, loop://)"
    )
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument(
        "--key-file",
        help=f"file holding the board's MAC key in hex (or set ${KEY_ENV}); "
        "never on the command line",
    )
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each ack")


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
    p.add_argument("--count", type=int, default=0, help="stop after N reports (default: never)")
    p.add_argument("--seconds", type=float, default=0, help="stop after S seconds (default: never)")
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
    p.add_argument("--output-pin", type=int, help="a digital output that is safe to toggle")
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
    key = load_link_key(args.key_file)
    board = connect(args.url, key=key, baudrate=args.baud, timeout_s=args.timeout)
    hello = board.hello
    assert hello is not None
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

    key = load_link_key(args.key_file)
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
