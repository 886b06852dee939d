#include "cobs.h"

void cobs_encode(const uint8_t *src, size_t n, cobs_sink sink, void *ctx) {
    // Blocks are emitted as soon as their code is known: no output buffer needed.
    size_t start = 0;
    while (true) {
        size_t i = start;
        while (i < n && src[i] != 0 && i - start < 254) i++;
        uint8_t code = (uint8_t)(i - start + 1);
        sink(ctx, code);
        for (size_t j = start; j < i; j++) sink(ctx, src[j]);
        if (i >= n) return;
        // A full block (code 0xFF) carries no implied zero; a new block starts
        // only if input follows, as the reference encoder does.
        start = code < 0xFF ? i + 1 : i;
    }
}

int cobs_decode_inplace(uint8_t *buf, size_t n) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = buf[i];
        if (code == 0) return -1;
        i++;
        size_t end = i + code - 1;
        if (end > n) return -1;
        while (i < end) {
            if (buf[i] == 0) return -1;
            buf[o++] = buf[i++];
        }
        if (code < 0xFF && i < n) buf[o++] = 0;
    }
    return (int)o;
}
