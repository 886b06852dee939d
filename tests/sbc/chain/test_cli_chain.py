"""The wallet and contracts commands, run through the real CLI entry point against anvil."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bpiiot import cli, config
from bpiiot.chain.contracts import MachineService
from bpiiot.chain.devnode import DevNode
from tests.sbc.chain.helpers import ETHER, fresh_signer


@pytest.fixture
def cfg_path(tmp_path: Path, anvil: DevNode, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    cfg = config.Config()
    cfg.chain.node_url = anvil.url
    cfg.chain.state_db = str(tmp_path / "state.sqlite")
    cfg.wallet.keystore = str(tmp_path / "keystore.json")
    cfg.wallet.kdf_iterations = 2**14
    config.save(cfg, path)
    monkeypatch.setenv("BPIIOT_CONFIG", str(path))
    monkeypatch.setenv("BPIIOT_WALLET_PASSWORD", "cli-test-pw")
    return path


def test_wallet_commands(
    cfg_path: Path, anvil: DevNode, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["wallet", "new"]) == 0
    address = capsys.readouterr().out.strip()
    keystore = tmp_path / "keystore.json"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert cli.main(["wallet", "new"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["wallet", "address"]) == 0
    assert capsys.readouterr().out.strip() == address
    out = tmp_path / "addr.json"
    assert cli.main(["wallet", "export-address", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == {"address": address, "chain_id": 31337}
    anvil.set_balance(address, 3 * ETHER)
    assert cli.main(["wallet", "balance"]) == 0
    assert "3.000000 ETH" in capsys.readouterr().out


def test_wallet_import_from_key_file(
    cfg_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key.hex"
    key_file.write_text("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\n")
    assert cli.main(["wallet", "import", "--key-file", str(key_file)]) == 0
    assert capsys.readouterr().out.strip() == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def test_password_is_not_a_command_line_option(cfg_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["wallet", "new", "--password", "x"])


def test_wrong_password_is_a_clear_cli_error(
    cfg_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["wallet", "new"]) == 0
    monkeypatch.setenv("BPIIOT_WALLET_PASSWORD", "not-it")
    rc = cli.main(
        ["contracts", "deploy", "--vendor", "0x" + "11" * 20, "--supplier", "0x" + "22" * 20]
    )
    assert rc == 1 and "wrong password" in capsys.readouterr().err


def test_contracts_deploy_records_addresses(
    cfg_path: Path, anvil: DevNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["wallet", "new"]) == 0
    machine = capsys.readouterr().out.strip()
    anvil.set_balance(machine, 10 * ETHER)
    vendor, supplier = fresh_signer(anvil, 0).address, fresh_signer(anvil, 0).address
    rc = cli.main(["contracts", "deploy", "--vendor", vendor, "--supplier", supplier])
    assert rc == 0
    cfg = config.load(cfg_path)
    assert cfg.chain.machine_service and cfg.chain.part_replacement
    assert cfg.chain.machine_service in capsys.readouterr().out
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    assert cli.main(["contracts", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status[MachineService.NAME]["deployed"] is True
    assert status[MachineService.NAME]["machine"] == machine
    assert status[MachineService.NAME]["vendor"] == vendor
    assert status["PartReplacement"]["supplier"] == supplier
