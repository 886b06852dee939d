"""CRC-32 (IEEE 802.3, as zlib and binascii compute it) in plain Python.

Only for ports built without ``binascii.crc32``; ``codec`` imports it then. The
table is built on first use.
"""

_table = None


def crc32(data, crc=0):
    """CRC-32 of data, continuing from crc."""
    global _table
    if _table is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            t.append(c)
        _table = t
    t = _table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
