// The per-sample filter is the hot path: optimised for speed in every build, the
// Arduino IDE's too, while the rest of the firmware is optimised for size.
#pragma GCC optimize("O2")

#include "dsp.h"
#include "mul16.h"

#include <string.h>

// Coefficient rows (DSP.md 8.1), from tests/board/arduino/uno_dsp_design.py, which
// checks that this table is its design.
// Shifts common to every row: u in 0.5 mg, S4's input << 11, e in Q23, vs = v >> 10.
#define F4 11
#define EQ 7  // Q23 = 16 + 7: the e product's low word is dropped, 7 bits fed back
#define KSHIFT 10
#define GQ 40
static const DspCoeffs ROWS[] = {
    // rate, B0, B1, B2, A, D1, E, D2, GN
    {800, 28190, 23397, 2515, 42668, 4955, 49766, -4948, 3126356178319ULL},
    {1600, 27716, 23687, 2597, 42465, 2524, 12686, -2523, 1621693894391ULL},
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
static inline int32_t sr7(int32_t p) {  // p >> 7
    return ((p >> 8) << 1) | (uint8_t)((uint8_t)p >> 7);
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

// Start in the steady state of the first sample: gravity causes no transient. Out of
// line: its 64-bit division would make every call of axis_step save registers.
__attribute__((noinline)) static void prime(AxisState *s, int16_t x) {
    int16_t x4 = (int16_t)(x << 2);
    s->x1 = s->x2 = x4;
    int32_t num = mul_ss(C.b0, x4) + mul_ss(C.b1, x4) + mul_ss(C.b2, x4);
    s->a1 = (int32_t)((int64_t)num * 65536 / (65536L + C.a));
    s->u1 = (int16_t)((s->a1 + 0x8000L) >> 16);
    s->primed = true;
}

// One sample of row R on one axis: the coefficients are immediates (ROWS is
// constant), so the compiler loads them with LDI instead of keeping a row in
// registers.
template <uint8_t R>
__attribute__((always_inline)) static inline void step_one(AxisState *s, int16_t x) {
    uint16_t ax = x < 0 ? (uint16_t)-x : (uint16_t)x;
    if (ax > s->peak) s->peak = ax;
    uint32_t sq = (uint32_t)mul_ss(x, x);
    uint32_t lo = s->xl + sq;
    if (lo < sq) s->xh++;
    s->xl = lo;
    // F: shaping, a = (B0 4x + B1 4x1 + B2 4x2) - A a1 / 2^16 in 32 bits (its pole
    // at z = -0.65 would hold a rounding limit cycle at Nyquist in 16 bits), then
    // u = a / 2^16 rounded, in 0.5 mg.
    int16_t x4 = (int16_t)(x << 2);
    int32_t a1 = s->a1;
    int32_t acc = -(int32_t)(mul_uu((uint16_t)a1, ROWS[R].a) >> 16);
    mac_su(acc, (int16_t)-(int16_t)(a1 >> 16), ROWS[R].a);
    mac_ss(acc, x4, ROWS[R].b0);
    mac_ss(acc, s->x1, ROWS[R].b1);
    mac_ss(acc, s->x2, ROWS[R].b2);
    s->a1 = acc;
    s->x2 = s->x1;
    s->x1 = x4;
    int16_t u = (int16_t)((acc + 0x8000L) >> 16);
    // S1: the real pole, y = y1 + (u - u1) - d1 y1, first-order error feedback.
    int16_t y1 = s->y1;
    int32_t q = s->r1;
    mac_ss(q, y1, ROWS[R].d1);
    int16_t y = (int16_t)(y1 + (u - s->u1) - (int16_t)(q >> 16));
    s->u1 = u;
    s->r1 = (uint16_t)q;
    s->y1 = y;
    // S4: pole pair x integrator, w = w1 + (dy << F4) - e v1 + d2 w1, v = v1 + w.
    int32_t v1 = s->v1;
    int32_t p = (int32_t)(mul_uu((uint16_t)v1, ROWS[R].e) >> 16) + s->r4;
    mac_su(p, (int16_t)(v1 >> 16), ROWS[R].e);
    s->r4 = (uint8_t)(p & 127);
    int32_t w1 = s->w1;
    int32_t t = 0x8000L;
    mac_su(t, ROWS[R].d2, (uint16_t)w1);
    int32_t w = w1 + (t >> 16) + sl11((int16_t)(y - y1)) - sr7(p);
    mac_ss(w, (int16_t)(w1 >> 16), ROWS[R].d2);
    int32_t v = v1 + w;
    s->w1 = w;
    s->v1 = v;
    // Output: vs = v >> 10 (1.47 um/s at 1600 S/s, 2.84 at 800) into the sum of squares.
    int32_t vs = sr10(v);
    if ((int16_t)vs != vs) {
        s->vel_saturated = true;
    } else {
        sq = (uint32_t)mul_ss((int16_t)vs, (int16_t)vs);
        lo = s->vl + sq;
        if (lo < sq) s->vh++;
        s->vl = lo;
    }
}

// The axes of one sample in one call: registers saved once, not once per axis.
template <uint8_t R>
static void step(AxisState *s, const int16_t *xs, uint8_t n) {
    for (; n; n--, s++, xs++) step_one<R>(s, *xs);
}

// The axes are reset together (axis_reset at every start), so the first one tells.
__attribute__((noinline)) static void prime_all(AxisState *s, const int16_t *x, uint8_t n) {
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
