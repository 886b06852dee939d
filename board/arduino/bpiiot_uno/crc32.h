// CRC-32 (IEEE 802.3, as zlib's crc32), nibble table: 64 bytes of flash, no RAM.
#ifndef BPIIOT_CRC32_H
#define BPIIOT_CRC32_H
#include <stddef.h>
#include <stdint.h>

// Continue a CRC over len bytes; start with crc = 0, as zlib.crc32(data, crc).
uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t len);

#endif
