"""Fixtures of the device manager tests: the harness server (real firmware, bus, outbox, anvil,
uvicorn) in a subprocess on a free 127.0.0.1 port, and one headless Chromium per session.

Every process is stopped by PID. Screenshots go to build/screenshots/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bpiiot.chain.devnode import free_port
from bpiiot.web.auth import set_password

ROOT = Path(__file__).resolve().parents[2]

# The device manager on the real service runs once bpiiot.service (the controller's) is
# in the tree; before that merge there is nothing to run it on (not a skip: not collected).
collect_ignore = [] if importlib.util.find_spec("bpiiot.service") else ["test_real_service.py"]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "build" / "screenshots"
PASSWORD = "correct horse battery staple"


@dataclass
class Site:
    """A running harness server."""

    proc: subprocess.Popen[bytes]
    url: str
    state: Path
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def board_fs(self) -> Path:
        return self.state / "mill-fs"

    @contextlib.contextmanager
    def client(self, *, login: bool = True) -> Iterator[httpx.Client]:
        """An API client; logged in (with its CSRF token in the headers) if asked."""
        with httpx.Client(base_url=self.url, timeout=30) as c:
            if login:
                r = c.post("/api/login", json={"password": PASSWORD})
                r.raise_for_status()
                c.headers["x-csrf-token"] = r.json()["csrf_token"]
            yield c

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_site(state: Path, *args: str, password: bool = True, kdf_n: int = 2**15) -> Site:
    """Start tests/web/harness.py and wait for its READY line.

    ``kdf_n``: scrypt cost of the password file (lower only where a test times logins).
    """
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "tests.web.harness", "--state", str(state), "--port", str(port)]
    if password:
        pw = state / "web-password.json"
        set_password(pw, PASSWORD, n=kdf_n)
        argv += ["--password-file", str(pw)]
    log_path = state / "server.log"
    out = open(log_path, "wb")
    proc = subprocess.Popen(
        [*argv, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    out.close()
    site = Site(proc, f"http://127.0.0.1:{port}", state, log_path)
    deadline = time.monotonic() + 90
    while "READY" not in site.log_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            site.stop()
            raise RuntimeError(f"harness did not start:\n{site.log_text()[-4000:]}")
        time.sleep(0.1)
    return site


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole session (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run tools/install-system-deps.sh (Debian chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The full harness: firmware, bus, rules file, outbox on anvil; login required."""
    # A quarter hour of stored history (with flagged windows) before the live reports.
    s = start_site(tmp_path_factory.mktemp("site"), "--prefill-days", "0.01")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


def login(page: Any, site: Site, path: str = "/") -> None:
    """Log in through the form (ends on ``path``)."""
    page.goto(site.url + path)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + path)


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot to build/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def set_signal(site: Site, amp_mg: int) -> None:
    """Give the virtual board a new sine amplitude (its config file), then reboot it via the API."""
    cfg_path = site.board_fs / "bpiiot.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["sensor"]["signal"]["x"] = [[80, amp_mg]]
    cfg_path.write_text(json.dumps(cfg))
    with site.client() as c:
        r = c.post("/api/boards/mill/reboot", json={})
        assert r.status_code == 200, r.text
