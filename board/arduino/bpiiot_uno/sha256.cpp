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

#ifdef __AVR__
// One compression in AVR assembly: 23,092 cycles where avr-gcc's code for the C below
// takes 52,174 (tools/uno_sha_bench.py). The schedule is computed in place in the
// block (big-endian words), which it overwrites. The working variables are a window of
// 8 words into 16 on the stack: each round moves it down a word and stores only the
// new a and e; every 8 rounds it is copied back up. Maj uses b ^ c kept from the round
// before (a ^ b there). Registers in the rounds: T r2-r5, E r6-r9, R1 r10-r13, R2
// r14-r17 (little-endian), r18 rounds left, h r20:r21, b ^ c r22-r25, X the message
// word, Y the window, Z the next K; r1 stays zero.
extern "C" void bpiiot_sha256_compress(uint32_t h[8], uint8_t *block, const uint32_t *k);
asm(
    ".pushsection .text.bpiiot_sha256_compress,\"ax\",@progbits\n"
    ".macro SHA_ROL a0, a1, a2, a3\n"
    "    lsl \\a0\n"
    "    rol \\a1\n"
    "    rol \\a2\n"
    "    rol \\a3\n"
    "    adc \\a0, r1\n"
    ".endm\n"
    ".macro SHA_ROR a0, a1, a2, a3\n"
    "    bst \\a0, 0\n"
    "    lsr \\a3\n"
    "    ror \\a2\n"
    "    ror \\a1\n"
    "    ror \\a0\n"
    "    bld \\a3, 7\n"
    ".endm\n"
    ".macro SHA_LDD a0, a1, a2, a3, p, o\n"
    "    ldd \\a0, \\p+\\o\n"
    "    ldd \\a1, \\p+\\o+1\n"
    "    ldd \\a2, \\p+\\o+2\n"
    "    ldd \\a3, \\p+\\o+3\n"
    ".endm\n"
    ".macro SHA_STD p, o, a0, a1, a2, a3\n"
    "    std \\p+\\o, \\a0\n"
    "    std \\p+\\o+1, \\a1\n"
    "    std \\p+\\o+2, \\a2\n"
    "    std \\p+\\o+3, \\a3\n"
    ".endm\n"
    ".macro SHA_ADD a0, a1, a2, a3, b0, b1, b2, b3\n"
    "    add \\a0, \\b0\n"
    "    adc \\a1, \\b1\n"
    "    adc \\a2, \\b2\n"
    "    adc \\a3, \\b3\n"
    ".endm\n"
    ".macro SHA_ADDT\n"
    "    SHA_ADD r2, r3, r4, r5, r10, r11, r12, r13\n"
    ".endm\n"
    ".macro SHA_XOR\n"
    "    eor r10, r14\n"
    "    eor r11, r15\n"
    "    eor r12, r16\n"
    "    eor r13, r17\n"
    ".endm\n"
    "; W[j] += s0(W[j+1]) + W[j+9] + s1(W[j+14]), the (big-endian) words at Z+oj, Z+o1,\n"
    "; Z+o9, Z+o14; then Z += 4\n"
    ".macro SHA_SCHED oj, o1, o9, o14\n"
    "    SHA_LDD r5, r4, r3, r2, Z, \\oj\n"
    "    SHA_LDD r13, r12, r11, r10, Z, \\o9\n"
    "    SHA_ADDT\n"
    "    ; s0 = ror7 ^ ror18 ^ shr3\n"
    "    SHA_LDD r9, r8, r7, r6, Z, \\o1\n"
    "    mov r10, r7\n"
    "    mov r11, r8\n"
    "    mov r12, r9\n"
    "    mov r13, r6\n"
    "    SHA_ROL r10, r11, r12, r13\n"
    "    movw r14, r8\n"
    "    movw r16, r6\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_XOR\n"
    "    ; r16, r17, r14, r15 is ror2: clear its top 2 bits and shift once more\n"
    "    lsl r15\n"
    "    lsl r15\n"
    "    lsr r15\n"
    "    lsr r15\n"
    "    lsr r15\n"
    "    ror r14\n"
    "    ror r17\n"
    "    ror r16\n"
    "    eor r10, r16\n"
    "    eor r11, r17\n"
    "    eor r12, r14\n"
    "    eor r13, r15\n"
    "    SHA_ADDT\n"
    "    ; s1 = ror17 ^ ror19 ^ shr10\n"
    "    SHA_LDD r9, r8, r7, r6, Z, \\o14\n"
    "    movw r10, r8\n"
    "    movw r12, r6\n"
    "    SHA_ROR r10, r11, r12, r13\n"
    "    movw r14, r10\n"
    "    movw r16, r12\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_XOR\n"
    "    mov r14, r7\n"
    "    mov r15, r8\n"
    "    mov r16, r9\n"
    "    lsr r16\n"
    "    ror r15\n"
    "    ror r14\n"
    "    lsr r16\n"
    "    ror r15\n"
    "    ror r14\n"
    "    eor r10, r14\n"
    "    eor r11, r15\n"
    "    eor r12, r16\n"
    "    SHA_ADDT\n"
    "    SHA_STD Z, \\oj, r5, r4, r3, r2\n"
    "    adiw r30, 4\n"
    ".endm\n"
    "\n"
    ".global bpiiot_sha256_compress\n"
    ".type bpiiot_sha256_compress, @function\n"
    "bpiiot_sha256_compress:\n"
    "    push r2\n"
    "    push r3\n"
    "    push r4\n"
    "    push r5\n"
    "    push r6\n"
    "    push r7\n"
    "    push r8\n"
    "    push r9\n"
    "    push r10\n"
    "    push r11\n"
    "    push r12\n"
    "    push r13\n"
    "    push r14\n"
    "    push r15\n"
    "    push r16\n"
    "    push r17\n"
    "    push r28\n"
    "    push r29\n"
    "    in r28, __SP_L__\n"
    "    in r29, __SP_H__\n"
    "    subi r28, 64\n"
    "    sbci r29, 0\n"
    "    in r0, __SREG__\n"
    "    cli\n"
    "    out __SP_H__, r29\n"
    "    out __SREG__, r0\n"
    "    out __SP_L__, r28\n"
    "    ; the window starts at the upper 8 words: Y = SP + 33\n"
    "    adiw r28, 33\n"
    "    movw r26, r22\n"
    "    movw r30, r24\n"
    "    ldi r18, 8\n"
    "1:  ld r0, Z+\n"
    "    st Y+, r0\n"
    "    ld r0, Z+\n"
    "    st Y+, r0\n"
    "    ld r0, Z+\n"
    "    st Y+, r0\n"
    "    ld r0, Z+\n"
    "    st Y+, r0\n"
    "    dec r18\n"
    "    brne 1b\n"
    "    sbiw r28, 32\n"
    "    movw r30, r20\n"
    "    movw r20, r24\n"
    "    ; P = b ^ c\n"
    "    SHA_LDD r22, r23, r24, r25, Y, 4\n"
    "    SHA_LDD r10, r11, r12, r13, Y, 8\n"
    "    eor r22, r10\n"
    "    eor r23, r11\n"
    "    eor r24, r12\n"
    "    eor r25, r13\n"
    "    ldi r18, 64\n"
    "    rjmp .Lsha_round\n"
    ".Lsha_pass:\n"
    "    sbiw r26, 63\n"
    "    sbiw r26, 1\n"
    ".Lsha_round:\n"
    "    ; a..h at Y+4..Y+35 after this; the new a goes to Y+0, the new e to Y+16\n"
    "    sbiw r28, 4\n"
    "    SHA_LDD r2, r3, r4, r5, Y, 32\n"
    "    SHA_LDD r6, r7, r8, r9, Y, 20\n"
    "    ; T = h + ror8(rol2(e) ^ ror3(e) ^ ror16(ror1(e))) = h + ror6 ^ ror11 ^ ror25\n"
    "    movw r10, r6\n"
    "    movw r12, r8\n"
    "    SHA_ROL r10, r11, r12, r13\n"
    "    SHA_ROL r10, r11, r12, r13\n"
    "    movw r14, r6\n"
    "    movw r16, r8\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    eor r10, r16\n"
    "    eor r11, r17\n"
    "    eor r12, r14\n"
    "    eor r13, r15\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_ROR r14, r15, r16, r17\n"
    "    SHA_XOR\n"
    "    SHA_ADD r2, r3, r4, r5, r11, r12, r13, r10\n"
    "    ; T += g ^ (e & (f ^ g))\n"
    "    SHA_LDD r10, r11, r12, r13, Y, 24\n"
    "    SHA_LDD r14, r15, r16, r17, Y, 28\n"
    "    SHA_XOR\n"
    "    and r10, r6\n"
    "    and r11, r7\n"
    "    and r12, r8\n"
    "    and r13, r9\n"
    "    SHA_XOR\n"
    "    SHA_ADDT\n"
    "    ; T += K[i] + W[i]\n"
    "    lpm r10, Z+\n"
    "    lpm r11, Z+\n"
    "    lpm r12, Z+\n"
    "    lpm r13, Z+\n"
    "    SHA_ADDT\n"
    "    ld r13, X+\n"
    "    ld r12, X+\n"
    "    ld r11, X+\n"
    "    ld r10, X+\n"
    "    SHA_ADDT\n"
    "    ; e = d + T\n"
    "    SHA_LDD r10, r11, r12, r13, Y, 16\n"
    "    SHA_ADD r10, r11, r12, r13, r2, r3, r4, r5\n"
    "    SHA_STD Y, 16, r10, r11, r12, r13\n"
    "    ; T += ror2(a) ^ ror24(rol2(a)) ^ ror16(rol3(a)) = ror2 ^ ror22 ^ ror13\n"
    "    SHA_LDD r6, r7, r8, r9, Y, 4\n"
    "    movw r10, r6\n"
    "    movw r12, r8\n"
    "    SHA_ROR r10, r11, r12, r13\n"
    "    SHA_ROR r10, r11, r12, r13\n"
    "    movw r14, r6\n"
    "    movw r16, r8\n"
    "    SHA_ROL r14, r15, r16, r17\n"
    "    SHA_ROL r14, r15, r16, r17\n"
    "    eor r10, r17\n"
    "    eor r11, r14\n"
    "    eor r12, r15\n"
    "    eor r13, r16\n"
    "    SHA_ROL r14, r15, r16, r17\n"
    "    eor r10, r16\n"
    "    eor r11, r17\n"
    "    eor r12, r14\n"
    "    eor r13, r15\n"
    "    SHA_ADDT\n"
    "    ; a = T + Maj(a, b, c) = T + (b ^ ((a ^ b) & P)), P = b ^ c; then P = a ^ b\n"
    "    SHA_LDD r10, r11, r12, r13, Y, 8\n"
    "    eor r6, r10\n"
    "    eor r7, r11\n"
    "    eor r8, r12\n"
    "    eor r9, r13\n"
    "    and r22, r6\n"
    "    and r23, r7\n"
    "    and r24, r8\n"
    "    and r25, r9\n"
    "    eor r22, r10\n"
    "    eor r23, r11\n"
    "    eor r24, r12\n"
    "    eor r25, r13\n"
    "    SHA_ADD r2, r3, r4, r5, r22, r23, r24, r25\n"
    "    SHA_STD Y, 0, r2, r3, r4, r5\n"
    "    movw r22, r6\n"
    "    movw r24, r8\n"
    "    dec r18\n"
    "    mov r19, r18\n"
    "    andi r19, 7\n"
    "    breq 2f\n"
    "    rjmp .Lsha_round\n"
    "2:  tst r18\n"
    "    brne 3f\n"
    "    rjmp .Lsha_done\n"
    "    ; copy the window up 8 words: Y ends where it started the 8 rounds\n"
    "3:  ldi r19, 8\n"
    "4:  ld r0, Y+\n"
    "    std Y+31, r0\n"
    "    ld r0, Y+\n"
    "    std Y+31, r0\n"
    "    ld r0, Y+\n"
    "    std Y+31, r0\n"
    "    ld r0, Y+\n"
    "    std Y+31, r0\n"
    "    dec r19\n"
    "    brne 4b\n"
    "    mov r19, r18\n"
    "    andi r19, 15\n"
    "    breq 5f\n"
    "    rjmp .Lsha_round\n"
    "    ; the next 16 message words in place, W[j] for j = 0..15 (Z = block + 4j - 8 for\n"
    "    ; j = 2..6, block + 4j - 28 for j = 7..14, so that no offset wraps)\n"
    "5:  push r30\n"
    "    push r31\n"
    "    movw r30, r26\n"
    "    sbiw r30, 63\n"
    "    sbiw r30, 1\n"
    "    ldi r19, 2\n"
    "6:  SHA_SCHED 0, 4, 36, 56\n"
    "    dec r19\n"
    "    breq 7f\n"
    "    rjmp 6b\n"
    "7:  sbiw r30, 8\n"
    "    ldi r19, 5\n"
    "8:  SHA_SCHED 8, 12, 44, 0\n"
    "    dec r19\n"
    "    breq 9f\n"
    "    rjmp 8b\n"
    "9:  sbiw r30, 20\n"
    "    ldi r19, 8\n"
    "10: SHA_SCHED 28, 32, 0, 20\n"
    "    dec r19\n"
    "    breq 11f\n"
    "    rjmp 10b\n"
    "11: sbiw r30, 32\n"
    "    SHA_SCHED 60, 0, 32, 52\n"
    "    pop r31\n"
    "    pop r30\n"
    "    rjmp .Lsha_pass\n"
    ".Lsha_done:\n"
    "    ; h += the window\n"
    "    movw r30, r20\n"
    "    ldi r19, 8\n"
    "12: ld r2, Z\n"
    "    ldd r3, Z+1\n"
    "    ldd r4, Z+2\n"
    "    ldd r5, Z+3\n"
    "    ld r6, Y+\n"
    "    ld r7, Y+\n"
    "    ld r8, Y+\n"
    "    ld r9, Y+\n"
    "    SHA_ADD r2, r3, r4, r5, r6, r7, r8, r9\n"
    "    st Z+, r2\n"
    "    st Z+, r3\n"
    "    st Z+, r4\n"
    "    st Z+, r5\n"
    "    dec r19\n"
    "    brne 12b\n"
    "    ; SP = Y + 31, the value before the 64 bytes\n"
    "    adiw r28, 31\n"
    "    in r0, __SREG__\n"
    "    cli\n"
    "    out __SP_H__, r29\n"
    "    out __SREG__, r0\n"
    "    out __SP_L__, r28\n"
    "    pop r29\n"
    "    pop r28\n"
    "    pop r17\n"
    "    pop r16\n"
    "    pop r15\n"
    "    pop r14\n"
    "    pop r13\n"
    "    pop r12\n"
    "    pop r11\n"
    "    pop r10\n"
    "    pop r9\n"
    "    pop r8\n"
    "    pop r7\n"
    "    pop r6\n"
    "    pop r5\n"
    "    pop r4\n"
    "    pop r3\n"
    "    pop r2\n"
    "    ret\n"
    ".size bpiiot_sha256_compress, .-bpiiot_sha256_compress\n"
    ".purgem SHA_ROL\n"
    ".purgem SHA_ROR\n"
    ".purgem SHA_LDD\n"
    ".purgem SHA_STD\n"
    ".purgem SHA_ADD\n"
    ".purgem SHA_ADDT\n"
    ".purgem SHA_XOR\n"
    ".purgem SHA_SCHED\n"
    ".popsection\n");

static inline void compress(uint32_t h[8], uint8_t *p) { bpiiot_sha256_compress(h, p, K); }
#else
// The portable compression (host builds). Rotations from byte moves and one-bit
// steps: a general 32-bit shift by n is an n-round loop on the AVR.
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
static void compress(uint32_t h[8], uint8_t *p) {
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

#endif

void sha256_init(Sha256 *s) {
    for (uint8_t i = 0; i < 8; i++) s->h[i] = bpiiot_read_u32(&H0[i]);
    s->total = 0;
    s->used = 0;
}

void sha256_update(Sha256 *s, const uint8_t *data, size_t len) {
    s->total += len;
    while (len) {
        uint8_t n = (uint8_t)(64 - s->used);
        if (len < n) n = (uint8_t)len;
        memcpy(s->block + s->used, data, n);
        data += n;
        len -= n;
        s->used += n;
        if (s->used == 64) {
            compress(s->h, s->block);
            s->used = 0;
        }
    }
}

// Constant shifts only: a shift by a variable count is a loop on the AVR.
static inline void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void sha256_final(Sha256 *s, uint8_t out[32]) {
    uint32_t total = s->total, bits = total << 3;
    uint8_t *b = s->block, u = s->used;
    b[u++] = 0x80;
    if (u > 56) {
        memset(b + u, 0, 64 - u);
        compress(s->h, b);
        u = 0;
    }
    memset(b + u, 0, 59 - u);
    b[59] = (uint8_t)(total >> 29);
    put_be32(b + 60, bits);
    compress(s->h, b);
    for (uint8_t i = 0; i < 8; i++) put_be32(out + 4 * i, s->h[i]);
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
    // The inner digest is kept in the block buffer itself (32 bytes less stack), where
    // the outer hash takes it as its first 32 bytes.
    Sha256 s;
    memcpy(s.h, k->inner, 32);
    s.total = 64;
    s.used = 0;
    sha256_update(&s, data, len);
    sha256_final(&s, s.block);
    memcpy(s.h, k->outer, 32);
    s.total = 96;
    s.used = 32;
    sha256_final(&s, s.block);
    memcpy(tag, s.block, 8);
}
