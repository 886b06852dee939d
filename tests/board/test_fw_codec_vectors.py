"""The firmware codec (board/micropython/bpiiot_fw/codec.py) under the MicroPython Unix
port, judged by the conformance vectors and by frames made with the SDK's codec."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bpiiot import messages, wire

ROOT = Path(__file__).resolve().parents[2]
FW_DIR = ROOT / "board" / "micropython"
VECTORS = sorted((ROOT / "protocol" / "vectors").glob("*.json"))
RUNNER = Path(__file__).with_name("fw_vectors.py")
MICROPYTHON = Path(sys.executable).with_name("micropython")


def run_vectors(paths: list[Path]) -> dict[str, str]:
    """Run the vector files through the firmware codec; return {name: 'PASS' or why}."""
    env = dict(os.environ, MICROPYPATH=f"{FW_DIR}:{RUNNER.parent}")
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=4M", str(RUNNER), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines and lines[-1].startswith("DONE "), proc.stdout[-2000:]
    results: dict[str, str] = {}
    for line in lines[:-1]:
        status, _, rest = line.partition(" ")
        name, _, why = rest.partition(": ")
        results[name] = "PASS" if status == "PASS" else why
    assert int(lines[-1].split()[1]) == len(results)
    return results


def test_every_vector_passes() -> None:
    assert VECTORS, "protocol/vectors/*.json missing"
    names = [v["name"] for p in VECTORS for v in json.loads(p.read_text())["vectors"]]
    receivers = {v["receiver"] for p in VECTORS for v in json.loads(p.read_text())["vectors"]}
    assert receivers == {"host", "board"}
    results = run_vectors(VECTORS)
    assert sorted(results) == sorted(names)
    failed = {k: v for k, v in results.items() if v != "PASS"}
    assert not failed, failed


def test_runner_detects_a_wrong_verdict(tmp_path: Path) -> None:
    # The runner itself must fail a vector whose expectation is wrong.
    doc = json.loads(VECTORS[0].read_text())
    v = dict(doc["vectors"][0])
    v["verdict"] = "crc" if v["verdict"] != "crc" else "ok"
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps({"description": "x", "vectors": [v]}))
    results = run_vectors([path])
    assert results[v["name"]] != "PASS"


def _random_message(r: random.Random, board: bool) -> messages.Message:
    u32 = lambda: r.choice([0, 1, 23, 24, 255, 256, 65535, 65536, 0xFFFFFFFF, r.randrange(1 << 32)])  # noqa: E731
    u16 = lambda: r.choice([0, 23, 24, 255, 256, 65535, r.randrange(1 << 16)])  # noqa: E731
    if board:
        return r.choice(
            [
                messages.Ping(),
                messages.GetStatus(),
                messages.SetConfig(sample_rate_hz=r.randrange(1, 65536)),
                messages.SetConfig(window_ms=1000, hop_ms=500, channels=15, machine_class=3),
                messages.SetOutput(r.randrange(256), r.randrange(2)),
                messages.SetKey(bytes(r.randrange(256) for _ in range(r.randrange(16, 33)))),
                messages.ClearKey(),
                messages.Reboot(),
                messages.HelloRequest(),
                messages.GetConfig(),
            ]
        )
    return r.choice(
        [
            messages.Hello(
                "b-" + str(r.randrange(1000)), (u16(), u16(), u16()), (1, 0), u32(), u32(), u32()
            ),
            messages.Report(
                u32(),
                u32(),
                u32(),
                (u16(), u16(), u16()),
                (u16(), u16(), u16()),
                (u16(), u16(), u16()),
                r.choice([None, -27315, -1, 0, 100000, r.randrange(-27315, 100001)]),
            ),
            messages.Status(u32(), u32(), u32(), u32(), r.randrange(1001), u32(), u32()),
            messages.Ack(u32()),
            messages.Nack(u32(), r.randrange(256), "détail " * r.randrange(8)),
            messages.Log(r.randrange(5), "x" * r.randrange(200)),
            messages.Config(r.randrange(1, 65536), 1000, 1000, r.randrange(16), r.randrange(4)),
        ]
    )


def test_frames_made_by_the_sdk(tmp_path: Path) -> None:
    # Differential check: 400 random frames encoded by the SDK must verify in the
    # firmware codec, decode to the same message and re-encode byte-identically.
    r = random.Random(20261125)
    vectors: list[dict[str, Any]] = []
    for i in range(400):
        board = bool(i % 2)
        key = bytes(r.randrange(256) for _ in range(r.choice([16, 32]))) if i % 3 else None
        msg = _random_message(r, board)
        session = r.randrange(65536)
        seq = r.randrange(1, 1 << 32)
        enc = wire.FrameEncoder(from_host=board, key=key, session=session)
        frame = enc.encode_raw(msg.TYPE, wire.encode_payload(msg.to_payload()), seq)
        vectors.append(
            {
                "name": f"sdk-{i}",
                "receiver": "board" if board else "host",
                "key": key.hex() if key else None,
                "prior": None,
                "wire": frame[:-1].hex(),
                "verdict": "ok",
                "header": {
                    "type": msg.TYPE,
                    "session": session,
                    "seq": seq,
                    "authenticated": key is not None,
                },
                "message": msg.to_dict(),
                "payload_hex": wire.encode_payload(msg.to_payload()).hex(),
            }
        )
    path = tmp_path / "sdk.json"
    path.write_text(json.dumps({"description": "sdk frames", "vectors": vectors}))
    results = run_vectors([path])
    assert len(results) == 400
    failed = {k: v for k, v in results.items() if v != "PASS"}
    assert not failed, failed
