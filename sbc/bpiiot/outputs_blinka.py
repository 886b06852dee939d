"""SBC-local actuator outputs (a relay, a lamp) on the SBC's own pins, through Blinka.

adafruit-blinka gives CircuitPython's ``digitalio`` on Linux SBCs (Raspberry Pi, BeagleBone,
Jetson, Orange Pi, Banana Pi and others). :class:`BlinkaOutputs` drives named outputs with
``set(name, value)``, the shape of the controller's output driver
(``bpiiot.outputs.OutputDriver``), so a rule's ``output`` action reaches an SBC pin the
same way it reaches a board pin. :class:`RoutedOutputs` picks the backend per output: the
names listed in ``[gpio]`` go to the SBC, every other name to the board driver.

Config::

    [gpio]
    outputs = { lamp = "D17", stop_relay = "D27" }   # Blinka pin names (board.D17 ...)
    active_low = ["stop_relay"]                      # relay boards that switch on low

On a machine without GPIO (a PC, a container) construction fails with one line saying so
(:class:`GpioUnavailable`) instead of a traceback. Tested on x86 by driving Blinka's real
``digitalio.DigitalInOut`` over a recording pin class; no SBC was tried on hardware yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bpiiot.config import register_section
from bpiiot.errors import BpiiotError


class BlinkaOutputError(BpiiotError):
    """An SBC output is unknown or could not be set."""


class GpioUnavailable(BlinkaOutputError):
    """This machine has no GPIO that Blinka can drive (or not the pin asked for)."""


class _Driver(Protocol):
    def set(self, name: str, value: int) -> None: ...


@dataclass
class GpioConfig:
    """``[gpio]``: SBC-local outputs (name -> Blinka pin name) and which are active-low."""

    outputs: dict[str, str] = field(default_factory=dict)
    active_low: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.outputs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.outputs.items()
        ):
            raise BlinkaOutputError(
                '[gpio] outputs must map names to Blinka pin names, e.g. { lamp = "D17" }'
            )
        if not isinstance(self.active_low, list) or not all(
            isinstance(n, str) for n in self.active_low
        ):
            raise BlinkaOutputError("[gpio] active_low must be a list of output names")


register_section("gpio", GpioConfig)


def _platform() -> str:
    try:
        from adafruit_blinka.agnostic import board_id, chip_id

        return f"{board_id or 'unknown board'}, chip {chip_id or 'unknown'}"
    except Exception as exc:  # platform detection itself may fail on odd machines
        return f"platform not detected: {exc}"


def _resolve(name: str, pin: Any) -> Any:
    if not isinstance(pin, str):
        return pin
    try:
        import board
    except Exception as exc:  # Blinka raises NotImplementedError, RuntimeError, ImportError...
        raise GpioUnavailable(
            f"output {name!r}: no GPIO on this machine ({type(exc).__name__}: {exc})"
        ) from None
    found = getattr(board, pin, None)
    if found is None:
        raise GpioUnavailable(
            f"output {name!r}: this machine ({_platform()}) has no GPIO pin {pin!r} that "
            "Blinka knows; SBC outputs need a supported single-board computer"
        )
    return found


class BlinkaOutputs:
    """Named digital outputs on SBC pins through ``digitalio.DigitalInOut``.

    ``pins`` maps an output name to a Blinka pin name (``"D17"``, looked up in ``board``)
    or a pin object. Every output starts inactive (low, or high when in ``active_low``).
    Raises :class:`GpioUnavailable` in one line when the machine cannot drive a pin.
    """

    def __init__(self, pins: Mapping[str, Any], *, active_low: Iterable[str] = ()) -> None:
        self.active_low = set(active_low)
        unknown = sorted(self.active_low - set(pins))
        if unknown:
            raise BlinkaOutputError(f"[gpio] active_low names unknown outputs: {unknown}")
        try:
            import digitalio
        except Exception as exc:
            raise GpioUnavailable(f"Blinka's digitalio cannot load here: {exc}") from None
        self._outputs: dict[str, Any] = {}
        try:
            for name, pin in pins.items():
                io = _open(digitalio, name, _resolve(name, pin))
                io.switch_to_output(value=name in self.active_low)
                self._outputs[name] = io
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_config(cls, config: GpioConfig) -> BlinkaOutputs:
        """The outputs of a ``[gpio]`` table."""
        return cls(config.outputs, active_low=config.active_low)

    @property
    def names(self) -> set[str]:
        """The output names this driver owns."""
        return set(self._outputs)

    def set(self, name: str, value: int) -> None:
        """Drive output ``name`` active (1) or inactive (0)."""
        io = self._outputs.get(name)
        if io is None:
            raise BlinkaOutputError(
                f"unknown SBC output {name!r} (known: {', '.join(sorted(self._outputs))})"
            )
        try:
            io.value = bool(value) != (name in self.active_low)
        except OSError as exc:
            raise BlinkaOutputError(f"SBC output {name!r}: {exc}") from exc

    def get(self, name: str) -> bool:
        """The level last driven on ``name``'s pin, as the pin reports it."""
        return bool(self._outputs[name].value)

    def close(self) -> None:
        """Release the pins."""
        for io in self._outputs.values():
            io.deinit()
        self._outputs.clear()


def _open(digitalio: Any, name: str, pin: Any) -> Any:
    if getattr(digitalio, "Pin", None) is None:
        raise GpioUnavailable(
            f"output {name!r}: Blinka has no GPIO driver on this machine ({_platform()})"
        )
    try:
        return digitalio.DigitalInOut(pin)
    except (OSError, RuntimeError, ValueError) as exc:
        raise GpioUnavailable(f"output {name!r}: cannot open pin {pin!r}: {exc}") from None


class RoutedOutputs:
    """One output driver over two: names of ``sbc`` go to the SBC, the rest to ``boards``."""

    def __init__(self, sbc: BlinkaOutputs, boards: _Driver | None = None) -> None:
        self.sbc = sbc
        self.boards = boards

    def set(self, name: str, value: int) -> None:
        """Drive ``name`` through whichever backend owns it."""
        if name in self.sbc.names:
            self.sbc.set(name, value)
        elif self.boards is not None:
            self.boards.set(name, value)
        else:
            raise BlinkaOutputError(f"unknown output {name!r}: not an SBC output in [gpio]")
