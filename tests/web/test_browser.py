"""The device manager in a real headless Chromium, against the harness (real firmware on a pty,
real bus, real rules file, real outbox on anvil), with a login required."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import Site, login, set_signal, shot


def test_every_page_needs_a_login_and_a_wrong_password_is_told(page: Any, site: Site) -> None:
    for path in ("/", "/links", "/rules", "/incidents", "/boards/mill"):
        page.goto(site.url + path)
        assert page.url.startswith(site.url + "/login?next="), path
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.locator("#password-error").inner_text() == "wrong password"
    shot(page, "login")
    page.fill("#password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/boards/mill")
    assert page.locator("h1").inner_text().startswith("Board mill")
    shot(page, "login-then-board")


def test_overview_follows_the_virtual_boards_signal_live(page: Any, site: Site) -> None:
    login(page, site)
    page.evaluate("window.loadedOnce = true")
    sec = page.locator('section[data-board="mill"]')
    assert sec.locator('[data-f="board_id"]').inner_text() == "mill"
    assert re.fullmatch(r"\d+\.\d+\.\d+", sec.locator('[data-f="firmware_version"]').inner_text())
    # A live value changes without a reload: the window number.
    first = sec.locator('[data-f="window_seq"]').inner_text()
    page.wait_for_function(
        "f => document.querySelector('section[data-board=mill] [data-f=window_seq]')"
        ".textContent !== f",
        arg=first,
        timeout=30000,
    )
    x_zone = sec.locator('tr[data-axis="0"] .zone')
    # 50 mg at 80 Hz: about 0.69 mm/s, zone A for group 2 rigid.
    assert x_zone.inner_text() == "A"
    assert float(sec.locator('tr[data-axis="0"] [data-f="vel_rms"]').inner_text()) < 1.4
    assert page.locator("#plot-mill .uplot canvas").count() == 1
    # The stored history holds flagged (settling) windows: plotted as their own series.
    flagged = page.evaluate(
        "JSON.parse(document.getElementById('overview-data').textContent)"
        ".boards.mill.series.flagged.filter(v => v !== null).length"
    )
    assert flagged >= 1
    assert "flagged window" in page.locator("#plot-mill .u-legend").inner_text()
    # The board's signal grows eightfold (config file + reboot): about 5.5 mm/s, zone D.
    set_signal(site, 400)
    page.wait_for_function(
        "() => document.querySelector('section[data-board=mill] tr[data-axis=\"0\"] .zone')"
        ".textContent === 'D'",
        timeout=60000,
    )
    vel = float(sec.locator('tr[data-axis="0"] [data-f="vel_rms"]').inner_text())
    assert 4.5 <= vel <= 7.0
    assert x_zone.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(215, 38, 61)"
    assert page.evaluate("window.loadedOnce") is True  # never reloaded
    assert page.evaluate("window.bpiiotReports") >= 2
    # The reboot was seen: boot counter shown is the new one.
    assert int(sec.locator('[data-f="boot_counter"]').inner_text()) >= 2
    shot(page, "overview")


def test_a_rule_edit_persists_takes_effect_and_its_transaction_is_mined(
    page: Any, site: Site
) -> None:
    cfg = (site.board_fs / "bpiiot.json").read_text()
    if "[80, 400]" not in cfg:
        set_signal(site, 400)
    login(page, site, "/")
    overview = page.context.new_page()
    overview.goto(site.url + "/")
    page.goto(site.url + "/rules")
    rules_file = site.state / "rules.toml"
    before = rules_file.read_text()
    # Bad input: told next to the field, nothing written.
    page.fill("#r0\\.threshold", "three thousand")
    page.click("#rules-form button[type=submit]:not([name]):not(.default-submit)")
    assert page.locator("#r0\\.threshold-error").inner_text() == "a whole number"
    assert rules_file.read_text() == before
    # Refused by the rule book's own validation (an unknown board): also next to the field.
    page.fill("#r0\\.threshold", "3000")
    page.fill("#r0\\.board", "lathe")
    page.click("#rules-form button[type=submit]:not([name]):not(.default-submit)")
    assert "no board named 'lathe'" in page.locator("#r0\\.board-error").inner_text()
    assert rules_file.read_text() == before
    page.fill("#r0\\.board", "mill")
    page.press("#r0\\.board", "Enter")  # Enter saves (it must not toggle the rule)
    assert page.locator(".message").inner_text() == "rules saved and applied"
    assert "threshold = 3000" in rules_file.read_text()
    assert oct(rules_file.stat().st_mode & 0o777) == "0o600"
    # The rule fires on the next windows; its transaction is queued, sent and mined: the
    # incidents page follows by itself (it reloads on incident and tx events).
    page.goto(site.url + "/incidents")
    row = page.locator("#incidents tr[data-incident]").first
    expect(row.locator(".txstate")).to_have_text("confirmed", timeout=90000)
    assert row.locator("td").nth(1).inner_text() == "vibration-high"
    assert row.locator('[data-f="evidence"] .ok').inner_text() == "matches"
    assert "MachineService.requestService in block" in row.locator('[data-f="tx"]').inner_text()
    chain = page.locator("#chain").inner_text()
    assert re.search(r"0x[0-9a-fA-F]{40}", chain)
    assert "confirmed: 1" in chain
    shot(page, "incidents")
    # The overview, open all along, listed the rule, the incident and the transaction live.
    events = overview.locator("#events")
    expect(events).to_contain_text("rule vibration-high firing", timeout=20000)
    expect(events).to_contain_text("incident #1 of rule vibration-high: open", timeout=20000)
    expect(events).to_contain_text(
        "transaction MachineService.requestService: confirmed", timeout=20000
    )
    page.goto(site.url + "/links")
    assert int(page.locator('#links tr[data-board="mill"] [data-f="frames_ok"]').inner_text()) > 0
    shot(page, "links")


def test_a_rule_edit_that_races_another_is_refused(browser: Any, site: Site) -> None:
    ctx = browser.new_context()
    try:
        a = ctx.new_page()
        login(a, site, "/rules")
        b = ctx.new_page()
        b.goto(site.url + "/rules")
        a.fill("#r0\\.windows", "4")
        a.click("#rules-form button[type=submit]:not([name]):not(.default-submit)")
        assert a.locator(".message").inner_text() == "rules saved and applied"
        b.fill("#r0\\.windows", "9")
        b.click("#rules-form button[type=submit]:not([name]):not(.default-submit)")
        assert "changed by someone else" in b.locator(".problem").inner_text()
        text = (site.state / "rules.toml").read_text()
        assert "windows = 4" in text and "windows = 9" not in text
        # Enable/disable goes through the same versioned path.
        a.goto(site.url + "/rules")
        a.click('section[data-rule="0"] button[name=toggle]')
        assert "enabled = false" in (site.state / "rules.toml").read_text()
        assert "disabled" in a.locator('section[data-rule="0"] .state').inner_text()
        shot(a, "rules")
    finally:
        ctx.close()


def test_board_page_checks_fields_and_shows_the_boards_nack_in_words(page: Any, site: Site) -> None:
    login(page, site, "/boards/mill")
    with site.client() as c:
        before = c.get("/api/boards/mill").json()["config"]
    page.fill("#window_ms", "ten")
    page.fill("#hop_ms", "500")
    page.click("#config-form button[type=submit]")
    assert page.locator("#window_ms-error").inner_text().startswith("a whole number")
    assert page.locator("#hop_ms-error").count() == 0
    page.fill("#window_ms", "1000")
    page.fill("#hop_ms", "2000")
    page.click("#config-form button[type=submit]")
    assert page.locator("#hop_ms-error").inner_text() == "the hop cannot be longer than the window"
    with site.client() as c:
        assert c.get("/api/boards/mill").json()["config"] == before
    page.fill("#hop_ms", "500")
    page.click("#config-form button[type=submit]")
    assert page.locator(".message").inner_text() == "configuration saved on the board"
    with site.client() as c:
        assert c.get("/api/boards/mill").json()["config"]["hop_ms"] == 500
    # Pin 9 is not one of the board's outputs: the board refuses, the page says so in words.
    page.fill("#pin", "9")
    page.check("input[name=value][value=high]")
    page.click("#output-form button[type=submit]")
    assert page.locator(".problem").inner_text() == (
        "the board refused: bad value (pin 9 is not an output)"
    )
    page.fill("#pin", "1")
    page.check("input[name=value][value=high]")
    page.click("#output-form button[type=submit]")
    assert page.locator(".message").inner_text() == "output 1 set high"
    shot(page, "board")


def test_a_form_from_an_older_page_is_refused_not_merged(browser: Any, site: Site) -> None:
    ctx = browser.new_context()
    try:
        a = ctx.new_page()
        login(a, site, "/boards/mill")
        b = ctx.new_page()
        b.goto(site.url + "/boards/mill")
        a.fill("#hop_ms", "250")
        a.click("#config-form button[type=submit]")
        assert a.locator(".message").inner_text() == "configuration saved on the board"
        b.fill("#window_ms", "2000")
        b.click("#config-form button[type=submit]")
        assert "changed since this page was loaded" in b.locator(".problem").inner_text()
        with site.client() as c:
            conf = c.get("/api/boards/mill").json()["config"]
        assert (conf["hop_ms"], conf["window_ms"]) == (250, 1000)
    finally:
        ctx.close()


def test_a_rule_preview_replays_stored_history_and_saves_nothing(page: Any, site: Site) -> None:
    login(page, site, "/rules")
    before = (site.state / "rules.toml").read_text()
    page.fill("#r0\\.threshold", "1400")
    page.fill("#r0\\.windows", "1")
    page.click('section[data-rule="0"] button[name=preview]')
    assert page.locator(".message").inner_text() == "preview only: nothing was saved"
    text = page.locator('section[data-rule="0"] [data-f="preview"]').inner_text()
    fired = re.search(r"would have fired (\d+) times", text)
    assert fired is not None and int(fired.group(1)) >= 2, text
    # The edited values stay in the form; the file is untouched.
    assert page.locator("#r0\\.threshold").input_value() == "1400"
    assert (site.state / "rules.toml").read_text() == before
    page.fill("#r0\\.threshold", "65535")
    page.click('section[data-rule="0"] button[name=preview]')
    assert "would not have fired" in page.locator('[data-f="preview"]').inner_text()
    page.fill("#r0\\.windows", "0")
    page.click('section[data-rule="0"] button[name=preview]')
    assert page.locator("#r0\\.windows-error").inner_text() == "from 1 to 3600 windows"
    assert (site.state / "rules.toml").read_text() == before
    shot(page, "rules-preview")
