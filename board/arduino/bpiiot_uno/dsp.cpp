// The per-sample filter is the hot path: optimised for speed (constant shifts
// unrolled instead of the loops -Os writes) in every build, the Arduino IDE's too,
// while the rest of the firmware is optimised for size.
#pragma GCC optimize("O2")

#include "dsp.h"

#include <string.h>

// The 1600 S/s row of dsp.COEFFS / bpiiot.iso20816.COEFFS (DSP.md 3.1), as constants
// so the compiler multiplies by immediates. Run at 800 S/s it is the same filter in
// the z domain (corners at half the frequencies: high-pass 2.5 Hz, low-pass edge
// 310 Hz) whose integrator step is twice as long: only the velocity scale GN doubles.
#define Q1 19  // the shifts below (sr5, sr7, sl10) are written for this row
#define D1A 18880
#define D2A (-18681)
#define B01 14534
#define B11 28972
#define A11 29859
#define A21 8855
#define B12 64327L
#define A12 48122L
#define A22 25159
#define Q4 21
#define D1B 32081
#define D2B (-31279)
#define F_SHIFT 10
#define S_SHIFT 7
// Velocity scale GN / 2^40 um/s per LSB (2 x the 1600 S/s row's 103877989110);
// GN >> 16 keeps the final product in 64 bits.
#define GN 207755978220ULL
#define GN_HI (GN >> 16)
#define GQ_HI (40 - 16)

// 16 x 16 -> 32 bit products: the AVR multiplies these in a few instructions, where a
// general 32-bit product costs a library call.
static inline int32_t mul_ss(int16_t a, int16_t b) { return (int32_t)a * b; }
static inline int32_t mul_su(int16_t a, uint16_t b) { return (int32_t)a * (int32_t)b; }

// Arithmetic right shifts built from byte moves: avr-gcc turns `>> 14` of a 32-bit
// value into a 14-round loop (about 85 cycles), these take a dozen. Same results as
// >> for every int32 (floor division by a power of two).
static inline int32_t sr14(int32_t p) {
    return ((int32_t)(int16_t)(p >> 16) << 2) | (uint8_t)((uint8_t)(p >> 8) >> 6);
}
static inline int32_t sr5(int32_t p) {
    return ((p >> 8) << 3) | (uint8_t)((uint8_t)p >> 5);
}
static inline int32_t sr7(int32_t p) {
    return ((p >> 8) << 1) | (uint8_t)((uint8_t)p >> 7);
}
// x << 10 for |x| < 2^21; the empty asm keeps gcc from folding it back into a loop.
static inline int32_t sl10(int32_t x) {
    int32_t y = x << 8;
    __asm__("" : "+r"(y));
    return y << 2;
}

// round(s * c / 2^15) for |s| < 2^28 (DSP.md 3.1, split multiply); c < 2^16.
static inline int32_t mq15(int32_t s, uint16_t c) {
    return (mul_su((int16_t)sr14(s), c) + 1 + sr14(mul_su((int16_t)(s & 16383), c))) >> 1;
}

void axis_reset(AxisState *s) { memset(s, 0, sizeof *s); }

void axis_step(AxisState *s, int16_t x) {
    if (!s->primed) {
        // The first sample is the steady DC level: gravity causes no transient.
        s->x1 = s->x2 = x;
        s->primed = true;
    }
    uint16_t ax = x < 0 ? (uint16_t)(-(int32_t)x) : (uint16_t)x;
    if (ax > s->peak) s->peak = ax;
    s->xl += (uint32_t)mul_ss(x, x);
    if (s->xl >= 0x20000000UL) {
        s->xh += (uint16_t)(s->xl >> 29);
        s->xl &= 0x1FFFFFFFUL;
    }
    // Section 1: high-pass, delta form with second-order error feedback; the products
    // are in Q(Q1) and the split operands carry 14 bits, so the shift is Q1 - 14.
    int32_t a1 = s->a1, a2 = s->a2;
    int32_t t1 = sl10((int32_t)x - 2 * s->x1 + s->x2);  // << F_SHIFT
    int32_t q = mul_ss((int16_t)sr14(a1), D1A) + mul_ss((int16_t)sr14(a2), D2A);
    q += sr14(mul_ss((int16_t)(a1 & 16383), D1A)) + sr14(mul_ss((int16_t)(a2 & 16383), D2A));
    q += 2 * s->r1a - s->r2a;
    int32_t d = sr5(q);  // >> (Q1 - 14)
    s->r2a = s->r1a;
    s->r1a = q & ((1L << (Q1 - 14)) - 1);
    t1 += 2 * a1 - a2 - d;
    // Section 2: low-pass.
    int32_t b1 = s->b1, b2 = s->b2;
    int32_t t2 = mq15(t1 + a2, B01) + mq15(a1, B11) - mq15(b1, A11) - mq15(b2, A21);
    // Section 3: low-pass.
    int32_t c1 = s->c1, c2 = s->c2;
    // B02 = 2^15: round(w * 2^15 / 2^15) is w itself, exactly as the split multiply gives.
    int32_t t3 = (t2 + b2) + mq15(b1, B12) - mq15(c1, A12) - mq15(c2, A22);
    // Section 4: high-pass times the Al-Alaoui integrator.
    int32_t u = sr7(t3 + (1L << (S_SHIFT - 1)));  // >> S_SHIFT
    int32_t e1 = s->e1, e2 = s->e2, u1 = s->u1;
    int32_t t4 = (u << 3) - u - (u1 << 2) - (u1 << 1) - s->u2;  // 7 u - 6 u1 - u2
    q = mul_ss((int16_t)sr14(e1), D1B) + mul_ss((int16_t)sr14(e2), D2B);
    q += sr14(mul_ss((int16_t)(e1 & 16383), D1B)) + sr14(mul_ss((int16_t)(e2 & 16383), D2B));
    q += 2 * s->r1b - s->r2b;
    d = sr7(q);  // >> (Q4 - 14)
    s->r2b = s->r1b;
    s->r1b = q & ((1L << (Q4 - 14)) - 1);
    t4 += 2 * e1 - e2 - d;
    s->x2 = s->x1;
    s->x1 = x;
    s->a2 = a1;
    s->a1 = t1;
    s->b2 = b1;
    s->b1 = t2;
    s->c2 = c1;
    s->c1 = t3;
    s->u2 = s->u1;
    s->u1 = u;
    s->e2 = e1;
    s->e1 = t4;
    // Velocity square, |t4| < 2^28 split as h * 2^14 + l, each partial sum kept in
    // two words (base 2^29) so that no 64-bit addition runs per sample.
    uint32_t v = (uint32_t)(t4 < 0 ? -t4 : t4);
    uint16_t h = (uint16_t)sr14((int32_t)v), l = (uint16_t)(v & 16383);
    s->hhl += (uint32_t)h * h;
    if (s->hhl >= 0x20000000UL) {
        s->hhl -= 0x20000000UL;
        s->hhh++;
    }
    s->hll += (uint32_t)h * l;
    if (s->hll >= 0x20000000UL) {
        s->hll -= 0x20000000UL;
        s->hlh++;
    }
    s->lll += (uint32_t)l * l;
    if (s->lll >= 0x20000000UL) {
        s->lll -= 0x20000000UL;
        s->llh++;
    }
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
    uint64_t xsq = ((uint64_t)s->xh << 29) + s->xl;
    uint32_t rms = (isqrt64((xsq << 2) / n) + 1) >> 1;
    out->acc_saturated = rms > 0xFFFF;  // a peak is at most 32768
    out->rms_mg = rms > 0xFFFF ? 0xFFFF : (uint16_t)rms;
    out->peak_mg = s->peak;
    // Velocity: sum v^2 = hh 2^28 + hl 2^15 + ll.
    uint64_t hh = ((uint64_t)s->hhh << 29) + s->hhl;
    uint64_t hl = ((uint64_t)s->hlh << 29) + s->hll;
    uint64_t ll = ((uint64_t)s->llh << 29) + s->lll;
    out->vel_saturated = false;
    uint32_t vel = 0;
    if (hh >= (1ULL << 34)) {
        out->vel_saturated = true;  // far beyond 65535 um/s
    } else {
        uint64_t vsq = (hh << 28) + (hl << 15) + ll;
        // sqrt(vsq / n) with k extra bits: as many as keep vsq << 2k in 64 bits.
        uint8_t k = (uint8_t)((63 - bit_length(vsq)) / 2);
        if (k > 16) k = 16;
        uint64_t root = isqrt64((vsq << (2 * k)) / n);
        uint8_t shift = (uint8_t)(GQ_HI + k);
        uint64_t v = (root * GN_HI + (1ULL << (shift - 1))) >> shift;
        if (v > 0xFFFF)
            out->vel_saturated = true;
        else
            vel = (uint32_t)v;
    }
    out->vel_um_s = out->vel_saturated ? 0xFFFF : (uint16_t)vel;
    s->peak = 0;
    s->xh = s->xl = 0;
    s->hhh = s->hhl = s->hlh = s->hll = s->llh = s->lll = 0;
}
