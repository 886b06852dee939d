#include "sha256.h"

#include <string.h>

#include "progmem.h"

static const uint32_t K[64] BPIIOT_PROGMEM = {
    0x428a2f98UL, 0x71374491UL, 0xb5c0fbcfUL, 0xe9b5dba5UL, 0x3956c25bUL, 0x59f111f1UL,
    0x923f82a4UL, 0xab1c5ed5UL, 0xd807aa98UL, 0x12835b01UL, 0x243185beUL, 0x550c7dc3UL,
    0x72be5d74UL, 0x80deb1feUL, 0x9bdc06a7UL, 0xc19bf174UL, 0xe49b69c1UL, 0xefbe4786UL,
    0x0fc19dc6UL, 0x240ca1ccUL, 0x2de92c6fUL, 0x4a7484aaUL, 0x5cb0a9dcUL, 0x76f988daUL,
    0x983e5152UL, 0xa831c66dUL, 0xb00327c8UL, 0xbf597fc7UL, 0xc6e00bf3UL, 0xd5a79147UL,
    0x06ca6351UL, 0x14292967UL, 0x27b70a85UL, 0x2e1b2138UL, 0x4d2c6dfcUL, 0x53380d13UL,
    0x650a7354UL, 0x766a0abbUL, 0x81c2c92eUL, 0x92722c85UL, 0xa2bfe8a1UL, 0xa81a664bUL,
    0xc24b8b70UL, 0xc76c51a3UL, 0xd192e819UL, 0xd6990624UL, 0xf40e3585UL, 0x106aa070UL,
    0x19a4c116UL, 0x1e376c08UL, 0x2748774cUL, 0x34b0bcb5UL, 0x391c0cb3UL, 0x4ed8aa4aUL,
    0x5b9cca4fUL, 0x682e6ff3UL, 0x748f82eeUL, 0x78a5636fUL, 0x84c87814UL, 0x8cc70208UL,
    0x90befffaUL, 0xa4506cebUL, 0xbef9a3f7UL, 0xc67178f2UL,
};

static const uint32_t H0[8] BPIIOT_PROGMEM = {
    0x6a09e667UL, 0xbb67ae85UL, 0x3c6ef372UL, 0xa54ff53aUL,
    0x510e527fUL, 0x9b05688cUL, 0x1f83d9abUL, 0x5be0cd19UL,
};

static inline uint32_t ror(uint32_t x, uint8_t n) { return (x >> n) | (x << (32 - n)); }

// One compression; the message schedule is a 16-word ring (64 bytes of stack).
static void compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[16];
    for (uint8_t i = 0; i < 16; i++, p += 4)
        w[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (uint8_t i = 0; i < 64; i++) {
        uint32_t wi;
        if (i < 16) {
            wi = w[i];
        } else {
            uint32_t w15 = w[(i + 1) & 15], w2 = w[(i + 14) & 15];
            uint32_t s0 = ror(w15, 7) ^ ror(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = ror(w2, 17) ^ ror(w2, 19) ^ (w2 >> 10);
            wi = w[i & 15] = w[i & 15] + s0 + w[(i + 9) & 15] + s1;
        }
        uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) +
                      bpiiot_read_u32(&K[i]) + wi;
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void sha256_init(Sha256 *s) {
    for (uint8_t i = 0; i < 8; i++) s->h[i] = bpiiot_read_u32(&H0[i]);
    s->total = 0;
    s->used = 0;
}

void sha256_update(Sha256 *s, const uint8_t *data, size_t len) {
    s->total += len;
    while (len--) {
        s->block[s->used++] = *data++;
        if (s->used == 64) {
            compress(s->h, s->block);
            s->used = 0;
        }
    }
}

void sha256_final(Sha256 *s, uint8_t out[32]) {
    uint32_t bits = s->total << 3;
    uint8_t one = 0x80, zero = 0;
    uint32_t total = s->total;
    sha256_update(s, &one, 1);
    while (s->used != 56) sha256_update(s, &zero, 1);
    uint8_t len[8] = {0, 0, 0, (uint8_t)(total >> 29), (uint8_t)(bits >> 24),
                      (uint8_t)(bits >> 16), (uint8_t)(bits >> 8), (uint8_t)bits};
    sha256_update(s, len, 8);
    for (uint8_t i = 0; i < 32; i++) out[i] = (uint8_t)(s->h[i >> 2] >> (24 - 8 * (i & 3)));
}

void hmac_key_init(HmacKey *k, const uint8_t *key, uint8_t len) {
    Sha256 s;
    for (uint8_t pass = 0; pass < 2; pass++) {
        uint8_t pad = pass ? 0x5c : 0x36;
        sha256_init(&s);
        for (uint8_t i = 0; i < 64; i++) s.block[i] = (uint8_t)((i < len ? key[i] : 0) ^ pad);
        compress(s.h, s.block);
        memcpy(pass ? k->outer : k->inner, s.h, 32);
    }
}

void hmac_tag(const HmacKey *k, const uint8_t *data, size_t len, uint8_t tag[8]) {
    // The inner digest is kept in the block buffer itself (32 bytes less stack): the
    // outer hash copies it onto itself, byte i to byte i, before compressing.
    Sha256 s;
    memcpy(s.h, k->inner, 32);
    s.total = 64;
    s.used = 0;
    sha256_update(&s, data, len);
    sha256_final(&s, s.block);
    memcpy(s.h, k->outer, 32);
    s.total = 64;
    s.used = 0;
    sha256_update(&s, s.block, 32);
    sha256_final(&s, s.block);
    memcpy(tag, s.block, 8);
}
