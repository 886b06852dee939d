"""Link key loading and the CLI's help: keys never come from the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bpiiot import cli
from bpiiot.cli_link import KeyFileError, load_link_key


def test_key_from_hex_file_and_env_only(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BPIIOT_LINK_KEY", raising=False)
    assert load_link_key(None) is None
    hexfile = tmp_path / "k.hex"
    hexfile.write_text(bytes(range(16)).hex() + "\n")
    hexfile.chmod(0o600)
    assert load_link_key(str(hexfile)) == bytes(range(16))
    # Raw bytes are no longer guessed at: one format (hex) for every command.
    raw = tmp_path / "k.bin"
    raw.write_bytes(bytes(range(65, 97)))
    raw.chmod(0o600)
    with pytest.raises(KeyFileError, match="written in hex"):
        load_link_key(str(raw))
    monkeypatch.setenv("BPIIOT_LINK_KEY", "ab" * 20)
    assert load_link_key(None) == b"\xab" * 20


def test_flash_reads_its_key_file_with_the_same_loader(tmp_path) -> None:
    import argparse

    from bpiiot import cli_flash

    raw = tmp_path / "k.bin"
    raw.write_bytes(bytes(range(65, 97)))
    raw.chmod(0o600)
    args = argparse.Namespace(key_file=str(raw), key_env=None, insecure_permissions=False)
    with pytest.raises(KeyFileError, match="written in hex"):
        cli_flash._read_key(args)
    raw.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        cli_flash._read_key(args)


def test_bad_keys_are_clear_and_never_echoed(tmp_path, monkeypatch) -> None:
    short = tmp_path / "short"
    short.write_text("00112233")
    short.chmod(0o600)
    with pytest.raises(KeyFileError, match="16 to 32 bytes, this one is 4"):
        load_link_key(str(short))
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_link_key(str(tmp_path / "missing"))
    monkeypatch.setenv("BPIIOT_LINK_KEY", "not hex at all")
    with pytest.raises(KeyFileError) as info:
        load_link_key(None)
    assert "not hex at all" not in str(info.value)


def test_cli_has_no_key_argument_and_reads_well() -> None:
    parser = cli.build_parser()
    for command in ("monitor", "conformance"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "loop://", "--key", "00" * 16])
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "--help"], capture_output=True, text=True, check=True
    )
    for word in ("monitor", "conformance", "wallet", "contracts"):
        assert word in proc.stdout


def test_cli_error_for_a_missing_port(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BPIIOT_LINK_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "monitor", str(tmp_path / "ttyX")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot open")
    assert "Traceback" not in proc.stderr
