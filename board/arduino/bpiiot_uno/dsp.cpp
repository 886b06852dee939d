// The per-sample filter is the hot path: optimised for speed in every build, the
// Arduino IDE's too, while the rest of the firmware is optimised for size.
#pragma GCC optimize("O2")

#include "dsp.h"

#include <string.h>

// Coefficient rows (DSP.md 8), from tests/board/arduino/uno_dsp_design.py, which
// checks that this table is its design. B0-B2 and A are bytes (shaping: a in 1/256 mg
// steps, u = a >> 7 in 0.5 mg), D1 and D2 in Q16, E in Q16 (9 bits); S4's input
// is (y - y1) << 4, vs = v >> 3.
#define F4 4
#define KSHIFT 3
#define GQ 40
static const DspCoeffs ROWS[] = {
    // rate, B0, B1, B2, A, D1, E, D2, GN
    {800, 221, 181, 19, 164, 4955, 389, -4948, 3117913897008ULL},
    {1600, 217, 184, 20, 164, 2524, 99, -2523, 1617824168519ULL},
};
static DspCoeffs C = ROWS[0];
#ifdef __AVR__
// The AVR build's filter step: hand-written (below), the same arithmetic as step_one.
extern "C" void dsp_step_r0(AxisState *s, const int16_t *x, uint8_t n);
extern "C" void dsp_step_r1(AxisState *s, const int16_t *x, uint8_t n);
#define STEP_R0 dsp_step_r0
#define STEP_R1 dsp_step_r1
#else
template <uint8_t R>
static void step(AxisState *s, const int16_t *x, uint8_t n);
#define STEP_R0 step<0>
#define STEP_R1 step<1>
#endif
static void (*step_fn)(AxisState *, const int16_t *, uint8_t) = STEP_R0;

bool dsp_rate_supported(uint16_t rate_hz) {
    for (uint8_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++)
        if (ROWS[i].rate == rate_hz) return true;
    return false;
}

bool dsp_select(uint16_t rate_hz) {
    for (uint8_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        if (ROWS[i].rate == rate_hz) {
            C = ROWS[i];
            step_fn = i ? STEP_R1 : STEP_R0;
            return true;
        }
    }
    return false;
}

// 24-bit state, little-endian as on the AVR.
static inline int32_t ld24(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    return (int32_t)(v << 8) >> 8;
}
static inline void st24(uint8_t *p, int32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
}

void axis_reset(AxisState *s) { memset(s, 0, sizeof *s); }

// Start in the steady state of the first sample: gravity causes no transient (the
// input's difference is zero, and with it every stage).
static void prime(AxisState *s, int16_t x) {
    s->x1 = x;
    s->primed = true;
}

#ifndef __AVR__
// One sample of row R on one axis (the host build; the AVR's is the assembly below,
// the same arithmetic).
template <uint8_t R>
static inline void step_one(AxisState *s, int16_t x) {
    uint16_t ax = x < 0 ? (uint16_t)-x : (uint16_t)x;
    if (ax > s->peak) s->peak = ax;
    uint32_t sq = (uint32_t)ax * ax;
    s->xl += sq;
    if (s->xl < sq) s->xh++;
    // The first DC zero on the input: d = x - x1 (|d| <= 10240).
    int16_t d = (int16_t)(x - s->x1);
    s->x1 = x;
    // F: shaping, a = B0 d + B1 d1 + B2 d2 - floor(A a1 / 2^8) (24 bits), then
    // u = a / 2^7 in 0.5 mg with first-order error feedback (the rounding error is
    // differenced, as the chain's first DC zero would have done).
    int32_t a = (int32_t)ROWS[R].b0 * d + (int32_t)ROWS[R].b1 * s->d1 + (int32_t)ROWS[R].b2 * s->d2 -
                ((ld24(s->a1) * ROWS[R].a) >> 8);
    st24(s->a1, a);
    s->d2 = s->d1;
    s->d1 = d;
    a += s->ru;
    s->ru = (uint8_t)(a & 127);
    int16_t u = (int16_t)(a >> 7);
    // S1: the real pole, y = y1 + u - d1 y1, first-order error feedback (the product's
    // bits 8-15 kept, its low byte dropped).
    int16_t y1 = s->y1;
    int32_t q = (int32_t)ROWS[R].d1 * y1 + ((int32_t)s->r1 << 8);
    int16_t y = (int16_t)(y1 + u - (int16_t)(q >> 16));
    s->r1 = (uint8_t)(q >> 8);
    s->y1 = y;
    // S4: pole pair x integrator, 24-bit, w = w1 + (dy << 4) - e v1 + d2 w1,
    // v = v1 + w; both products with first-order error feedback, as in S1.
    int32_t v1 = ld24(s->v1), w1 = ld24(s->w1);
    int64_t pe = (int64_t)v1 * ROWS[R].e + s->r4;
    int64_t pd = (int64_t)w1 * ROWS[R].d2 + s->r2;
    s->r4 = (uint16_t)pe;
    s->r2 = (uint16_t)pd;
    int32_t w = w1 + (int32_t)(int16_t)(y - y1) * (1 << F4) - (int32_t)(pe >> 16) + (int32_t)(pd >> 16);
    int32_t v = v1 + w;
    st24(s->w1, w);
    st24(s->v1, v);
    // Output: vs = v >> 3 (1.47 um/s at 1600 S/s, 2.84 at 800) into the sum of squares.
    int32_t vs = v >> KSHIFT;
    if ((int16_t)vs != vs) {
        s->vel_saturated = true;
    } else {
        uint16_t av = vs < 0 ? (uint16_t)-vs : (uint16_t)vs;
        sq = (uint32_t)av * av;
        s->vl += sq;
        if (s->vl < sq) s->vh++;
    }
}

// The axes of one sample in one call: registers saved once, not once per axis.
template <uint8_t R>
static void step(AxisState *s, const int16_t *xs, uint8_t n) {
    for (; n; n--, s++, xs++) step_one<R>(s, *xs);
}
#else
// The same step in AVR assembly: the state goes from LDD to registers to STD once per
// axis, one zero register, coefficients by LDI; 39 bytes of AxisState per axis (the
// offsets are checked below). Registers: Z state, X samples, r2 zero, r3 count, r12-r15
// sums and products, r16-r23 multiplier operands (and S4's v and w).
#if __cplusplus >= 201103L
#include <stddef.h>
static_assert(offsetof(AxisState, d1) == 2 && offsetof(AxisState, y1) == 6 &&
                  offsetof(AxisState, r4) == 8 && offsetof(AxisState, r2) == 10 &&
                  offsetof(AxisState, r1) == 12 && offsetof(AxisState, ru) == 13 &&
                  offsetof(AxisState, vel_saturated) == 15 && offsetof(AxisState, a1) == 16 &&
                  offsetof(AxisState, v1) == 19 && offsetof(AxisState, w1) == 22 &&
                  offsetof(AxisState, peak) == 25 && offsetof(AxisState, xh) == 27 &&
                  offsetof(AxisState, vh) == 29 && offsetof(AxisState, xl) == 31 &&
                  offsetof(AxisState, vl) == 35 && sizeof(AxisState) == 39,
              "dsp_step_r0/r1 address AxisState by these offsets");
#endif
__asm__(
    "; Window sum += the square of \\a1:\\a0 (< 2^16): 48 bits, lo at Z+\\lo, hi at Z+\\hi.\n"
    ".macro DSP_SQ48 a0, a1, lo, hi\n"
    "    mul \\a0, \\a0\n"
    "    movw r12, r0\n"
    "    mul \\a1, \\a1\n"
    "    movw r14, r0\n"
    "    mul \\a0, \\a1\n"
    "    add r13, r0\n"
    "    adc r14, r1\n"
    "    adc r15, r2\n"
    "    add r13, r0\n"
    "    adc r14, r1\n"
    "    adc r15, r2\n"
    "    ldd r18, Z+\\lo\n"
    "    add r18, r12\n"
    "    std Z+\\lo, r18\n"
    "    ldd r18, Z+\\lo+1\n"
    "    adc r18, r13\n"
    "    std Z+\\lo+1, r18\n"
    "    ldd r18, Z+\\lo+2\n"
    "    adc r18, r14\n"
    "    std Z+\\lo+2, r18\n"
    "    ldd r18, Z+\\lo+3\n"
    "    adc r18, r15\n"
    "    std Z+\\lo+3, r18\n"
    "    brcc 1f\n"
    "    ldd r18, Z+\\hi\n"
    "    ldd r19, Z+\\hi+1\n"
    "    subi r18, 0xFF\n"
    "    sbci r19, 0xFF\n"
    "    std Z+\\hi, r18\n"
    "    std Z+\\hi+1, r19\n"
    "1:\n"
    ".endm\n"
    "; r12..r14 += \\h:\\l (signed) * r22 (unsigned byte), modulo 2^24\n"
    ".macro DSP_MAC8 l, h\n"
    "    mul \\l, r22\n"
    "    add r12, r0\n"
    "    adc r13, r1\n"
    "    adc r14, r2\n"
    "    mulsu \\h, r22\n"
    "    add r13, r0\n"
    "    adc r14, r1\n"
    ".endm\n"
    ".macro DSP_STEP name, B0, B1, B2, A, D1, E, D2\n"
    ".section .text.\\name,\"ax\",@progbits\n"
    ".global \\name\n"
    ".type \\name, @function\n"
    "\\name:\n"
    "    push r2\n"
    "    push r3\n"
    "    push r12\n"
    "    push r13\n"
    "    push r14\n"
    "    push r15\n"
    "    push r16\n"
    "    push r17\n"
    "    movw r30, r24\n"
    "    movw r26, r22\n"
    "    mov r3, r20\n"
    "    clr r2\n"
    "    tst r3\n"
    "    brne 10f\n"
    "    rjmp 9f\n"
    "10:\n"
    "    ; x, |x| and its peak, x^2 into the window sum\n"
    "    ld r24, X+\n"
    "    ld r25, X+\n"
    "    movw r16, r24\n"
    "    sbrs r17, 7\n"
    "    rjmp 2f\n"
    "    com r17\n"
    "    neg r16\n"
    "    sbci r17, 0xFF\n"
    "2:\n"
    "    ldd r18, Z+25\n"
    "    ldd r19, Z+26\n"
    "    cp r18, r16\n"
    "    cpc r19, r17\n"
    "    brsh 3f\n"
    "    std Z+25, r16\n"
    "    std Z+26, r17\n"
    "3:\n"
    "    DSP_SQ48 r16, r17, 31, 27\n"
    "    ; d = x - x1, x1 = x\n"
    "    ldd r18, Z+0\n"
    "    ldd r19, Z+1\n"
    "    std Z+0, r24\n"
    "    std Z+1, r25\n"
    "    sub r24, r18\n"
    "    sbc r25, r19\n"
    "    ; F: a = B0 d + B1 d1 + B2 d2 - floor(A a1 / 2^8), 24 bits in r12..r14\n"
    "    movw r16, r24\n"
    "    ldd r18, Z+2\n"
    "    ldd r19, Z+3\n"
    "    ldd r20, Z+4\n"
    "    ldd r21, Z+5\n"
    "    std Z+2, r16\n"
    "    std Z+3, r17\n"
    "    std Z+4, r18\n"
    "    std Z+5, r19\n"
    "    ldi r22, \\B0\n"
    "    mul r16, r22\n"
    "    movw r12, r0\n"
    "    mulsu r17, r22\n"
    "    mov r14, r1\n"
    "    add r13, r0\n"
    "    adc r14, r2\n"
    "    ldi r22, \\B1\n"
    "    DSP_MAC8 r18, r19\n"
    "    ldi r22, \\B2\n"
    "    DSP_MAC8 r20, r21\n"
    "    ldd r16, Z+16\n"
    "    ldd r17, Z+17\n"
    "    ldd r18, Z+18\n"
    "    ldi r22, \\A\n"
    "    mul r16, r22\n"
    "    mov r19, r1\n"
    "    mulsu r18, r22\n"
    "    movw r20, r0\n"
    "    mul r17, r22\n"
    "    add r19, r0\n"
    "    adc r20, r1\n"
    "    adc r21, r2\n"
    "    sub r12, r19\n"
    "    sbc r13, r20\n"
    "    sbc r14, r21\n"
    "    std Z+16, r12\n"
    "    std Z+17, r13\n"
    "    std Z+18, r14\n"
    "    ; u = (a + ru) >> 7, ru = (a + ru) & 127: u in r14:r13\n"
    "    ldd r16, Z+13\n"
    "    add r12, r16\n"
    "    adc r13, r2\n"
    "    adc r14, r2\n"
    "    mov r16, r12\n"
    "    andi r16, 0x7F\n"
    "    std Z+13, r16\n"
    "    lsl r12\n"
    "    rol r13\n"
    "    rol r14\n"
    "    ; S1: q = D1 y1 + (r1 << 8), y = y1 + u - (q >> 16), r1 = q's bits 8-15; dy in r24:r25\n"
    "    ldd r16, Z+6\n"
    "    ldd r17, Z+7\n"
    "    ldi r18, lo8(\\D1)\n"
    "    ldi r19, hi8(\\D1)\n"
    "    ldd r21, Z+12\n"
    "    muls r17, r19\n"
    "    movw r22, r0\n"
    "    mul r16, r18\n"
    "    add r21, r1\n"
    "    adc r22, r2\n"
    "    adc r23, r2\n"
    "    mulsu r17, r18\n"
    "    sbc r23, r2\n"
    "    add r21, r0\n"
    "    adc r22, r1\n"
    "    adc r23, r2\n"
    "    mulsu r19, r16\n"
    "    sbc r23, r2\n"
    "    add r21, r0\n"
    "    adc r22, r1\n"
    "    adc r23, r2\n"
    "    std Z+12, r21\n"
    "    movw r24, r16\n"
    "    add r24, r13\n"
    "    adc r25, r14\n"
    "    sub r24, r22\n"
    "    sbc r25, r23\n"
    "    std Z+6, r24\n"
    "    std Z+7, r25\n"
    "    sub r24, r16\n"
    "    sbc r25, r17\n"
    "    ; S4, 24 bits: w = w1 + (dy << 4) in r22, r23, r19\n"
    "    ldd r16, Z+22\n"
    "    ldd r17, Z+23\n"
    "    ldd r18, Z+24\n"
    "    movw r22, r16\n"
    "    mov r19, r18\n"
    "    ldi r20, 16\n"
    "    mul r24, r20\n"
    "    add r22, r0\n"
    "    adc r23, r1\n"
    "    adc r19, r2\n"
    "    mov r21, r25\n"
    "    mulsu r21, r20\n"
    "    add r23, r0\n"
    "    adc r19, r1\n"
    "    ; + (D2 w1 + r2) >> 16, r2 = its low 16 bits (40 bits: r24 r25 r13 r14 r15)\n"
    "    ldi r20, lo8(\\D2)\n"
    "    ldi r21, hi8(\\D2)\n"
    "    ldd r24, Z+10\n"
    "    ldd r25, Z+11\n"
    "    clr r13\n"
    "    muls r18, r21\n"
    "    movw r14, r0\n"
    "    mul r16, r20\n"
    "    add r24, r0\n"
    "    adc r25, r1\n"
    "    adc r13, r2\n"
    "    adc r14, r2\n"
    "    adc r15, r2\n"
    "    mul r17, r20\n"
    "    add r25, r0\n"
    "    adc r13, r1\n"
    "    adc r14, r2\n"
    "    adc r15, r2\n"
    "    mulsu r18, r20\n"
    "    sbc r15, r2\n"
    "    add r13, r0\n"
    "    adc r14, r1\n"
    "    adc r15, r2\n"
    "    mulsu r21, r16\n"
    "    sbc r14, r2\n"
    "    sbc r15, r2\n"
    "    add r25, r0\n"
    "    adc r13, r1\n"
    "    adc r14, r2\n"
    "    adc r15, r2\n"
    "    mulsu r21, r17\n"
    "    sbc r15, r2\n"
    "    add r13, r0\n"
    "    adc r14, r1\n"
    "    adc r15, r2\n"
    "    std Z+10, r24\n"
    "    std Z+11, r25\n"
    "    add r22, r13\n"
    "    adc r23, r14\n"
    "    adc r19, r15\n"
    "    ; - (E v1 + r4) >> 16, r4 = its low 16 bits (r24 r25 r12 r13 r14); v1 in r16..r18\n"
    "    ldd r16, Z+19\n"
    "    ldd r17, Z+20\n"
    "    ldd r18, Z+21\n"
    "    ldi r20, lo8(\\E)\n"
    "    ldd r24, Z+8\n"
    "    ldd r25, Z+9\n"
    "    mulsu r18, r20\n"
    "    movw r12, r0\n"
    "    sbc r14, r14\n"
    "    mul r16, r20\n"
    "    add r24, r0\n"
    "    adc r25, r1\n"
    "    adc r12, r2\n"
    "    adc r13, r2\n"
    "    adc r14, r2\n"
    "    mul r17, r20\n"
    "    add r25, r0\n"
    "    adc r12, r1\n"
    "    adc r13, r2\n"
    "    adc r14, r2\n"
    ".if \\E > 255\n"
    "    mov r21, r18\n"
    "    lsl r21\n"
    "    sbc r21, r21\n"
    "    add r25, r16\n"
    "    adc r12, r17\n"
    "    adc r13, r18\n"
    "    adc r14, r21\n"
    ".endif\n"
    "    std Z+8, r24\n"
    "    std Z+9, r25\n"
    "    sub r22, r12\n"
    "    sbc r23, r13\n"
    "    sbc r19, r14\n"
    "    std Z+22, r22\n"
    "    std Z+23, r23\n"
    "    std Z+24, r19\n"
    "    ; v = v1 + w\n"
    "    add r16, r22\n"
    "    adc r17, r23\n"
    "    adc r18, r19\n"
    "    std Z+19, r16\n"
    "    std Z+20, r17\n"
    "    std Z+21, r18\n"
    "    ; vs = v >> 3 when it fits 16 bits, its square into the window sum\n"
    "    movw r24, r16\n"
    "    mov r22, r18\n"
    "    asr r22\n"
    "    ror r25\n"
    "    ror r24\n"
    "    asr r22\n"
    "    ror r25\n"
    "    ror r24\n"
    "    asr r22\n"
    "    ror r25\n"
    "    ror r24\n"
    "    mov r23, r25\n"
    "    lsl r23\n"
    "    sbc r23, r23\n"
    "    cp r22, r23\n"
    "    brne 5f\n"
    "    movw r16, r24\n"
    "    sbrs r17, 7\n"
    "    rjmp 4f\n"
    "    com r17\n"
    "    neg r16\n"
    "    sbci r17, 0xFF\n"
    "4:\n"
    "    DSP_SQ48 r16, r17, 35, 29\n"
    "    rjmp 6f\n"
    "5:\n"
    "    ldi r22, 1\n"
    "    std Z+15, r22\n"
    "6:\n"
    "    adiw r30, 39\n"
    "    dec r3\n"
    "    breq 9f\n"
    "    rjmp 10b\n"
    "9:\n"
    "    clr r1\n"
    "    pop r17\n"
    "    pop r16\n"
    "    pop r15\n"
    "    pop r14\n"
    "    pop r13\n"
    "    pop r12\n"
    "    pop r3\n"
    "    pop r2\n"
    "    ret\n"
    ".size \\name, .-\\name\n"
    ".endm\n"
    // The rows of ROWS, in its order (test_uno_sim.py compares ELF and host bit for bit).
    "DSP_STEP dsp_step_r0, 221, 181, 19, 164, 4955, 389, -4948\n"
    "DSP_STEP dsp_step_r1, 217, 184, 20, 164, 2524, 99, -2523\n"
    ".text\n");
#endif

// The axes are reset together (axis_reset at every start), so the first one tells.
// Both calls are tail calls: axes_step saves no registers.
__attribute__((noinline)) static void prime_step(AxisState *s, const int16_t *x, uint8_t n) {
    for (uint8_t a = 0; a < n; a++)
        if (!s[a].primed) prime(&s[a], x[a]);
    step_fn(s, x, n);
}

void axes_step(AxisState *s, const int16_t *x, uint8_t n) {
    if (!s->primed)
        prime_step(s, x, n);
    else
        step_fn(s, x, n);
}

uint32_t isqrt64(uint64_t n) {
    uint64_t r = 0, bit = 1ULL << 62;
    while (bit > n) bit >>= 2;
    while (bit) {
        if (n >= r + bit) {
            n -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)r;
}

static uint8_t bit_length(uint64_t v) {
    uint8_t n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

void axis_finish(AxisState *s, uint16_t n, AxisResult *out) {
    // Acceleration: exact, sqrt(S / n) rounded half up = (isqrt(4 S / n) + 1) / 2.
    uint64_t xsq = ((uint64_t)s->xh << 32) + s->xl;
    uint32_t rms = (isqrt64((xsq << 2) / n) + 1) >> 1;
    out->acc_saturated = rms > 0xFFFF;  // a peak is at most 32768
    out->rms_mg = rms > 0xFFFF ? 0xFFFF : (uint16_t)rms;
    out->peak_mg = s->peak;
    // Velocity: sqrt(sum vs^2 / n) x GN / 2^40, with k guard bits in the root: as many
    // as keep vsq << 2k in 64 bits.
    uint64_t vsq = ((uint64_t)s->vh << 32) + s->vl;
    uint8_t k = (uint8_t)((63 - bit_length(vsq)) / 2);
    if (k > 16) k = 16;
    uint64_t root = isqrt64((vsq << (2 * k)) / n);
    uint8_t shift = (uint8_t)(GQ - 16 + k);
    uint64_t v = (root * (C.gn >> 16) + (1ULL << (shift - 1))) >> shift;
    out->vel_saturated = s->vel_saturated || v > 0xFFFF;
    out->vel_um_s = out->vel_saturated ? 0xFFFF : (uint16_t)v;
    s->peak = 0;
    s->xh = s->vh = 0;
    s->xl = s->vl = 0;
    s->vel_saturated = false;
}
