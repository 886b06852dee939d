"""The sketch as the Arduino IDE / arduino-cli builds it (tools/uno/ide_build.py: the
core's own platform.txt recipes, link-time optimisation included) passes
`bpiiot conformance` in simavr, as the Makefile's build does."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from bpiiot.conformance import run

from .conftest import ROOT, UnoSim

_spec = importlib.util.spec_from_file_location("ide_build", ROOT / "tools" / "uno" / "ide_build.py")
assert _spec is not None and _spec.loader is not None
ide_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ide_build)


def test_the_recipe_is_the_cores_own(tmp_path: Path) -> None:
    props = ide_build.properties(tmp_path)
    cpp = ide_build._expand(props["recipe.cpp.o.pattern"], props)
    # What the IDE adds and the Makefile does not: the build must survive it.
    for flag in ("-flto", "-fpermissive", "-std=gnu++11", "-DARDUINO_AVR_UNO",
                 "-mmcu=atmega328p", "-DF_CPU=16000000L"):  # fmt: skip
        assert flag in cpp.split(), flag
    link = ide_build._expand(props["recipe.c.combine.pattern"], props).split()
    assert "-flto" in link and "-fuse-linker-plugin" in link


def test_ide_build_passes_conformance(uno_build: Path, tmp_path: Path) -> None:
    elf = ide_build.build(tmp_path / "ide")
    assert elf.exists() and (tmp_path / "ide" / "bpiiot_uno.hex").exists()
    # LTO moves code around: the symbols the sampling interrupts and the assembly
    # reach by name must have survived it.
    nm = subprocess.run(["avr-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    for symbol in ("__vector_11", "__vector_18", "__vector_21", "sampler_ring"):
        assert any(line.split()[-1] == symbol for line in nm.splitlines()), symbol
    with UnoSim(firmware=elf) as sim:
        port = sim.start()
        result = run(port, output_pin=2)
        assert result.passed, result.render()
        assert result.frames_checked > 20


def test_the_ino_holds_no_code() -> None:
    # The IDE writes prototypes for an .ino's functions above the types they use
    # (a function returning a struct the .ino declares no longer compiles), and
    # ide_build.py does not imitate that: it is right only while there is nothing to
    # prototype.
    text = (ide_build.SKETCH / "bpiiot_uno.ino").read_text()
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("//")]
    assert code == []
