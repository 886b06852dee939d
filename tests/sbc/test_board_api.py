"""Board API rules that hold before anything reaches a port."""

from __future__ import annotations

import pytest

import bpiiot
from bpiiot import messages as m


def test_commands_the_board_did_not_announce_are_refused_locally() -> None:
    link = bpiiot.Link("loop://", reconnect=False)
    with link:
        board = bpiiot.Board(link, timeout_s=0.2)
        board.hello = m.Hello("plain", (1, 0, 0), (1, 0), m.CAP_PERSIST, 1, 0)
        for call in (
            lambda: board.set_output(3, True),
            lambda: board.set_key(bytes(16)),
            lambda: board.clear_key(),
            lambda: board.reboot(),
        ):
            with pytest.raises(bpiiot.Unsupported, match="plain cannot"):
                call()
        assert link.stats.frames_sent == 0  # nothing was sent for a refused command
        # A command every board has still goes out (and, on an echo line, times out).
        with pytest.raises(bpiiot.CommandTimeout, match=r"ping: no answer within 0\.2 s"):
            board.ping()
        assert link.stats.frames_sent == 1


def test_bad_arguments_fail_before_sending() -> None:
    link = bpiiot.Link("loop://", reconnect=False)
    with link:
        board = bpiiot.Board(link, timeout_s=0.2)
        with pytest.raises(bpiiot.CommandError, match="at least one setting"):
            board.configure()
        with pytest.raises(bpiiot.wire.InvalidKey, match="16 to 32 bytes"):
            board.set_key(b"short")
        assert link.stats.frames_sent == 0


def test_closed_link_says_so() -> None:
    link = bpiiot.Link("loop://", reconnect=False)
    board = bpiiot.Board(link, timeout_s=0.2)
    with pytest.raises(bpiiot.LinkError, match="not connected"):
        board.ping()
