"""The TOML config: defaults, strict keys, clear errors, atomic 0600 writes."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from bpiiot import config
from bpiiot.config import ConfigError


def test_missing_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPIIOT_CONFIG", str(tmp_path / "c.toml"))
    cfg = config.load()
    assert cfg.path == tmp_path / "c.toml"
    assert cfg.chain.chain_id == 31337 and cfg.wallet.password_env == "BPIIOT_WALLET_PASSWORD"
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "c.toml", missing_ok=False)


def test_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "c.toml"
    cfg = config.Config()
    cfg.chain.node_url = 'http://127.0.0.1:9545/"quoted"'
    cfg.chain.machine_service = "0x" + "12" * 20
    cfg.chain.max_fee_cap_gwei = 42.5
    cfg.wallet.password_file = "/etc/bpiiot/pw"
    cfg.extra["link"] = {"serial_url": "/dev/ttyACM0", "baud": 115200}
    config.save(cfg, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["c.toml"]
    back = config.load(path)
    assert back.chain == cfg.chain and back.wallet == cfg.wallet
    assert back.extra["link"] == {"serial_url": "/dev/ttyACM0", "baud": 115200}


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[chain]\nnode_ulr = "http://x"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key 'node_ulr' in \[chain\]"):
        config.load(path)


def test_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[chian]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[chian\]"):
        config.load(path)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[chain\nnode_url = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        config.load(path)


@pytest.mark.parametrize(
    "line",
    ['chain_id = "31337"', "confirmations = true", "node_url = 8545", "max_fee_cap_gwei = 'x'"],
)
def test_wrong_type(tmp_path: Path, line: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[chain]\n{line}\n")
    with pytest.raises(ConfigError, match=r"\[chain\] " + line.split()[0] + ": expected"):
        config.load(path)


def test_int_accepted_for_float(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[chain]\nmax_fee_cap_gwei = 100\n")
    assert config.load(path).chain.max_fee_cap_gwei == 100.0


def test_registered_section_is_typed_and_strict(tmp_path: Path) -> None:
    @dataclass
    class DemoSection:
        rate_hz: int = 10

    config.register_section("demo_section", DemoSection)
    try:
        path = tmp_path / "c.toml"
        path.write_text("[demo_section]\nrate_hz = 50\n")
        assert config.load(path).section("demo_section") == DemoSection(50)
        path.write_text("[demo_section]\nrate = 50\n")
        with pytest.raises(ConfigError, match="unknown key 'rate' in \\[demo_section\\]"):
            config.load(path)
    finally:
        del config.SECTIONS["demo_section"]
