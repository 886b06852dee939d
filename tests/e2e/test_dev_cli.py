"""`bpiiot dev up` / `dev down`: a local chain, wallet and contracts one command away."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from bpiiot import cli
from bpiiot import config as config_mod
from bpiiot.chain.devnode import rpc_call
from tests.e2e.service_helpers import Chain


def test_dev_up_then_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "dev"
    assert cli.main(["dev", "up", "--dir", str(d)]) == 0
    info = json.loads((d / "dev.json").read_text())
    pid = int(info["node_pid"])
    try:
        out = capsys.readouterr().out
        assert "MachineService" in out and str(d / "config.toml") in out
        cfg = config_mod.load(d / "config.toml")
        assert cfg.chain.node_url == info["node_url"]
        for secret in ("keystore.json", "wallet.password", "config.toml"):
            assert stat.S_IMODE((d / secret).stat().st_mode) == 0o600, secret
        chain = Chain(EnvView(info))  # type: ignore[arg-type]
        machine, vendor = chain.ms.functions.machine().call(), chain.ms.functions.vendor().call()
        assert (machine, vendor) == (info["machine"], info["vendor"])
        assert chain.pr.functions.supplier().call() == info["supplier"]
        assert chain.pr.functions.priceOf(info["part_id"]).call() == info["part_price_wei"]
        assert chain.node.balance(info["machine"]) > 10**18
        assert [r["name"] for r in cfg.extra["rule"]] == ["vibration", "bearing-hot"]
        assert cli.main(["dev", "down", "--dir", str(d)]) == 0
        with pytest.raises(OSError):
            rpc_call(info["node_url"], "eth_chainId", timeout=0.5)
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class EnvView:
    """The fields of a DevEnv that Chain reads, from dev.json."""

    def __init__(self, info: dict[str, object]) -> None:
        self.node_url = str(info["node_url"])
        self.machine_service = str(info["machine_service"])
        self.part_replacement = str(info["part_replacement"])
