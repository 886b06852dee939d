"""The paper's controller from the README, run as a user would run it: real firmware, anvil."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bpiiot.chain.devnode import DevNode
from tests.e2e.service_helpers import Chain, make_env, start_board

ROOT = Path(__file__).resolve().parents[2]


def readme_app() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- paper-controller -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its paper-controller example"
    return match.group(1)


def test_readme_controller_orders_once_and_requests_once(tmp_path: Path) -> None:
    code = readme_app()
    lines = [x for x in code.splitlines() if x.strip() and not x.strip().startswith("#")]
    assert len(lines) <= 22, f"the example grew to {len(lines)} lines"
    app = tmp_path / "controller_app.py"
    app.write_text(code)
    with DevNode("anvil") as anvil:
        env = make_env(tmp_path / "dev", anvil.url, rules=[])
        host = start_board(wear_s=14, temp_rise_c=60.0)
        try:
            proc = subprocess.run(
                [sys.executable, str(app)],
                env=dict(os.environ, BPIIOT_CONFIG=str(env.config_path), BOARD=host.port),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            host.stop()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        printed = sorted(proc.stdout.splitlines())
        assert len(printed) == 2, proc.stdout
        assert printed[0].startswith("MachineService requestService confirmed 0x")
        assert printed[1].startswith("PartReplacement orderPart confirmed 0x")
        chain = Chain(env)
        assert len(chain.requests()) == 1
        ((part, qty, amount, _ev),) = chain.orders()
        assert (part, qty, amount) == (7, 1, env.part_price_wei)
