"""Start and stop a local Ethereum node (anvil or Hardhat 2) for tests, the demo and benchmarks.

The node is the binary from the repo's ``node_modules`` (installed by ``npm ci``), run directly
in its own process group on a free ``127.0.0.1`` port, so that stopping it by PID really stops
it (killing an ``npx`` wrapper leaves the node running). Nothing here binds beyond loopback.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Literal

from bpiiot.errors import BpiiotError

log = logging.getLogger(__name__)

NodeKind = Literal["anvil", "hardhat"]

#: Chain id both dev nodes use unless told otherwise.
DEV_CHAIN_ID = 31337

#: The well-known, public development keys of anvil and Hardhat (mnemonic "test test ... junk").
#: They hold Ether only on throw-away dev chains; never use them anywhere else.
DEV_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)


class DevNodeError(BpiiotError):
    """A local dev node could not be found, started or stopped."""


def find_repo_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` (default: cwd) that has ``node_modules``.

    ``BPIIOT_REPO_ROOT`` overrides the search.
    """
    env = os.environ.get("BPIIOT_REPO_ROOT")
    if env:
        return Path(env)
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for base in candidates:
        for folder in [base, *base.parents]:
            if (folder / "node_modules").is_dir():
                return folder
    raise DevNodeError("no node_modules folder found above the working directory: run `npm ci`")


def anvil_binary(root: Path | None = None) -> Path:
    """Path of the anvil binary shipped by the npm package ``@foundry-rs/anvil-linux-<arch>``."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    path = (root or find_repo_root()) / f"node_modules/@foundry-rs/anvil-linux-{arch}/bin/anvil"
    if not path.is_file():
        raise DevNodeError(f"anvil binary not found at {path}: run `npm ci` at the repo root")
    return path


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc_call(
    url: str, method: str, params: list[object] | None = None, timeout: float = 2.0
) -> object:
    """Make one raw JSON-RPC call (used for dev-only methods such as ``evm_mine``)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise DevNodeError(f"{method} failed: {reply['error']}")
    return reply.get("result")


class DevNode:
    """One local node process; use as a context manager or call :meth:`start`/:meth:`stop`.

    ``state_path`` (anvil only) keeps the chain across :meth:`restart`, like a real node that
    goes down and comes back; without it a restart starts a fresh chain. ``extra_args`` go
    to the node's command line as they are (e.g. ``["--hardfork", "berlin"]`` for anvil).
    """

    def __init__(
        self,
        kind: NodeKind = "anvil",
        *,
        port: int | None = None,
        chain_id: int = DEV_CHAIN_ID,
        state_path: Path | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.kind: NodeKind = kind
        self.port = port or free_port()
        self.chain_id = chain_id
        self.state_path = state_path
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._root = find_repo_root()

    @property
    def url(self) -> str:
        """HTTP JSON-RPC endpoint of the node."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running node process, or None."""
        return self._proc.pid if self._proc else None

    def _command(self) -> list[str]:
        if self.kind == "anvil":
            cmd = [
                str(anvil_binary(self._root)),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.chain_id),
                "--silent",
            ]
            if self.state_path is not None:
                cmd += ["--state", str(self.state_path)]
            return cmd + self.extra_args
        cli = self._root / "node_modules/hardhat/internal/cli/cli.js"
        if not cli.is_file():
            raise DevNodeError(f"hardhat not found at {cli}: run `npm ci` at the repo root")
        if self.chain_id != DEV_CHAIN_ID:
            raise DevNodeError("the Hardhat dev node runs with chain id 31337 only")
        cmd = ["node", str(cli), "node", "--hostname", "127.0.0.1", "--port", str(self.port)]
        return cmd + self.extra_args

    def start(self) -> DevNode:
        """Start the node and wait until it answers ``eth_chainId``."""
        if self._proc is not None:
            raise DevNodeError("dev node already started")
        env = dict(os.environ, HARDHAT_DISABLE_TELEMETRY_PROMPT="true")
        cwd = self._root / "contracts" if self.kind == "hardhat" else self._root
        # Own session => own process group, so stop() can kill the node and any children.
        self._proc = subprocess.Popen(
            self._command(),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise DevNodeError(f"{self.kind} exited at start-up: {err.strip()[:500]}")
            try:
                rpc_call(self.url, "eth_chainId", timeout=0.5)
                log.debug("%s answering on %s (pid %s)", self.kind, self.url, self._proc.pid)
                return self
            except (OSError, urllib.error.URLError, DevNodeError):
                time.sleep(0.05)
        self.stop()
        raise DevNodeError(
            f"{self.kind} did not answer on {self.url} within {self.startup_timeout}s"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node: SIGTERM to its process group (anvil then saves ``state_path``)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        finally:
            if proc.stderr:
                proc.stderr.close()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    # Dev-only RPC helpers; both anvil and Hardhat 2 implement these methods.
    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        for _ in range(blocks):
            rpc_call(self.url, "evm_mine")

    def set_automine(self, on: bool) -> None:
        """Turn automatic mining of each transaction on or off."""
        rpc_call(self.url, "evm_setAutomine", [on])

    def increase_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block so the new time is in force."""
        rpc_call(self.url, "evm_increaseTime", [seconds])
        self.mine()

    def set_balance(self, address: str, wei: int) -> None:
        """Give ``address`` a balance of ``wei``."""
        rpc_call(self.url, "hardhat_setBalance", [address, hex(wei)])

    def __enter__(self) -> DevNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
