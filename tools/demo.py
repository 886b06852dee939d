"""`make demo`: the whole kit end to end on this machine, ending in mined transactions.

A local anvil, the machine's wallet and the vendor/supplier accounts, both agreements
deployed and a part price listed (``bpiiot.devenv``); the real MicroPython firmware in the
Unix port on a pty with a bearing that wears out over ``--duration`` seconds (vibration
*and* temperature rise); the service (``bpiiot.service``: store, rules, outbox, socket)
reading it. Shown as it goes: each window's features, each rule's state, each transaction
signed/sent and mined; at the end a summary with the transaction hashes and the evidence
of each verified against the node and the store. ``--node URL`` uses an external node,
``--port URL`` a real board.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from board_host import BoardHost, signal_config  # noqa: E402

from bpiiot import config as config_mod  # noqa: E402
from bpiiot import evidence, iso20816  # noqa: E402
from bpiiot import messages as m  # noqa: E402
from bpiiot.bus import Event, FrameEvent, Listener  # noqa: E402
from bpiiot.chain.factory import unlock_from_config  # noqa: E402
from bpiiot.devenv import dev_down, dev_up  # noqa: E402
from bpiiot.errors import BpiiotError  # noqa: E402
from bpiiot.service import Service  # noqa: E402

#: The demo's rules: vibration in zone C or worse (>= 4.5 mm/s) in 5 of the last 10
#: windows -> a service request; the bearing at 70 C or more for 10 s -> a paid part order.
RULES: list[dict[str, Any]] = [
    {
        "name": "vibration",
        "field": "vel_rms_mm_s",
        "threshold": 4.5,
        "clear_threshold": 3.5,
        "count": 5,
        "of": 10,
        "action": "request_service",
        "fault_code": 1,
    },
    {
        "name": "bearing-hot",
        "field": "temperature_c",
        "threshold": 70.0,
        "clear_threshold": 60.0,
        "for_s": 10.0,
        "action": "order_part",
        "part_id": 7,
        "quantity": 1,
    },
]


class Printer(Listener):
    """Prints reports, rule moves and transactions as they happen."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {r["name"]: "inactive" for r in RULES}
        self.mined: dict[str, dict[str, Any]] = {}
        self.header_done = False

    def on_frame(self, item: FrameEvent) -> None:
        r = item.frame.message
        if not isinstance(r, m.Report):
            return
        if not self.header_done:
            self.header_done = True
            print(
                f"{'window':>6} {'vel rms mm/s (x y z)':>22} zone {'acc rms mg':>10} "
                f"{'temp C':>7}  rules"
            )
        v = r.vel_rms_um_s
        z = iso20816.ZONE_NAMES[iso20816.zone(max(v), "group2-rigid")]
        temp = "-" if r.temperature_cdeg_c is None else f"{r.temperature_cdeg_c / 100:.2f}"
        flags = f" [{','.join(m.ReportFlag.names(r.flags))}]" if r.flags else ""
        rules = " ".join(f"{k}={s}" for k, s in self.states.items())
        print(
            f"{r.window_seq:>6} {v[0] / 1000:>7.2f}{v[1] / 1000:>7.2f}{v[2] / 1000:>7.2f}"
            f"    {z} {max(r.acc_rms_mg):>10} {temp:>7}  {rules}{flags}",
            flush=True,
        )

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind == "rule":
            self.states[d["rule"]] = d["state"]
            print(f"  >> rule {d['rule']}: {d['state']} (value {d['value']})", flush=True)
        elif event.kind == "incident" and d["state"] == "open":
            print(
                f"  >> incident {d['key']} opened, evidence {d['evidence_hash']}, "
                f"action {d['action']['kind']}",
                flush=True,
            )
        elif event.kind == "tx":
            state = d["state"]
            if state == "submitted":
                print(
                    f"  >> tx {d['contract']}.{d['function']} signed and sent: {d['tx_hash']} "
                    f"(nonce {d['nonce']})",
                    flush=True,
                )
            elif state == "confirmed":
                self.mined[d["key"]] = d
                print(f"  >> tx {d['tx_hash']} mined in block {d['block']}", flush=True)
            elif state == "failed":
                self.mined[d["key"]] = d
                print(f"  >> tx {d['key']} FAILED: {d['error']}", flush=True)
        elif event.kind == "log" and d.get("level") in ("warning", "error"):
            print(f"  >> {d['text']}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", help="external node URL (default: start a local anvil)")
    ap.add_argument("--port", help="a real board's port or URL (default: firmware on a pty)")
    ap.add_argument(
        "--duration", type=float, default=120.0, help="seconds until the bearing is worn"
    )
    ap.add_argument(
        "--web-port",
        type=int,
        default=8080,
        help="serve the device manager on 127.0.0.1:PORT while the demo runs (0: off; "
        "skipped when the port is taken)",
    )
    args = ap.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # The printer shows rules and transactions; the log keeps errors only.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bpiiot-demo-"))
    host: BoardHost | None = None
    service: Service | None = None
    env = None
    printer = Printer()
    try:
        env = dev_up(work, node_url=args.node, rules=RULES)
        print(f"node {env.node_url}; machine wallet {env.machine}")
        print(f"MachineService {env.machine_service} (vendor {env.vendor})")
        print(
            f"PartReplacement {env.part_replacement} (supplier {env.supplier}; part "
            f"{env.part_id} listed at {env.part_price_wei / 10**18:g} ETH)"
        )
        port = args.port
        if port is None:
            host = BoardHost()
            cfg_fw = signal_config(
                "bearing", wear_s=args.duration, temp_start_c=35.0, temp_rise_c=45.0
            )
            (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg_fw))
            port = host.start()
            print(
                f"board firmware (MicroPython Unix port) on {port}: bearing wears out over "
                f"{args.duration:g} s, temperature 35 -> 80 C"
            )
        cfg = config_mod.load(env.config_path)
        cfg.extra["board"] = [{"name": "press-1", "url": port}]
        config_mod.save(cfg)
        if args.web_port and _port_free(args.web_port):
            from bpiiot.web.config import WebConfig

            cfg.extra["web"] = WebConfig(port=args.web_port)  # loopback: no login needed
            print(f"device manager: http://127.0.0.1:{args.web_port}/ (while the demo runs)")
        elif args.web_port:
            print(f"device manager: port {args.web_port} is taken, not served (--web-port)")
        service = Service(cfg, signer=unlock_from_config(cfg.wallet))
        service.bus.subscribe(printer, name="demo")
        service.start()
        deadline = time.monotonic() + args.duration + 40
        while time.monotonic() < deadline and len(printer.mined) < len(RULES):
            time.sleep(0.2)
        time.sleep(0.3)
    except KeyboardInterrupt:
        print("interrupted")
    except BpiiotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if host is not None:
            print(host.read_log()[-2000:], file=sys.stderr)
        return 1
    finally:
        if service is not None:
            service.stop()
        if host is not None:
            host.stop()
    ok = True
    try:
        print("\nsummary")
        for key, d in sorted(printer.mined.items()):
            print(f"  {key}: {d['contract']}.{d['function']} {d['state']} tx {d['tx_hash']}")
            if d["state"] != "confirmed":
                ok = False
                continue
            bundle = evidence.tx_evidence(config_mod.load(env.config_path), d["tx_hash"])
            verdict = evidence.verify_bundle(bundle)
            frames = len(verdict.frames)
            print(
                f"    evidence verify: {'PASS' if verdict.ok else 'FAIL'} ({frames} frames, "
                f"hash {verdict.computed})"
            )
            ok = ok and verdict.ok
        if len(printer.mined) < len(RULES):
            print(f"  only {len(printer.mined)} of {len(RULES)} rules led to a transaction")
            ok = False
        print(f"done in {time.monotonic() - t0:.0f} s")
    finally:
        if env is not None:
            dev_down(work)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
