// Window features in integer arithmetic (protocol/DSP.md, section "Arduino Uno"):
// acceleration RMS and peak (exact), velocity RMS through the same fixed-point
// filter as the MicroPython firmware at 1600 S/s (10-500 Hz band).
#ifndef BPIIOT_DSP_H
#define BPIIOT_DSP_H
#include <stdint.h>

// The only rate the Uno runs: 3 axes at 1600 S/s is 4800 conversions/s, half of
// what the ADC does at full resolution, and the filter's cost fits the CPU.
#define DSP_RATE_HZ 1600
// Windows that begin this many samples after a filter start are representative
// (DSP.md section 2: within 0.2 % from 0.3 s on).
#define DSP_SETTLE_N 480

// One axis: filter state and the running sums of the current window.
struct AxisState {
    int32_t x1, x2, a1, a2, b1, b2, c1, c2, u1, u2, e1, e2;
    int32_t r1a, r2a, r1b, r2b;
    uint16_t peak;
    uint32_t xh, xl;               // sum of x^2 = xh * 2^29 + xl
    uint32_t hhh, hhl, hlh, hll;   // sums of h^2 and h*l, two words in base 2^29
    uint32_t llh, lll;             // sum of l^2
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
