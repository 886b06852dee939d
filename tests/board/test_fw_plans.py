"""The firmware refuses what it cannot do (SPEC.md 5.3) and falls back at boot.

A plan whose windows need more hop partial sums than the heap holds (the issue's
``configure(sample_rate_hz=6400, window_ms=1000, hop_ms=5)``, acked and then dead with
MemoryError) is refused with nack bad_value and changes nothing; a saved plan that
cannot start (written by an older firmware, or by hand) is replaced by the default
one, which the board says in a log frame and in its config.
"""

from __future__ import annotations

import json
import time

from fw_link import BoardHost, Client

from bpiiot import messages as m


def _config(c: Client) -> m.Config:
    replies, ack = c.command(m.GetConfig())
    assert isinstance(ack.message, m.Ack) and isinstance(replies[0].message, m.Config)
    return replies[0].message


def test_a_plan_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    host = BoardHost()
    port = host.start()
    c = Client(port)
    try:
        c.sync()
        before = _config(c)
        saved = (host.fs_dir / "bpiiot.json").read_bytes()
        for window_ms, hop_ms in ((1000, 5), (150, 5), (500, 5), (1000, 50)):
            _, reply = c.command(m.SetConfig(sample_rate_hz=6400, window_ms=window_ms,
                                             hop_ms=hop_ms))  # fmt: skip
            assert isinstance(reply.message, m.Nack), (window_ms, hop_ms)
            assert reply.message.code == m.NackCode.BAD_VALUE
            assert "hops per window" in reply.message.detail
        assert _config(c) == before
        assert (host.fs_dir / "bpiiot.json").read_bytes() == saved
        # The largest plan that fits is accepted and runs.
        _, ack = c.command(m.SetConfig(sample_rate_hz=6400, window_ms=800, hop_ms=50))
        assert isinstance(ack.message, m.Ack)
        c.reports.clear()
        deadline = time.monotonic() + 15
        while len(c.reports) < 3 and time.monotonic() < deadline:
            c.recv(0.1)
        assert len(c.reports) >= 3 and c.reports[-1].samples == 5120
    finally:
        c.close()
        host.stop()


def test_a_saved_plan_that_cannot_start_falls_back_and_says_so() -> None:
    host = BoardHost()
    cfg = {"board_id": "press-7", "sample_rate_hz": 6400, "window_ms": 1000, "hop_ms": 5}
    (host.fs_dir / "bpiiot.json").write_text(json.dumps(cfg))
    port = host.start()
    c = Client(port)
    try:
        assert c.sync().board_id == "press-7"
        # The boot log may be lost to the port opening; it is repeated after hello.
        c.command(m.HelloRequest())
        deadline = time.monotonic() + 5
        while not any("cannot run" in lg.text for lg in c.logs) and time.monotonic() < deadline:
            c.recv(0.1)
        text = next(lg.text for lg in c.logs if "cannot run" in lg.text)
        assert "6400 S/s, 1000/5 ms" in text and "defaults in use" in text
        assert _config(c) == m.Config(3200, 1000, 1000, 15, 2)
        saved = json.loads((host.fs_dir / "bpiiot.json").read_text())
        assert (saved["sample_rate_hz"], saved["hop_ms"], saved["board_id"]) == (
            3200,
            1000,
            "press-7",
        )
        deadline = time.monotonic() + 10
        while not c.reports and time.monotonic() < deadline:
            c.recv(0.1)
        assert c.reports, c.logs  # acquisition runs on the fallback plan
    finally:
        c.close()
        host.stop()
