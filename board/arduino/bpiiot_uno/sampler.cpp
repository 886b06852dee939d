#include "sampler.h"

#include <avr/interrupt.h>

uint8_t sampler_ring[256];
uint8_t sampler_tail;
static volatile uint32_t overruns;
// The temperature (A3) is converted at every 8th tick only: it is averaged over the
// window anyway.
static volatile uint32_t temp_sum;
static volatile uint16_t temp_n;

// ADC: AVcc reference, prescaler 128 (125 kHz ADC clock, full 10-bit accuracy, 104 us
// a conversion), interrupt on completion; START also starts a conversion.
#define ADC_ON (_BV(ADEN) | _BV(ADIE) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0))
#define ADC_START (ADC_ON | _BV(ADSC))

void sampler_start(uint16_t rate_hz) {
    uint8_t s = SREG;
    cli();
    GPIOR0 &= (uint8_t)~(_BV(SAMPLER_BUSY) | _BV(SAMPLER_TEMP) | _BV(SAMPLER_GAP));
    SAMPLER_HEAD = 0;
    SAMPLER_TICKS = 0;
    sampler_tail = 0;
    ADMUX = _BV(REFS0);
    ADCSRA = ADC_ON | _BV(ADIF);  // a result left from before the stop raises no interrupt
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
    GPIOR0 &= (uint8_t)~(_BV(SAMPLER_BUSY) | _BV(SAMPLER_TEMP));
}

uint16_t sampler_period(void) { return (uint16_t)(OCR1A + 1); }

// The tick: start X unless the last tick's conversions still run or the ring has no
// free slot; then the tick is counted as an overrun and GAP set. 25 cycles plus entry.
ISR(TIMER1_COMPA_vect, ISR_NAKED) {
    __asm__ volatile(
        "push r24\n\t"
        "in r24, __SREG__\n\t"
        "push r24\n\t"
        "in r24, %[ticks]\n\t"
        "inc r24\n\t"
        "out %[ticks], r24\n\t"
        "sbic %[g0], %[busy]\n\t"
        "rjmp 8f\n\t"
        "push r25\n\t"
        "in r24, %[head]\n\t"
        "lds r25, %[tail]\n\t"
        "sub r24, r25\n\t"  // bytes in use
        "pop r25\n\t"
        "cpi r24, 249\n\t"  // a 64th triplet would make the ring look empty
        "brsh 8f\n\t"
        "sbi %[g0], %[busy]\n\t"
        "ldi r24, %[mux0]\n\t"
        "sts %[admux], r24\n\t"
        "ldi r24, %[start]\n\t"
        "sts %[adcsra], r24\n\t"
        "in r24, %[ticks]\n\t"
        "andi r24, 7\n\t"
        "brne 9f\n\t"
        "sbi %[g0], %[temp]\n\t"
        "rjmp 9f\n"
        "8:\n\t"  // overrun: overruns += 1 (LDS/STS leave the carry alone)
        "sbi %[g0], %[gap]\n\t"
        "lds r24, %[ov]\n\t"
        "subi r24, 0xFF\n\t"
        "sts %[ov], r24\n\t"
        "lds r24, %[ov]+1\n\t"
        "sbci r24, 0xFF\n\t"
        "sts %[ov]+1, r24\n\t"
        "lds r24, %[ov]+2\n\t"
        "sbci r24, 0xFF\n\t"
        "sts %[ov]+2, r24\n\t"
        "lds r24, %[ov]+3\n\t"
        "sbci r24, 0xFF\n\t"
        "sts %[ov]+3, r24\n"
        "9:\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n\t"
        :
        : [ticks] "I"(_SFR_IO_ADDR(SAMPLER_TICKS)), [head] "I"(_SFR_IO_ADDR(SAMPLER_HEAD)),
          [g0] "I"(_SFR_IO_ADDR(GPIOR0)), [busy] "I"(SAMPLER_BUSY), [temp] "I"(SAMPLER_TEMP),
          [gap] "I"(SAMPLER_GAP), [tail] "i"(&sampler_tail), [ov] "i"(&overruns),
          [mux0] "M"(_BV(REFS0)), [start] "M"(ADC_START), [admux] "i"(_SFR_MEM_ADDR(ADMUX)),
          [adcsra] "i"(_SFR_MEM_ADDR(ADCSRA)));
}

// A conversion done: the channel is ADMUX's low bits. X and Y wait in `stage` (fixed
// addresses: one register and SREG saved), Z completes the slot at the head from it,
// publishes the slot and starts the temperature on its ticks; the temperature goes
// into its sum. r1 is not assumed zero: the interrupt may land inside a MUL.
static uint8_t stage[4];  // X low, Y low, X high, Y high
ISR(ADC_vect, ISR_NAKED) {
    __asm__ volatile(
        "push r24\n\t"
        "in r24, __SREG__\n\t"
        "push r24\n\t"
        "lds r24, %[admux]\n\t"
        "sbrc r24, 1\n\t"
        "rjmp 2f\n\t"
        "sbrc r24, 0\n\t"
        "rjmp 1f\n\t"
        "lds r24, %[adcl]\n\t"  // X. ADCL first: it locks ADCH until read
        "sts %[st], r24\n\t"
        "lds r24, %[adch]\n\t"
        "sts %[st]+2, r24\n\t"
        "ldi r24, %[mux1]\n\t"
        "rjmp 5f\n"
        "1:\n\t"  // Y
        "lds r24, %[adcl]\n\t"
        "sts %[st]+1, r24\n\t"
        "lds r24, %[adch]\n\t"
        "sts %[st]+3, r24\n\t"
        "ldi r24, %[mux2]\n\t"
        "rjmp 5f\n"
        "2:\n\t"
        "push r25\n\t"
        "push r30\n\t"
        "push r31\n\t"
        "lds r25, %[adcl]\n\t"
        "sbrc r24, 0\n\t"
        "rjmp 3f\n\t"
        // Z: the slot is X, Y, Z low, then the high parts (X 1-0, Y 3-2, Z 5-4).
        "in r30, %[head]\n\t"
        "ldi r31, 0\n\t"
        "subi r30, lo8(-(%[ring]))\n\t"
        "sbci r31, hi8(-(%[ring]))\n\t"
        "std Z+2, r25\n\t"
        "lds r24, %[st]\n\t"
        "st Z, r24\n\t"
        "lds r24, %[st]+1\n\t"
        "std Z+1, r24\n\t"
        "lds r25, %[adch]\n\t"
        "swap r25\n\t"
        "lds r24, %[st]+3\n\t"
        "lsl r24\n\t"
        "lsl r24\n\t"
        "or r25, r24\n\t"
        "lds r24, %[st]+2\n\t"
        "or r25, r24\n\t"
        "std Z+3, r25\n\t"
        "in r24, %[head]\n\t"
        "subi r24, 0xFC\n\t"  // += 4
        "out %[head], r24\n\t"
        "sbi %[g0], %[work]\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "pop r25\n\t"
        "ldi r24, %[mux3]\n\t"
        "sbic %[g0], %[temp]\n\t"
        "rjmp 5f\n\t"
        "cbi %[g0], %[busy]\n\t"
        "rjmp 9f\n"
        "3:\n\t"  // the temperature: temp_sum += ADC, temp_n += 1
        "lds r24, %[adch]\n\t"
        "lds r30, %[ts]\n\t"
        "add r30, r25\n\t"
        "sts %[ts], r30\n\t"
        "lds r30, %[ts]+1\n\t"
        "adc r30, r24\n\t"
        "sts %[ts]+1, r30\n\t"
        "ldi r24, 0\n\t"
        "lds r30, %[ts]+2\n\t"
        "adc r30, r24\n\t"
        "sts %[ts]+2, r30\n\t"
        "lds r30, %[ts]+3\n\t"
        "adc r30, r24\n\t"
        "sts %[ts]+3, r30\n\t"
        "lds r30, %[tn]\n\t"
        "lds r31, %[tn]+1\n\t"
        "adiw r30, 1\n\t"
        "sts %[tn], r30\n\t"
        "sts %[tn]+1, r31\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "pop r25\n\t"
        "cbi %[g0], %[temp]\n\t"
        "cbi %[g0], %[busy]\n\t"
        "rjmp 9f\n"
        "5:\n\t"  // the next channel of this tick
        "sts %[admux], r24\n\t"
        "ldi r24, %[start]\n\t"
        "sts %[adcsra], r24\n"
        "9:\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n\t"
        :
        : [head] "I"(_SFR_IO_ADDR(SAMPLER_HEAD)), [g0] "I"(_SFR_IO_ADDR(GPIOR0)),
          [busy] "I"(SAMPLER_BUSY), [temp] "I"(SAMPLER_TEMP), [work] "I"(SAMPLER_WORK),
          [ring] "i"(sampler_ring), [st] "i"(stage), [ts] "i"(&temp_sum), [tn] "i"(&temp_n),
          [adcl] "i"(_SFR_MEM_ADDR(ADCL)), [adch] "i"(_SFR_MEM_ADDR(ADCH)),
          [admux] "i"(_SFR_MEM_ADDR(ADMUX)), [adcsra] "i"(_SFR_MEM_ADDR(ADCSRA)),
          [mux1] "M"(_BV(REFS0) | 1), [mux2] "M"(_BV(REFS0) | 2), [mux3] "M"(_BV(REFS0) | 3),
          [start] "M"(ADC_START));
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
