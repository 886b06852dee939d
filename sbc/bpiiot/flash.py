"""Deploy the MicroPython firmware to a board with mpremote and confirm it runs.

Steps of :func:`flash`:

1. stop the running firmware and enter the raw REPL (the firmware leaves for the
   REPL when it sees mpremote's Ctrl-C, Ctrl-A followed by silence),
2. read the board's ``sys.implementation._mpy`` (the .mpy version and native
   architecture it accepts) and refuse, in one line naming the MicroPython version to
   install, a board that could not load what mpy-cross makes; never fall back to
   copying sources (they need about 96 KiB of heap to compile on the board),
3. cross-compile the modules listed in ``manifest.py`` (only what runs on the board:
   no host-only or reference code) to ``.mpy`` for the board's architecture
   (``main.py`` stays source: boards only run ``main.py``),
4. copy only the files whose SHA-256 differs from the board's copy,
5. merge the board id, MAC key and sample rate into the board's ``bpiiot.json``
   (keeping its boot counter, so sessions keep growing), without ever printing
   the key,
6. reset the board and wait for its hello (read by the SDK's :class:`~bpiiot.link.Link`),
   checking the firmware version.

Progress is reported through a callback; nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bpiiot.errors import BpiiotError
from bpiiot.messages import Hello

ARCHES: Final = {
    "rp2040": "armv6m",
    "esp32": "xtensawin",
    "stm32f4": "armv7emsp",
    "unix": "x64",
}
"""Board families and the mpy-cross ``-march`` their native/viper code needs."""
ARCH_NAMES: Final = frozenset(ARCHES.values())
CONFIG_FILE: Final = "bpiiot.json"
PACKAGE: Final = "bpiiot_fw"
_BOARD_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_RESET = (
    "try:\n import machine\n machine.reset()\n"
    "except AttributeError:\n import sys\n sys.exit(75)\n"  # Unix port: the harness reboots it
)
# Ctrl-C, Ctrl-A after a delimiter: the firmware's cue to leave for the REPL.
_ESCAPE = b"\x00\r\x03\r\x01"


class FlashError(BpiiotError):
    """Flashing failed; the message says what to check."""


class NoSuchPort(FlashError):
    """The serial port does not exist or cannot be opened."""


class NotMicroPython(FlashError):
    """Something answers on the port, but not a MicroPython REPL."""


class BoardNotAnswering(FlashError):
    """The board did not send hello (with the expected version) after the reset."""


class IncompatibleMicroPython(FlashError):
    """The board's MicroPython cannot load the compiled firmware; install another."""


MPY_ARCHES: Final = (
    None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
    "xtensa", "xtensawin", "rv32imc",
)  # fmt: skip
"""Native architectures by their index in ``sys.implementation._mpy`` (bits 10 and up)."""

MICROPYTHON_FOR_MPY: Final = {
    (6, 0): "1.19",
    (6, 1): "1.20 or 1.21",
    (6, 2): "1.22",
    (6, 3): "1.23 or later",
}
"""MicroPython releases by the .mpy version (major, sub-version) they load."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: ``step`` is connect, arch, build, copy, skip, remove, config,
    reset or hello; ``done``/``total`` count bytes while copying a file."""

    step: str
    path: str = ""
    done: int = 0
    total: int = 0


ProgressCallback = Callable[[Progress], None]


@dataclass(slots=True)
class FlashResult:
    """What :func:`flash` did."""

    arch: str
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    config_written: bool = False
    hello: Hello | None = None


DEFAULT_WDT_MS = 8000
"""Watchdog timeout written to a real board's config: a hung board resets itself. The
firmware feeds it every main-loop pass and reboots into the REPL for flashing."""


def watchdog_ms(march: str, wdt_ms: int | None) -> int:
    """The watchdog timeout to configure: as given, else on for real boards only."""
    if wdt_ms is None:
        return 0 if march == "x64" else DEFAULT_WDT_MS
    if not 0 <= wdt_ms <= 3_600_000:
        raise FlashError(f"watchdog timeout {wdt_ms} ms out of range 0..3600000")
    return wdt_ms


def default_source() -> Path:
    """The firmware shipped with the SDK (``data/firmware``; in a checkout, a link to
    ``board/micropython``), so an installed ``bpiiot`` can flash without the repo."""
    return Path(__file__).resolve().parent / "data" / "firmware"


def resolve_arch(arch: str) -> str:
    """Map a board family (rp2040, esp32, stm32f4, unix) or an mpy-cross arch to the arch."""
    a = ARCHES.get(arch, arch)
    if a not in ARCH_NAMES:
        names = ", ".join(sorted({*ARCHES, *ARCH_NAMES}))
        raise FlashError(f"unknown architecture {arch!r}: use one of {names}")
    return a


def firmware_version(source: Path) -> tuple[int, int, int]:
    """The ``FW_VERSION`` tuple written in the firmware's app.py."""
    text = (source / PACKAGE / "app.py").read_text()
    found = re.search(r"^FW_VERSION\s*=\s*\((\d+),\s*(\d+),\s*(\d+)\)", text, re.M)
    if not found:
        raise FlashError(f"{source / PACKAGE / 'app.py'}: no FW_VERSION = (x, y, z) line")
    return int(found[1]), int(found[2]), int(found[3])


def _mpy_cross() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpy_cross"]


def shipped_modules(source: Path) -> list[str]:
    """The firmware package's files that run on the board, as ``manifest.py`` lists them.

    The manifest is MicroPython's freezing format; it is run here with a ``package``
    that only records its ``files``, so flashing and freezing ship the same modules.
    """
    manifest = source / "manifest.py"
    found: list[str] = []

    def package(path: str, files: tuple[str, ...] | None = None, **_kw: object) -> None:
        if path == PACKAGE and files is not None:
            found.extend(files)

    try:
        code = compile(manifest.read_text(), str(manifest), "exec")
        exec(code, {"package": package, "module": lambda *_a, **_k: None})
    except (OSError, SyntaxError, NameError) as exc:
        raise FlashError(f"{manifest}: cannot read the firmware's manifest: {exc}") from None
    if not found:
        raise FlashError(f"{manifest}: no package({PACKAGE!r}, files=...) entry")
    return sorted(found)


def emitted_mpy_version() -> tuple[int, int]:
    """The .mpy (version, sub-version) this machine's mpy-cross writes."""
    proc = subprocess.run([*_mpy_cross(), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"mpy v(\d+)\.(\d+)", proc.stdout + proc.stderr)
    if not found:
        raise FlashError(f"mpy-cross --version says {proc.stdout.strip()!r}: no mpy version")
    return int(found[1]), int(found[2])


def check_board_mpy(sys_mpy: int | None, emitted: tuple[int, int]) -> str:
    """The mpy-cross arch for a board reporting ``sys.implementation._mpy == sys_mpy``.

    Raises :class:`IncompatibleMicroPython` (one line, naming the MicroPython version
    to install) when the board cannot load .mpy files with native code of version
    ``emitted``: native code needs the same version and sub-version.
    """
    want = MICROPYTHON_FOR_MPY.get(emitted, f"with .mpy v{emitted[0]}.{emitted[1]}")
    if sys_mpy is None:
        raise IncompatibleMicroPython(
            "the board's MicroPython does not say which .mpy files it loads (no "
            f"sys.implementation._mpy): install MicroPython {want}"
        )
    ver, sub, arch_idx = sys_mpy & 0xFF, (sys_mpy >> 8) & 3, sys_mpy >> 10
    arch = MPY_ARCHES[arch_idx] if arch_idx < len(MPY_ARCHES) else None
    if arch is None or arch not in ARCH_NAMES:
        raise IncompatibleMicroPython(
            f"the board's MicroPython has no native code emitter this firmware can target "
            f"(architecture index {arch_idx}): install MicroPython {want} for an RP2040, "
            "ESP32 or STM32F4 board"
        )
    if (ver, sub) != emitted:
        has = MICROPYTHON_FOR_MPY.get((ver, sub), f"a release with .mpy v{ver}.{sub}")
        raise IncompatibleMicroPython(
            f"the board runs MicroPython {has} (.mpy v{ver}.{sub}); this firmware's compiled "
            f"viper code needs .mpy v{emitted[0]}.{emitted[1]}: install MicroPython {want}"
        )
    return arch


def build(source: Path, out_dir: Path, arch: str) -> list[tuple[str, Path]]:
    """Compile the firmware into out_dir; return (path on the board, local file) pairs.

    Only the modules ``manifest.py`` lists are compiled: host-only and reference code
    never reaches the board.
    """
    arch = resolve_arch(arch)
    pkg = source / PACKAGE
    if not (source / "main.py").is_file() or not pkg.is_dir():
        raise FlashError(f"{source}: not a firmware tree (main.py and {PACKAGE}/ expected)")
    files: list[tuple[str, Path]] = [("main.py", source / "main.py")]
    (out_dir / PACKAGE).mkdir(parents=True, exist_ok=True)
    for name in shipped_modules(source):
        py = pkg / name
        if not py.is_file():
            raise FlashError(f"{source / 'manifest.py'} lists {PACKAGE}/{name}, which is missing")
        mpy = out_dir / PACKAGE / (py.stem + ".mpy")
        proc = subprocess.run(
            [
                *_mpy_cross(),
                f"-march={arch}",
                "-o",
                str(mpy),
                # The embedded source name (shown in tracebacks) is the module's own
                # name: one interned string per module instead of two, about ten
                # fewer names in the board's RAM.
                "-s",
                f"{PACKAGE}.{py.stem}",
                str(py),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise FlashError(
                f"mpy-cross failed on {py}: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        files.append((f"{PACKAGE}/{mpy.name}", mpy))
    return files


def _check_port(port: str) -> None:
    if "://" in port:
        return
    if not os.path.exists(port):
        raise NoSuchPort(
            f"{port}: no such port. Is the board plugged in? "
            "Look for it with `ls /dev/ttyACM* /dev/ttyUSB*` or `mpremote devs`."
        )


def _open(port: str, baudrate: int) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        return SerialTransport(port, baudrate=baudrate)
    except (TransportError, OSError) as exc:
        raise NoSuchPort(
            f"{port}: cannot open the port ({exc}). Is another program (bpiiot run, a "
            "terminal) using it, and may this user open it (group dialout)?"
        ) from None


def _read_for(transport: Any, seconds: float, until: tuple[bytes, ...]) -> bytes:
    ser = transport.serial
    got = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n = ser.in_waiting
        if n:
            got += ser.read(n)
            if any(u in got for u in until):
                break
        else:
            time.sleep(0.01)
    return bytes(got)


def _enter_repl(transport: Any, port: str, resume: bool) -> None:
    from mpremote.transport import TransportError

    ser = transport.serial
    # Stop our firmware (it leaves for the REPL after 100 ms of silence), or interrupt
    # any other program; a board already at its REPL answers at once.
    ser.write(_ESCAPE)
    seen = _read_for(transport, 3.0, (b">>> ", b"raw REPL; CTRL-B to exit", b"\r\n>"))
    if b">>>" not in seen and b"raw REPL" not in seen:
        # A last try with a plain Ctrl-C (a program that ignores the escape).
        ser.write(b"\r\x03\x03\r\x01")
        seen += _read_for(transport, 2.0, (b">>> ", b"raw REPL; CTRL-B to exit"))
        if b">>>" not in seen and b"raw REPL" not in seen:
            raise NotMicroPython(
                f"{port}: no MicroPython REPL answers here ({len(seen)} bytes of something "
                "else). Wrong port, or the board does not run MicroPython: install it first "
                "(e.g. drag the UF2 onto an RP2040 in BOOTSEL mode)."
            )
    try:
        transport.enter_raw_repl(soft_reset=not resume, timeout_overall=5)
    except TransportError as exc:
        hint = "" if resume else " (on the Unix port or to keep boot.py state, use --resume)"
        raise NotMicroPython(f"{port}: could not enter the raw REPL: {exc}{hint}") from None


def _board_mpy(transport: Any) -> int | None:
    """The board's ``sys.implementation._mpy``, or None if it has none."""
    from mpremote.transport import TransportError

    try:
        out = transport.eval("getattr(__import__('sys').implementation, '_mpy', None)")
    except TransportError as exc:
        raise NotMicroPython(f"cannot read the board's sys.implementation: {exc}") from None
    return out if isinstance(out, int) else None


def _remote_hash(transport: Any, path: str) -> bytes | None:
    from mpremote.transport import TransportError

    try:
        if not transport.fs_exists(path):
            return None
        digest: bytes = transport.fs_hashfile(path, "sha256")
        return digest
    except (TransportError, OSError):
        return None


def _ensure_dir(transport: Any, path: str) -> None:
    if not transport.fs_isdir(path):
        transport.fs_mkdir(path)


def _merge_config(
    transport: Any,
    board_id: str | None,
    key: bytes | None,
    clear_key: bool,
    sample_rate_hz: int | None,
    wdt_ms: int,
) -> bool:
    cfg: dict[str, Any] = {}
    if transport.fs_exists(CONFIG_FILE):
        try:
            loaded = json.loads(bytes(transport.fs_readfile(CONFIG_FILE)).decode())
            if isinstance(loaded, dict):
                cfg = loaded
        except (ValueError, UnicodeDecodeError):
            cfg = {}  # a damaged file: the firmware would use its defaults anyway
    before = dict(cfg)
    if board_id is not None:
        cfg["board_id"] = board_id
    if key is not None:
        cfg["key"] = key.hex()
    elif clear_key:
        cfg["key"] = None
    if sample_rate_hz is not None:
        cfg["sample_rate_hz"] = sample_rate_hz
    if cfg.get("wdt_ms", 0) != wdt_ms:
        cfg["wdt_ms"] = wdt_ms
    if cfg == before:
        return False
    data = json.dumps(cfg).encode()
    # The same atomic write as the firmware's store: temporary file, then rename.
    transport.fs_writefile(CONFIG_FILE + ".tmp", data)
    transport.exec(f"import os\nos.rename({CONFIG_FILE + '.tmp'!r}, {CONFIG_FILE!r})")
    return True


def wait_for_hello(
    port: str,
    *,
    key: bytes | None,
    baudrate: int,
    timeout_s: float,
    expect_version: tuple[int, int, int] | None = None,
) -> Hello:
    """Open the port with the SDK's link layer until the board says hello.

    Raises :class:`BoardNotAnswering` after ``timeout_s`` (the port may vanish and
    come back while a USB board resets: that is retried).
    """
    from bpiiot.board import connect

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            board = connect(port, key=key, baudrate=baudrate, timeout_s=0.5, reconnect=False)
        except BpiiotError as exc:
            last = str(exc)
            time.sleep(0.2)
            continue
        try:
            hello = board.hello
        finally:
            board.close()
        if hello is None:
            continue
        if expect_version is not None and hello.firmware_version != expect_version:
            want = ".".join(map(str, expect_version))
            got = ".".join(map(str, hello.firmware_version))
            raise BoardNotAnswering(
                f"{port}: the board answers with firmware {got}, expected {want}: the new "
                "firmware did not start (a stale .py shadowing a .mpy, or a failed reset?)"
            )
        return hello
    raise _not_answering(port, timeout_s, last)


def _not_answering(port: str, timeout_s: float, last: str) -> BoardNotAnswering:
    return BoardNotAnswering(
        f"{port}: no hello from the firmware within {timeout_s:.0f} s after the reset "
        f"({last}). Check the firmware with `mpremote connect {port} resume repl` "
        "(an exception at import?), the baud rate, and the MAC key."
    )


def flash(
    port: str,
    *,
    arch: str = "rp2040",
    source: Path | None = None,
    board_id: str | None = None,
    key: bytes | None = None,
    clear_key: bool = False,
    sample_rate_hz: int | None = None,
    wdt_ms: int | None = None,
    resume: bool = False,
    baudrate: int = 115200,
    wait: bool = True,
    timeout_s: float = 15.0,
    progress: ProgressCallback | None = None,
) -> FlashResult:
    """Deploy the firmware to the board on ``port`` (see the module docstring).

    ``resume`` skips mpremote's soft reset (needed for the Unix port on a pty).
    ``key`` (16-32 bytes) is written to the board's configuration, never shown;
    the hello is then awaited with it. ``wdt_ms`` sets the board's watchdog
    (None: :data:`DEFAULT_WDT_MS` on a real board, off on the Unix port; 0: off).
    Raises a :class:`FlashError` subclass with what to check when anything fails.
    """
    source = source or default_source()
    march = resolve_arch(arch)
    if board_id is not None and not _BOARD_ID.fullmatch(board_id):
        raise FlashError(f"board id {board_id!r}: use 1-32 characters of A-Z a-z 0-9 . _ -")
    if key is not None and not 16 <= len(key) <= 32:
        raise FlashError(f"MAC key must be 16 to 32 bytes, got {len(key)}")
    if sample_rate_hz is not None and not 1 <= sample_rate_hz <= 65535:
        raise FlashError(f"sample rate {sample_rate_hz} Hz out of range 1..65535")
    wdt_ms = watchdog_ms(march, wdt_ms)
    report = progress or (lambda _p: None)
    version = firmware_version(source)
    result = FlashResult(arch=march)
    _check_port(port)
    emitted = emitted_mpy_version()
    with tempfile.TemporaryDirectory(prefix="bpiiot-flash-") as tmp:
        report(Progress("connect", port))
        transport = _open(port, baudrate)
        try:
            _enter_repl(transport, port, resume)
            # Before anything is copied: can this board load what we compile?
            board_arch = check_board_mpy(_board_mpy(transport), emitted)
            if board_arch != march:
                report(Progress("arch", f"{march} -> {board_arch} (as the board reports)"))
                march = result.arch = board_arch
            report(Progress("build", str(source)))
            files = build(source, Path(tmp), march)
            _ensure_dir(transport, PACKAGE)
            for remote, local in files:
                data = local.read_bytes()
                if _remote_hash(transport, remote) == hashlib.sha256(data).digest():
                    result.unchanged.append(remote)
                    report(Progress("skip", remote, len(data), len(data)))
                    continue

                def on_bytes(done: int, total: int, remote: str = remote) -> None:
                    report(Progress("copy", remote, done, total))

                report(Progress("copy", remote, 0, len(data)))
                transport.fs_writefile(remote, data, progress_callback=on_bytes)
                result.copied.append(remote)
                # A source file left from an older install would shadow the .mpy.
                if remote.endswith(".mpy"):
                    stale = remote[:-4] + ".py"
                    if transport.fs_exists(stale):
                        transport.fs_rmfile(stale)
                        result.removed.append(stale)
                        report(Progress("remove", stale))
            # Whatever else is in the package folder (host-only modules, files of an
            # older release) does not run: it only takes the board's flash.
            shipped = {remote for remote, _ in files}
            for entry in transport.fs_listdir(PACKAGE):
                path = f"{PACKAGE}/{entry.name}"
                if path not in shipped and entry.st_mode & 0o170000 == 0o100000:
                    transport.fs_rmfile(path)
                    result.removed.append(path)
                    report(Progress("remove", path))
            result.config_written = _merge_config(
                transport, board_id, key, clear_key, sample_rate_hz, wdt_ms
            )
            if result.config_written:
                report(Progress("config", CONFIG_FILE))
            report(Progress("reset", port))
            transport.exec_raw_no_follow(_RESET)
            if wait:
                # Keep the port open: the boot hello is read as it is sent (opening
                # the port later would flush it away).
                report(Progress("hello", port))
                result.hello = _hello_on_open_port(
                    port, transport.serial, key, clear_key, timeout_s
                )
        except FlashError:
            raise
        except Exception as exc:  # mpremote raises plain TransportError/OSError
            raise FlashError(f"{port}: copying failed: {exc}") from None
        finally:
            try:
                transport.close()
            except OSError:
                pass  # a board that reset has already taken the port away
    if wait and result.hello is None:
        # The port went away (a USB board re-enumerating): reopen it and ask.
        result.hello = wait_for_hello(
            port,
            key=None if clear_key else key,
            baudrate=baudrate,
            timeout_s=timeout_s,
            expect_version=version,
        )
    if result.hello is not None and result.hello.firmware_version != version:
        want = ".".join(map(str, version))
        got = ".".join(map(str, result.hello.firmware_version))
        raise BoardNotAnswering(
            f"{port}: the board answers with firmware {got}, expected {want}: the new "
            "firmware did not start (a stale .py shadowing a .mpy, or a failed reset?)"
        )
    return result


def _hello_on_open_port(
    port: str, ser: Any, key: bytes | None, clear_key: bool, timeout_s: float
) -> Hello | None:
    """Read the boot hello from the still-open port; None if the port went away.

    The bytes go through the SDK's :class:`~bpiiot.link.Link` (its deframer and
    verifier): this pump only moves bytes, because the link cannot open the port
    mpremote holds, and reopening it would flush the boot hello away. Without a key, a
    tagged hello is still accepted (unauthenticated), so a board keyed earlier is
    recognised too. After a quiet second a hello request is sent.
    """
    import serial

    from bpiiot.link import Link
    from bpiiot.messages import HelloRequest

    use_key = None if clear_key else key
    link = Link(port, key=use_key)
    hellos: list[Hello] = []
    link.subscribe(
        lambda frame: hellos.append(frame.message) if isinstance(frame.message, Hello) else None
    )
    deadline = time.monotonic() + timeout_s
    asked = time.monotonic() + 1.0
    try:
        ser.timeout = 0.05
        while time.monotonic() < deadline:
            link.feed(ser.read(512))
            if hellos:
                return hellos[0]
            if time.monotonic() > asked:
                asked = time.monotonic() + 1.0
                ser.write(b"\0" + link.encoder.encode(HelloRequest()))
    except (serial.SerialException, OSError):
        return None
    raise _not_answering(port, timeout_s, "silence, or frames that failed verification")
