#include "store.h"

#include <avr/eeprom.h>
#include <string.h>

#include "dsp.h"

// Layout; the magic changes whenever the layout does.
#define MAGIC 0xB105
#define A_MAGIC ((uint16_t *)0)
#define A_BOOT ((uint32_t *)2)
#define A_KEYLEN ((uint8_t *)6)
#define A_KEY ((uint8_t *)7)
#define A_CONFIG ((uint8_t *)40)

static const Config DEFAULTS = {DSP_RATE_HZ, 1000, 1000, CH_X | CH_Y | CH_Z | CH_TEMP, 2};

bool store_load(Config *cfg, uint8_t *key, uint8_t *key_len) {
    bool valid = eeprom_read_word(A_MAGIC) == MAGIC;
    if (!valid) {
        eeprom_update_dword(A_BOOT, 0);
        eeprom_update_byte(A_KEYLEN, 0);
        eeprom_update_block(&DEFAULTS, A_CONFIG, sizeof DEFAULTS);
        eeprom_update_word(A_MAGIC, MAGIC);
    }
    eeprom_read_block(cfg, A_CONFIG, sizeof *cfg);
    *key_len = eeprom_read_byte(A_KEYLEN);
    if (*key_len < LIM_KEY_MIN || *key_len > LIM_KEY_MAX) *key_len = 0;
    if (*key_len) eeprom_read_block(key, A_KEY, *key_len);
    return valid;
}

uint32_t store_boot(void) {
    uint32_t n = eeprom_read_dword(A_BOOT) + 1;
    eeprom_update_dword(A_BOOT, n);
    return n;
}

void store_save_config(const Config *cfg) { eeprom_update_block(cfg, A_CONFIG, sizeof *cfg); }

void store_save_key(const uint8_t *key, uint8_t len) {
    if (len) eeprom_update_block(key, A_KEY, len);
    eeprom_update_byte(A_KEYLEN, len);
}
