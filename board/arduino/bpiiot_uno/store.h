// EEPROM: boot counter, configuration and MAC key (capability PERSIST).
//
// Each is a record kept in two slots: a generation byte, the data and a CRC-32.
// A save writes the slot that does not hold the newest copy, then the other one, so
// a reset or power cut at any moment leaves one readable copy holding the old value
// or the new one (a torn slot fails its CRC), and after a completed save a byte
// damaged in either slot is outvoted by the other. With no readable copy the
// defaults apply and store_load() says which record was lost.
#ifndef BPIIOT_STORE_H
#define BPIIOT_STORE_H
#include <stdint.h>

#include "codec.h"

// store_load()'s result: records found damaged (no readable copy).
#define STORE_LOST_BOOT 1
#define STORE_LOST_KEY 2
#define STORE_LOST_CONFIG 4

// Load config and key (and the boot counter, for store_boot). A blank EEPROM, or one
// written by an earlier layout of this firmware (migrated), is not damaged.
uint8_t store_load(Config *cfg, uint8_t *key, uint8_t *key_len);
// Count this boot: both copies are written, and the write has ended, before it
// returns, so no frame of this session can leave before its number is stored.
uint32_t store_boot(void);
// Saving queues the bytes and returns: an EEPROM byte takes 3.4 ms to write, and a
// key (2 x 38 bytes, 258 ms) written in one go would stall sampling for longer than
// its ring holds. store_poll() writes them one at a time from the main loop.
void store_save_config(const Config *cfg);
void store_save_key(const uint8_t *key, uint8_t len);  // len 0 clears it
// Start the next queued byte if the EEPROM is idle; never waits.
void store_poll(void);
// True once the last key saved has one whole copy on the EEPROM (its last byte's
// write has ended): a power cut from then on leaves that key.
bool store_key_durable(void);
// The key last saved (len 0: none), as store_save_key() was given it.
const uint8_t *store_key_saved(uint8_t *len);

// One record's writer (exposed for the inline store_pending below).
struct StoreRecord {
    uint16_t base;   // EEPROM address of slot 0; slot 1 follows it
    uint8_t len;     // data bytes
    uint8_t newest;  // the slot holding the newest complete copy
    uint8_t gen;     // its generation
    uint8_t target;  // the slot being written
    uint8_t copies;  // slots still to write with this image
    uint8_t left;    // bytes of the image not yet written, written from the end
    uint8_t *image;  // generation, data, CRC-32 (little-endian)
};
extern StoreRecord store_config_rec, store_key_rec;
// True while writes are queued (inline: the main loop asks at every turn).
static inline bool store_pending(void) { return store_config_rec.left | store_key_rec.left; }
// Write everything queued, waiting (before a reboot).
void store_flush(void);

#endif
