# Runs under the MicroPython Unix port (not CPython): the firmware codec's verdict on
# every frame of a fuzz batch written by tools/fuzz_wire.py.
# Usage: MICROPYPATH=board/micropython micropython fuzz_wire_fw.py BATCH
# BATCH: key length (1 byte), key, then records: receiver (0 host, 1 board), chunk
# length (2 bytes, big-endian), the COBS chunk without its delimiter. Prints one
# character per record (see CODES: "." for ok), in lines of at most 1000, then "DONE n".
import sys

from bpiiot_fw import codec

CODES = {
    "ok": ".",
    "oversize": "a",
    "cobs": "b",
    "truncated": "c",
    "crc": "d",
    "version": "e",
    "flags": "f",
    "direction": "g",
    "unauthenticated": "h",
    "mac": "i",
    "replay": "j",
    "session": "k",
    "type": "l",
    "cbor": "m",
    "trailing": "n",
    "schema": "o",
}


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    klen = data[0]
    key = bytes(data[1 : 1 + klen]) if klen else None
    pos = 1 + klen
    # One long-lived verifier per direction, as on a board and on a host.
    verifiers = (codec.Verifier(False, key), codec.Verifier(True, key, 7, 0))
    out = []
    count = 0
    n = len(data)
    mv = memoryview(data)
    while pos < n:
        rx = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        chunk = bytes(mv[pos : pos + length])
        pos += length
        try:
            verifiers[rx].verify(chunk)
            out.append(".")
        except codec.FrameError as exc:
            out.append(CODES.get(exc.reason, "?"))
        except Exception as exc:  # a crash is a verdict of its own, reported as "!"
            out.append("!")
            sys.stderr.write(f"crash {type(exc).__name__}: {exc}\n")
        count += 1
        if len(out) == 1000:
            print("".join(out))
            out = []
    if out:
        print("".join(out))
    print("DONE", count)


main(sys.argv[1])
