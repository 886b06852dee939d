#include "store.h"

#include <avr/eeprom.h>
#include <string.h>

#include "crc32.h"
#include "dsp.h"

// Layout 2: a magic, then three records of two slots each (store.h). Layout 1 (this
// firmware before 0.1.1: magic 0xB105 at 0, one unchecked copy of each) lies below
// address 64, so a migration interrupted by a reset starts again from it intact.
#define V1_MAGIC 0xB105
#define V1_A_MAGIC ((const uint16_t *)0)
#define V1_A_BOOT ((const uint32_t *)2)
#define V1_A_KEYLEN ((const uint8_t *)6)
#define V1_A_KEY ((const uint8_t *)7)
#define V1_A_CONFIG ((const uint8_t *)40)

#define MAGIC 0xB2A7
#define A_MAGIC ((uint16_t *)64)
#define SLOT(len) (1 + (len) + 4)
#define BOOT_LEN 4
#define KEY_LEN (1 + LIM_KEY_MAX)  // length byte, key
#define CONFIG_LEN sizeof(Config)
#define A_BOOT 66
#define A_KEY (A_BOOT + 2 * SLOT(BOOT_LEN))
#define A_CONFIG (A_KEY + 2 * SLOT(KEY_LEN))

static const Config DEFAULTS = {DSP_DEFAULT_RATE_HZ, 1000, 1000, CH_X | CH_Y | CH_Z | CH_TEMP, 2};

static uint8_t key_image[SLOT(KEY_LEN)];
static uint8_t config_image[SLOT(CONFIG_LEN)];
StoreRecord store_key_rec = {A_KEY, KEY_LEN, 1, 0, 0, 0, 0, key_image};
StoreRecord store_config_rec = {A_CONFIG, CONFIG_LEN, 1, 0, 0, 0, 0, config_image};
static uint8_t boot_image[SLOT(BOOT_LEN)];
static StoreRecord boot_rec = {A_BOOT, BOOT_LEN, 1, 0, 0, 0, 0, boot_image};
static uint32_t boot_count;
static bool magic_due;  // a first boot or a migration: the magic goes last

static uint8_t *slot_addr(const StoreRecord *r, uint8_t s) {
    return (uint8_t *)(uintptr_t)(r->base + (s ? SLOT(r->len) : 0));
}

static uint32_t image_crc(const uint8_t *img, uint8_t len) { return crc32_update(0, img, 1 + len); }

// Slot s into img; true when its CRC holds.
static bool slot_read(const StoreRecord *r, uint8_t s, uint8_t *img) {
    eeprom_read_block(img, slot_addr(r, s), SLOT(r->len));
    uint32_t crc;
    memcpy(&crc, img + 1 + r->len, 4);
    return crc == image_crc(img, r->len);
}

// The newest readable copy's data into out; false when neither slot is readable.
static bool record_load(StoreRecord *r, uint8_t *out) {
    uint8_t other[SLOT(KEY_LEN)];
    bool ok0 = slot_read(r, 0, r->image);
    bool ok1 = slot_read(r, 1, other);
    // Both readable: the later generation (serial arithmetic), which is slot 1 on a tie.
    uint8_t s = ok1 && (!ok0 || (int8_t)(other[0] - r->image[0]) >= 0);
    if (!ok0 && !ok1) return false;
    const uint8_t *img = s ? other : r->image;
    r->newest = s;
    r->gen = img[0];
    memcpy(out, img + 1, r->len);
    return true;
}

// Queue image (data already at image + 1) for both slots, the older one first.
static void record_save(StoreRecord *r) {
    r->image[0] = (uint8_t)(r->gen + 1);
    uint32_t crc = image_crc(r->image, r->len);
    memcpy(r->image + 1 + r->len, &crc, 4);
    r->target = r->newest ^ 1;
    r->copies = 2;
    r->left = SLOT(r->len);
}

// Start writing one byte (waiting for the EEPROM if it is busy); false when done.
static bool record_write_one(StoreRecord *r) {
    if (!r->left) return false;
    r->left--;
    eeprom_update_byte(slot_addr(r, r->target) + r->left, r->image[r->left]);
    if (!r->left) {
        // The byte just started completes before any later write starts (those wait
        // for the EEPROM): nothing touches the other slot until this one is whole.
        r->newest = r->target;
        r->gen = r->image[0];
        if (--r->copies) {
            r->target ^= 1;
            r->left = SLOT(r->len);
        }
    }
    return true;
}

static void record_flush(StoreRecord *r) {
    while (record_write_one(r)) {
    }
    eeprom_busy_wait();
}

uint8_t store_load(Config *cfg, uint8_t *key, uint8_t *key_len) {
    uint8_t lost = 0;
    uint8_t k[KEY_LEN];
    uint8_t b[BOOT_LEN];
    if (eeprom_read_word(A_MAGIC) == MAGIC) {
        if (!record_load(&store_config_rec, (uint8_t *)cfg)) {
            *cfg = DEFAULTS;
            lost |= STORE_LOST_CONFIG;
        }
        if (!record_load(&store_key_rec, k)) {
            k[0] = 0;
            lost |= STORE_LOST_KEY;
        }
        if (record_load(&boot_rec, b)) {
            memcpy(&boot_count, b, 4);
        } else {
            boot_count = 0;
            lost |= STORE_LOST_BOOT;
        }
    } else {
        // A first boot, or layout 1: its values (or the defaults) in both copies.
        *cfg = DEFAULTS;
        k[0] = 0;
        boot_count = 0;
        if (eeprom_read_word(V1_A_MAGIC) == V1_MAGIC) {
            eeprom_read_block(cfg, V1_A_CONFIG, sizeof *cfg);
            k[0] = eeprom_read_byte(V1_A_KEYLEN);
            if (k[0] < LIM_KEY_MIN || k[0] > LIM_KEY_MAX) k[0] = 0;
            eeprom_read_block(k + 1, V1_A_KEY, k[0]);
            boot_count = eeprom_read_dword(V1_A_BOOT);
        }
        store_save_config(cfg);
        store_save_key(k + 1, k[0]);
        store_flush();
        magic_due = true;  // after the boot counter (store_boot)
    }
    *key_len = k[0] >= LIM_KEY_MIN && k[0] <= LIM_KEY_MAX ? k[0] : 0;
    if (k[0] != *key_len) lost |= STORE_LOST_KEY;  // a readable copy of a length never saved
    memcpy(key, k + 1, *key_len);
    return lost;
}

uint32_t store_boot(void) {
    boot_count++;
    memcpy(boot_image + 1, &boot_count, 4);
    record_save(&boot_rec);
    record_flush(&boot_rec);
    if (magic_due) {
        eeprom_update_word(A_MAGIC, MAGIC);
        eeprom_busy_wait();
        magic_due = false;
    }
    return boot_count;
}

void store_save_config(const Config *cfg) {
    memcpy(config_image + 1, cfg, CONFIG_LEN);
    record_save(&store_config_rec);
}

void store_save_key(const uint8_t *key, uint8_t len) {
    key_image[1] = len;
    memcpy(key_image + 2, key, len);
    memset(key_image + 2 + len, 0, LIM_KEY_MAX - len);
    record_save(&store_key_rec);
}

bool store_key_durable(void) {
    // A byte of the second copy taken up means the first copy's last write has
    // ended: each write waits for the one before it.
    const StoreRecord *r = &store_key_rec;
    return r->copies == 0 || (r->copies == 1 && r->left < SLOT(r->len));
}

const uint8_t *store_key_saved(uint8_t *len) {
    *len = key_image[1];
    return key_image + 2;
}

void store_poll(void) {
    if (eeprom_is_ready() && !record_write_one(&store_config_rec)) record_write_one(&store_key_rec);
}

void store_flush(void) {
    record_flush(&store_config_rec);
    record_flush(&store_key_rec);
}
