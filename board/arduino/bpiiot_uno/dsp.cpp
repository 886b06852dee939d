// The per-sample filter is the hot path: optimised for speed in every build, the
// Arduino IDE's too, while the rest of the firmware is optimised for size.
#pragma GCC optimize("O2")

#include "dsp.h"
#include "mul16.h"

#include <string.h>

// Coefficient rows (DSP.md 8), from tests/board/arduino/uno_dsp_design.py, which
// checks that this table is its design. B0-B2 and A are bytes (shaping: a in 1/256 mg
// steps, u = a >> 7 in 0.5 mg), D1 and D2 in Q16, E in Q16 (9 bits); S4's input
// is (y - y1) << 11, vs = v >> 10.
#define F4 11
#define KSHIFT 10
#define GQ 40
static const DspCoeffs ROWS[] = {
    // rate, B0, B1, B2, A, D1, E, D2, GN
    {800, 221, 181, 19, 164, 4955, 389, -4948, 3117913897008ULL},
    {1600, 217, 184, 20, 164, 2524, 99, -2523, 1617824168519ULL},
};
static DspCoeffs C = ROWS[0];
template <uint8_t R>
static void step(AxisState *s, const int16_t *x, uint8_t n);
static void (*step_fn)(AxisState *, const int16_t *, uint8_t) = step<0>;

bool dsp_rate_supported(uint16_t rate_hz) {
    for (uint8_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++)
        if (ROWS[i].rate == rate_hz) return true;
    return false;
}

bool dsp_select(uint16_t rate_hz) {
    for (uint8_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        if (ROWS[i].rate == rate_hz) {
            C = ROWS[i];
            step_fn = i ? step<1> : step<0>;
            return true;
        }
    }
    return false;
}

// Shifts by constants built from byte moves (avr-gcc writes a bit loop otherwise);
// the empty asm keeps gcc from folding them back into one.
static inline int16_t sr7(int32_t p) {  // p >> 7, when it fits 16 bits
    int32_t q = p << 1;
    __asm__("" : "+r"(q));
    return (int16_t)(q >> 8);
}
static inline int32_t sr10(int32_t p) {  // p >> 10
    int32_t q = p >> 8;
    __asm__("" : "+r"(q));
    return q >> 2;
}
static inline int32_t sl11(int16_t x) {  // x << 11
    int32_t y = (int32_t)x << 3;
    __asm__("" : "+r"(y));
    return y << 8;
}

void axis_reset(AxisState *s) { memset(s, 0, sizeof *s); }

// Start in the steady state of the first sample: gravity causes no transient (the
// input's difference is zero, and with it every stage).
static void prime(AxisState *s, int16_t x) {
    s->x1 = x;
    s->primed = true;
}

// One sample of row R on one axis: the coefficients are immediates (ROWS is
// constant), so the compiler loads them with LDI instead of keeping a row in
// registers.
template <uint8_t R>
__attribute__((always_inline)) static inline void step_one(AxisState *s, int16_t x) {
    uint16_t ax = x < 0 ? (uint16_t)-x : (uint16_t)x;
    if (ax > s->peak) s->peak = ax;
    sq_acc(s->xl, s->xh, ax);
    // The first DC zero on the input: d = x - x1 (|d| <= 10240).
    int16_t d = (int16_t)(x - s->x1);
    s->x1 = x;
    // F: shaping, a = B0 d + B1 d1 + B2 d2 - floor(A a1 / 2^8) (24 bits), then
    // u = a / 2^7 in 0.5 mg with first-order error feedback (the rounding error is
    // differenced, as the chain's first DC zero would have done).
    int32_t acc = -mul_s24u8_sr8(s->a1, ROWS[R].a);
    mac_s8(acc, d, ROWS[R].b0);
    mac_s8(acc, s->d1, ROWS[R].b1);
    mac_s8(acc, s->d2, ROWS[R].b2);
    s->a1 = acc;
    s->d2 = s->d1;
    s->d1 = d;
    acc += s->ru;
    s->ru = (uint8_t)acc & 127;
    int16_t u = sr7(acc);
    // S1: the real pole, y = y1 + u - d1 y1, first-order error feedback.
    int16_t y1 = s->y1;
    int32_t q = s->r1;
    mac_ss(q, y1, ROWS[R].d1);
    int16_t y = (int16_t)(y1 + u - (int16_t)(q >> 16));
    s->r1 = (uint16_t)q;
    s->y1 = y;
    // S4: pole pair x integrator, w = w1 + (dy << F4) - e v1 + d2 w1, v = v1 + w; the
    // e product with first-order error feedback (16 bits), the d2 product rounded.
    int32_t v1 = s->v1;
    int32_t p = mul_s32u9_sr16(v1, ROWS[R].e, s->r4);
    int32_t w1 = s->w1;
    int32_t t = 0x8000L;
    mac_su(t, ROWS[R].d2, (uint16_t)w1);
    int32_t w = w1 + (t >> 16) + sl11((int16_t)(y - y1)) - p;
    mac_ss(w, (int16_t)(w1 >> 16), ROWS[R].d2);
    int32_t v = v1 + w;
    s->w1 = w;
    s->v1 = v;
    // Output: vs = v >> 10 (1.47 um/s at 1600 S/s, 2.84 at 800) into the sum of squares.
    int32_t vs = sr10(v);
    if ((int16_t)vs != vs) {
        s->vel_saturated = true;
    } else {
        sq_acc(s->vl, s->vh, vs < 0 ? (uint16_t)-vs : (uint16_t)vs);
    }
}

// The axes of one sample in one call: registers saved once, not once per axis.
template <uint8_t R>
static void step(AxisState *s, const int16_t *xs, uint8_t n) {
    for (; n; n--, s++, xs++) step_one<R>(s, *xs);
}

// The axes are reset together (axis_reset at every start), so the first one tells.
static void prime_all(AxisState *s, const int16_t *x, uint8_t n) {
    for (uint8_t a = 0; a < n; a++)
        if (!s[a].primed) prime(&s[a], x[a]);
}

void axes_step(AxisState *s, const int16_t *x, uint8_t n) {
    if (!s->primed) prime_all(s, x, n);
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
