// A C ABI over the Uno firmware's codec, compiled for the host with g++ from the
// same sources (board/arduino/bpiiot_uno/), so tests run the conformance vectors
// against the C++ codec through ctypes without the simulator.
#include <string.h>

#include "cobs.h"
#include "codec.h"

struct Out {
    uint8_t *buf;
    int cap;
    int len;
};

static void sink(void *ctx, uint8_t b) {
    Out *o = (Out *)ctx;
    if (o->len < o->cap) o->buf[o->len] = b;
    o->len++;
}

// --- the host's receiver: the board's messages (SPEC.md 5.1-5.5, bpiiot.cddl) ------
// Parsed into the firmware's own structures and, when w is given, written back with
// the firmware's writers: a vector's payload must come back byte for byte.

// A text string of at most max bytes into out (NUL-terminated); *len its length,
// which a NUL inside the text makes longer than strlen(out).
static bool text(CborReader *r, uint16_t max, char *out, uint32_t *len = 0) {
    uint8_t major;
    uint32_t n;
    if (!cbor_read_head(r, &major, &n) || major != 3 || n > max) return false;
    memcpy(out, r->buf + r->pos, n);
    out[n] = 0;
    r->pos += (uint16_t)n;
    if (len) *len = n;
    return true;
}

static bool array_of(CborReader *r, uint32_t n) {
    uint8_t major;
    uint32_t got;
    return cbor_read_head(r, &major, &got) && major == 4 && got == n;
}

static bool board_id_ok(const char *s, uint32_t n) {
    if (n < 1 || n > LIM_BOARD_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static bool parse_board(uint8_t type, const uint8_t *p, uint16_t n, CborWriter *w) {
    CborReader r = {p, n, 0};
    uint32_t v[16];
    char t[256];
    switch (type) {
        case T_HELLO: {
            uint32_t id_len;
            if (!array_of(&r, 6) || !text(&r, LIM_BOARD_ID_MAX, t, &id_len) ||
                !board_id_ok(t, id_len))
                return false;
            if (!array_of(&r, 3)) return false;
            for (int i = 0; i < 3; i++)
                if (!cbor_read_uint(&r, 0, 0xFFFF, &v[i])) return false;
            if (!array_of(&r, 2) || !cbor_read_uint(&r, 0, 255, &v[3]) ||
                !cbor_read_uint(&r, 0, 255, &v[4]))
                return false;
            for (int i = 5; i < 8; i++)
                if (!cbor_read_uint(&r, 0, 0xFFFFFFFFUL, &v[i])) return false;
            if (w) {
                // The writer puts this firmware's protocol version: only 1.0 round-trips.
                if (v[3] != PROTO_MAJOR || v[4] != PROTO_MINOR) return false;
                const uint16_t fw[3] = {(uint16_t)v[0], (uint16_t)v[1], (uint16_t)v[2]};
                write_hello(w, t, fw, v[5], v[6], v[7]);
            }
            return true;
        }
        case T_REPORT: {
            uint8_t major;
            uint32_t items;
            if (!cbor_read_head(&r, &major, &items) || major != 4) return false;
            if (items != REPORT_ITEMS && items != REPORT_ITEMS + 1) return false;
            Report rep;
            for (int i = 0; i < 3; i++)
                if (!cbor_read_uint(&r, 0, 0xFFFFFFFFUL, &v[i])) return false;
            for (int i = 3; i < 12; i++)
                if (!cbor_read_uint(&r, 0, 0xFFFF, &v[i])) return false;
            if (r.pos >= r.len) return false;
            uint8_t ib = p[r.pos];
            rep.has_temperature = ib != 0xF6;
            rep.temperature_cdeg_c = 0;
            if (!rep.has_temperature) {
                r.pos++;
            } else {
                uint32_t a;
                if (!cbor_read_head(&r, &major, &a)) return false;
                if (major == 0 && a <= (uint32_t)LIM_TEMPERATURE_MAX_CDEG_C)
                    rep.temperature_cdeg_c = (int32_t)a;
                else if (major == 1 && a <= (uint32_t)(-1 - LIM_TEMPERATURE_MIN_CDEG_C))
                    rep.temperature_cdeg_c = -1 - (int32_t)a;
                else
                    return false;
            }
            rep.flags = 0;
            if (items == REPORT_ITEMS + 1) {
                if (!cbor_read_uint(&r, 1, 0xFFFF, &v[12])) return false;  // 0 is not sent
                rep.flags = (uint16_t)v[12];
            }
            if (w) {
                rep.window_seq = v[0];
                rep.board_time_ms = v[1];
                rep.samples = v[2];
                for (int i = 0; i < 3; i++) {
                    rep.acc_rms_mg[i] = (uint16_t)v[3 + i];
                    rep.acc_peak_mg[i] = (uint16_t)v[6 + i];
                    rep.vel_rms_um_s[i] = (uint16_t)v[9 + i];
                }
                write_report(w, &rep);
            }
            return true;
        }
        case T_STATUS:
            if (!array_of(&r, 7)) return false;
            for (int i = 0; i < 7; i++)
                if (!cbor_read_uint(&r, 0, i == 4 ? LIM_CPU_LOAD_MAX_PERMILLE : 0xFFFFFFFFUL,
                                    &v[i]))
                    return false;
            if (w) write_status(w, v);
            return true;
        case T_ACK:
            if (!array_of(&r, 1) || !cbor_read_uint(&r, 0, 0xFFFFFFFFUL, &v[0])) return false;
            if (w) write_ack(w, v[0]);
            return true;
        case T_NACK:
            if (!array_of(&r, 3) || !cbor_read_uint(&r, 0, 0xFFFFFFFFUL, &v[0]) ||
                !cbor_read_uint(&r, 0, 255, &v[1]) || !text(&r, LIM_NACK_DETAIL_MAX, t))
                return false;
            if (w) write_nack(w, v[0], (uint8_t)v[1], t);
            return true;
        case T_LOG:
            if (!array_of(&r, 2) || !cbor_read_uint(&r, 0, LIM_LOG_LEVEL_MAX, &v[0]) ||
                !text(&r, LIM_LOG_TEXT_MAX, t))
                return false;
            if (w) write_log(w, (uint8_t)v[0], t);
            return true;
        case T_CONFIG: {
            uint8_t major;
            uint32_t count;
            if (!cbor_read_head(&r, &major, &count) || major != 5 || count != 5) return false;
            static const uint32_t hi[5] = {CFG_SAMPLE_RATE_HZ_MAX, CFG_WINDOW_MS_MAX,
                                           CFG_HOP_MS_MAX, CFG_CHANNELS_MAX,
                                           CFG_MACHINE_CLASS_MAX};
            static const uint32_t lo[5] = {CFG_SAMPLE_RATE_HZ_MIN, CFG_WINDOW_MS_MIN,
                                           CFG_HOP_MS_MIN, CFG_CHANNELS_MIN,
                                           CFG_MACHINE_CLASS_MIN};
            for (uint32_t k = 1; k <= 5; k++) {
                uint32_t key;
                if (!cbor_read_uint(&r, k, k, &key) ||
                    !cbor_read_uint(&r, lo[k - 1], hi[k - 1], &v[k - 1]))
                    return false;
            }
            Config c = {(uint16_t)v[0], (uint16_t)v[1], (uint16_t)v[2], (uint8_t)v[3],
                        (uint8_t)v[4]};
            if (w) write_config(w, &c);
            return true;
        }
        default:
            return false;
    }
}

extern "C" {

// The host receiver's schema check of the board's messages (uno_verify below and
// tools/uno/fuzz_runner.cpp).
bool uno_board_schema(uint8_t type, const uint8_t *p, uint16_t n) {
    return parse_board(type, p, n, 0);
}

// Verify a chunk as the board's receiver (host_side 0: commands) or as the host's
// (host_side 1: the board's messages). hdr: type, session, seq, authenticated, payload
// length (the parsed message written back as CBOR into out), seq known, replay seq.
// Returns 0 or a reason R_*.
int uno_verify(const uint8_t *key, int key_len, int has_prior, int session, uint32_t seq,
               uint8_t *chunk, int n, uint8_t *out, int cap, uint32_t *hdr, int host_side) {
    Verifier v;
    HmacKey k;
    memset(&v, 0, sizeof v);
    v.has_key = key_len > 0;
    v.key = &k;
    if (v.has_key) hmac_key_init(&k, key, (uint8_t)key_len);
    v.any_session = !has_prior;
    v.session = (uint16_t)session;
    v.seq = has_prior ? seq : 0;
    v.host_schema = host_side ? uno_board_schema : 0;
    Command c;
    memset(&c, 0, sizeof c);
    bool known;
    uint8_t r = verify_chunk(&v, chunk, (uint16_t)n, &c, &known);
    hdr[0] = c.type;
    hdr[1] = c.session;
    hdr[2] = c.seq;
    hdr[3] = c.authenticated;
    hdr[4] = 0;
    hdr[5] = known;
    hdr[6] = v.seq;
    if (r) return r;
    CborWriter w;
    cbor_writer_init(&w, out, (uint16_t)cap);
    if (host_side) {
        if (!parse_board(c.type, c.payload, c.payload_len, &w)) return R_SCHEMA;
    } else if (c.type == T_SET_CONFIG) {
        uint8_t count = 0;
        for (uint8_t i = 0; i < 5; i++) count += (c.present >> i) & 1;
        cbor_map(&w, count);
        const uint16_t vals[5] = {c.cfg.sample_rate_hz, c.cfg.window_ms, c.cfg.hop_ms,
                                  c.cfg.channels, c.cfg.machine_class};
        for (uint8_t i = 0; i < 5; i++)
            if (c.present & (1 << i)) {
                cbor_uint(&w, i + 1);
                cbor_uint(&w, vals[i]);
            }
    } else if (c.type == T_SET_OUTPUT) {
        cbor_array(&w, 2);
        cbor_uint(&w, c.pin);
        cbor_uint(&w, c.value);
    } else if (c.type == T_SET_KEY) {
        cbor_array(&w, 1);
        cbor_bytes(&w, c.key, c.key_len);
    } else {
        cbor_array(&w, 0);
    }
    hdr[4] = w.len;
    return 0;
}

// Build a board frame from fields (see tests/board/arduino/uno_codec.py for the
// layout per type); returns the wire length without the delimiter, or -1.
int uno_encode(int type, const long long *f, const char *text, const uint8_t *key,
               int key_len, int session, uint32_t seq, uint8_t *out, int cap) {
    Encoder e;
    HmacKey k;
    memset(&e, 0, sizeof e);
    e.has_key = key_len > 0;
    e.key = &k;
    if (e.has_key) hmac_key_init(&k, key, (uint8_t)key_len);
    e.session = (uint16_t)session;
    e.seq = seq - 1;
    uint8_t body[MAX_BODY];
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    switch (type) {
        case T_HELLO: {
            const uint16_t fw[3] = {(uint16_t)f[0], (uint16_t)f[1], (uint16_t)f[2]};
            write_hello(&w, text, fw, (uint32_t)f[3], (uint32_t)f[4], (uint32_t)f[5]);
            break;
        }
        case T_REPORT: {
            Report r;
            r.window_seq = (uint32_t)f[0];
            r.board_time_ms = (uint32_t)f[1];
            r.samples = (uint32_t)f[2];
            for (int i = 0; i < 3; i++) {
                r.acc_rms_mg[i] = (uint16_t)f[3 + i];
                r.acc_peak_mg[i] = (uint16_t)f[6 + i];
                r.vel_rms_um_s[i] = (uint16_t)f[9 + i];
            }
            r.has_temperature = f[12] != 0;
            r.temperature_cdeg_c = (int32_t)f[13];
            r.flags = (uint16_t)f[14];
            write_report(&w, &r);
            break;
        }
        case T_STATUS: {
            uint32_t v[7];
            for (int i = 0; i < 7; i++) v[i] = (uint32_t)f[i];
            write_status(&w, v);
            break;
        }
        case T_ACK:
            write_ack(&w, (uint32_t)f[0]);
            break;
        case T_NACK:
            write_nack(&w, (uint32_t)f[0], (uint8_t)f[1], text);
            break;
        case T_LOG:
            write_log(&w, (uint8_t)f[0], text);
            break;
        case T_CONFIG: {
            Config c = {(uint16_t)f[0], (uint16_t)f[1], (uint16_t)f[2], (uint8_t)f[3],
                        (uint8_t)f[4]};
            write_config(&w, &c);
            break;
        }
        default:
            return -1;
    }
    uint16_t n = finish_body(&e, (uint8_t)type, &w, body, sizeof body);
    if (!n) return -1;
    Out o = {out, cap, 0};
    cobs_encode(body, n, sink, &o);
    return o.len <= cap ? o.len : -1;
}

// COBS-encode raw bytes (framing vectors); returns the length or -1.
int uno_cobs_encode(const uint8_t *src, int n, uint8_t *out, int cap) {
    Out o = {out, cap, 0};
    cobs_encode(src, (size_t)n, sink, &o);
    return o.len <= cap ? o.len : -1;
}
}

#include "dsp.h"
#include "sha256.h"

extern "C" {
// SHA-256 of n bytes, given to sha256_update in pieces of at most `step` bytes.
void uno_sha256(const uint8_t *data, int n, int step, uint8_t *out) {
    Sha256 s;
    sha256_init(&s);
    if (step < 1) step = 1;
    for (int i = 0; i < n; i += step)
        sha256_update(&s, data + i, (size_t)(n - i < step ? n - i : step));
    sha256_final(&s, out);
}

// The protocol's tag (the first 8 bytes of HMAC-SHA256) with a key of at most 64 bytes.
void uno_hmac_tag(const uint8_t *key, int key_len, const uint8_t *data, int n, uint8_t *tag) {
    HmacKey k;
    hmac_key_init(&k, key, (uint8_t)key_len);
    hmac_tag(&k, data, (size_t)n, tag);
}
}

extern "C" {
// Run the Uno's feature pipeline at `rate` S/s over three axes of n samples (mg) in
// tumbling windows of `window` samples; out gets 9 values (rms x3, peak x3, vel x3) and
// a flag word (bit 0: acceleration saturated, bit 1: velocity saturated) per window.
// Returns the number of windows, or -1 for a rate without coefficients.
int uno_features(const int16_t *x, const int16_t *y, const int16_t *z, int n, int rate,
                 int window, uint32_t *out) {
    if (!dsp_select((uint16_t)rate)) return -1;
    AxisState st[3];
    for (int a = 0; a < 3; a++) axis_reset(&st[a]);
    int windows = 0;
    for (int i = 0; i + window <= n; i += window) {
        uint32_t *o = out + 10 * windows;
        o[9] = 0;
        for (int j = i; j < i + window; j++) {
            int16_t xyz[3] = {x[j], y[j], z[j]};
            axes_step(st, xyz, 3);
        }
        for (int a = 0; a < 3; a++) {
            AxisResult r;
            axis_finish(&st[a], (uint16_t)window, &r);
            o[a] = r.rms_mg;
            o[3 + a] = r.peak_mg;
            o[6 + a] = r.vel_um_s;
            o[9] |= (r.acc_saturated ? 1u : 0u) | (r.vel_saturated ? 2u : 0u);
        }
        windows++;
    }
    return windows;
}
}
