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

SamplerClock sampler_clock(void) {
    uint8_t s = SREG;
    cli();
    SamplerClock t = {sampler_ticks, TCNT1};
    if (TIFR1 & _BV(OCF1A)) {  // a tick whose interrupt has not run yet
        t.count = TCNT1;
        t.ticks++;
    }
    SREG = s;
    return t;
}

uint16_t sampler_period(void) { return (uint16_t)(OCR1A + 1); }

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

// The last conversions of a tick (Z, the temperature): the C handler, entered from
// the ADC vector below with every register as the interrupted code left it.
extern "C" void __vector_adc_slow(void) __attribute__((signal, used));
void __vector_adc_slow(void) {
    uint16_t v = ADC;
    uint8_t ch = channel;
    if (ch == 2) {
        if ((uint8_t)(head - tail) >= RING) {
            overruns++;
            gap = true;
        } else {
            volatile Packed *p = &ring[head % RING];
            uint16_t x = cur[0], y = cur[1];
            p->lo[0] = (uint8_t)x;
            p->lo[1] = (uint8_t)y;
            p->lo[2] = (uint8_t)v;
            uint8_t hx = (uint8_t)(x >> 8), hy = (uint8_t)(y >> 8), hz = (uint8_t)(v >> 8);
            p->hi = (uint8_t)(hx | (uint8_t)(hy << 2) | (uint8_t)(hz << 4));
            head = (uint8_t)(head + 1);
        }
        if (++tick % TEMP_EVERY) {
            channel = CHANNELS;  // idle until the next tick
            return;
        }
        channel = 3;
        ADMUX = (uint8_t)(_BV(REFS0) | 3);
        ADCSRA |= _BV(ADSC);
    } else {
        temp_sum += v;
        temp_n++;
        channel = CHANNELS;
    }
}

// X and Y (two conversions of three or four a tick) take the short path: store the
// code, start the next channel, three registers saved instead of fifteen (about 60
// cycles less each). r1 is not assumed zero: the interrupt may land inside a MUL.
ISR(ADC_vect, ISR_NAKED) {
    __asm__ volatile(
        "push r24\n\t"
        "in r24, __SREG__\n\t"
        "push r24\n\t"
        "lds r24, %[ch]\n\t"
        "cpi r24, 2\n\t"
        "brsh 2f\n\t"
        "push r30\n\t"
        "push r31\n\t"
        "ldi r30, lo8(%[cur])\n\t"
        "ldi r31, hi8(%[cur])\n\t"
        "lsl r24\n\t"
        "add r30, r24\n\t"
        "brcc 1f\n\t"
        "inc r31\n"
        "1:\n\t"
        "lds r24, %[adcl]\n\t"  // ADCL first: it locks ADCH until read
        "st Z+, r24\n\t"
        "lds r24, %[adch]\n\t"
        "st Z, r24\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "lds r24, %[ch]\n\t"
        "inc r24\n\t"
        "sts %[ch], r24\n\t"
        "ori r24, %[refs0]\n\t"
        "sts %[admux], r24\n\t"
        "lds r24, %[adcsra]\n\t"
        "ori r24, %[adsc]\n\t"
        "sts %[adcsra], r24\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n"
        "2:\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "jmp __vector_adc_slow\n\t"
        :
        : [ch] "i"(&channel), [cur] "i"(cur), [adcl] "i"(_SFR_MEM_ADDR(ADCL)),
          [adch] "i"(_SFR_MEM_ADDR(ADCH)), [admux] "i"(_SFR_MEM_ADDR(ADMUX)),
          [adcsra] "i"(_SFR_MEM_ADDR(ADCSRA)), [refs0] "M"(_BV(REFS0)), [adsc] "M"(_BV(ADSC)));
}

bool sampler_take(Triplet *t) {
    if (head == tail) return false;
    volatile Packed *p = &ring[tail % RING];
    // 8-bit shifts only: avr-gcc writes 16-bit ones as loops.
    uint8_t hi = p->hi;
    uint8_t h0 = hi & 3, h1 = (uint8_t)(hi >> 2) & 3, h2 = (uint8_t)(hi >> 4) & 3;
    t->raw[0] = (uint16_t)((uint16_t)h0 << 8 | p->lo[0]);
    t->raw[1] = (uint16_t)((uint16_t)h1 << 8 | p->lo[1]);
    t->raw[2] = (uint16_t)((uint16_t)h2 << 8 | p->lo[2]);
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
