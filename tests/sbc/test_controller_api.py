"""The public surface a new user meets: help(), exports, config tables, action names."""

from __future__ import annotations

import pydoc
from pathlib import Path

import pytest

import bpiiot
import bpiiot.chain
from bpiiot import config as config_mod
from bpiiot.controller import CHAIN_ACTIONS, Controller
from bpiiot.files import KeyFileError
from bpiiot.outputs import BoardOutputs, OutputDriver, OutputError
from bpiiot.rules import Action, RuleError
from bpiiot.service import BoardConfig, ServiceError, boards_from_config, read_key_file


def test_board_hello_shows_in_help() -> None:
    text = pydoc.render_doc(bpiiot.Board, renderer=pydoc.plaintext)
    assert "hello\n" in text and "board id, firmware and protocol versions" in text


def test_chain_exports_its_public_api() -> None:
    for name in bpiiot.chain.__all__:
        assert getattr(bpiiot.chain, name) is not None, name
    assert bpiiot.chain.MachineService.NAME == "MachineService"


def test_actions_use_the_bindings_names() -> None:
    assert Controller.request_service(3) == Action("request_service", fault_code=3)
    assert Controller.order_part(7, 2) == Action("order_part", part_id=7, quantity=2)
    assert CHAIN_ACTIONS == {
        "request_service": ("MachineService", "requestService"),
        "order_part": ("PartReplacement", "orderPart"),
    }
    for kind, (contract, function) in CHAIN_ACTIONS.items():
        binding = getattr(bpiiot.chain, contract)
        assert hasattr(binding, kind), f"{contract} has no {kind} method"
        abi = {f["name"] for f in bpiiot.chain.contracts.load_artifact(contract).abi if "name" in f}
        assert function in abi
    with pytest.raises(RuleError, match="unknown action"):
        Action("sell_machine")


def test_board_and_rule_tables_round_trip(tmp_path: Path) -> None:
    cfg = config_mod.Config(path=tmp_path / "c.toml")
    cfg.extra["board"] = [
        {"name": "a", "url": "/dev/ttyACM0", "outputs": {"relay": 5}},
        {"name": "b", "url": "socket://127.0.0.1:7000"},
    ]
    cfg.extra["rule"] = [{"name": "z", "field": "zone", "threshold": "C", "count": 2, "of": 4}]
    config_mod.save(cfg)
    again = config_mod.load(cfg.path)
    assert again.extra["board"] == cfg.extra["board"]
    assert again.extra["rule"] == cfg.extra["rule"]
    boards = boards_from_config(again)
    assert boards[0] == BoardConfig("a", "/dev/ttyACM0", outputs={"relay": 5})
    again.extra["board"].append({"name": "a", "url": "x"})
    with pytest.raises(ServiceError, match="unique"):
        boards_from_config(again)


def test_key_files_must_be_private_hex(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("00" * 32)
    key.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_key_file(str(key))
    key.chmod(0o600)
    assert read_key_file(str(key)) == bytes(32)
    key.write_text("zz")
    with pytest.raises(KeyFileError, match="hex"):
        read_key_file(str(key))


def test_board_outputs_is_an_output_driver() -> None:
    outputs = BoardOutputs(lambda name: None, {"relay": ("a", 5)}, default="a")
    assert isinstance(outputs, OutputDriver)
    assert outputs.resolve("relay") == ("a", 5) and outputs.resolve("3") == ("a", 3)
    with pytest.raises(OutputError, match="not connected"):
        outputs.set("relay", 1)
    with pytest.raises(OutputError, match="unknown output"):
        outputs.set("lamp", 1)


def test_save_link_key_persists_a_private_key_file(tmp_path: Path) -> None:
    from bpiiot.service import Service

    cfg = config_mod.Config(path=tmp_path / "config.toml")
    cfg.extra["board"] = [{"name": "press-1", "url": "/dev/ttyNOSUCH"}]
    cfg.extra["store"] = {"path": str(tmp_path / "store.sqlite")}
    config_mod.save(cfg)
    svc = Service(cfg)
    try:
        svc.save_link_key("press-1", bytes(range(16)))
        with pytest.raises(ServiceError, match="16 to 32"):
            svc.save_link_key("press-1", b"short")
        with pytest.raises(ServiceError, match="no board named"):
            svc.save_link_key("lathe", bytes(16))
    finally:
        svc.controller.store.close()
    again = config_mod.load(cfg.path)
    key_file = Path(again.extra["board"][0]["key_file"])
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert read_key_file(str(key_file)) == bytes(range(16))
