#include "uptime.h"

#include <avr/interrupt.h>
#include <avr/io.h>

// Whole milliseconds at the last overflow, and the microseconds beyond them (< 1000):
// an overflow adds 16.384 ms.
static volatile uint32_t ms;
static volatile uint16_t us;
volatile uint8_t uptime_overflows8;

void uptime_begin(void) {
    uint8_t s = SREG;
    cli();
    TIMSK0 = 0;  // the core's millis() interrupt
    TCCR2A = 0;  // normal mode (the core set it up for PWM on D3 and D11)
    TCCR2B = _BV(CS22) | _BV(CS21) | _BV(CS20);
    TCNT2 = 0;
    TIFR2 = _BV(TOV2);
    TIMSK2 = _BV(TOIE2);
    ms = 0;
    us = 0;
    SREG = s;
}

ISR(TIMER2_OVF_vect) {
    uint16_t u = (uint16_t)(us + 384);
    uint32_t m = ms + 16;
    if (u >= 1000) {
        u -= 1000;
        m++;
    }
    us = u;
    ms = m;
    uptime_overflows8++;
}

uint32_t uptime_ms(void) {
    uint8_t s = SREG;
    cli();
    uint32_t m = ms;
    uint16_t u = us;
    uint8_t t = TCNT2;
    bool pending = (TIFR2 & _BV(TOV2)) && t < 255;  // an overflow not yet counted
    SREG = s;
    if (pending) {
        u += 384;
        m += 16;
    }
    return m + (uint16_t)(u + (uint16_t)t * 64) / 1000;
}
