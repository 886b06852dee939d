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

// One well-formed item at *pos (cbor_well_formed said so): true if it lies inside the
// protocol's data model (SPEC.md 4: definite lengths, valid UTF-8, nesting up to 4;
// tags and simple values are left to the message schemas). The depth limit keeps the
// recursion, and the stack, bounded.
static bool item(const uint8_t *b, uint16_t len, uint16_t *pos, uint8_t depth) {
    if (depth > 4) return false;
    uint8_t major, ai;
    uint32_t arg;
    bool big;
    if (!head(b, len, pos, &major, &ai, &arg, &big)) return false;
    if (ai == 31) return false;  // indefinite lengths
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
            return true;
    }
}

bool cbor_allowed(const uint8_t *buf, uint16_t len) {
    uint16_t pos = 0;
    return item(buf, len, &pos, 0) && pos == len;
}

// Open indefinite-length arrays and maps the well-formedness check can follow. Each
// takes at least two bytes (head and break), so a board whose host payloads are at
// most 64 bytes never needs more than 32; the host build judges 512-byte payloads.
#ifdef __AVR__
#define CBOR_INDEF_MAX 32
#else
#define CBOR_INDEF_MAX 256
#endif

// RFC 8949 section 5.3.1 / appendix F, without recursion: `need` counts the items still
// due in the current run of definite containers (an array of n adds n, a map 2n, a tag
// 1), and only indefinite containers, which end at a break, take a slot on a stack.
bool cbor_well_formed(const uint8_t *b, uint16_t len, uint16_t *end) {
    uint16_t pos = 0;
    uint32_t need = 1;
    uint16_t depth = 0;
    uint16_t saved[CBOR_INDEF_MAX];  // the outer run's `need` when each container opened
    uint8_t kind[CBOR_INDEF_MAX];    // bit 0: a map; bit 1: a key is waiting for its value
    for (;;) {
        if (need == 0) {
            if (depth == 0) break;
            if (pos >= len) return false;
            uint8_t k = kind[depth - 1];
            if (b[pos] == 0xFF) {
                if (k & 2) return false;  // a map's key without its value
                pos++;
                depth--;
                need = saved[depth];
                continue;
            }
            if (k & 1) kind[depth - 1] = k ^ 2;
            need = 1;
        }
        uint8_t major, ai;
        uint32_t arg;
        bool big;
        if (!head(b, len, &pos, &major, &ai, &arg, &big)) return false;  // truncated, 28-30
        need--;
        uint32_t left = (uint32_t)(len - pos);
        if (ai == 31) {
            if (major == 2 || major == 3) {
                // Chunks: definite strings of the same major type, up to a break.
                for (;;) {
                    if (pos >= len) return false;
                    if (b[pos] == 0xFF) {
                        pos++;
                        break;
                    }
                    uint8_t cm, cai;
                    if (!head(b, len, &pos, &cm, &cai, &arg, &big)) return false;
                    if (cm != major || cai == 31) return false;
                    if (big || arg > (uint32_t)(len - pos)) return false;
                    pos += (uint16_t)arg;
                }
                continue;
            }
            if (major == 4 || major == 5) {
                if (depth == CBOR_INDEF_MAX) return false;
                saved[depth] = (uint16_t)need;
                kind[depth] = major == 5 ? 1 : 0;
                depth++;
                need = 0;
                continue;
            }
            return false;  // indefinite integer or tag, or a break where an item is due
        }
        switch (major) {
            case 2:
            case 3:
                if (big || arg > left) return false;
                pos += (uint16_t)arg;
                break;
            case 4:
                if (big || arg > left) return false;  // each item is at least one byte
                need += arg;
                break;
            case 5:
                if (big || arg > left / 2) return false;
                need += 2 * arg;
                break;
            case 6:
                need += 1;
                break;
            case 7:
                if (ai == 24 && arg < 32) return false;  // two-byte simple value below 32
                break;
            default:
                break;
        }
    }
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
