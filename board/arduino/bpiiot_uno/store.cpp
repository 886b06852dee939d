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

static const Config DEFAULTS = {DSP_DEFAULT_RATE_HZ, 1000, 1000, CH_X | CH_Y | CH_Z | CH_TEMP, 2};

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

// Queued writes: the key area (length byte + key, contiguous) and the config, each
// with its own copy and a count of bytes still to write.
static uint8_t key_copy[1 + LIM_KEY_MAX];
uint8_t store_key_left;  // bytes of key_copy not yet written, written from the end
static Config config_copy;
uint8_t store_config_left;

void store_save_config(const Config *cfg) {
    config_copy = *cfg;
    store_config_left = sizeof config_copy;
}

void store_save_key(const uint8_t *key, uint8_t len) {
    // Written from the end, so the length byte (index 0) goes last. A reset halfway
    // leaves a key the host does not hold: its frames fail `mac`, nothing crashes.
    key_copy[0] = len;
    memcpy(key_copy + 1, key, len);
    store_key_left = (uint8_t)(1 + len);
}

static bool write_one(void) {
    if (store_config_left) {
        store_config_left--;
        eeprom_update_byte(A_CONFIG + store_config_left, ((uint8_t *)&config_copy)[store_config_left]);
        return true;
    }
    if (store_key_left) {
        store_key_left--;
        eeprom_update_byte(A_KEYLEN + store_key_left, key_copy[store_key_left]);
        return true;
    }
    return false;
}

void store_poll(void) {
    if (eeprom_is_ready()) write_one();
}

void store_flush(void) {
    while (write_one()) {
    }
    eeprom_busy_wait();
}
