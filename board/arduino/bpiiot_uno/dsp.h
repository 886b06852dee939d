// Window features in integer arithmetic (protocol/DSP.md section 8): acceleration RMS
// and peak (exact), velocity RMS through a filter designed for the ATmega328P's
// 16 x 16-bit multiplier that follows ISO 2954's nominal response (10 Hz high-pass,
// 1 kHz low-pass) up to Nyquist, at 800 or 1600 S/s.
#ifndef BPIIOT_DSP_H
#define BPIIOT_DSP_H
#include <stdint.h>

// The rate after a reset to defaults; 1600 S/s is the other one (DSP.md 8).
#define DSP_DEFAULT_RATE_HZ 800
// A rate with a coefficient row; set_config refuses any other.
bool dsp_rate_supported(uint16_t rate_hz);
// A filter start settles within this many milliseconds (DSP.md 2.1).
#define DSP_SETTLE_MS 600
// Samples must stay within +-DSP_X_LIMIT mg (the ADXL335 through the 10-bit ADC
// delivers -4995..5110): the filter's 16-bit stages are sized for it (DSP.md 8).
#define DSP_X_LIMIT 5120

// One axis: filter state and the running sums of the current window.
struct AxisState {
    int16_t x1;      // previous input (mg)
    int16_t d1, d2;  // previous input differences
    int16_t y1;      // first high-pass output (0.5 mg)
    uint16_t r4, r2;  // S4's e and d2 products: rounding residuals (error feedback)
    uint8_t r1;      // S1's product: residual (bits 8-15 kept)
    uint8_t ru;      // the shaping output's rounding residual (7 bits)
    bool primed, vel_saturated;
    uint8_t a1[3];   // shaping state, 2^7 u unrounded: 24-bit little-endian
    uint8_t v1[3];   // S4: velocity (24-bit)
    uint8_t w1[3];   // S4: its last step (24-bit)
    uint16_t peak;
    uint16_t xh, vh;  // sums of x^2 and vs^2 = hi * 2^32 + lo
    uint32_t xl, vl;
};

// The coefficient row of one rate (dsp.cpp, designed in tests/board/arduino/
// uno_dsp_design.py).
struct DspCoeffs {
    uint16_t rate;
    uint8_t b0, b1, b2, a;
    int16_t d1;
    uint16_t e;
    int16_t d2;
    uint64_t gn;  // um/s per output LSB, times 2^40
};

struct AxisResult {
    uint16_t rms_mg;
    uint16_t peak_mg;
    uint16_t vel_um_s;
    bool acc_saturated;
    bool vel_saturated;
};

// Select the coefficients of a supported rate (for every axis); false otherwise.
bool dsp_select(uint16_t rate_hz);
void axis_reset(AxisState *s);
// One sample of each of n axes (mg, |x| <= DSP_X_LIMIT; s[a] takes x[a]) through
// the filter and into the window sums.
void axes_step(AxisState *s, const int16_t *x, uint8_t n);
// The window's features over n samples; the sums restart, the filter goes on.
void axis_finish(AxisState *s, uint16_t n, AxisResult *out);

// Helpers shared with the host tests.
uint32_t isqrt64(uint64_t n);

#endif
