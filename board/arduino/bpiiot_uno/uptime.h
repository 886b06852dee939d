// Board time from Timer2 (prescaler 1024: 64 us a count, an overflow every 16.384 ms),
// in place of the Arduino core's millis(): Timer0's interrupt ran every millisecond
// (about 20 cycles per axis-sample at 1600 S/s), this one 61 times a second.
#ifndef BPIIOT_UPTIME_H
#define BPIIOT_UPTIME_H
#include <stdint.h>

// Start Timer2 and stop the core's Timer0 interrupt (millis() and delay() stop too).
void uptime_begin(void);
// Milliseconds since uptime_begin().
uint32_t uptime_ms(void);
// Timer2 overflows since uptime_begin(), modulo 256 (61 a second): a cheap "has a
// second passed" test for the main loop.
extern volatile uint8_t uptime_overflows8;
#define UPTIME_OVERFLOWS_PER_S 61

#endif
