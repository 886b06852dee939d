#include "sampler.h"

#include <avr/interrupt.h>
#include <avr/io.h>

// 64 triplets, 40 ms at 1600 S/s: an authenticated command and its reply (four
// SHA-256 blocks) plus a report can hold the main loop about 33 ms. Packed in 4 bytes
// (the three low bytes, then the three 2-bit high parts), the ring takes 256 bytes
// instead of 384, and packing and unpacking move whole bytes.
#define RING 64
struct Packed {
    uint8_t lo[3];
    uint8_t hi;  // x bits 9-8 in 1-0, y in 3-2, z in 5-4
};
#define CHANNELS 4
// The temperature (A3) is converted at every 8th tick only: it is averaged over the
// window anyway, and an interrupt less per tick saves about 35 cycles per axis-sample.
#define TEMP_EVERY 8

static volatile Packed ring[RING];
volatile uint8_t sampler_head, sampler_tail;
#define head sampler_head
#define tail sampler_tail
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

volatile uint8_t sampler_ticks;

uint32_t sampler_clock(void) {
    uint8_t s = SREG;
    cli();
    uint8_t k = sampler_ticks;
    uint16_t c = TCNT1;
    if (TIFR1 & _BV(OCF1A)) {  // a tick whose interrupt has not run yet
        c = TCNT1;
        k++;
    }
    SREG = s;
    return (uint32_t)k * (uint32_t)(OCR1A + 1) + c;
}

ISR(TIMER1_COMPA_vect) {
    sampler_ticks++;
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
            volatile Packed *p = &ring[head % RING];
            uint16_t x = cur[0], y = cur[1];
            p->lo[0] = (uint8_t)x;
            p->lo[1] = (uint8_t)y;
            p->lo[2] = (uint8_t)v;
            p->hi = (uint8_t)((x >> 8) | ((y >> 8) << 2) | ((v >> 8) << 4));
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

bool sampler_take(Triplet *t) {
    if (head == tail) return false;
    volatile Packed *p = &ring[tail % RING];
    uint8_t hi = p->hi;
    t->raw[0] = (uint16_t)(((hi & 3) << 8) | p->lo[0]);
    t->raw[1] = (uint16_t)((((hi >> 2) & 3) << 8) | p->lo[1]);
    t->raw[2] = (uint16_t)((((hi >> 4) & 3) << 8) | p->lo[2]);
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
