// Deterministic CBOR (SPEC.md 4): a writer for the board's messages and a reader for
// the host's commands. Only what the protocol allows: integers, text and byte
// strings, arrays, maps with small unsigned keys, null.
#ifndef BPIIOT_CBOR_H
#define BPIIOT_CBOR_H
#include <stddef.h>
#include <stdint.h>

struct CborWriter {
    uint8_t *buf;
    uint16_t cap;
    uint16_t len;
    bool overflow;  // a write did not fit: the message must not be sent
};

void cbor_writer_init(CborWriter *w, uint8_t *buf, uint16_t cap);
void cbor_head(CborWriter *w, uint8_t major, uint32_t n);
void cbor_uint(CborWriter *w, uint32_t v);
void cbor_int(CborWriter *w, int32_t v);
void cbor_array(CborWriter *w, uint8_t n);
void cbor_map(CborWriter *w, uint8_t n);
void cbor_text(CborWriter *w, const char *s, uint16_t len);
void cbor_bytes(CborWriter *w, const uint8_t *s, uint16_t len);
void cbor_null(CborWriter *w);

// Check that buf[0..len) starts with one well-formed CBOR item (RFC 8949 5.3.1, at any
// depth, indefinite lengths included), and store its length in *end. Returns false
// when it does not (drop reason `cbor`, SPEC.md 4 step 1).
bool cbor_well_formed(const uint8_t *buf, uint16_t len, uint16_t *end);

// True when the well-formed item buf[0..len) lies inside the protocol's data model:
// definite lengths, valid UTF-8 text, nesting up to 4 (false: `schema`, SPEC.md 4).
bool cbor_allowed(const uint8_t *buf, uint16_t len);

// A cursor over a well-formed item, for the schema checks.
struct CborReader {
    const uint8_t *buf;
    uint16_t len;
    uint16_t pos;
};

// Read one head; major type and argument. False if none or if it is not a
// definite-length head (break, indefinite) or a 64-bit argument above 2^32 - 1.
bool cbor_read_head(CborReader *r, uint8_t *major, uint32_t *arg);
// Read an unsigned integer in lo..hi (the SPEC's non-shortest forms included).
bool cbor_read_uint(CborReader *r, uint32_t lo, uint32_t hi, uint32_t *out);

#endif
