#include "sampler.h"

#include <avr/interrupt.h>
#include <avr/io.h>

// 64 triplets, 40 ms at 1600 S/s: an authenticated command and its reply (four
// SHA-256 blocks) plus a report can hold the main loop about 33 ms. Packed three
// 10-bit codes to a 32-bit word, the ring takes 256 bytes instead of 384.
#define RING 64
#define CHANNELS 4
// The temperature (A3) is converted at every 8th tick only: it is averaged over the
// window anyway, and an interrupt less per tick saves about 35 cycles per axis-sample.
#define TEMP_EVERY 8

static volatile uint32_t ring[RING];
static volatile uint8_t head, tail;
static volatile uint32_t overruns;
static uint8_t tick;
static volatile bool gap;
static volatile uint8_t channel;  // being converted; CHANNELS = idle
static volatile uint16_t cur[3];
static volatile uint32_t temp_sum;
static volatile uint16_t temp_n;

void sampler_start(uint16_t rate_hz) {
    uint8_t s = SREG;
    cli();
    head = tail = 0;
    channel = CHANNELS;
    // ADC: AVcc reference, prescaler 128 (125 kHz ADC clock, full 10-bit accuracy,
    // 104 us a conversion), interrupt on completion.
    ADMUX = _BV(REFS0);
    ADCSRA = _BV(ADEN) | _BV(ADIE) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
    DIDR0 = 0x0F;  // A0-A3 analog only: no digital input buffers to disturb them
    // Timer1, CTC mode, no prescaler: 16 MHz / rate.
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS10);
    OCR1A = (uint16_t)(F_CPU / rate_hz - 1);
    TCNT1 = 0;
    TIFR1 = _BV(OCF1A);
    TIMSK1 = _BV(OCIE1A);
    SREG = s;
}

void sampler_stop(void) {
    TIMSK1 = 0;
    TCCR1B = 0;
    ADCSRA = 0;
}

ISR(TIMER1_COMPA_vect) {
    if (channel != CHANNELS) {
        overruns++;  // the previous tick's conversions are still running
        gap = true;
        return;
    }
    channel = 0;
    ADMUX = _BV(REFS0);
    ADCSRA |= _BV(ADSC);
}

ISR(ADC_vect) {
    uint16_t v = ADC;
    uint8_t ch = channel;
    if (ch < 2) {
        cur[ch] = v;
    } else if (ch == 2) {
        if ((uint8_t)(head - tail) >= RING) {
            overruns++;
            gap = true;
        } else {
            // x | y << 10 | z << 20, shifts by whole bytes where they can be.
            uint16_t lo = (uint16_t)(cur[0] | (cur[1] << 10));
            uint16_t hi = (uint16_t)((cur[1] >> 6) | (v << 4));
            ring[head % RING] = ((uint32_t)hi << 16) | lo;
            head = (uint8_t)(head + 1);
        }
        if (++tick % TEMP_EVERY) {
            channel = CHANNELS;  // idle until the next tick
            return;
        }
    } else {
        temp_sum += v;
        temp_n++;
        channel = CHANNELS;
        return;
    }
    ch++;
    channel = ch;
    ADMUX = (uint8_t)(_BV(REFS0) | ch);
    ADCSRA |= _BV(ADSC);
}

bool sampler_ready(void) { return head != tail; }

bool sampler_take(Triplet *t) {
    if (head == tail) return false;
    uint32_t w = ring[tail % RING];
    uint16_t lo = (uint16_t)w, hi = (uint16_t)(w >> 16);
    t->raw[0] = lo & 1023;
    t->raw[1] = (uint16_t)((lo >> 10) | ((hi & 15) << 6));
    t->raw[2] = hi >> 4;
    tail = (uint8_t)(tail + 1);
    return true;
}

uint32_t sampler_overruns(void) {
    uint8_t s = SREG;
    cli();
    uint32_t n = overruns;
    SREG = s;
    return n;
}

void sampler_take_temperature(uint32_t *sum, uint16_t *n) {
    uint8_t s = SREG;
    cli();
    *sum = temp_sum;
    *n = temp_n;
    temp_sum = 0;
    temp_n = 0;
    SREG = s;
}

bool sampler_take_gap(void) {
    if (!gap) return false;  // the common case: one byte read, no cli()
    uint8_t s = SREG;
    cli();
    gap = false;
    SREG = s;
    return true;
}
