"""Deliberately broken copies of the real MicroPython firmware, one fault each.

Each fault is a small source patch applied to a temporary copy of board/micropython
(the :class:`BoardHost` filesystem) before the firmware boots, and names the
conformance check that must catch it. A patch whose text is no longer in the
firmware fails loudly, so a firmware refactoring cannot silently turn a broken
board into a good one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class PatchMissing(AssertionError):
    """The text a fault patches is no longer in the firmware: update the fault."""


@dataclass(frozen=True)
class Fault:
    """One broken board: what to change, and which check must fail because of it."""

    name: str
    patches: tuple[tuple[str, str], ...]
    check: str
    keyed: bool = False
    explains: str = ""
    """Text a failure's detail must contain: the real fault named, not just "no answer"."""
    reboot: bool = False
    """Run the suite with --reboot (the fault shows only across a boot)."""


# The key change's ack (app.flush, once the key is saved) after the switch instead of
# before it.
_SWITCH_KEYS_BEFORE_THE_ACK = (
    (
        "            if not self.stream.closed:\n"
        "                self.send(_T_ACK, [pending[0]])\n"
        "            commands.set_key(self, pending[1])\n",
        "            commands.set_key(self, pending[1])\n"
        "            if not self.stream.closed:\n"
        "                self.send(_T_ACK, [pending[0]])\n",
    ),
)

FAULTS = (
    Fault(
        "wrong ref_seq in acks",
        (
            (
                "        self.stream.write(self.enc.encode(type_, payload))\n",
                "        if type_ == 4:\n"
                "            payload = [(payload[0] + 1) & 0xFFFFFFFF]\n"
                "        self.stream.write(self.enc.encode(type_, payload))\n",
            ),
        ),
        "every ack and nack names a command's seq, one answer per command",
        explains="the board answered ack ref_seq",
    ),
    Fault(
        "repeated sequence numbers",
        (
            (
                "        self.seq = (self.seq + 1) & _U32\n",
                "        self.n = getattr(self, 'n', 0) + 1\n"
                "        self.seq = (self.seq + (0 if self.n % 5 == 0 else 1)) & _U32\n",
            ),
        ),
        "board sequence numbers grow by one per frame",
        explains="for replay",
    ),
    Fault(
        "bad CRC on some frames",
        (
            (
                'body.extend((crc32(body) & _U32).to_bytes(4, "little"))',
                "body.extend(((crc32(body) ^ (1 if seq % 7 == 0 else 0)) & _U32)"
                '.to_bytes(4, "little"))',
            ),
        ),
        "no board frame failed verification",
        explains="for crc",
    ),
    Fault(
        "replay state advances on a MAC failure",
        (
            (
                'raise FrameError("mac", seq)',
                'self.seq = max(self.seq, seq); raise FrameError("mac", seq)',
            ),
        ),
        "a frame failing the MAC check does not advance the replay state",
    ),
    Fault(
        "ignores the HOST flag",
        (('raise FrameError("direction")', "pass"),),
        "a command without the HOST flag is dropped silently (direction)",
    ),
    Fault(
        "answers an untagged hello_request when keyed",
        (("elif pads is not None:", "elif pads is not None and type_ != _T_HELLO_REQUEST:"),),
        "untagged hello_request at a keyed board: nack unauthenticated, no hello",
    ),
    Fault(
        "non-deterministic CBOR",
        (("    if n < 24:\n", "    if n < 10:\n"),),
        "every board frame uses deterministic CBOR",
    ),
    Fault(
        "no replay check",
        (("                if seq <= self.seq:\n", "                if False:\n"),),
        "a command with an old sequence number: nack replay",
    ),
    Fault(
        "MAC ignored",
        (("if pads is not None and _tag(", "if False and _tag("),),
        "command tagged with the wrong key: nack unauthenticated",
    ),
    Fault(
        "unknown command ignored",
        (('    "type": _E_UNKNOWN_TYPE,\n', ""),),
        "unknown command type: nack unknown_type",
    ),
    Fault(
        "wrong version",
        (("_VERSION_MAJOR = const(1)", "_VERSION_MAJOR = const(2)"),),
        "hello on request, protocol 1.x",
        explains="carry protocol major version 2",
    ),
    Fault(
        "status after its ack",
        (
            (
                "        app.send(_T_STATUS, status_payload(app))\n",
                "        app.send(_T_ACK, [seq])\n"
                "        app.send(_T_STATUS, status_payload(app))\n"
                "        return\n",
            ),
        ),
        "get_status returns status before the ack, frames_sent = its seq - 1",
    ),
    Fault(
        "foreign hello_request advances the replay state",
        (("if seq > self.seq and (last is None or session == last):", "if seq > self.seq:"),),
        "a hello_request from another session does not advance the replay state",
    ),
    Fault(
        "window_seq steps by two",
        (("out = [app.windows & 0xFFFFFFFF,", "out = [(2 * app.windows) & 0xFFFFFFFF,"),),
        "window reports arrive, window_seq steps by one",
    ),
    Fault(
        "switches keys before the ack",
        _SWITCH_KEYS_BEFORE_THE_ACK,
        "set_key is acked under the old key, then the board tags its frames",
    ),
    Fault(
        "sends a message type the SBC does not know",
        (
            (
                "def config_payload(app):\n",
                "def config_payload(app):\n    app.send(0x08, [1])\n",
            ),
        ),
        "no board frame failed verification",
    ),
    Fault(
        "CRC not checked",
        (('raise FrameError("crc")', "pass"),),
        "a command with a bad CRC is dropped silently (crc)",
    ),
    Fault(
        "refused frames not counted",
        (
            (
                "        app.frames_rejected += 1\n        code = codec.NACK_FOR",
                "        code = codec.NACK_FOR",
            ),
        ),
        "status frames_rejected counts every refused frame",
    ),
    Fault(
        "no hello at boot",
        (("        self.hello()\n        self._flush_logs()\n", "        self._flush_logs()\n"),),
        "reboot: acked, hello with seq 1 unasked, boot counter + 1, counters reset",
        reboot=True,
    ),
    Fault(
        "switches keys before the ack, keyed",
        _SWITCH_KEYS_BEFORE_THE_ACK,
        "set_key is acked under the old key, then the board tags its frames",
        keyed=True,
        explains="for mac",
    ),
)


#: Changed firmware that must still pass: a protocol 1.1 board speaks 1.0 until asked
#: (SPEC.md section 6), so a 1.0 SBC and its suite see a conforming board.
GOOD = (
    Fault("unmodified firmware", (), ""),
    Fault(
        "protocol 1.1 board",
        (("_VERSION_MINOR = const(0)", "_VERSION_MINOR = const(1)"),),
        "",
    ),
)


def apply(fs_dir: Path, fault: Fault) -> None:
    """Apply ``fault``'s patches to the firmware copy in ``fs_dir`` (every occurrence)."""
    sources = sorted((fs_dir / "bpiiot_fw").glob("*.py"))
    for old, new in fault.patches:
        hits = 0
        for path in sources:
            text = path.read_text()
            if old in text:
                hits += text.count(old)
                path.write_text(text.replace(old, new))
        if not hits:
            raise PatchMissing(
                f"fault {fault.name!r}: {old.strip()!r} is no longer in the firmware; "
                "update tests/e2e/broken_firmware.py"
            )
