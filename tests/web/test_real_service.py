"""The device manager on the real service (bpiiot.service.Service): the real firmware on a pty,
a real anvil, real SQLite, the web as a service component, through bpiiot.web.adapter.

Collected only once bpiiot.service exists (see conftest.py); checked against the controller
branch at e622091 before its merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bpiiot.chain.devnode import DevNode, free_port
from bpiiot.chain.factory import unlock_from_config
from bpiiot.service import Service
from bpiiot.web.adapter import service_view
from bpiiot.web.server import WebComponent
from tests.e2e.service_helpers import add_boards, make_env, start_board, wait_until

RULES = [
    {"name": "vibration", "field": "vel_rms_mm_s", "threshold": 4.5, "clear_threshold": 3.5,
     "count": 3, "of": 5, "action": "request_service", "fault_code": 1},
]  # fmt: skip


@pytest.fixture(scope="module")
def anvil() -> Iterator[DevNode]:
    with DevNode("anvil") as node:
        yield node


def test_the_device_manager_on_the_real_service(anvil: DevNode, tmp_path: Path) -> None:
    env = make_env(tmp_path, anvil.url, RULES)
    host = start_board(wear_s=16)
    try:
        cfg = add_boards(env, {"press-1": host.port})
        svc = Service(cfg, signer=unlock_from_config(cfg.wallet))
        web = WebComponent(port=free_port(), adapt=service_view)
        svc.add_component(web)
        with svc, httpx.Client(base_url=web.url, timeout=30) as c:
            wait_until(lambda: c.get("/api/status").json()["boards"]["press-1"]["last_report"],
                       30, "a report on the page")  # fmt: skip
            for path in ("/", "/links", "/rules", "/incidents", "/boards/press-1"):
                assert c.get(path).status_code == 200, path
            st = c.get("/api/status").json()
            assert st["boards"]["press-1"]["firmware_version"]
            assert st["chain"]["address"].startswith("0x")
            assert st["chain"]["node"]["connected"] is True
            reps = c.get("/api/boards/press-1/reports").json()["reports"]
            assert reps and reps[-1]["zones"]
            token = c.post("/api/login", json={"password": ""}).json()["csrf_token"]
            c.headers["x-csrf-token"] = token
            r = c.get("/api/rules")
            etag, rules = r.headers["etag"], r.json()["rules"]
            assert rules[0]["name"] == "vibration"
            bad = [{**rules[0], "field": "colour"}]
            r = c.put("/api/rules", json={"rules": bad}, headers={"if-match": etag})
            assert r.status_code == 400, r.text
            assert list(r.json()["errors"]) == ["0.field"], r.text
            r = c.put("/api/rules", json={"rules": rules}, headers={"if-match": etag})
            assert r.status_code == 200, r.text
            r = c.put("/api/rules", json={"rules": rules}, headers={"if-match": '"stale"'})
            assert r.status_code == 412, r.text

            # The bearing wears out: an incident, its evidence verified, its transaction mined.
            def mined() -> object:
                inc = c.get("/api/incidents").json()["incidents"]
                return inc and inc[0]["tx"] and inc[0]["tx"]["state"] == "confirmed" and inc[0]

            inc = wait_until(mined, 90, "a mined request on the incidents API")
            assert inc["evidence_ok"] is True and inc["frames"], inc
            assert inc["frames"][0]["vel_rms_um_s"], inc
            page = c.get("/incidents").text
            assert "matches" in page and "confirmed" in page
            links = c.get("/api/links").json()
            assert links["links"][0]["frames_ok"] > 0 and "web" in links["bus"]
    finally:
        host.stop()
