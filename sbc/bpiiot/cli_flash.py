"""``bpiiot flash PORT``: a thin command over :func:`bpiiot.flash.flash`.

The MAC key is never taken from the command line (other users can read it in the
process list) and never printed: it comes from a file or an environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bpiiot import flash as flash_mod
from bpiiot.cli_link import add_insecure_permissions, int_range, positive_float
from bpiiot.errors import BpiiotError
from bpiiot.files import read_link_key


def _read_key(args: argparse.Namespace) -> bytes | None:
    text: str | None = None
    if args.key_file:
        # The one loader of every command: hex only, refused when others can read it.
        return read_link_key(
            args.key_file, env=None, insecure_permissions=args.insecure_permissions
        )
    elif args.key_env:
        text = os.environ.get(args.key_env)
        if text is None:
            raise BpiiotError(f"environment variable {args.key_env} is not set")
    if text is None:
        return None
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise BpiiotError("the MAC key must be written in hex (32-64 hex digits)") from None


def _printer(quiet: bool) -> flash_mod.ProgressCallback:
    def show(p: flash_mod.Progress) -> None:
        if quiet:
            return
        if p.step == "copy":
            # One line per file, rewritten in place while its bytes go out.
            end = "\n" if p.done >= p.total else ""
            print(f"\r  copy {p.path}: {p.done}/{p.total} bytes", end=end, flush=True)
        elif p.step == "skip":
            print(f"  up to date {p.path}")
        elif p.step == "remove":
            print(f"  removed stale {p.path}")
        elif p.step == "config":
            print(f"  wrote {p.path}")
        else:
            print(f"{p.step}: {p.path}", flush=True)

    return show


def cmd_flash(args: argparse.Namespace) -> int:
    """Deploy the firmware and wait for the board's hello."""
    key = _read_key(args)
    from bpiiot.service import ServiceClient

    # A running service owns the port: ask it to let go for the copy, take it back after.
    owner = ServiceClient.for_port(args.port)
    if owner is not None:
        client, board = owner
        client.request({"cmd": "release", "board": board})
        print(f"service released {args.port} (board {board}) for flashing")
        try:
            return _flash(args, key)
        finally:
            client.request({"cmd": "resume", "board": board})
            client.close()
            print(f"service resumed {args.port}")
    return _flash(args, key)


def _flash(args: argparse.Namespace, key: bytes | None) -> int:
    result = flash_mod.flash(
        args.port,
        arch=args.arch,
        source=Path(args.source) if args.source else None,
        board_id=args.board_id,
        key=key,
        clear_key=args.clear_key,
        sample_rate_hz=args.sample_rate,
        wdt_ms=args.watchdog_ms,
        resume=args.resume,
        baudrate=args.baud,
        wait=not args.no_wait,
        timeout_s=args.timeout,
        progress=_printer(args.quiet),
    )
    print(
        f"flashed {args.port} ({result.arch}): {len(result.copied)} copied, "
        f"{len(result.unchanged)} unchanged"
        + (", config updated" + (" (key set)" if key else "") if result.config_written else "")
    )
    if result.hello is not None:
        h = result.hello
        print(
            f"board {h.board_id} runs firmware {'.'.join(map(str, h.firmware_version))}, "
            f"protocol {h.protocol_version[0]}.{h.protocol_version[1]}, boot {h.boot_counter}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``flash`` to the ``bpiiot`` command line."""
    p = sub.add_parser(
        "flash",
        help="deploy the MicroPython firmware to a board",
        description="Cross-compile the firmware, copy what changed with mpremote, write "
        "the board's config, reset it and wait for its hello.",
    )
    p.add_argument("port", metavar="PORT", help="serial port, e.g. /dev/ttyACM0")
    p.add_argument(
        "--arch",
        default="rp2040",
        help="board family (rp2040, esp32, stm32f4, unix) or mpy-cross arch (default rp2040; "
        "the arch the board reports in sys.implementation._mpy wins)",
    )
    p.add_argument("--source", help="firmware tree (default: board/micropython of this checkout)")
    p.add_argument("--board-id", help="board id to write into the board's config")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key-file", help="file holding the MAC key in hex")
    keys.add_argument("--key-env", help="environment variable holding the MAC key in hex")
    keys.add_argument("--clear-key", action="store_true", help="remove the board's MAC key")
    add_insecure_permissions(p)
    p.add_argument("--sample-rate", type=int_range(1, 65535), help="sample rate in Hz to configure")
    p.add_argument(
        "--watchdog-ms",
        type=int_range(0, 3_600_000),
        help="board watchdog timeout (default 8000 on real boards, off on the Unix port; 0: off)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="no soft reset when entering the raw REPL (needed for the Unix port on a pty)",
    )
    p.add_argument("--baud", type=int_range(1), default=115200, help="baud rate (default 115200)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the board's hello")
    p.add_argument("--timeout", type=positive_float, default=15.0, help="seconds to wait for hello")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_flash)


def main(argv: list[str] | None = None) -> int:
    """Run ``flash`` on its own (``python -m bpiiot.cli_flash flash PORT ...``)."""
    parser = argparse.ArgumentParser(prog="bpiiot")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns))
    except BpiiotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
