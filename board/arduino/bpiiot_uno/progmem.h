// Constant tables live in flash on the AVR (PROGMEM) and in ordinary memory in the
// host build of the codec (g++), which the conformance vectors run against.
#ifndef BPIIOT_PROGMEM_H
#define BPIIOT_PROGMEM_H
#include <stdint.h>
#ifdef __AVR__
#include <avr/pgmspace.h>
#define BPIIOT_PROGMEM PROGMEM
static inline uint32_t bpiiot_read_u32(const uint32_t *p) { return pgm_read_dword(p); }
static inline uint8_t bpiiot_read_u8(const uint8_t *p) { return pgm_read_byte(p); }
#else
#define BPIIOT_PROGMEM
static inline uint32_t bpiiot_read_u32(const uint32_t *p) { return *p; }
static inline uint8_t bpiiot_read_u8(const uint8_t *p) { return *p; }
#endif
#endif
