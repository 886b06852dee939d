"""Helpers of the service tests: a dev chain on a real anvil, boards in the Unix port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from board_host import BoardHost, signal_config

from bpiiot import config as config_mod
from bpiiot.chain.contracts import MachineService, PartReplacement, load_artifact
from bpiiot.chain.node import Node
from bpiiot.devenv import DevEnv, dev_up

ROOT = Path(__file__).resolve().parents[2]


def wait_until(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test with ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def make_env(tmp: Path, node_url: str, rules: list[dict[str, Any]]) -> DevEnv:
    """Fresh wallet, contracts and config on ``node_url``."""
    return dev_up(tmp, node_url=node_url, rules=rules)


def add_boards(env: DevEnv, boards: dict[str, str]) -> config_mod.Config:
    """Name ``boards`` (name -> port) in the env's config; returns the saved config."""
    cfg = config_mod.load(env.config_path)
    cfg.extra["board"] = [{"name": n, "url": u} for n, u in boards.items()]
    cfg.extra["service"] = {"socket": str(env.dir / "bpiiot.sock"), "stats_interval_s": 0.5}
    config_mod.save(cfg)
    return cfg


def start_board(
    wear_s: float,
    temp_rise_c: float = 0.0,
    temp_start_c: float = 35.0,
    seed: int = 1,
    key: bytes | None = None,
) -> BoardHost:
    """The firmware on a pty with a degrading bearing (and a MAC key, if given)."""
    host = BoardHost()
    cfg: dict[str, Any] = signal_config(
        "bearing", wear_s=wear_s, temp_start_c=temp_start_c, temp_rise_c=temp_rise_c, seed=seed
    )
    if key is not None:
        cfg["key"] = key.hex()
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))
    host.start()
    return host


class Chain:
    """Read-only views of the deployed agreements."""

    def __init__(self, env: DevEnv) -> None:
        self.node = Node(env.node_url)
        self.node.connect()
        w3 = self.node.w3
        self.ms = w3.eth.contract(
            address=w3.to_checksum_address(env.machine_service),
            abi=load_artifact(MachineService.NAME).abi,
        )
        self.pr = w3.eth.contract(
            address=w3.to_checksum_address(env.part_replacement),
            abi=load_artifact(PartReplacement.NAME).abi,
        )

    def requests(self) -> list[bytes]:
        """Evidence hashes of every service request, in order."""
        n = self.ms.functions.requestCount().call()
        return [bytes(self.ms.functions.requests(i).call()[0]) for i in range(1, n + 1)]

    def orders(self) -> list[tuple[int, int, int, bytes]]:
        """(part, quantity, amount, evidence) of every order, in order."""
        n = self.pr.functions.orderCount().call()
        out = []
        for i in range(1, n + 1):
            part, qty, _status, _at, _deadline, amount, ev = self.pr.functions.orders(i).call()
            out.append((int(part), int(qty), int(amount), bytes(ev)))
        return out


class ServiceProcess:
    """``bpiiot run`` (or the crash harness) in a subprocess, stopped by its PID."""

    def __init__(self, config: Path, crash_stage: str | None = None) -> None:
        if crash_stage:
            cmd = [sys.executable, str(ROOT / "tests/e2e/crash_service.py"), crash_stage]
            cmd.append(str(config))
        else:
            cmd = [sys.executable, "-m", "bpiiot.cli", "run", "--config", str(config)]
        self.log = config.parent / f"service-{crash_stage or 'run'}-{time.time():.0f}.log"
        self._log = open(self.log, "wb")  # closed in stop()/wait_killed()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )

    def wait_killed(self, timeout_s: float) -> int:
        """Wait for the crash harness to SIGKILL itself; returns the exit code."""
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self.stop()

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL) by PID; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        """What the process logged."""
        return self.log.read_text(errors="replace")
