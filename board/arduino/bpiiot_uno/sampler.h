// Timer-driven ADC sampling: Timer1 ticks at the sample rate, each tick converts
// A0, A1, A2 (an analog accelerometer such as the ADXL335), every 8th tick also A3 (a
// TMP36 or LM35), from the ADC interrupt. Triplets go to a ring the main loop drains; when the ring
// is full a triplet is dropped and counted (an overrun), sampling never waits.
#ifndef BPIIOT_SAMPLER_H
#define BPIIOT_SAMPLER_H
#include <stdint.h>

struct Triplet {
    uint16_t raw[3];  // ADC codes 0..1023
};

void sampler_start(uint16_t rate_hz);
void sampler_stop(void);
// True when a triplet is waiting (inline: the idle loop asks at every wake-up).
extern volatile uint8_t sampler_head, sampler_tail;
static inline bool sampler_ready(void) { return sampler_head != sampler_tail; }
// A cheap clock for timing the idle loop (cheaper than micros()): ticks since start
// (wrapping at 256) and Timer1's count within the tick, in CPU cycles.
struct SamplerClock {
    uint8_t ticks;
    uint16_t count;
};
SamplerClock sampler_clock(void);
// CPU cycles per tick.
uint16_t sampler_period(void);
// Take the oldest triplet; false when none is waiting.
bool sampler_take(Triplet *t);
// Samples lost since boot (ring full, or a tick came while converting).
uint32_t sampler_overruns(void);
// True once after samples were lost: the next triplet taken follows a gap.
bool sampler_take_gap(void);
// Sum and count of temperature conversions since the last call (then zeroed).
void sampler_take_temperature(uint32_t *sum, uint16_t *count);

#endif
