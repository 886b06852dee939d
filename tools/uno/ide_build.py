"""Build the Uno sketch the way the Arduino IDE and arduino-cli build it.

The recipes and flags are read from the Arduino core's own ``platform.txt`` and
``boards.txt`` (Debian's ``arduino-core-avr``, board ``uno``), not written out here:
link-time optimisation, ``-std=gnu++11 -fpermissive``, the sketch's ``.ino`` turned
into ``.ino.cpp`` after ``#include <Arduino.h>``, every ``.c``/``.cpp``/``.S`` of the
sketch folder, the core in an archive. The one addition is ``build.extra_flags``
``-DDECIMAL_DIG=__DECIMAL_DIG__``, which Debian's gcc-avr 5.4 needs for that core (the
IDE ships avr-gcc 7.3). The IDE would also generate prototypes for the ``.ino``'s
functions; the sketch's ``.ino`` has none (setup and loop are in ``app.cpp``).

Usage: python tools/uno/ide_build.py OUT_DIR  (prints the ELF's path)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKETCH = ROOT / "board" / "arduino" / "bpiiot_uno"
CORE_DIR = Path("/usr/share/arduino/hardware/arduino/avr")
BOARD = "uno"
IDE_VERSION = "10807"
DEBIAN_EXTRA = "-DDECIMAL_DIG=__DECIMAL_DIG__"


def _properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _expand(text: str, props: dict[str, str]) -> str:
    # {name} until nothing is left to expand; unknown names expand to nothing, as
    # the IDE does for optional properties.
    for _ in range(20):
        new = re.sub(r"\{([a-zA-Z0-9_.]+)\}", lambda m: props.get(m.group(1), ""), text)
        if new == text:
            return new
        text = new
    raise ValueError(f"recursive property in {text!r}")


def properties(out: Path) -> dict[str, str]:
    """platform.txt and the board's boards.txt entries, as the IDE merges them."""
    props = _properties(CORE_DIR / "platform.txt")
    for key, value in _properties(CORE_DIR / "boards.txt").items():
        if key.startswith(BOARD + "."):
            props[key[len(BOARD) + 1 :]] = value
    props.update({
        "runtime.ide.version": IDE_VERSION,
        "build.arch": "AVR",
        "build.path": str(out),
        "build.project_name": "bpiiot_uno",
        "build.core.path": str(CORE_DIR / "cores" / props["build.core"]),
        "build.variant.path": str(CORE_DIR / "variants" / props["build.variant"]),
        "build.extra_flags": (props.get("build.extra_flags", "") + " " + DEBIAN_EXTRA).strip(),
        "compiler.warning_flags": props.get("compiler.warning_flags.default", ""),
        "archive_file": "core.a",
        "archive_file_path": str(out / "core.a"),
    })  # fmt: skip
    props["includes"] = (
        f'"-I{props["build.core.path"]}" "-I{props["build.variant.path"]}" "-I{SKETCH}"'
    )
    return props


def _run(recipe: str, props: dict[str, str], **extra: str) -> None:
    cmd = _expand(props[recipe], {**props, **extra})
    proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{cmd}\n{proc.stderr}")


def _compile(src: Path, obj: Path, props: dict[str, str]) -> None:
    recipe = {".c": "recipe.c.o.pattern", ".cpp": "recipe.cpp.o.pattern",
              ".S": "recipe.S.o.pattern"}[src.suffix]  # fmt: skip
    obj.parent.mkdir(parents=True, exist_ok=True)
    _run(recipe, props, source_file=str(src), object_file=str(obj))


def build(out: Path) -> Path:
    """Build into out (created); returns the ELF."""
    out.mkdir(parents=True, exist_ok=True)
    props = properties(out)
    # The sketch: its .ino as the IDE rewrites it, then its other sources.
    ino = SKETCH / (SKETCH.name + ".ino")
    ino_cpp = out / "sketch" / (ino.name + ".cpp")
    ino_cpp.parent.mkdir(parents=True, exist_ok=True)
    ino_cpp.write_text(f'#include <Arduino.h>\n#line 1 "{ino}"\n' + ino.read_text())
    objects = []
    for src in [ino_cpp, *sorted(p for p in SKETCH.iterdir() if p.suffix in (".c", ".cpp", ".S"))]:
        obj = out / "sketch" / (src.name + ".o")
        _compile(src, obj, props)
        objects.append(obj)
    core = Path(props["build.core.path"])
    archive = out / "core.a"
    archive.unlink(missing_ok=True)
    for src in sorted(p for p in core.iterdir() if p.suffix in (".c", ".cpp", ".S")):
        obj = out / "core" / (src.name + ".o")
        _compile(src, obj, props)
        _run("recipe.ar.pattern", props, object_file=str(obj))
    _run("recipe.c.combine.pattern", props,
         object_files=" ".join(f'"{o}"' for o in objects))  # fmt: skip
    elf = out / "bpiiot_uno.elf"
    _run("recipe.objcopy.hex.pattern", props)
    return elf


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(build(Path(argv[0]).resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
