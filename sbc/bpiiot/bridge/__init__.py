"""The cloud bridge: the service's frames and events to an MQTT broker, nothing lost.

:class:`Bridge` is a :class:`bpiiot.bus.Listener`; it queues every message in SQLite
(:mod:`bpiiot.bridge.queue`) and a publisher thread sends them with QoS 1 as SenML
(:mod:`bpiiot.bridge.senml`) or Sparkplug B (:mod:`bpiiot.bridge.sparkplug`). Its settings are
the ``[bridge]`` config table (:class:`BridgeConfig`).

    bridge = Bridge(config.section("bridge"), boards=lambda name: service.boards[name].board)
    bus.subscribe(bridge.start(), name="bridge")
"""

from bpiiot.bridge.bridge import Bridge, BridgeStatus
from bpiiot.bridge.config import COMMANDS, FORMATS, BridgeConfig
from bpiiot.bridge.errors import (
    BridgeConfigError,
    BridgeError,
    BrokerRefused,
    CommandRefused,
    QueueFull,
)
from bpiiot.bridge.queue import MessageQueue, QueuedMessage

__all__ = [
    "COMMANDS",
    "FORMATS",
    "Bridge",
    "BridgeConfig",
    "BridgeConfigError",
    "BridgeError",
    "BridgeStatus",
    "BrokerRefused",
    "CommandRefused",
    "MessageQueue",
    "QueueFull",
    "QueuedMessage",
]
