"""The wallet: keystore files, errors, password sources, and a key that never leaks."""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from bpiiot import wallet
from bpiiot.chain.devnode import DEV_PRIVATE_KEYS
from bpiiot.errors import BpiiotError
from bpiiot.wallet import (
    InvalidPrivateKey,
    KeystoreCorrupt,
    KeystoreInsecure,
    LocalSigner,
    PasswordUnavailable,
    Signer,
    WalletExists,
    WalletNotFound,
    WrongPassword,
)
from tests.sbc.chain.helpers import TEST_KDF

KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_ADDRESS = Account.from_key(bytes.fromhex(KEY_HEX)).address


def test_create_unlock_and_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keystore.json"
    address = wallet.create_wallet(path, "pw", kdf=TEST_KDF)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["version"] == 3 and doc["crypto"]["kdf"] == "scrypt"
    assert doc["crypto"]["kdfparams"]["n"] == 2**14
    assert wallet.keystore_address(path) == address
    signer = wallet.unlock(path, "pw")
    assert isinstance(signer, Signer) and signer.address == address
    assert [p.name for p in path.parent.iterdir()] == ["keystore.json"]  # no temp file left


def test_default_kdf_is_gethstandard_scrypt() -> None:
    assert wallet.KdfParams() == wallet.KdfParams("scrypt", 2**18)
    with pytest.raises(wallet.WalletError, match="power of two"):
        wallet.KdfParams("scrypt", 1000)
    pb = wallet.KdfParams("pbkdf2", 1000)
    assert pb.iterations == 1000


def test_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    first = wallet.create_wallet(path, "pw", kdf=TEST_KDF)
    before = path.read_bytes()
    with pytest.raises(WalletExists, match="already exists"):
        wallet.create_wallet(path, "pw", kdf=TEST_KDF)
    with pytest.raises(WalletExists):
        wallet.import_private_key(path, KEY_HEX, "pw", kdf=TEST_KDF)
    assert path.read_bytes() == before
    second = wallet.create_wallet(path, "pw2", kdf=TEST_KDF, overwrite=True)
    assert second != first and wallet.unlock(path, "pw2").address == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_password(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    wallet.create_wallet(path, "right", kdf=TEST_KDF)
    with pytest.raises(WrongPassword, match="wrong password") as e:
        wallet.unlock(path, "wrong")
    assert isinstance(e.value, BpiiotError)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": 3}', "not a keystore v3"),
        ('{"version": 3, "crypto": {"cipher": "aes-128-ctr"}}', "lacks crypto"),
        ("[]", "not a keystore v3"),
    ],
)
def test_corrupt_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeystoreCorrupt, match=message):
        wallet.unlock(path, "pw")


def test_damaged_kdf_parameters_are_corrupt_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    wallet.create_wallet(path, "pw", kdf=TEST_KDF)
    doc = json.loads(path.read_text())
    doc["crypto"]["kdfparams"]["n"] = "lots"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupt):
        wallet.unlock(path, "pw")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WalletNotFound, match="bpiiot wallet new"):
        wallet.unlock(tmp_path / "none.json", "pw")


def test_import_private_key_and_keystore(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    assert wallet.import_private_key(a, "0x" + KEY_HEX, "pw", kdf=TEST_KDF) == KEY_ADDRESS
    b = tmp_path / "b.json"
    addr = wallet.import_keystore(b, a, "pw", password="new", kdf=TEST_KDF)
    assert addr == KEY_ADDRESS and wallet.unlock(b, "new").address == KEY_ADDRESS
    with pytest.raises(WrongPassword):
        wallet.import_keystore(tmp_path / "c.json", a, "nope", kdf=TEST_KDF)
    assert not (tmp_path / "c.json").exists()


def test_key_never_in_logs_repr_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "k.json"
    texts: list[str] = []
    wallet.import_private_key(path, KEY_HEX, "pw", kdf=TEST_KDF)
    signer = wallet.unlock(path, "pw")
    texts += [repr(signer), str(signer), f"{signer}", repr(dir(signer))]
    tx = {"chainId": 1, "nonce": 0, "gas": 21000, "maxFeePerGas": 2, "maxPriorityFeePerGas": 1,
          "to": KEY_ADDRESS, "value": 0}  # fmt: skip
    signed = signer.sign_transaction(tx)
    texts.append(repr(signed))
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    assert not hasattr(signer, "__dict__")
    bad_keys = [KEY_HEX[:-2] + "zz", KEY_HEX + "00", "0x" + "ff" * 32]
    for bad in bad_keys:
        with pytest.raises(InvalidPrivateKey) as e:
            wallet.import_private_key(tmp_path / "x.json", bad, "pw", kdf=TEST_KDF)
        texts.append(str(e.value))
        assert e.value.__cause__ is None and e.value.__suppress_context__
    with pytest.raises(WrongPassword) as e2:
        wallet.unlock(path, "other")
    texts.append(str(e2.value))
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    assert "unlocked wallet" in caplog.text  # logging did happen...
    blob = "\n".join(texts).lower()
    for needle in [KEY_HEX, KEY_HEX[:16], KEY_HEX[-16:], *(b.lower() for b in bad_keys)]:
        assert needle.lower().removeprefix("0x")[:40] not in blob  # ...without the key


def test_signer_matches_bare_eth_account() -> None:
    key = bytes.fromhex(DEV_PRIVATE_KEYS[0][2:])
    tx = {"chainId": 31337, "nonce": 3, "gas": 21000, "maxFeePerGas": 10**10,
          "maxPriorityFeePerGas": 10**9, "to": KEY_ADDRESS, "value": 5, "data": b""}  # fmt: skip
    ours = LocalSigner(key).sign_transaction(tx)
    bare = Account.sign_transaction(tx, key)
    assert ours.raw_transaction == bare.raw_transaction


def test_signing_backend_is_coincurve(caplog: pytest.LogCaptureFixture) -> None:
    assert wallet.signing_backend() == "CoinCurveECCBackend"
    wallet._backend_logged = False
    caplog.set_level(logging.INFO, logger="bpiiot.wallet")
    wallet.log_signing_backend()
    wallet.log_signing_backend()
    assert caplog.text.count("signing backend: CoinCurveECCBackend") == 1


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BPIIOT_WALLET_PASSWORD", raising=False)
    monkeypatch.setenv("MY_PW", "from-env")
    assert wallet.resolve_password(password_env="MY_PW") == "from-env"
    pw_file = tmp_path / "pw"
    pw_file.write_text("from file \n")
    assert wallet.resolve_password(password_env="UNSET_X", password_file=pw_file) == "from file "
    with pytest.raises(PasswordUnavailable, match=r"\$UNSET_X"):
        wallet.resolve_password(password_env="UNSET_X", interactive=False)
    with pytest.raises(PasswordUnavailable, match="cannot read"):
        wallet.resolve_password(password_env="UNSET_X", password_file=tmp_path / "missing")
    monkeypatch.setattr(wallet.getpass, "getpass", lambda prompt="": "typed")
    assert (
        wallet.resolve_password(password_env="UNSET_X", interactive=True, confirm=True) == "typed"
    )
    assert os.environ.get("UNSET_X") is None


def _damaged(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A keystore of KEY_HEX (mode 0600) with ``change`` applied to its JSON."""
    path = tmp_path / "damaged.json"
    if not path.exists():
        wallet.import_private_key(path, KEY_HEX, "pw", kdf=TEST_KDF)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def _flip_iv(doc: dict[str, Any]) -> None:
    iv = doc["crypto"]["cipherparams"]["iv"]
    doc["crypto"]["cipherparams"]["iv"] = ("1" if iv[0] != "1" else "2") + iv[1:]


def test_changed_iv_is_refused_not_unlocked_as_another_account(tmp_path: Path) -> None:
    path = _damaged(tmp_path, _flip_iv)
    # The MAC does not cover the iv: eth-account alone unlocks it to another key.
    other = Account.from_key(Account.decrypt(json.loads(path.read_text()), "pw")).address
    assert other != KEY_ADDRESS
    with pytest.raises(KeystoreCorrupt, match=f"decrypts to {other}, not to its recorded address"):
        wallet.unlock(path, "pw")
    with pytest.raises(KeystoreCorrupt, match="damaged"):
        wallet.import_keystore(tmp_path / "new.json", path, "pw", kdf=TEST_KDF)
    assert not (tmp_path / "new.json").exists()


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("cipher", "aes-256-ctr", "cipher 'aes-256-ctr' is not supported"),
        ("kdf", "argon2", "kdf 'argon2' is not supported"),
        ("kdfparams.dklen", 10**9, r"kdfparams.dklen = 1000000000 is outside the bound 32..32"),
        ("kdfparams.n", 2**30, r"kdfparams.n = 1073741824 is outside the bound 2..1048576"),
        ("kdfparams.n", 3000, "not a power of two"),
        ("kdfparams.r", 0, r"kdfparams.r = 0 is outside the bound 1..16"),
        ("kdfparams.p", 10**6, r"kdfparams.p = 1000000 is outside the bound 1..16"),
        ("kdfparams.salt", "00", "kdfparams.salt is 1 bytes, expected 16 to 64"),
        ("cipherparams.iv", "zz" * 16, "cipherparams.iv is not hex"),
        ("ciphertext", "00" * 31, "ciphertext is 31 bytes, expected 32"),
        ("mac", "00", "mac is 1 bytes, expected 32"),
    ],
)
def test_every_parameter_is_bounded(tmp_path: Path, where: str, value: Any, message: str) -> None:
    def change(doc: dict[str, Any]) -> None:
        *parents, leaf = where.split(".")
        node = doc["crypto"]
        for name in parents:
            node = node[name]
        node[leaf] = value

    path = _damaged(tmp_path, change)
    with pytest.raises(KeystoreCorrupt, match=message):
        wallet.unlock(path, "pw")


def test_scrypt_memory_is_bounded(tmp_path: Path) -> None:
    path = _damaged(tmp_path, lambda doc: doc["crypto"]["kdfparams"].update(n=2**20, r=16))
    with pytest.raises(KeystoreCorrupt, match="needs 2048 MiB, over the bound of 1024 MiB"):
        wallet.unlock(path, "pw")


def test_pbkdf2_bounds(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    wallet.import_private_key(path, KEY_HEX, "pw", kdf=wallet.KdfParams("pbkdf2", 1000))
    assert wallet.unlock(path, "pw").address == KEY_ADDRESS
    doc = json.loads(path.read_text())
    doc["crypto"]["kdfparams"]["c"] = 10**12
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupt, match=r"kdfparams.c = 1000000000000 is outside"):
        wallet.unlock(path, "pw")
    doc["crypto"]["kdfparams"].update(c=1000, prf="hmac-md5")
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupt, match="prf must be hmac-sha256"):
        wallet.unlock(path, "pw")


def test_keystore_readable_by_others_is_refused_with_the_chmod(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    wallet.import_private_key(path, KEY_HEX, "pw", kdf=TEST_KDF)
    path.chmod(0o640)
    for call in (lambda: wallet.unlock(path, "pw"), lambda: wallet.keystore_address(path)):
        with pytest.raises(KeystoreInsecure, match=f"run `chmod 600 {path}`") as e:
            call()
        assert "mode 0640" in str(e.value)
    assert wallet.unlock(path, "pw", insecure_permissions=True).address == KEY_ADDRESS
    assert wallet.keystore_address(path, insecure_permissions=True) == KEY_ADDRESS
    path.chmod(0o600)
    assert wallet.keystore_address(path) == KEY_ADDRESS


def test_non_utf8_files_are_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(b'{"version": 3, "\xff\xfe"}')
    path.chmod(0o600)
    with pytest.raises(KeystoreCorrupt, match="is not UTF-8 text"):
        wallet.unlock(path, "pw")
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xff\xfepassword")
    with pytest.raises(PasswordUnavailable, match="is not UTF-8 text"):
        wallet.resolve_password(password_env="UNSET_X", password_file=pw)
