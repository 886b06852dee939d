// Consistent Overhead Byte Stuffing (SPEC.md 2).
#ifndef BPIIOT_COBS_H
#define BPIIOT_COBS_H
#include <stddef.h>
#include <stdint.h>

// Where encoded bytes go (the TX queue on the board, a buffer on the host).
typedef void (*cobs_sink)(void *ctx, uint8_t byte);

// Write COBS(src) to sink, without the 0x00 delimiter; same bytes as Python's `cobs`.
void cobs_encode(const uint8_t *src, size_t n, cobs_sink sink, void *ctx);

// Number of bytes cobs_encode writes for n input bytes whose zero bytes are known
// only at encoding time: an upper bound, n + n / 254 + 1.
static inline size_t cobs_max(size_t n) { return n + n / 254 + 1; }

// Decode a chunk in place (the output is never longer); return its length, or -1
// when the chunk is not valid COBS (a zero byte, or a code pointing past the end).
int cobs_decode_inplace(uint8_t *buf, size_t n);

#endif
