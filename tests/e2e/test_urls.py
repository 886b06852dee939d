"""Any pyserial URL reaches the board: a device path, rfc2217://, socket://, loop://."""

from __future__ import annotations

import socket
import threading

import serial
import serial.rfc2217

import bpiiot


class PtySerial(serial.Serial):
    """A pty has no modem lines: report them as a null-modem cable would (all up)."""

    cts = dsr = cd = True  # type: ignore[assignment]
    ri = False  # type: ignore[assignment]

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass


class Rfc2217Server:
    """pyserial's RFC 2217 port manager serving the board's pty on 127.0.0.1."""

    def __init__(self, device: str) -> None:
        self.serial = PtySerial(device, timeout=0.02)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        conn.settimeout(0.02)
        self._conn = conn
        self._lock = threading.Lock()
        manager = serial.rfc2217.PortManager(self.serial, self)
        threading.Thread(target=self._pump_serial, args=(conn, manager), daemon=True).start()
        while not self.stop.is_set():
            try:
                data = conn.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            self.serial.write(b"".join(manager.filter(data)))
        conn.close()

    def _pump_serial(self, conn: socket.socket, manager: serial.rfc2217.PortManager) -> None:
        while not self.stop.is_set():
            try:
                data = self.serial.read(1024)
                if data:
                    self.write(b"".join(manager.escape(data)))
            except (OSError, serial.SerialException, TypeError):
                return

    def write(self, data: bytes) -> None:
        """The manager's connection interface: telnet replies and escaped data."""
        with self._lock:
            self._conn.sendall(data)

    def close(self) -> None:
        self.stop.set()
        self.srv.close()
        self.serial.close()


def test_rfc2217_url(board_host) -> None:
    server = Rfc2217Server(board_host.port)
    try:
        with bpiiot.connect(f"rfc2217://127.0.0.1:{server.port}", baudrate=115200) as board:
            board.ping()
            assert board.get_config().window_ms > 0
            rep = next(board.reports(timeout_s=5))
            assert rep.samples > 0
            assert board.stats.frames_dropped == 0
    finally:
        server.close()


def test_loop_url_refuses_our_own_frames() -> None:
    # loop:// echoes what we send: host frames coming back must be refused, not obeyed.
    link = bpiiot.Link("loop://", reconnect=False)
    got: list[bpiiot.Frame] = []
    link.subscribe(got.append)
    with link:
        board = bpiiot.Board(link, timeout_s=0.3)
        try:
            board.sync(retries=1)
        except bpiiot.CommandTimeout as exc:
            assert "no hello" in str(exc)
        else:
            raise AssertionError("a hello came from an echo")
    assert got == []
    assert link.stats.dropped["direction"] >= 1
