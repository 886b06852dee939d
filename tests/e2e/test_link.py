"""The SDK's link against the real firmware: reports, reconnects, garbage, restarts."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

import pytest

import bpiiot
from bpiiot import messages as m
from bpiiot import wire

from .bridge import TcpBridge


def test_reports_through_the_public_api(board_host) -> None:
    with bpiiot.connect(board_host.port) as board:
        assert board.hello is not None and board.hello.protocol_version == (1, 0)
        cfg = board.configure(window_ms=500, hop_ms=250)
        assert (cfg.window_ms, cfg.hop_ms) == (500, 250)
        reports = []
        for rep in board.reports(timeout_s=5):
            reports.append(rep)
            if len(reports) == 4:
                break
        assert len(reports) == 4
        seqs = [r.window_seq for r in reports]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        assert all(r.samples == cfg.sample_rate_hz * 500 // 1000 for r in reports)
        # The demo signal vibrates: velocity is non-zero and temperature present.
        assert all(max(r.vel_rms_um_s) > 0 for r in reports)
        assert all(r.temperature_cdeg_c is not None for r in reports)
        assert board.stats.frames_dropped == 0 and board.stats.gaps == 0
        assert board.stats.frames_sent == 2  # hello_request and set_config


def test_bad_config_is_refused_with_a_clear_error(board_host) -> None:
    with bpiiot.connect(board_host.port) as board:
        before = board.get_config()
        with pytest.raises(bpiiot.CommandNacked) as info:
            board.configure(sample_rate_hz=1234)
        assert info.value.code_name == "bad_value" and "1234" in str(info.value)
        assert board.get_config() == before
        with pytest.raises(bpiiot.CommandError):
            board.configure()


def test_port_that_disappears_and_comes_back(board_host, caplog) -> None:
    bridge = TcpBridge(board_host.port)
    bridge.start()
    caplog.set_level(logging.WARNING, logger="bpiiot")
    try:
        with bpiiot.connect(bridge.url, timeout_s=1.0) as board:
            board.ping()
            bridge.stop()
            # The port is gone: commands fail clearly instead of hanging...
            deadline = time.monotonic() + 5
            while board.link.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not board.link.connected
            with pytest.raises(bpiiot.LinkError, match="not connected"):
                board.ping()
            time.sleep(0.3)  # a few failed reconnect attempts with backoff
            bridge.start()
            assert board.link.wait_connected(5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    board.ping()
                    break
                except bpiiot.BpiiotError:
                    time.sleep(0.1)
            board.ping()
            assert board.stats.reconnects == 1
        text = caplog.text
        assert "port lost" in text and "port is back" in text
    finally:
        bridge.close()


def test_garbage_in_the_stream_is_counted_and_survived(board_host) -> None:
    bridge = TcpBridge(board_host.port)
    bridge.start()
    rng = random.Random(7)
    try:
        with bpiiot.connect(bridge.url) as board:
            board.configure(window_ms=250, hop_ms=250)
            got = 0
            for _ in board.reports(timeout_s=5):
                # Between reports: random junk, a frame with a flipped bit, a lone 0x03.
                bridge.inject(bytes(rng.randrange(1, 256) for _ in range(40)) + b"\0")
                bridge.inject(b"\x03\x03\0")
                got += 1
                if got == 6:
                    break
            assert got == 6
            board.ping()
            dropped = board.stats.dropped
            assert sum(dropped.values()) >= 6
            assert set(dropped) <= set(wire.REASONS)
        bridge.close()  # one reader per port: the bridge must let go of the pty
        # Garbage toward the board is refused and counted by the board, never obeyed.
        with bpiiot.connect(board_host.port) as board:
            before = board.get_status().frames_rejected
            board.link.send_raw(bytes(rng.randrange(1, 256) for _ in range(64)) + b"\0")
            board.link.send_raw(b"\x01\x02\x03\0")
            board.ping()
            assert board.get_status().frames_rejected >= before + 2
    finally:
        bridge.close()


def test_board_restart_mid_frame_is_seen_as_a_reboot(board_host) -> None:
    with bpiiot.connect(board_host.port) as board:
        first = board.hello
        assert first is not None
        board.configure(window_ms=250, hop_ms=250)
        next(board.reports(timeout_s=5))
        boots = board_host.boots
        board_host.kill_firmware()  # a power cut, wherever the firmware was in its frame
        assert board_host.wait_boots(boots + 1)
        deadline = time.monotonic() + 10
        while board.stats.reboots == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board.stats.reboots == 1
        assert board.hello is not None and board.hello.boot_counter == first.boot_counter + 1
        board.ping()  # commands go to the new session
        assert next(board.reports(timeout_s=5)).window_seq >= 1


def test_no_board_no_answer_and_foreign_protocol(tmp_path) -> None:
    with pytest.raises(bpiiot.LinkError, match="cannot open"):
        bpiiot.connect(str(tmp_path / "ttyNONE"))
    # A TCP peer that never answers: a timeout that says what to check.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    conns: list[socket.socket] = []

    def serve(reply: bytes | None) -> None:
        c, _ = srv.accept()
        conns.append(c)
        while True:
            try:
                data = c.recv(4096)
            except OSError:
                return
            if not data:
                return
            if reply is not None and data.endswith(b"\0") and len(data) > 1:
                c.sendall(reply)

    threading.Thread(target=serve, args=(None,), daemon=True).start()
    with pytest.raises(bpiiot.CommandTimeout, match="no hello"):
        bpiiot.connect(f"socket://127.0.0.1:{port}", timeout_s=0.2)
    # A peer speaking protocol 2: refused with both versions named.
    body = b"\x20\x01\x00\x01\x00\x00\x00\x01" + wire.encode_payload(
        m.Hello("future", (9, 0, 0), (2, 0), 0, 1, 0).to_payload()
    )
    import zlib

    from cobs import cobs

    frame = cobs.encode(body + zlib.crc32(body).to_bytes(4, "little")) + b"\0"
    threading.Thread(target=serve, args=(frame,), daemon=True).start()
    with pytest.raises(bpiiot.UnsupportedProtocol, match="major version 2"):
        bpiiot.connect(f"socket://127.0.0.1:{port}", timeout_s=0.3)
    for c in conns:
        c.close()
    srv.close()


def test_host_sequence_numbers_never_wrap(board_host) -> None:
    # SPEC.md 3.1: an SBC whose next seq would pass 2^32 - 1 reboots the board first,
    # and the new session starts again at 1. Without that, the wrapped seq 0 would be
    # refused as a replay for ever.
    with bpiiot.connect(board_host.port) as board:
        first = board.hello
        assert first is not None
        board.link.encoder.seq = wire.U32 - 3
        board.ping()
        board.ping()
        assert board.link.encoder.seq == wire.U32 - 1
        boots = board_host.boots
        board.ping()  # the last seq (2^32 - 1) goes to a reboot, then this ping
        assert board_host.wait_boots(boots + 1)
        assert board.hello is not None and board.hello.boot_counter == first.boot_counter + 1
        assert board.link.encoder.seq < 10
        assert board.stats.reboots == 1
        board.ping()
        assert board.get_status().frames_rejected == 0
