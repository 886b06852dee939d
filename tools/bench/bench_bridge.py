"""Cloud bridge figures against a real local Mosquitto (QoS 1, on-disk queue on).

- ``bridge.enqueue_per_s``: verified report frames handed to the bridge as the bus does
  (``on_frame``: one committed row in the SQLite queue each).
- ``bridge.msgs_per_s``: queue -> broker: 10,000 queued reports published with QoS 1
  until the broker acknowledged the last one (from the bridge's start), with the default
  batching of a backlog (``batch_max``); ``bridge.msgs_per_s_unbatched``: one MQTT
  message per report (``batch_max = 1``).
- ``bridge.recovery_s``: 10,000 reports queued while the broker was down; from its start
  to the backlog drained (acknowledged), reconnect included.
- ``bridge.senml_bytes_per_report``: the SenML pack of a typical report.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from bpiiot import messages as m  # noqa: E402
from bpiiot import wire  # noqa: E402
from bpiiot.bridge import Bridge, BridgeConfig, senml  # noqa: E402
from bpiiot.bridge.queue import QueuedMessage  # noqa: E402
from bpiiot.bus import FrameEvent  # noqa: E402
from tests.e2e.mqtt_broker import Mosquitto  # noqa: E402

N = 10_000


def frames(n: int) -> list[FrameEvent]:
    enc = wire.FrameEncoder(from_host=False, session=7)
    ver = wire.FrameVerifier("host", None)
    out = []
    for i in range(n):
        rep = m.Report(
            i, i * 500, 1600, (312, 298, 1012), (905, 870, 2980), (2801, 2650, 3120), 4250
        )
        out.append(FrameEvent("mill", ver.verify(enc.encode(rep)[:-1])))
    return out


def bridge_for(tmp: Path, broker: Mosquitto, name: str, batch_max: int = 50) -> Bridge:
    cfg = BridgeConfig(
        batch_max=batch_max,
        broker_url=broker.url,
        edge_node_id="bench",
        queue_path=str(tmp / f"{name}.sqlite"),
        reconnect_max_s=0.25,
    )
    return Bridge(cfg)


def drain_s(bridge: Bridge, go: Callable[[], object]) -> float:
    """Seconds from ``go()`` until ``bridge`` has published its whole backlog; stops it."""
    t0 = time.perf_counter()
    go()
    if not bridge.wait_idle(300):
        raise RuntimeError(f"backlog not drained: {bridge.status()}")
    elapsed = time.perf_counter() - t0
    bridge.stop()
    return elapsed


def main() -> None:
    items = frames(N)
    with tempfile.TemporaryDirectory(prefix="bpiiot-bench-bridge-") as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "broker").start()
        try:
            bridge = bridge_for(tmp, broker, "rate")
            t0 = time.perf_counter()
            for item in items:
                bridge.on_frame(item)
            enqueue = N / (time.perf_counter() - t0)
            print(f"BENCH bridge.enqueue_per_s {enqueue:.0f} msg/s", flush=True)
            rate = N / drain_s(bridge, bridge.start)
            print(f"BENCH bridge.msgs_per_s {rate:.0f} msg/s", flush=True)

            bridge = bridge_for(tmp, broker, "unbatched", batch_max=1)
            for item in items:
                bridge.on_frame(item)
            rate = N / drain_s(bridge, bridge.start)
            print(f"BENCH bridge.msgs_per_s_unbatched {rate:.0f} msg/s", flush=True)

            broker.stop()
            bridge = bridge_for(tmp, broker, "recovery").start()
            for item in items:
                bridge.on_frame(item)
            recovery = drain_s(bridge, broker.start)
            print(f"BENCH bridge.recovery_s {recovery:.2f} s", flush=True)
        finally:
            broker.kill()
    f = items[-1]
    data = f.frame.message.to_dict()
    data.pop("kind")
    data.update(session=f.frame.session, seq=f.frame.seq, authenticated=False, received=f.received)
    row = QueuedMessage(123456, f.received, "mill", "report", data, 0, False)
    size = len(senml.encode("bpiiot", "sbc-17", row)[1])
    print(f"BENCH bridge.senml_bytes_per_report {size} bytes", flush=True)


if __name__ == "__main__":
    main()
