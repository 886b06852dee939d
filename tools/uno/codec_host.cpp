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

extern "C" {

// Verify a board-bound chunk. hdr: type, session, seq, authenticated, payload length
// (the parsed command written back as CBOR into out). Returns 0 or a reason R_*.
int uno_verify(const uint8_t *key, int key_len, int has_prior, int session, uint32_t seq,
               uint8_t *chunk, int n, uint8_t *out, int cap, uint32_t *hdr) {
    Verifier v;
    HmacKey k;
    memset(&v, 0, sizeof v);
    v.has_key = key_len > 0;
    v.key = &k;
    if (v.has_key) hmac_key_init(&k, key, (uint8_t)key_len);
    v.any_session = !has_prior;
    v.session = (uint16_t)session;
    v.seq = has_prior ? seq : 0;
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
    if (c.type == T_SET_CONFIG) {
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

extern "C" {
// Run the Uno's feature pipeline over three axes of n samples (mg) in tumbling
// windows of `window` samples; out gets 9 values (rms x3, peak x3, vel x3) and a flag
// word (bit 0: acceleration saturated, bit 1: velocity saturated) per window.
// Returns the number of windows.
int uno_features(const int16_t *x, const int16_t *y, const int16_t *z, int n, int window,
                 uint32_t *out) {
    AxisState st[3];
    for (int a = 0; a < 3; a++) axis_reset(&st[a]);
    const int16_t *axes[3] = {x, y, z};
    int windows = 0;
    for (int i = 0; i + window <= n; i += window) {
        uint32_t *o = out + 10 * windows;
        o[9] = 0;
        for (int a = 0; a < 3; a++) {
            for (int j = i; j < i + window; j++) axis_step(&st[a], axes[a][j]);
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
