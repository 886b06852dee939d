"""SBC-local outputs: Blinka's real digitalio.DigitalInOut over a recording pin class.

On x86 Blinka defines no pins and its OS-agnostic mock reads every output back as True, so
the backend is judged by what DigitalInOut asks of the pin underneath.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

os.environ.setdefault("BLINKA_SKIP_DEPENDENCY_CHECK", "1")  # never offer to pip-install

import digitalio
import pytest

from bpiiot.outputs_blinka import (
    BlinkaOutputError,
    BlinkaOutputs,
    GpioConfig,
    GpioUnavailable,
    RoutedOutputs,
)


class RecordingPin:
    """A microcontroller pin as digitalio drives it: init(mode) and value(v)."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    levels: ClassVar[dict[int, int]] = {}
    calls: ClassVar[list[tuple[str, int, object]]] = []

    def __init__(self, pin_id: int) -> None:
        self.id = pin_id

    def init(self, mode: int | None = None, pull: int | None = None) -> None:
        RecordingPin.calls.append(("init", self.id, mode))

    def value(self, val: int | None = None) -> int | None:
        if val is None:
            return RecordingPin.levels.get(self.id, 0)
        RecordingPin.calls.append(("value", self.id, val))
        RecordingPin.levels[self.id] = val
        return None

    def deinit(self) -> None:
        RecordingPin.calls.append(("deinit", self.id, None))


@pytest.fixture
def pins(monkeypatch: pytest.MonkeyPatch) -> type[RecordingPin]:
    monkeypatch.setattr(digitalio, "Pin", RecordingPin)
    RecordingPin.levels = {}
    RecordingPin.calls = []
    return RecordingPin


def test_outputs_start_inactive_and_follow_set_with_active_low(pins: type[RecordingPin]) -> None:
    outs = BlinkaOutputs({"lamp": pins(17), "stop_relay": pins(27)}, active_low=["stop_relay"])
    # Both pins became outputs at their inactive level: lamp low, the active-low relay high.
    assert ("init", 17, pins.OUT) in pins.calls and ("init", 27, pins.OUT) in pins.calls
    assert pins.levels == {17: 0, 27: 1}
    outs.set("lamp", 1)
    outs.set("stop_relay", 1)
    assert pins.levels == {17: 1, 27: 0}
    assert outs.get("lamp") is True and outs.get("stop_relay") is False
    outs.set("lamp", 0)
    assert pins.levels[17] == 0
    with pytest.raises(BlinkaOutputError, match=r"unknown SBC output 'siren'.*lamp, stop_relay"):
        outs.set("siren", 1)
    outs.close()
    assert ("deinit", 17, None) in pins.calls and ("deinit", 27, None) in pins.calls


def test_routed_outputs_send_sbc_names_to_blinka_and_the_rest_to_the_boards(
    pins: type[RecordingPin],
) -> None:
    class BoardSide:
        def __init__(self) -> None:
            self.sets: list[tuple[str, int]] = []

        def set(self, name: str, value: int) -> None:
            self.sets.append((name, value))

    board_side = BoardSide()
    routed = RoutedOutputs(BlinkaOutputs({"lamp": pins(5)}), board_side)
    routed.set("lamp", 1)
    routed.set("relay", 1)
    assert pins.levels == {5: 1} and board_side.sets == [("relay", 1)]
    with pytest.raises(BlinkaOutputError, match="not an SBC output"):
        RoutedOutputs(BlinkaOutputs({"lamp": pins(5)})).set("relay", 1)


def test_a_machine_without_gpio_says_so_in_one_line() -> None:
    # This x86 machine: Blinka imports, defines no pins and has no pin driver.
    with pytest.raises(GpioUnavailable) as info:
        BlinkaOutputs.from_config(GpioConfig(outputs={"lamp": "D17"}))
    text = str(info.value)
    assert "\n" not in text and "lamp" in text and ("GPIO" in text or "D17" in text)


def test_active_low_must_name_a_configured_output(pins: type[RecordingPin]) -> None:
    with pytest.raises(BlinkaOutputError, match="active_low"):
        BlinkaOutputs({"lamp": pins(5)}, active_low=["relay"])


def test_gpio_table_is_checked(tmp_path: Path) -> None:
    from bpiiot import config

    path = tmp_path / "config.toml"
    path.write_text('[gpio]\noutputs = { lamp = "D17" }\nactive_low = ["lamp"]\n')
    section = config.load(path).section("gpio")
    assert section == GpioConfig(outputs={"lamp": "D17"}, active_low=["lamp"])
    path.write_text("[gpio]\noutputs = { lamp = 17 }\n")
    with pytest.raises(BlinkaOutputError, match="Blinka pin names"):
        config.load(path)
