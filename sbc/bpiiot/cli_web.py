"""``bpiiot web``: the device manager's own commands (the server itself runs in ``bpiiot run``)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from bpiiot.web.auth import MIN_PASSWORD_LENGTH, PasswordError, default_password_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``web passwd`` to the CLI."""
    web = sub.add_parser("web", help="device manager (web interface) settings")
    wsub = web.add_subparsers(dest="web_command", metavar="WEB_COMMAND")
    p = wsub.add_parser(
        "passwd",
        help="set the device manager's login password (needed to serve beyond 127.0.0.1)",
        description="Set the password of the web device manager. Only a salted scrypt hash "
        "is stored (mode 0600). There is no default password.",
    )
    p.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="where the hash goes (default: $BPIIOT_WEB_PASSWORD_FILE or "
        f"{default_password_path()})",
    )
    p.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    p.set_defaults(func=_passwd)

    def usage(args: argparse.Namespace) -> int:
        web.print_help()
        return 2

    web.set_defaults(func=usage)


def _passwd(args: argparse.Namespace) -> int:
    from bpiiot.web.auth import set_password

    path: Path = args.password_file or default_password_path()
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("new device manager password: ")
        if getpass.getpass("again: ") != password:
            raise PasswordError("the two passwords differ; nothing was changed")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters; nothing was changed"
        )
    set_password(path, password)
    print(f"device manager password set ({path}, scrypt hash, mode 0600)")
    return 0
