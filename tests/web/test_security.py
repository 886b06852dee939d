"""Safety of the device manager against the harness: login everywhere, CSRF, racing edits refused,
login rate limit, sessions that expire, loopback-only without a password, secrets never shown."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.web.conftest import PASSWORD, Site, login, shot, start_site


@pytest.fixture(scope="module")
def short_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Login required, sessions of 3 s, failed logins counted over 5 s; no chain.

    A cheap scrypt cost keeps five failed logins well inside the window on a busy machine.
    """
    s = start_site(
        tmp_path_factory.mktemp("short"),
        "--no-chain",
        "--session-ttl",
        "3",
        "--login-window",
        "5",
        kdf_n=2**10,
    )
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def local_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """No password: loopback only."""
    s = start_site(tmp_path_factory.mktemp("local"), "--no-chain", password=False)
    try:
        yield s
    finally:
        s.stop()


def test_the_api_and_the_event_stream_refuse_a_client_without_login(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as c:
        for path in ("/api/status", "/api/rules", "/api/links", "/api/incidents", "/events"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json() == {"error": "login required: POST /api/login"}
        assert c.put("/api/rules", json={"rules": []}).status_code == 401
        assert c.post("/api/boards/mill/reboot", json={}).status_code == 401
        r = c.get("/rules")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Frules"
        # Every answer forbids framing and foreign scripts.
        for path in ("/login", "/api/status", "/static/app.css"):
            h = c.get(path).headers
            assert "frame-ancestors 'none'" in h["content-security-policy"], path
            assert "script-src" not in h["content-security-policy"]  # default-src 'self'
            assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert c.post("/api/login", json={"password": "guess"}).status_code == 401


def test_state_changes_without_the_csrf_token_are_refused(site: Site, browser: Any) -> None:
    with site.client() as c:
        boot = c.get("/api/boards/mill").json()["summary"]["boot_counter"]
        token = c.headers.pop("x-csrf-token")
        r = c.post("/api/boards/mill/reboot", json={})
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
        r = c.post("/api/boards/mill/reboot", json={}, headers={"x-csrf-token": "x" + token})
        assert r.status_code == 403
        r = c.post("/boards/mill/reboot", data={"csrf_token": "forged"})
        assert r.status_code == 403
        r = c.put("/api/rules", json={"rules": []}, headers={"if-match": '"x"'})
        assert r.status_code == 403
        assert c.get("/api/boards/mill").json()["summary"]["boot_counter"] == boot
    # The same from a logged-in browser: a form post without the token is refused.
    ctx = browser.new_context()
    try:
        p = ctx.new_page()
        login(p, site, "/rules")
        r = p.request.post(site.url + "/rules", form={"toggle": "0", "version": "x"})
        assert r.status == 403
        r = p.request.post(site.url + "/boards/mill/output", form={"pin": "1", "value": "low"})
        assert r.status == 403
    finally:
        ctx.close()


def test_an_api_rule_edit_based_on_an_old_version_is_refused(site: Site) -> None:
    with site.client() as c:
        r = c.get("/api/rules")
        etag, rules = r.headers["etag"], r.json()["rules"]
        assert etag == f'"{r.json()["version"]}"'
        assert c.put("/api/rules", json={"rules": rules}).status_code == 428
        rules[0]["fault_code"] = 11
        r = c.put("/api/rules", json={"rules": rules}, headers={"if-match": etag})
        assert r.status_code == 200
        rules[0]["fault_code"] = 12
        r = c.put("/api/rules", json={"rules": rules}, headers={"if-match": etag})
        assert r.status_code == 412 and "changed by someone else" in r.json()["error"]
        assert c.get("/api/rules").json()["rules"][0]["fault_code"] == 11
        # Validation errors name the field; nothing is written.
        before = (site.state / "rules.toml").read_text()
        bad = [{**rules[0], "metric": "colour"}]
        r = c.put(
            "/api/rules",
            json={"rules": bad},
            headers={"if-match": c.get("/api/rules").headers["etag"]},
        )
        assert r.status_code == 400 and r.json()["errors"] == {
            "0.metric": "one of vel_rms_um_s, acc_rms_mg, acc_peak_mg"
        }
        assert (site.state / "rules.toml").read_text() == before


def _everything_shown(site: Site) -> str:
    with site.client() as c:
        parts = [c.get(p).text for p in ("/", "/links", "/rules", "/incidents", "/boards/mill")]
        parts += [
            c.get(p).text
            for p in (
                "/api/status",
                "/api/links",
                "/api/rules",
                "/api/incidents",
                "/api/boards/mill",
                "/api/boards/mill/reports",
            )
        ]
        with c.stream("GET", "/events") as r:
            got = ""
            for chunk in r.iter_text():
                got += chunk
                if got.count("event: ") >= 3:
                    break
        parts.append(got)
    return "\n".join(parts)


def test_a_provisioned_link_key_is_never_shown_nor_logged(page: Any, site: Site) -> None:
    key = os.urandom(32).hex()
    key_file = site.state / "mill.key"
    login(page, site, "/boards/mill")
    page.fill("#key", "not hex at all")
    page.click("#key-form button[type=submit]")
    assert page.locator("#key-error").inner_text() == "hex digits only (0-9, a-f), two per byte"
    assert page.locator("#key").input_value() == ""
    assert "not hex at all" not in page.content()
    assert not key_file.exists()
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    assert page.locator(".message").inner_text() == (
        "link key provisioned and saved (it is never shown)"
    )
    assert page.locator("#key").input_value() == ""
    assert key_file.read_text().strip() == key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    # The link is authenticated from now on and reports still arrive.
    with site.client() as c:
        seq0 = c.get("/api/status").json()["boards"]["mill"]["last_report"]["window_seq"]
        deadline = time.monotonic() + 30
        while c.get("/api/status").json()["boards"]["mill"]["last_report"]["window_seq"] == seq0:
            assert time.monotonic() < deadline, "no report after the key was provisioned"
            time.sleep(0.5)
    shown = _everything_shown(site) + page.content() + site.log_text()
    for form in (key, key.upper(), key[:16]):
        assert form not in shown
    assert re.search(r"link key of mill saved", site.log_text())
    shot(page, "board-key")


def test_failed_logins_are_rate_limited_per_window(short_site: Site) -> None:
    with httpx.Client(base_url=short_site.url, timeout=30) as c:
        # Ten guesses at once: exactly five are checked, the others refused unchecked.
        with ThreadPoolExecutor(10) as pool:
            codes = sorted(
                pool.map(
                    lambda _: c.post("/api/login", json={"password": "nope"}).status_code,
                    range(10),
                )
            )
        assert codes == [401] * 5 + [429] * 5
        r = c.post("/api/login", json={"password": PASSWORD})
        assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
        wait = float(r.headers["retry-after"])
        assert 0 < wait <= 5
        # The login form is refused too, with the reason next to the field.
        form = c.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        r = c.post("/login", data={"password": PASSWORD, "csrf_token": token.group(1)})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "too many failed logins" in r.text
        # Once the oldest failure leaves the window, the right password works again.
        time.sleep(wait + 0.2)
        r = c.post("/api/login", json={"password": PASSWORD})
        assert r.status_code == 200


def test_sessions_expire(short_site: Site) -> None:
    with short_site.client() as c:
        assert c.get("/api/status").status_code == 200
        time.sleep(3.5)
        assert c.get("/api/status").status_code == 401


def test_without_a_password_only_loopback_is_served_and_csrf_still_applies(
    local_site: Site,
) -> None:
    with httpx.Client(base_url=local_site.url, timeout=30) as c:
        assert c.get("/").status_code == 200
        assert c.get("/api/status").status_code == 200
        # DNS rebinding: a page on another name that resolves to 127.0.0.1.
        r = c.get("/api/status", headers={"host": "evil.example:80"})
        assert r.status_code == 403 and "loopback" in r.json()["error"]
        boot = c.get("/api/boards/mill").json()["summary"]["boot_counter"]
        assert c.post("/api/boards/mill/reboot", json={}).status_code == 403
        token = c.post("/api/login", json={"password": ""}).json()["csrf_token"]
        r = c.post("/api/boards/mill/reboot", json={}, headers={"x-csrf-token": token})
        assert r.status_code == 200
        assert c.get("/api/boards/mill").json()["summary"]["boot_counter"] == boot + 1


def test_sigterm_stops_the_server_while_an_event_stream_is_open(local_site: Site) -> None:
    with httpx.Client(base_url=local_site.url, timeout=30) as c:
        with c.stream("GET", "/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            first = next(r.iter_text())
            assert first.startswith("retry:")
            assert local_site.stop() == 0
    assert "Finished server process" in local_site.log_text()


def test_no_secret_field_of_an_event_reaches_a_browser() -> None:
    from bpiiot.bus import Event
    from bpiiot.web.events import public_fields

    log = Event("log", {"level": "info", "text": "hi", "link_key": "00" * 16, "password": "p"})
    assert public_fields(log.to_dict()) == {
        "kind": "log",
        "board": None,
        "time": log.time,
        "level": "info",
        "text": "hi",
    }
    # "key" in a tx or incident event is the outbox idempotency key: shown.
    assert public_fields({"key": "vib:mill:1", "state": "queued"})["key"] == "vib:mill:1"
