// Timer-driven ADC sampling: Timer1 ticks at the sample rate, each tick converts
// A0, A1, A2 (an analog accelerometer such as the ADXL335), every 8th tick also A3 (a
// TMP36 or LM35), from the ADC interrupt. Triplets go to a ring the main loop drains;
// when the ring is full, or a tick comes while the last one's conversions still run,
// the tick is skipped and counted (an overrun): sampling never waits.
//
// Both interrupts are hand-written (sampler.cpp): they run four times a tick, and a
// C handler's register saves cost more than its work. Their state lives in the
// general-purpose I/O registers, which one-cycle IN/OUT/SBI/CBI instructions reach.
#ifndef BPIIOT_SAMPLER_H
#define BPIIOT_SAMPLER_H
#include <avr/io.h>
#include <stdint.h>

// GPIOR0 bits. WORK is also set by the UART's receive interrupt: the idle loop tests
// one bit at each wake-up.
#define SAMPLER_BUSY 0  // a tick's conversions are running
#define SAMPLER_TEMP 1  // this tick converts the temperature after Z
#define SAMPLER_GAP 2   // ticks were skipped since the main loop last looked
#define SAMPLER_WORK 3  // a triplet or a received byte may be waiting
// GPIOR1: the ring's head, in bytes (4 a triplet); GPIOR2: ticks, modulo 256.
#define SAMPLER_HEAD GPIOR1
#define SAMPLER_TICKS GPIOR2

// 64 slots of 4 bytes: the three low bytes of X, Y, Z, then their 2-bit high parts
// (X in bits 1-0, Y in 3-2, Z in 5-4). 63 hold triplets (39 ms at 1600 S/s): an
// authenticated command with its reply plus a report can hold the main loop that long.
extern uint8_t sampler_ring[256];
extern uint8_t sampler_tail;  // in bytes; the main loop's own

void sampler_start(uint16_t rate_hz);
void sampler_stop(void);
// True when a triplet is waiting.
static inline bool sampler_ready(void) { return SAMPLER_HEAD != sampler_tail; }
// The oldest triplet's slot (valid while sampler_ready()); sampler_next() frees it.
static inline const uint8_t *sampler_slot(void) { return &sampler_ring[sampler_tail]; }
static inline void sampler_next(void) { sampler_tail = (uint8_t)(sampler_tail + 4); }
// CPU cycles per tick.
uint16_t sampler_period(void);
// Ticks lost since boot.
uint32_t sampler_overruns(void);
// True once after ticks were lost: the next triplet taken follows a gap.
static inline bool sampler_take_gap(void) {
    if (!(GPIOR0 & _BV(SAMPLER_GAP))) return false;
    GPIOR0 &= (uint8_t)~_BV(SAMPLER_GAP);  // CBI: one instruction, no race
    return true;
}
// Sum and count of temperature conversions since the last call (then zeroed).
void sampler_take_temperature(uint32_t *sum, uint16_t *count);

#endif
