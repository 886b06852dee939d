// Window features in integer arithmetic (protocol/DSP.md, section "Arduino Uno"):
// acceleration RMS and peak (exact), velocity RMS through the same fixed-point
// filter as the MicroPython firmware's 1600 S/s row, run at 800 S/s (10-300 Hz).
#ifndef BPIIOT_DSP_H
#define BPIIOT_DSP_H
#include <stdint.h>

// The only rate the Uno runs. The filter costs about 3,200 cycles per sample and
// axis on the ATmega328P (32-bit arithmetic on an 8-bit core): three axes at 1600 S/s
// would need 95 % of the CPU, at 800 S/s they take half of it.
#define DSP_RATE_HZ 800
// A filter start settles within this many samples (DSP.md section 2: 0.3 s at
// 1600 S/s; the same z-domain filter at 800 S/s takes the same number of samples).
#define DSP_SETTLE_N 480

// One axis: filter state and the running sums of the current window.
struct AxisState {
    int32_t x1, x2, a1, a2, b1, b2, c1, c2, u1, u2, e1, e2;
    int32_t r1a, r2a, r1b, r2b;
    uint16_t peak;
    // Two-word sums in base 2^29; a step adds less than 2^30 to a low word, so a
    // high word counts at most two carries a sample (16 bits for any window here).
    uint16_t xh, hhh, hlh, llh;
    uint32_t xl;   // sum of x^2 = xh * 2^29 + xl
    uint32_t hhl;  // sum of h^2
    uint32_t hll;  // sum of h*l
    uint32_t lll;  // sum of l^2
    bool primed;
};

struct AxisResult {
    uint16_t rms_mg;
    uint16_t peak_mg;
    uint16_t vel_um_s;
    bool acc_saturated;
    bool vel_saturated;
};

void axis_reset(AxisState *s);
// One sample (mg) through the filter and into the window sums.
void axis_step(AxisState *s, int16_t x);
// The window's features over n samples; the sums restart, the filter goes on.
void axis_finish(AxisState *s, uint16_t n, AxisResult *out);

// Helpers shared with the host tests.
uint32_t isqrt64(uint64_t n);

#endif
