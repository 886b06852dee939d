// Analog sensor drivers: ADC codes (10 bits, AVcc = 5 V reference) to protocol units.
#ifndef BPIIOT_SENSORS_H
#define BPIIOT_SENSORS_H
#include <stdint.h>

#include "mul16.h"

// ADXL335 powered from the Uno's 3.3 V pin: ratiometric, 0 g at 1650 mV, 330 mV/g,
// so one ADC step is 14.8 mg and the usable range about +-3.6 g (the part's own).
// mg = (mV - 1650) * 1000 / 330 with mV = (code + 1/2) * 5000 / 1024, i.e.
// ((2 code + 1) * 484849 >> 16) - 5000; 484849 = 7 * 2^16 + 26097, so one 16 x 16-bit
// product does it (a 32-bit one would cost a library call on every sample).
__attribute__((always_inline)) static inline int16_t adxl335_mg(uint16_t code) {
    uint16_t n = (uint16_t)(2 * code + 1);
    return (int16_t)(n * 7 + (uint16_t)(mul_uu(n, 26097) >> 16) - 5000);
}

// A code at either end of the ADC's range: the signal may have been cut off.
static inline bool adc_clipped(uint16_t code) { return code == 0 || code >= 1023; }

// Temperature sensor on A3: TMP36 (500 mV at 0 C, 10 mV/C) unless built with
// -DBPIIOT_LM35 (0 mV at 0 C, 10 mV/C). m16 is the mean code times 16.
static inline int32_t temperature_cdeg(uint32_t m16) {
    int32_t mv16 = (int32_t)(((m16 + 8) * 5000UL) / 1024);  // mV times 16
#ifdef BPIIOT_LM35
    return mv16 * 10 / 16;
#else
    return mv16 * 10 / 16 - 5000;
#endif
}

#endif
