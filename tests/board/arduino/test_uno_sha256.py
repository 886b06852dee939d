"""SHA-256 and the HMAC tag of the Uno firmware (sha256.cpp) against FIPS 180-4 and
RFC 4231 vectors and hashlib: messages of 0 to 256 bytes (one to five blocks, the
padding on either side of a block edge), fed to sha256_update in pieces of several
sizes. Both builds: the portable C of the host codec and the AVR code in simavr."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import struct
from pathlib import Path

import serial

from .conftest import UnoSim
from .uno_codec import UnoCodec

NIST = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
        b"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
]

# RFC 4231 test cases 1-7: key, data, the first 8 bytes of the MAC (the protocol's tag).
# Keys longer than a block are hashed first, as HMAC defines.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db3853"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0e"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee0"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First", "60e431591ee0b67f"),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size "
        b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb",
    ),
]

STEPS = (1, 7, 64, 255)


def message(n: int) -> bytes:
    return bytes((i * 167 + n) & 0xFF for i in range(n))


def block_key(key: bytes) -> bytes:
    return hashlib.sha256(key).digest() if len(key) > 64 else key


def host_sha256(lib: ctypes.CDLL, data: bytes, step: int) -> bytes:
    out = ctypes.create_string_buffer(32)
    lib.uno_sha256(data, len(data), step, out)
    return out.raw


def host_tag(lib: ctypes.CDLL, key: bytes, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(8)
    lib.uno_hmac_tag(key, len(key), data, len(data), out)
    return out.raw


def test_vectors_are_right() -> None:
    for data, digest in NIST:
        assert hashlib.sha256(data).hexdigest() == digest
    for key, data, tag in RFC4231:
        assert hmac.new(key, data, hashlib.sha256).hexdigest()[:16] == tag


def test_sha256_and_tag_host_build(uno_codec: UnoCodec) -> None:
    lib = uno_codec.lib
    for data, digest in NIST:
        for step in STEPS:
            assert host_sha256(lib, data, step).hex() == digest
    for n in range(257):
        data = message(n)
        for step in STEPS:
            assert host_sha256(lib, data, step) == hashlib.sha256(data).digest(), (n, step)
    for key, data, tag in RFC4231:
        assert host_tag(lib, block_key(key), data).hex() == tag
    for n in range(0, 257, 3):
        key = bytes(range(16 + n % 49))
        want = hmac.new(key, message(n), hashlib.sha256).digest()[:8]
        assert host_tag(lib, key, message(n)) == want, n


class Runner:
    """The vector runner's 'S' and 'H' requests (tools/uno/vector_runner.cpp)."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 115200, timeout=10)

    def _answer(self, n: int) -> bytes:
        data = self.ser.read(1 + n)
        if len(data) != 1 + n or data[0] != ord("R"):
            raise TimeoutError(f"the AVR vector runner answered {data!r}")
        return data[1:]

    def sha256(self, data: bytes, step: int) -> bytes:
        self.ser.write(b"S" + bytes([step]) + struct.pack("<H", len(data)) + data)
        return self._answer(32)

    def tag(self, key: bytes, data: bytes) -> bytes:
        self.ser.write(b"H" + bytes([len(key)]) + key + struct.pack("<H", len(data)) + data)
        return self._answer(8)


def test_sha256_and_tag_on_the_avr(uno_build: Path) -> None:
    with UnoSim(firmware=uno_build / "vector_runner.elf") as sim:
        runner = Runner(sim.start())
        try:
            for data, digest in NIST:
                assert runner.sha256(data, 64).hex() == digest
            for n in [*range(0, 140), *range(180, 257, 7), 256]:
                data = message(n)
                step = STEPS[n % len(STEPS)]
                assert runner.sha256(data, step) == hashlib.sha256(data).digest(), (n, step)
            for key, data, tag in RFC4231:
                assert runner.tag(block_key(key), data).hex() == tag
            for n in range(0, 257, 11):
                key = bytes(range(16 + n % 49))
                want = hmac.new(key, message(n), hashlib.sha256).digest()[:8]
                assert runner.tag(key, message(n)) == want, n
        finally:
            runner.ser.close()
