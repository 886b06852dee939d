// SHA-256 (FIPS 180-4) and the protocol's 8-byte HMAC-SHA256 tag (SPEC.md 3.2).
#ifndef BPIIOT_SHA256_H
#define BPIIOT_SHA256_H
#include <stddef.h>
#include <stdint.h>

struct Sha256 {
    uint32_t h[8];
    uint8_t block[64];
    uint32_t total;  // bytes hashed; frames are far below 2^29 bytes
    uint8_t used;
};

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const uint8_t *data, size_t len);
void sha256_final(Sha256 *s, uint8_t out[32]);

// An HMAC key as the two hash states after its ipad and opad blocks: 64 bytes of
// RAM instead of the key, and two compressions fewer per tag.
struct HmacKey {
    uint32_t inner[8];
    uint32_t outer[8];
};

void hmac_key_init(HmacKey *k, const uint8_t *key, uint8_t len);
// The first 8 bytes of HMAC-SHA256(key, data).
void hmac_tag(const HmacKey *k, const uint8_t *data, size_t len, uint8_t tag[8]);

#endif
