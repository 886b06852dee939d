"""Hostile payloads in CRC- and MAC-valid frames against the Uno firmware's verifier:
built for the host under AddressSanitizer and UBSan (`make uno-fuzz`; the bounded
version of `make fuzz`'s Uno judge), and as avr-gcc builds it, in simavr, against the
host build and the SDK."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from pathlib import Path

import fuzz_wire

from bpiiot import wire

from .conftest import UnoSim
from .test_uno_vectors_avr import Runner
from .uno_codec import UnoCodec

ROOT = Path(__file__).resolve().parents[3]


def _runner() -> Path:
    subprocess.run(["make", "-s", "uno-fuzz"], cwd=ROOT, check=True, capture_output=True)
    return fuzz_wire.UNO_RUNNER


def test_the_runner_is_built_with_the_sanitizers() -> None:
    # Without them an out-of-bounds read passes silently and the fuzz proves less.
    symbols = subprocess.run(["nm", str(_runner())], capture_output=True, text=True).stdout
    assert "__asan_report_load1" in symbols
    assert "__ubsan_handle_shift_out_of_bounds" in symbols


def test_bounded_fuzz_the_uno_agrees_with_the_sdk() -> None:
    _runner()
    res = fuzz_wire.run(inputs=40_000, seed=13, batch=20_000, firmware=False, uno=True)
    assert res.disagreements == [] and res.undelivered == 0 and res.link_errors == {}
    assert res.uno_checked == 80_000 and res.firmware_checked == 0
    assert min(res.verdicts[r] for r in ("ok", "cbor", "trailing", "schema")) > 300


def test_a_runner_failure_is_a_disagreement(tmp_path: Path) -> None:
    # The judge reads the runner's exit status and its standard error: a sanitizer
    # report (here: a batch the runner cannot read) must not pass as agreement.
    bad = tmp_path / "short.bin"
    bad.write_bytes(b"\x20" + bytes(8))  # a key length longer than the file
    proc = fuzz_wire._start_uno(bad)
    res = fuzz_wire.Result()
    fuzz_wire._compare_firmware(proc, ["ok"], ["label"], res, "uno")
    assert res.disagreements and res.disagreements[0].startswith("uno runner failed (2)")
    assert res.uno_checked == 0


def test_a_cut_record_is_refused_not_read_past(tmp_path: Path) -> None:
    _runner()
    bad = tmp_path / "cut.bin"
    bad.write_bytes(b"\x00" + b"\x01\x00\x10" + bytes(4))  # 16 bytes announced, 4 there
    out = subprocess.run([str(fuzz_wire.UNO_RUNNER), str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "record 0 is cut short" in out.stderr and "Sanitizer" not in out.stderr


def test_bounded_fuzz_on_the_avr_agrees_with_the_host_build(
    uno_build: Path, uno_codec: UnoCodec
) -> None:
    # The same C++ as avr-gcc compiles it (16-bit int, 8-bit core, the assembly
    # SHA-256): a width or signedness bug that the host build hides shows here.
    rng = random.Random(17)
    checked = Counter[str]()
    with UnoSim(firmware=uno_build / "vector_runner.elf") as sim:
        runner = Runner(sim.start())
        try:
            while sum(checked.values()) < 2500:
                rx, type_, payload = fuzz_wire.generate(rng)
                key = fuzz_wire.KEY if rng.random() < 0.5 else None
                enc = wire.FrameEncoder(from_host=rx == fuzz_wire.BOARD, key=key, session=7)
                chunk = enc.encode_raw(type_, payload, 1)[:-1]
                if len(chunk) > 96:  # the runner's buffer; the firmware takes 64
                    continue
                host_side = rx == fuzz_wire.HOST
                prior = None if host_side else {"session": 7, "seq": 0}
                v = {"key": key.hex() if key else "", "prior": prior, "wire": chunk.hex()}
                reason, hdr, out = runner.verify(v, host_side=host_side)
                host = uno_codec.verify(chunk, key, prior, host_side=host_side)
                label = f"{'host' if host_side else 'board'} 0x{type_:02x} {payload.hex()}"
                assert reason == host.reason == fuzz_wire.reference(rx, type_, payload), label
                assert hdr[:4] == (host.type, host.session, host.seq, host.authenticated), label
                assert out == host.payload, label
                checked[reason] += 1
        finally:
            runner.ser.close()
    assert min(checked[r] for r in ("ok", "cbor", "schema")) >= 20, checked
