"""A board as a custom app sees it: typed reports in, commands out, acks awaited.

    import bpiiot

    with bpiiot.connect("/dev/ttyACM0", key=key) as board:
        board.configure(sample_rate_hz=3200, window_ms=1000, hop_ms=500)
        for report in board.reports():
            print(report.vel_rms_um_s)

Commands go one at a time (a serial line is a single conversation): each waits
for its ack with a timeout and raises :class:`CommandNacked` or
:class:`CommandTimeout`. Replies that carry data (hello, status, config) arrive
before the ack, as the spec promises, and are returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from bpiiot import messages as m
from bpiiot import wire
from bpiiot.errors import BpiiotError
from bpiiot.link import FrameQueue, Link, LinkStats

log = logging.getLogger("bpiiot.board")

T = TypeVar("T", bound=m.Message)


class CommandError(BpiiotError):
    """A command could not be carried out."""


class CommandTimeout(CommandError):
    """No ack or nack came back in time."""


class CommandNacked(CommandError):
    """The board refused a command; ``code`` is a :class:`~bpiiot.messages.NackCode`."""

    def __init__(self, command: str, nack: m.Nack) -> None:
        self.code = nack.code
        self.code_name = nack.code_name
        self.detail = nack.detail
        super().__init__(f"board refused {command}: {nack.code_name} ({nack.code}) {nack.detail}")


class KeyRequired(CommandError):
    """The board wants authenticated frames and this link has no key, or the wrong one."""

    def __init__(self, message: str, nack: CommandNacked) -> None:
        super().__init__(message)
        self.nack = nack


class UnsupportedProtocol(BpiiotError):
    """The board speaks a protocol major version this SDK does not."""


class Unsupported(CommandError):
    """The board did not announce the capability a command needs."""


class _Pending:
    """The one command in flight: what it waits for and what came back."""

    def __init__(self, seq: int, expect: type[m.Message] | None, on_ack: Callable[[], None] | None):
        self.seq = seq
        self.expect = expect
        self.on_ack = on_ack
        self.reply: m.Message | None = None
        self.nack: m.Nack | None = None
        self.done = threading.Event()


_CAPS = {
    m.SetKey: m.CAP_AUTH,
    m.ClearKey: m.CAP_AUTH,
    m.SetOutput: m.CAP_OUTPUTS,
    m.Reboot: m.CAP_REBOOT,
}


class Board:
    """One board on one :class:`~bpiiot.link.Link` (see the module docstring)."""

    def __init__(self, link: Link, *, timeout_s: float = 2.0) -> None:
        self.link = link
        self.timeout_s = timeout_s
        self._hello: m.Hello | None = None
        self.hello_session: int | None = None
        """The boot session (frame header) of the last hello."""
        self._cmd_lock = threading.Lock()
        self._pending: _Pending | None = None
        self._hello_event = threading.Event()
        self._unsupported: str | None = None
        link.subscribe(self._on_frame)
        link.on_connect(self._on_reconnect)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Board:
        """Open the link and learn who the board is (hello); returns self."""
        self.link.open()
        try:
            self.sync()
        except BaseException:
            self.link.close()
            raise
        return self

    def close(self) -> None:
        """Close the link."""
        self.link.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hello(self) -> m.Hello | None:
        """The board's last :class:`~bpiiot.messages.Hello` (None before the first):
        board id, firmware and protocol versions, capabilities, boot counter."""
        return self._hello

    @hello.setter
    def hello(self, value: m.Hello | None) -> None:
        self._hello = value

    @property
    def stats(self) -> LinkStats:
        """The link's counters."""
        return self.link.stats

    def sync(self, retries: int = 3) -> m.Hello:
        """Flush the line, ask for hello, check the protocol version; returns the hello."""
        last: BpiiotError | None = None
        for _ in range(retries):
            try:
                # A lone delimiter ends whatever partial frame the board holds.
                self.link.send_raw(b"\0")
                hello = self._command(m.HelloRequest(), m.Hello)
                assert isinstance(hello, m.Hello)
                return hello
            except CommandNacked as exc:
                if exc.code == m.NackCode.UNAUTHENTICATED:
                    raise KeyRequired(
                        f"{self.link.url}: the board refuses untagged or wrongly tagged "
                        "frames; connect with its MAC key (key=..., --key-file)",
                        exc,
                    ) from None
                raise
            except CommandTimeout as exc:
                last = exc
                foreign = self.link.foreign_version
                if foreign is not None:
                    raise UnsupportedProtocol(
                        f"{self.link.url}: the board's frames carry protocol {foreign}; this "
                        f"SDK speaks {wire.PROTOCOL_MAJOR}.{wire.PROTOCOL_MINOR}"
                    ) from None
        raise CommandTimeout(
            f"{self.link.url}: no hello from the board after {retries} tries "
            f"(is the firmware running, the port and baud rate right, the key right?)"
        ) from last

    # -- reading ---------------------------------------------------------------------

    def frames(self, timeout_s: float | None = None) -> Iterator[wire.Frame]:
        """Yield every verified frame; stop after ``timeout_s`` of silence (None: never)."""
        q: FrameQueue = self.link.queue()
        try:
            while True:
                frame = q.get(timeout_s)
                if frame is None:
                    return
                yield frame
        finally:
            q.close()

    def reports(self, timeout_s: float | None = None) -> Iterator[m.Report]:
        """Yield window reports as they arrive; stop after ``timeout_s`` without one."""
        q: FrameQueue = self.link.queue()
        try:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                frame = q.get(left)
                if frame is None:
                    return
                if isinstance(frame.message, m.Report):
                    yield frame.message
                    if timeout_s is not None:
                        deadline = time.monotonic() + timeout_s
        finally:
            q.close()

    # -- commands --------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the board answers."""
        self._command(m.Ping())

    def get_status(self) -> m.Status:
        """The board's statistics."""
        return self._command(m.GetStatus(), m.Status)

    def get_config(self) -> m.Config:
        """The board's acquisition settings."""
        return self._command(m.GetConfig(), m.Config)

    def configure(
        self,
        *,
        sample_rate_hz: int | None = None,
        window_ms: int | None = None,
        hop_ms: int | None = None,
        channels: int | None = None,
        machine_class: int | None = None,
    ) -> m.Config:
        """Change the given settings; returns the board's whole new config."""
        cmd = m.SetConfig(sample_rate_hz, window_ms, hop_ms, channels, machine_class)
        if not cmd.to_payload():
            raise CommandError("configure() needs at least one setting")
        return self._command(cmd, m.Config)

    def set_output(self, pin: int, value: bool | int) -> None:
        """Drive digital output ``pin`` high (True) or low (False)."""
        self._command(m.SetOutput(pin, int(bool(value))))

    def set_key(self, key: bytes) -> None:
        """Provision a MAC key; from the ack on, both directions are authenticated."""
        key = wire.check_key(key) or b""
        self._command(m.SetKey(key), on_ack=lambda: self.link.set_key(key))

    def clear_key(self) -> None:
        """Turn authentication off on both ends."""
        self._command(m.ClearKey(), on_ack=lambda: self.link.set_key(None))

    def reboot(self, wait: bool = True) -> m.Hello | None:
        """Reboot the board; with ``wait``, return the hello of its new session."""
        self._hello_event.clear()
        self._command(m.Reboot())
        if not wait:
            return None
        if not self._hello_event.wait(self.timeout_s * 5):
            # The hello may have been sent before our port saw it: ask again.
            return self.sync()
        assert self.hello is not None
        return self.hello

    def request(self, message: m.Message, expect: type[T] | None = None) -> m.Message:
        """Send any command and wait for its ack (and the ``expect`` reply)."""
        return self._command(message, expect)

    def _command(
        self,
        message: m.Message,
        expect: type[T] | None = None,
        on_ack: Callable[[], None] | None = None,
    ) -> T:
        need = _CAPS.get(type(message))
        if need and self.hello is not None and not self.hello.capabilities & need:
            raise Unsupported(f"board {self.hello.board_id} cannot {message.NAME}")
        if self.link.encoder.seq >= wire.U32 - 1 and not isinstance(
            message, (m.Reboot, m.HelloRequest)
        ):
            # SPEC.md 3.1: host sequence numbers never wrap. The last one goes to a
            # reboot; the board's new session starts again at 1 (adopt_session). A
            # hello request is answered whatever its seq: reboot() may need one.
            log.info("host sequence numbers used up on %s: rebooting the board", self.link.url)
            self.reboot(wait=True)

        def build(enc: wire.FrameEncoder) -> tuple[int, bytes]:
            data = enc.encode(message)
            return enc.seq, data

        pending = self._transact(build, expect, on_ack, message.NAME)
        if self._unsupported:
            raise UnsupportedProtocol(self._unsupported)
        if pending.nack is not None:
            raise CommandNacked(message.NAME, pending.nack)
        if expect is not None and pending.reply is None:
            raise CommandError(f"{message.NAME}: acked without the {expect.NAME} reply")
        return pending.reply  # type: ignore[return-value]

    def raw_command(
        self,
        type_: int,
        payload: bytes,
        *,
        seq: int | None = None,
        session: int | None = None,
        key: bytes | bool | None = True,
    ) -> m.Ack | m.Nack:
        """Send a hand-made command frame and return the ack or nack it gets.

        For conformance testing: ``seq`` and ``session`` default to the next and
        current ones; ``key=True`` tags with the link's key, None sends untagged,
        bytes tags with that key. Raises :class:`CommandTimeout` if nothing answers.
        """

        def build(enc: wire.FrameEncoder) -> tuple[int, bytes]:
            use = seq if seq is not None else (enc.seq + 1) & wire.U32
            if seq is None:
                enc.seq = use
            if key is not True:
                enc = wire.FrameEncoder(from_host=True, key=key or None, session=enc.session)
            return use, enc.encode_raw(type_, payload, use, session)

        pending = self._transact(build, None, None, f"type 0x{type_:02x}")
        if pending.nack is not None:
            return pending.nack
        return m.Ack(pending.seq)

    def _transact(
        self,
        build: Callable[[wire.FrameEncoder], tuple[int, bytes]],
        expect: type[m.Message] | None,
        on_ack: Callable[[], None] | None,
        what: str,
    ) -> _Pending:
        with self._cmd_lock:
            registered: list[_Pending] = []

            def register(seq: int) -> None:
                # Before the write: the ack may come back before send_with returns.
                pending = _Pending(seq, expect, on_ack)
                registered.append(pending)
                self._pending = pending

            try:
                self.link.send_with(build, register)
            except BaseException:
                self._pending = None
                raise
            pending = registered[0]
            try:
                if not pending.done.wait(self.timeout_s):
                    raise CommandTimeout(
                        f"{what}: no answer within {self.timeout_s:g} s on {self.link.url}"
                    )
            finally:
                self._pending = None
        return pending

    # -- read thread -------------------------------------------------------------

    def _on_frame(self, frame: wire.Frame) -> None:
        msg = frame.message
        pending = self._pending
        if isinstance(msg, m.Hello):
            self._on_hello(frame, msg)
        if pending is None:
            return
        if isinstance(msg, m.Ack) and msg.ref_seq == pending.seq:
            if pending.on_ack is not None:
                pending.on_ack()  # before the next frame is verified: keys switch here
            pending.done.set()
        elif isinstance(msg, m.Nack) and msg.ref_seq == pending.seq:
            pending.nack = msg
            pending.done.set()
        elif pending.expect is not None and isinstance(msg, pending.expect):
            pending.reply = msg

    def _on_hello(self, frame: wire.Frame, hello: m.Hello) -> None:
        major, minor = hello.protocol_version
        if major != wire.PROTOCOL_MAJOR:
            self._unsupported = (
                f"board {hello.board_id} speaks protocol {major}.{minor}; "
                f"this SDK speaks {wire.PROTOCOL_MAJOR}.{wire.PROTOCOL_MINOR}"
            )
            pending = self._pending
            if pending is not None:
                pending.done.set()
            return
        if self.hello_session is not None and frame.session != self.hello_session:
            log.info("board %s rebooted: session %d", hello.board_id, frame.session)
        self.hello = hello
        self.hello_session = frame.session
        # Continue above what the board last accepted (an SBC restart starts at 0).
        self.link.adopt_session(frame.session, hello.last_host_seq)
        self._hello_event.set()

    def _on_reconnect(self) -> None:
        # On the read thread: a command would deadlock waiting for its own ack, so
        # resynchronise from a helper thread.
        threading.Thread(target=self._resync, daemon=True).start()

    def _resync(self) -> None:
        try:
            self.sync()
            log.warning("%s: board %s answered again", self.link.url, self.hello_id)
        except BpiiotError as exc:
            log.warning("%s: reconnected, but %s", self.link.url, exc)

    @property
    def hello_id(self) -> str:
        """The board id from its last hello ('?' before the first)."""
        return self.hello.board_id if self.hello else "?"


def connect(
    url: str,
    *,
    key: bytes | None = None,
    baudrate: int = 115200,
    timeout_s: float = 2.0,
    reconnect: bool = True,
) -> Board:
    """Open ``url`` (any pyserial URL), say hello, and return the started :class:`Board`.

    Raises :class:`~bpiiot.link.LinkError` if the port cannot be opened,
    :class:`CommandTimeout` if no board answers, :class:`UnsupportedProtocol` if
    it speaks another major version.
    """
    board = Board(Link(url, baudrate=baudrate, key=key, reconnect=reconnect), timeout_s=timeout_s)
    return board.start()
