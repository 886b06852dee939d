// Hashing runs for every frame with the MAC on: optimised for speed in every build.
#pragma GCC optimize("O2")

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

// Rotations from byte moves and one-bit steps: a general 32-bit shift by n is an
// n-round loop on the AVR, and SHA-256 rotates 600 times a block.
static inline uint32_t r8(uint32_t x) { return (x >> 8) | (x << 24); }
static inline uint32_t r16(uint32_t x) { return (x >> 16) | (x << 16); }
static inline uint32_t r24(uint32_t x) { return (x >> 24) | (x << 8); }
static inline uint32_t r1(uint32_t x) { return (x >> 1) | (x << 31); }
static inline uint32_t l1(uint32_t x) { return (x << 1) | (x >> 31); }
static inline uint32_t bsig0(uint32_t a) {  // ror 2 ^ ror 13 ^ ror 22
    uint32_t r2 = r1(r1(a));
    return r2 ^ l1(l1(l1(r16(a)))) ^ l1(l1(r24(a)));
}
static inline uint32_t bsig1(uint32_t e) {  // ror 6 ^ ror 11 ^ ror 25
    uint32_t e8 = r8(e);
    return l1(l1(e8)) ^ r1(r1(r1(e8))) ^ r1(r24(e));
}
static inline uint32_t ssig0(uint32_t w) {  // ror 7 ^ ror 18 ^ shr 3
    uint32_t w16 = r16(w);
    return l1(r8(w)) ^ r1(r1(w16)) ^ (w >> 3);
}
static inline uint32_t ssig1(uint32_t w) {  // ror 17 ^ ror 19 ^ shr 10
    uint32_t w17 = r1(r16(w));
    return w17 ^ r1(r1(w17)) ^ ((w >> 8) >> 2);
}

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
            wi = w[i & 15] = w[i & 15] + ssig0(w15) + w[(i + 9) & 15] + ssig1(w2);
        }
        uint32_t t1 = hh + bsig1(e) + ((e & f) ^ (~e & g)) + bpiiot_read_u32(&K[i]) + wi;
        uint32_t t2 = bsig0(a) + ((a & b) ^ (a & c) ^ (b & c));
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
