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
// acc += a * b, a signed, b an unsigned byte: two products.
__attribute__((always_inline)) static inline void mac_s8(int32_t &acc, int16_t a, uint8_t b) {
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mul %A[a], %[b]\n\t"
        "add %A[acc], r0\n\t"
        "adc %B[acc], r1\n\t"
        "adc %C[acc], %[z]\n\t"
        "adc %D[acc], %[z]\n\t"
        "mulsu %B[a], %[b]\n\t"
        "sbc %D[acc], %[z]\n\t"
        "add %B[acc], r0\n\t"
        "adc %C[acc], r1\n\t"
        "adc %D[acc], %[z]\n\t"
        "clr __zero_reg__"
        : [acc] "+r"(acc), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
}
// floor(a * b / 2^8), a signed and within 24 bits, b an unsigned byte: three products.
__attribute__((always_inline)) static inline int32_t mul_s24u8_sr8(int32_t a, uint8_t b) {
    int32_t r;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mul %A[a], %[b]\n\t"
        "mov %A[r], r1\n\t"
        "mulsu %C[a], %[b]\n\t"
        "mov %B[r], r0\n\t"
        "mov %C[r], r1\n\t"
        "mul %B[a], %[b]\n\t"
        "add %A[r], r0\n\t"
        "adc %B[r], r1\n\t"
        "adc %C[r], %[z]\n\t"
        "mov %D[r], %C[r]\n\t"
        "lsl %D[r]\n\t"
        "sbc %D[r], %D[r]\n\t"
        "clr __zero_reg__"
        : [r] "=&r"(r), [z] "=&r"(z)
        : [a] "a"(a), [b] "a"(b));
    return r;
}
// p = a * b + res in 40 bits (a signed, b < 2^9 a constant, res < 2^16): res gets
// p's low 16 bits, the result is p >> 16 (floor). Four products, a byte row more when
// b > 255.
__attribute__((always_inline)) static inline int32_t mul_s32u9_sr16(int32_t a, uint16_t b, uint16_t &res) {
    int32_t q;
    uint16_t lo;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mul %A[a], %[b]\n\t"
        "movw %A[lo], r0\n\t"
        "mul %C[a], %[b]\n\t"
        "movw %A[q], r0\n\t"
        "mulsu %D[a], %[b]\n\t"
        "mov %C[q], r1\n\t"
        "sbc %D[q], %D[q]\n\t"
        "add %B[q], r0\n\t"
        "adc %C[q], %[z]\n\t"
        "adc %D[q], %[z]\n\t"
        "mul %B[a], %[b]\n\t"
        "add %B[lo], r0\n\t"
        "adc %A[q], r1\n\t"
        "adc %B[q], %[z]\n\t"
        "adc %C[q], %[z]\n\t"
        "adc %D[q], %[z]\n\t"
        "add %A[lo], %A[res]\n\t"
        "adc %B[lo], %B[res]\n\t"
        "adc %A[q], %[z]\n\t"
        "adc %B[q], %[z]\n\t"
        "adc %C[q], %[z]\n\t"
        "adc %D[q], %[z]\n\t"
        "clr __zero_reg__"
        : [q] "=&r"(q), [lo] "=&r"(lo), [z] "=&a"(z)
        : [a] "a"(a), [b] "a"((uint8_t)b), [res] "r"(res));
    if (b > 255) {
        // + a << 8
        uint8_t sx;
        __asm__(
            "mov %[sx], %D[a]\n\t"
            "lsl %[sx]\n\t"
            "sbc %[sx], %[sx]\n\t"
            "add %B[lo], %A[a]\n\t"
            "adc %A[q], %B[a]\n\t"
            "adc %B[q], %C[a]\n\t"
            "adc %C[q], %D[a]\n\t"
            "adc %D[q], %[sx]"
            : [q] "+r"(q), [lo] "+r"(lo), [sx] "=&r"(sx)
            : [a] "r"(a));
    }
    res = lo;
    return q;
}
// Squares into a 48-bit sum, lo + hi * 2^32: a < 2^16 unsigned, three products
// (the cross product added twice); hi only moves on a carry.
__attribute__((always_inline)) static inline void sq_acc(uint32_t &lo, uint16_t &hi, uint16_t a) {
    uint32_t p;
    uint8_t z;
    __asm__(
        "clr %[z]\n\t"
        "mul %A[a], %A[a]\n\t"
        "movw %A[p], r0\n\t"
        "mul %B[a], %B[a]\n\t"
        "movw %C[p], r0\n\t"
        "mul %A[a], %B[a]\n\t"
        "add %B[p], r0\n\t"
        "adc %C[p], r1\n\t"
        "adc %D[p], %[z]\n\t"
        "add %B[p], r0\n\t"
        "adc %C[p], r1\n\t"
        "adc %D[p], %[z]\n\t"
        "clr __zero_reg__\n\t"
        "add %A[lo], %A[p]\n\t"
        "adc %B[lo], %B[p]\n\t"
        "adc %C[lo], %C[p]\n\t"
        "adc %D[lo], %D[p]\n\t"
        "brcc 1f\n\t"
        "subi %A[hi], 0xFF\n\t"
        "sbci %B[hi], 0xFF\n"
        "1:"
        : [lo] "+r"(lo), [hi] "+d"(hi), [p] "=&r"(p), [z] "=&r"(z)
        : [a] "r"(a));
}
#else
__attribute__((always_inline)) static inline void mac_ss(int32_t &acc, int16_t a, int16_t b) { acc += (int32_t)a * b; }
__attribute__((always_inline)) static inline void mac_su(int32_t &acc, int16_t a, uint16_t b) {
    acc += (int32_t)a * (int32_t)b;
}
__attribute__((always_inline)) static inline int32_t mul_ss(int16_t a, int16_t b) { return (int32_t)a * b; }
__attribute__((always_inline)) static inline int32_t mul_su(int16_t a, uint16_t b) { return (int32_t)a * (int32_t)b; }
__attribute__((always_inline)) static inline uint32_t mul_uu(uint16_t a, uint16_t b) { return (uint32_t)a * b; }
__attribute__((always_inline)) static inline void mac_s8(int32_t &acc, int16_t a, uint8_t b) { acc += (int32_t)a * b; }
__attribute__((always_inline)) static inline int32_t mul_s24u8_sr8(int32_t a, uint8_t b) { return (a * b) >> 8; }
__attribute__((always_inline)) static inline int32_t mul_s32u9_sr16(int32_t a, uint16_t b, uint16_t &res) {
    int64_t p = (int64_t)a * b + res;
    res = (uint16_t)p;
    return (int32_t)(p >> 16);
}
__attribute__((always_inline)) static inline void sq_acc(uint32_t &lo, uint16_t &hi, uint16_t a) {
    uint32_t sq = (uint32_t)a * a;
    lo += sq;
    if (lo < sq) hi++;
}
#endif

#endif
