"""The ``bpiiot`` command line: a thin layer over the SDK's public API."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bpiiot.errors import BpiiotError


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="bpiiot",
        allow_abbrev=False,
        description="Edge kit for industrial machines: board link, flashing, wallet and contracts.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each area registers its own sub-commands; modules are imported lazily so that
    # `bpiiot --help` stays fast and a board-only install does not need web3.
    from bpiiot import cli_chain, cli_flash, cli_link, cli_service, cli_web

    cli_link.register(sub)
    cli_flash.register(sub)
    cli_chain.register(sub)
    cli_service.register(sub)
    cli_web.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except BpiiotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an output file that cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
