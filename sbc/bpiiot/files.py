"""Files that hold secrets: written atomically, mode 0600, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
