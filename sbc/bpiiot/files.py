"""Files that hold secrets: written atomically, mode 0600, never half-written."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from bpiiot.errors import BpiiotError


def write_private(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600.

    The data goes to a temporary file in the same folder, is synced, then takes the
    final name, so a power cut leaves the old file or the new one. With
    ``overwrite=False`` an existing file raises :class:`FileExistsError` and is left
    alone (an atomic create through ``link()`` where the file system has hard links).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the target exists: "create, never clobber"
            except FileExistsError:
                raise
            except OSError:
                # File systems without hard links (FAT on a boot partition): check, then
                # replace; the window between the two is the only difference.
                if path.exists():
                    raise FileExistsError(str(path)) from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class SecretFileError(BpiiotError):
    """A file holding a secret is missing, unreadable, not text, or malformed."""


class InsecurePermissions(SecretFileError):
    """A file holding a secret is readable or writable by group or others."""


class KeyFileError(SecretFileError):
    """The link key file (or variable) is missing, unreadable or not a 16-32 byte hex key."""


class InsecureKeyFile(KeyFileError, InsecurePermissions):
    """The link key file is readable or writable by group or others."""


#: Environment variable holding the board link's MAC key in hex.
LINK_KEY_ENV = "BPIIOT_LINK_KEY"


def check_private(path: Path, what: str, *, insecure_permissions: bool = False) -> None:
    """Refuse ``path`` if group or others may read or write it, as ssh does for private keys.

    ``insecure_permissions`` (the CLI's ``--insecure-permissions``) turns the refusal off.
    """
    if insecure_permissions:
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it will say what is wrong
    if mode & 0o077:
        raise InsecurePermissions(
            f"{what} {path} is accessible by group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`, or pass --insecure-permissions to use it anyway"
        )


def read_secret_text(path: Path, what: str, *, insecure_permissions: bool = False) -> str:
    """The UTF-8 text of a secret file, after :func:`check_private`; one clear error otherwise."""
    check_private(path, what, insecure_permissions=insecure_permissions)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"{what} {path} is not UTF-8 text") from None


def read_link_key(
    path: str | os.PathLike[str] | None,
    *,
    env: str | None = LINK_KEY_ENV,
    insecure_permissions: bool = False,
) -> bytes | None:
    """The board link's MAC key: hex in the file at ``path``, else hex in ``$env``, else None.

    The one loader of every command (monitor, conformance, flash, the service). The key
    is 16 to 32 bytes written in hex; surrounding whitespace is ignored. Never taken from
    the command line, where other users could read it in the process list; never echoed
    in an error message.
    """
    if path:
        p = Path(path)
        try:
            text = read_secret_text(p, "key file", insecure_permissions=insecure_permissions)
        except InsecurePermissions as exc:
            raise InsecureKeyFile(str(exc)) from None
        except SecretFileError as exc:
            raise KeyFileError(str(exc)) from None
        where = f"key file {p}"
    elif env and os.environ.get(env):
        text = os.environ[env]
        where = f"${env}"
    else:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise KeyFileError(f"{where}: a link key is written in hex (32 to 64 hex digits)") from None
    if not 16 <= len(key) <= 32:
        raise KeyFileError(f"{where}: a link key is 16 to 32 bytes, this one is {len(key)}")
    return key
