"""Passwords, the password file, the access policy and the CLI that sets the password."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bpiiot import cli
from bpiiot.web.auth import (
    Auth,
    PasswordError,
    RateLimiter,
    load_password_record,
    set_password,
    verify_password,
)
from bpiiot.web.server import make_auth


def test_the_password_file_holds_a_salted_scrypt_hash_only_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "pw.json"
    set_password(path, "a long enough secret")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert "a long enough secret" not in text
    record = load_password_record(path)
    assert record["kdf"] == "scrypt" and int(str(record["n"])) >= 2**15
    assert verify_password(record, "a long enough secret")
    assert not verify_password(record, "a long enough secreT")
    set_password(tmp_path / "again.json", "a long enough secret")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["salt"] != record["salt"] and again["hash"] != record["hash"]


def test_no_default_password_a_login_policy_needs_one_set(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(PasswordError, match="bpiiot web passwd"):
        make_auth("0.0.0.0", missing)
    with pytest.raises(PasswordError, match="bpiiot web passwd"):
        make_auth("127.0.0.1", missing, require_login=True)
    assert not make_auth("127.0.0.1").login_required
    assert not make_auth("localhost").login_required
    set_password(missing, "a long enough secret")
    auth = make_auth("192.168.1.20", missing)
    assert auth.login_required and auth.check_password("a long enough secret")
    (tmp_path / "bad.json").write_text('{"kdf": "md5"}')
    with pytest.raises(PasswordError, match="not a bpiiot web password file"):
        Auth.with_password_file(tmp_path / "bad.json")


def test_cli_sets_the_password_and_refuses_a_short_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "web.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["web", "passwd", "--stdin", "--password-file", str(path)]) == 1
    assert "at least 10 characters" in capsys.readouterr().err and not path.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("the machine room password\n"))
    assert cli.main(["web", "passwd", "--stdin", "--password-file", str(path)]) == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert verify_password(load_password_record(path), "the machine room password")
    assert "the machine room password" not in capsys.readouterr().out


def test_rate_limiter_counts_per_key() -> None:
    rl = RateLimiter(3, 60.0)
    for _ in range(3):
        assert rl.retry_after("10.0.0.1") == 0
        rl.hit("10.0.0.1")
    assert 59 < rl.retry_after("10.0.0.1") <= 60
    assert rl.retry_after("10.0.0.2") == 0
    # attempt() counts and checks in one step; a success is taken back.
    assert rl.attempt("10.0.0.2") == 0 and rl.attempt("10.0.0.2") == 0
    rl.succeeded("10.0.0.2")
    assert rl.attempt("10.0.0.2") == 0 and rl.attempt("10.0.0.2") == 0
    assert rl.attempt("10.0.0.2") > 0


def test_sessions_are_random_and_end_on_logout() -> None:
    auth = Auth.local()
    a, b = auth.new_session(), auth.new_session()
    assert a.token != b.token and a.csrf != b.csrf and len(a.token) >= 40
    assert auth.session(a.token) is a
    assert Auth.csrf_ok(a, a.csrf) and not Auth.csrf_ok(a, b.csrf) and not Auth.csrf_ok(a, None)
    auth.end_session(a.token)
    assert auth.session(a.token) is None
