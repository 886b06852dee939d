#include "crc32.h"

#include "progmem.h"

// CRC of each nibble value, reflected polynomial 0xEDB88320.
static const uint32_t NIBBLE[16] BPIIOT_PROGMEM = {
    0x00000000UL, 0x1DB71064UL, 0x3B6E20C8UL, 0x26D930ACUL, 0x76DC4190UL, 0x6B6B51F4UL,
    0x4DB26158UL, 0x5005713CUL, 0xEDB88320UL, 0xF00F9344UL, 0xD6D6A3E8UL, 0xCB61B38CUL,
    0x9B64C2B0UL, 0x86D3D2D4UL, 0xA00AE278UL, 0xBDBDF21CUL,
};

uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    while (len--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ bpiiot_read_u32(&NIBBLE[crc & 15]);
        crc = (crc >> 4) ^ bpiiot_read_u32(&NIBBLE[crc & 15]);
    }
    return ~crc;
}
