"""The chart library is served from the package, and it is npm's copy byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "sbc" / "bpiiot" / "web" / "static" / "vendor"
NPM = ROOT / "node_modules" / "uplot"


def test_vendored_uplot_is_the_npm_package_pinned_in_package_json() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["uplot"]
    installed = json.loads((NPM / "package.json").read_text())["version"]
    assert installed == pinned
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        assert (VENDOR / name).read_bytes() == (NPM / "dist" / name).read_bytes(), (
            f"{name} differs from npm's uplot {pinned}: "
            f"cp node_modules/uplot/dist/{name} {VENDOR.relative_to(ROOT)}/"
        )
    assert (VENDOR / "uPlot.LICENSE").read_bytes() == (NPM / "LICENSE").read_bytes()


def test_pages_load_nothing_from_another_host() -> None:
    templates = ROOT / "sbc" / "bpiiot" / "web" / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, page
