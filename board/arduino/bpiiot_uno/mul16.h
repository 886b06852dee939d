// 16 x 16 -> 32-bit products on the ATmega328P's hardware multiplier (MUL, MULS,
// MULSU), inline: avr-gcc otherwise widens mixed-sign or unsigned operands to 32 bits
// and calls __mulsi3 (about 4 times the cycles). The sequences are Atmel's AVR201
// (application note "Using the AVR Hardware Multiplier"); the host build uses plain
// C, and tests/board/arduino/test_uno_sim.py checks that the ELF and the host build
// report the same features bit for bit.
#ifndef BPIIOT_MUL16_H
#define BPIIOT_MUL16_H
#include <stdint.h>

#ifdef __AVR__
// a * b, both signed.
__attribute__((always_inline)) static inline int32_t mul_ss(int16_t a, int16_t b) {
    int32_t r;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "muls %B[a], %B[b]\n\t"
        "movw %C[r], r0\n\t"
        "mul %A[a], %A[b]\n\t"
        "movw %A[r], r0\n\t"
        "mulsu %B[a], %A[b]\n\t"
        "sbc %D[r], %[z]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "mulsu %B[b], %A[a]\n\t"
        "sbc %D[r], %[z]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "clr __zero_reg__"
        : [r] "=&r"(r), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
    return r;
}
// a * b, a signed, b unsigned.
__attribute__((always_inline)) static inline int32_t mul_su(int16_t a, uint16_t b) {
    int32_t r;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mulsu %B[a], %B[b]\n\t"
        "movw %C[r], r0\n\t"
        "mul %A[a], %A[b]\n\t"
        "movw %A[r], r0\n\t"
        "mulsu %B[a], %A[b]\n\t"
        "sbc %D[r], %[z]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "mul %B[b], %A[a]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "clr __zero_reg__"
        : [r] "=&r"(r), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
    return r;
}
// a * b, both unsigned.
__attribute__((always_inline)) static inline uint32_t mul_uu(uint16_t a, uint16_t b) {
    uint32_t r;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mul %B[a], %B[b]\n\t"
        "movw %C[r], r0\n\t"
        "mul %A[a], %A[b]\n\t"
        "movw %A[r], r0\n\t"
        "mul %B[a], %A[b]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "mul %B[b], %A[a]\n\t"
        "add %B[r], r0\n\t"
        "adc %C[r], r1\n\t"
        "adc %D[r], %[z]\n\t"
        "clr __zero_reg__"
        : [r] "=&r"(r), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
    return r;
}
// acc += a * b, both signed (the products go straight into the accumulator: fewer
// registers live than a product and an addition).
__attribute__((always_inline)) static inline void mac_ss(int32_t &acc, int16_t a, int16_t b) {
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "muls %B[a], %B[b]\n\t"
        "add %C[acc], r0\n\t"
        "adc %D[acc], r1\n\t"
        "mul %A[a], %A[b]\n\t"
        "add %A[acc], r0\n\t"
        "adc %B[acc], r1\n\t"
        "adc %C[acc], %[z]\n\t"
        "adc %D[acc], %[z]\n\t"
        "mulsu %B[a], %A[b]\n\t"
        "sbc %D[acc], %[z]\n\t"
        "add %B[acc], r0\n\t"
        "adc %C[acc], r1\n\t"
        "adc %D[acc], %[z]\n\t"
        "mulsu %B[b], %A[a]\n\t"
        "sbc %D[acc], %[z]\n\t"
        "add %B[acc], r0\n\t"
        "adc %C[acc], r1\n\t"
        "adc %D[acc], %[z]\n\t"
        "clr __zero_reg__"
        : [acc] "+r"(acc), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
}
// acc += a * b, a signed, b unsigned.
__attribute__((always_inline)) static inline void mac_su(int32_t &acc, int16_t a, uint16_t b) {
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mulsu %B[a], %B[b]\n\t"
        "add %C[acc], r0\n\t"
        "adc %D[acc], r1\n\t"
        "mul %A[a], %A[b]\n\t"
        "add %A[acc], r0\n\t"
        "adc %B[acc], r1\n\t"
        "adc %C[acc], %[z]\n\t"
        "adc %D[acc], %[z]\n\t"
        "mulsu %B[a], %A[b]\n\t"
        "sbc %D[acc], %[z]\n\t"
        "add %B[acc], r0\n\t"
        "adc %C[acc], r1\n\t"
        "adc %D[acc], %[z]\n\t"
        "mul %B[b], %A[a]\n\t"
        "add %B[acc], r0\n\t"
        "adc %C[acc], r1\n\t"
        "adc %D[acc], %[z]\n\t"
        "clr __zero_reg__"
        : [acc] "+r"(acc), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
}
#else
__attribute__((always_inline)) static inline void mac_ss(int32_t &acc, int16_t a, int16_t b) { acc += (int32_t)a * b; }
__attribute__((always_inline)) static inline void mac_su(int32_t &acc, int16_t a, uint16_t b) {
    acc += (int32_t)a * (int32_t)b;
}
__attribute__((always_inline)) static inline int32_t mul_ss(int16_t a, int16_t b) { return (int32_t)a * b; }
__attribute__((always_inline)) static inline int32_t mul_su(int16_t a, uint16_t b) { return (int32_t)a * (int32_t)b; }
__attribute__((always_inline)) static inline uint32_t mul_uu(uint16_t a, uint16_t b) { return (uint32_t)a * b; }
#endif

#endif
