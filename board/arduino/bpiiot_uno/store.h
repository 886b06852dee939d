// EEPROM: boot counter, configuration and MAC key (capability PERSIST).
#ifndef BPIIOT_STORE_H
#define BPIIOT_STORE_H
#include <stdint.h>

#include "codec.h"

// Load config and key; a blank or foreign EEPROM is set to the defaults first
// (returns false then).
bool store_load(Config *cfg, uint8_t *key, uint8_t *key_len);
// Increment the boot counter and return its new value.
uint32_t store_boot(void);
// Saving queues the bytes and returns: an EEPROM byte takes 3.4 ms to write, and a
// key (33 bytes, 112 ms) written in one go would stall sampling for longer than its
// ring holds. store_poll() writes them one at a time from the main loop.
void store_save_config(const Config *cfg);
void store_save_key(const uint8_t *key, uint8_t len);  // len 0 clears it
// Start the next queued byte if the EEPROM is idle; never waits.
void store_poll(void);
// True while writes are queued (inline: the main loop asks at every turn).
extern uint8_t store_config_left, store_key_left;
static inline bool store_pending(void) { return store_config_left | store_key_left; }
// Write everything queued, waiting (before a reboot).
void store_flush(void);

#endif
