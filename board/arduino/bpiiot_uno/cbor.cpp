#include "cbor.h"

void cbor_writer_init(CborWriter *w, uint8_t *buf, uint16_t cap) {
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
}

static void put(CborWriter *w, uint8_t b) {
    if (w->len < w->cap)
        w->buf[w->len++] = b;
    else
        w->overflow = true;
}

void cbor_head(CborWriter *w, uint8_t major, uint32_t n) {
    uint8_t m = (uint8_t)(major << 5);
    if (n < 24) {
        put(w, m | (uint8_t)n);
    } else if (n <= 0xFF) {
        put(w, m | 24);
        put(w, (uint8_t)n);
    } else if (n <= 0xFFFF) {
        put(w, m | 25);
        put(w, (uint8_t)(n >> 8));
        put(w, (uint8_t)n);
    } else {
        put(w, m | 26);
        for (int8_t s = 24; s >= 0; s -= 8) put(w, (uint8_t)(n >> s));
    }
}

void cbor_uint(CborWriter *w, uint32_t v) { cbor_head(w, 0, v); }

void cbor_int(CborWriter *w, int32_t v) {
    if (v >= 0)
        cbor_head(w, 0, (uint32_t)v);
    else
        cbor_head(w, 1, (uint32_t)(-1 - v));
}

void cbor_array(CborWriter *w, uint8_t n) { cbor_head(w, 4, n); }
void cbor_map(CborWriter *w, uint8_t n) { cbor_head(w, 5, n); }
void cbor_null(CborWriter *w) { put(w, 0xF6); }

void cbor_text(CborWriter *w, const char *s, uint16_t len) {
    cbor_head(w, 3, len);
    while (len--) put(w, (uint8_t)*s++);
}

void cbor_bytes(CborWriter *w, const uint8_t *s, uint16_t len) {
    cbor_head(w, 2, len);
    while (len--) put(w, *s++);
}

// --- reading -----------------------------------------------------------------------

// Head at *pos: major type, additional information and argument (64-bit arguments
// above 2^32 - 1 set *big). False when truncated or reserved (28-30).
static bool head(const uint8_t *b, uint16_t len, uint16_t *pos, uint8_t *major, uint8_t *ai,
                 uint32_t *arg, bool *big) {
    if (*pos >= len) return false;
    uint8_t ib = b[(*pos)++];
    *major = ib >> 5;
    *ai = ib & 31;
    *big = false;
    if (*ai < 24) {
        *arg = *ai;
        return true;
    }
    if (*ai == 31) {
        *arg = 0;
        return true;
    }
    if (*ai > 27) return false;
    uint8_t size = (uint8_t)(1 << (*ai - 24));
    if ((uint16_t)(len - *pos) < size) return false;
    uint32_t v = 0;
    for (uint8_t i = 0; i < size; i++) {
        if (size == 8 && i < 4 && b[*pos] != 0) *big = true;
        v = (v << 8) | b[(*pos)++];
    }
    *arg = v;
    return true;
}

static bool utf8_ok(const uint8_t *b, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        uint8_t k, lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c == 0xE0) {
            k = 2;
            lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            k = 2;
        } else if (c == 0xED) {
            k = 2;
            hi = 0x9F;
        } else if (c == 0xF0) {
            k = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            k = 3;
        } else if (c == 0xF4) {
            k = 3;
            hi = 0x8F;
        } else {
            return false;
        }
        if (i + k >= n) return false;
        if (b[i + 1] < lo || b[i + 1] > hi) return false;
        for (uint8_t j = 2; j <= k; j++)
            if (b[i + j] < 0x80 || b[i + j] > 0xBF) return false;
        i += k + 1;
    }
    return true;
}

// One item at *pos; false if not well-formed. Items nested deeper than the protocol
// ever needs are refused, so the recursion (and the stack) stays bounded.
static bool item(const uint8_t *b, uint16_t len, uint16_t *pos, uint8_t depth) {
    if (depth > 4) return false;
    uint8_t major, ai;
    uint32_t arg;
    bool big;
    if (!head(b, len, pos, &major, &ai, &arg, &big)) return false;
    if (ai == 31) return false;  // indefinite lengths and stray breaks
    switch (major) {
        case 0:
        case 1:
            return true;
        case 2:
        case 3:
            if (big || arg > (uint32_t)(len - *pos)) return false;
            if (major == 3 && !utf8_ok(b + *pos, arg)) return false;
            *pos += (uint16_t)arg;
            return true;
        case 4:
        case 5: {
            if (big || arg > len) return false;  // each item is at least one byte
            uint32_t n = major == 5 ? 2 * arg : arg;
            for (uint32_t i = 0; i < n; i++)
                if (!item(b, len, pos, depth + 1)) return false;
            return true;
        }
        case 6:
            return item(b, len, pos, depth + 1);
        default:  // simple values and floats
            return ai != 24 || arg >= 32;
    }
}

bool cbor_well_formed(const uint8_t *buf, uint16_t len, uint16_t *end) {
    uint16_t pos = 0;
    if (!item(buf, len, &pos, 0)) return false;
    *end = pos;
    return true;
}

bool cbor_read_head(CborReader *r, uint8_t *major, uint32_t *arg) {
    uint8_t ai;
    bool big;
    if (!head(r->buf, r->len, &r->pos, major, &ai, arg, &big)) return false;
    return ai != 31 && !big && *major != 7 && *major != 6;
}

bool cbor_read_uint(CborReader *r, uint32_t lo, uint32_t hi, uint32_t *out) {
    uint8_t major;
    if (!cbor_read_head(r, &major, out)) return false;
    return major == 0 && *out >= lo && *out <= hi;
}
