"""`make demo`: the real board firmware and the SDK, end to end, on this machine.

The MicroPython firmware runs in the Unix port behind a pseudo-terminal, exactly
as it runs on an RP2040 behind USB, with a degrading-bearing signal in place of
the accelerometer. The SDK connects over the pty, verifies every frame and
prints each window report with its ISO 20816 zone, until the bearing is worn
(or --seconds pass). Nothing here is simulated on the SDK side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from board_host import BoardHost  # noqa: E402

import bpiiot  # noqa: E402
from bpiiot import iso20816  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=36.0, help="how long to run (0: forever)")
    ap.add_argument("--life", type=float, default=30.0, help="seconds until the bearing is worn")
    ap.add_argument("--key", action="store_true", help="provision a MAC key first")
    args = ap.parse_args(argv)

    host = BoardHost()
    cfg = {
        "sensor": {"accel": "signal", "signal": {"kind": "bearing", "seed": 1, "life_s": args.life}}
    }
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))
    port = host.start()
    print(f"board firmware (MicroPython Unix port) on {port}")
    try:
        with bpiiot.connect(port) as board:
            hello = board.hello
            assert hello is not None
            print(
                f"hello: board {hello.board_id}, firmware "
                f"{'.'.join(map(str, hello.firmware_version))}, protocol "
                f"{hello.protocol_version[0]}.{hello.protocol_version[1]}, "
                f"boot #{hello.boot_counter}"
            )
            if args.key:
                import os

                board.set_key(os.urandom(32))
                print("MAC key provisioned: every frame from here on is authenticated")
            conf = board.get_config()
            klass = iso20816.class_name(conf.machine_class)
            print(
                f"config: {conf.sample_rate_hz} S/s per axis, window {conf.window_ms} ms, "
                f"hop {conf.hop_ms} ms, machine class {klass}"
            )
            print(
                f"{'window':>6} {'acc rms mg (x y z)':>20} {'peak mg':>8} "
                f"{'vel rms mm/s (x y z)':>22} zone  temp C"
            )
            start = time.monotonic()
            for rep in board.reports(timeout_s=10):
                v = rep.vel_rms_um_s
                z = iso20816.zone(max(v), klass)
                temp = (
                    "-" if rep.temperature_cdeg_c is None else f"{rep.temperature_cdeg_c / 100:.2f}"
                )
                print(
                    f"{rep.window_seq:>6} {rep.acc_rms_mg[0]:>6}{rep.acc_rms_mg[1]:>7}"
                    f"{rep.acc_rms_mg[2]:>7} {max(rep.acc_peak_mg):>8} "
                    f"{v[0] / 1000:>7.2f}{v[1] / 1000:>7.2f}{v[2] / 1000:>7.2f}    "
                    f"{iso20816.ZONE_NAMES[z]}  {temp:>6}",
                    flush=True,
                )
                if args.seconds and time.monotonic() - start >= args.seconds:
                    break
            status = board.get_status()
            print(
                f"board: {status.frames_sent} frames sent, {status.overruns} overruns, "
                f"{status.free_memory_bytes} bytes free, cpu {status.cpu_load_permille / 10:.1f}%"
            )
            s = board.stats
            print(
                f"link: {s.frames_ok} frames verified, {s.frames_dropped} dropped"
                f"{' ' + str(dict(s.dropped)) if s.dropped else ''}, {s.gaps} lost, "
                f"{s.reboots} reboots"
            )
    except bpiiot.BpiiotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(host.read_log()[-2000:], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
