"""Every bad command-line input gets one clear line and a non-zero exit, never a traceback.

Walks through the inputs a careless user (or an attacker with write access to a
file) gives: out-of-range numbers, key and keystore files that are not UTF-8, not
hex, readable by others, or damaged. Runs the real entry point in-process, so an
uncaught exception fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bpiiot import cli, config, wallet
from tests.sbc.chain.helpers import TEST_KDF

KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single error line the command printed (and nothing like a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["monitor", "loop://", "--timeout", "-1"], "--timeout: must be above 0, got -1"),
        (["monitor", "loop://", "--timeout", "nan"], "--timeout: must be above 0, got nan"),
        (["monitor", "loop://", "--timeout", "soon"], "--timeout: not a number: 'soon'"),
        (["monitor", "loop://", "--baud", "0"], "--baud: must be 1 or more, got 0"),
        (["monitor", "loop://", "--baud", "fast"], "--baud: not an integer: 'fast'"),
        (["monitor", "loop://", "--count", "-3"], "--count: must be 0 or more, got -3"),
        (["monitor", "loop://", "--seconds", "-1"], "--seconds: must be above 0, got -1"),
        (["conformance", "loop://", "--output-pin", "256"], "--output-pin: must be 0..255"),
        (["conformance", "loop://", "--timeout", "0"], "--timeout: must be above 0, got 0"),
        (["wallet", "new", "--kdf-iterations", "0"], "--kdf-iterations: must be 2 or more"),
        (["flash", "loop://", "--timeout", "-1"], "--timeout: must be above 0, got -1"),
        (["flash", "loop://", "--baud", "0"], "--baud: must be 1 or more, got 0"),
        (["flash", "loop://", "--sample-rate", "0"], "--sample-rate: must be 1..65535, got 0"),
        (["flash", "loop://", "--watchdog-ms", "-1"], "--watchdog-ms: must be 0..3600000"),
        (
            [
                "contracts",
                "deploy",
                "--vendor",
                "0x0",
                "--supplier",
                "0x0",
                "--shipping-window-s",
                "-5",
            ],
            "--shipping-window-s: must be 1 or more, got -5",
        ),
    ],
)
def test_out_of_range_numbers_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in _error(capsys)


def _secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("command", ["monitor", "conformance", "flash"])
def test_link_key_files(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("BPIIOT_LINK_KEY", raising=False)
    port = str(tmp_path / "no-tty")
    cases = [
        (_secret(tmp_path / "bin", b"\xff\xfe" * 16), "is not UTF-8 text"),
        (_secret(tmp_path / "raw", bytes(range(65, 97))), "written in hex"),
        (_secret(tmp_path / "short", b"0011"), "16 to 32 bytes, this one is 2"),
        (_secret(tmp_path / "open", b"00" * 16, 0o644), "run `chmod 600"),
        (tmp_path / "missing", "cannot read key file"),
    ]
    for path, message in cases:
        code = cli.main([command, port, "--key-file", str(path)])
        assert code == 1
        line = _error(capsys)
        assert message in line, line
        assert "ab" * 8 not in line
    # The explicit flag accepts the open file; the command then fails on the port.
    code = cli.main([command, port, "--key-file", str(tmp_path / "open"), "--insecure-permissions"])
    out = capsys.readouterr()
    if command == "monitor":
        assert code == 1 and "cannot open" in out.err
    elif command == "flash":
        assert code == 1 and "no such port" in out.err
    else:  # the conformance report names the port it could not open
        assert code == 1 and "cannot open" in out.out


@pytest.fixture
def wallet_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Config:
    cfg = config.Config()
    cfg.wallet.keystore = str(tmp_path / "keystore.json")
    cfg.wallet.kdf_iterations = 2**14
    config.save(cfg, tmp_path / "config.toml")
    monkeypatch.setenv("BPIIOT_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("BPIIOT_WALLET_PASSWORD", "pw")
    return cfg


def test_wallet_files(
    wallet_cfg: config.Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keystore = Path(wallet_cfg.wallet.keystore)
    address = wallet.import_private_key(keystore, KEY_HEX, "pw", kdf=TEST_KDF)
    keystore.chmod(0o644)
    assert cli.main(["wallet", "address"]) == 1
    assert f"run `chmod 600 {keystore}`" in _error(capsys)
    assert cli.main(["wallet", "address", "--insecure-permissions"]) == 0
    assert capsys.readouterr().out.strip() == address
    keystore.chmod(0o600)

    # A keystore whose iv was changed by one digit: refused on import, not imported.
    doc = json.loads(keystore.read_text())
    iv = doc["crypto"]["cipherparams"]["iv"]
    doc["crypto"]["cipherparams"]["iv"] = ("1" if iv[0] != "1" else "2") + iv[1:]
    damaged = _secret(tmp_path / "damaged.json", json.dumps(doc).encode())
    code = cli.main(
        ["wallet", "import", "--keystore", str(damaged), "--source-password-env",
         "BPIIOT_WALLET_PASSWORD", "--overwrite"]
    )  # fmt: skip
    assert code == 1
    assert "is damaged: it decrypts to" in _error(capsys)
    assert wallet.unlock(keystore, "pw").address == address  # untouched

    bad = _secret(tmp_path / "bad.json", b"\xff\xfe{}")
    code = cli.main(
        ["wallet", "import", "--keystore", str(bad), "--source-password-env",
         "BPIIOT_WALLET_PASSWORD", "--overwrite"]
    )  # fmt: skip
    assert code == 1 and "is not UTF-8 text" in _error(capsys)

    key_file = _secret(tmp_path / "key.bin", b"\xff" * 32)
    code = cli.main(["wallet", "import", "--key-file", str(key_file), "--overwrite"])
    assert code == 1 and "is not UTF-8 hex text" in _error(capsys)


def test_non_utf8_password_file(
    wallet_cfg: config.Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("BPIIOT_WALLET_PASSWORD")
    wallet_cfg.wallet.password_file = str(_secret(tmp_path / "pw", b"\xffpw"))
    config.save(wallet_cfg, tmp_path / "config.toml")
    assert cli.main(["wallet", "new"]) == 1
    assert "is not UTF-8 text" in _error(capsys)


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bpiiot.cli", "monitor", "loop://", "--baud", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--baud: must be 1 or more, got 0")
