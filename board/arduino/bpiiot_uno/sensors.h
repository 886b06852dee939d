// Analog sensor drivers: ADC codes (10 bits, AVcc = 5 V reference) to protocol units.
#ifndef BPIIOT_SENSORS_H
#define BPIIOT_SENSORS_H
#include <stdint.h>

// ADXL335 powered from the Uno's 3.3 V pin: ratiometric, 0 g at 1650 mV, 330 mV/g,
// so one ADC step is 14.8 mg and the usable range about +-3.6 g (the part's own).
// mg = (mV - 1650) * 1000 / 330 with mV = (code + 1/2) * 5000 / 1024, i.e.
// ((2 code + 1) * 484849 >> 16) - 5000.
// On the AVR a table in flash (2 KB, built by the compiler from the same formula) is
// read instead: two LPMs in place of six MULs on every sample.
#define ADXL335_MG(c) ((int16_t)((((2L * (c) + 1) * 484849L) >> 16) - 5000))
#ifdef __AVR__
#include <avr/pgmspace.h>
#define ADXL335_R4(c) ADXL335_MG(c), ADXL335_MG(c + 1), ADXL335_MG(c + 2), ADXL335_MG(c + 3)
#define ADXL335_R16(c) ADXL335_R4(c), ADXL335_R4(c + 4), ADXL335_R4(c + 8), ADXL335_R4(c + 12)
#define ADXL335_R64(c) \
    ADXL335_R16(c), ADXL335_R16(c + 16), ADXL335_R16(c + 32), ADXL335_R16(c + 48)
#define ADXL335_R256(c) \
    ADXL335_R64(c), ADXL335_R64(c + 64), ADXL335_R64(c + 128), ADXL335_R64(c + 192)
static const int16_t ADXL335_TABLE[1024] PROGMEM = {ADXL335_R256(0), ADXL335_R256(256),
                                                    ADXL335_R256(512), ADXL335_R256(768)};
__attribute__((always_inline)) static inline int16_t adxl335_mg(uint16_t code) {
    return (int16_t)pgm_read_word(&ADXL335_TABLE[code]);
}
#else
static inline int16_t adxl335_mg(uint16_t code) { return ADXL335_MG(code); }
#endif

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
