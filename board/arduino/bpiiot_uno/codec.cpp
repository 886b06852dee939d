#include "codec.h"

#include <string.h>

#include "cobs.h"
#include "crc32.h"

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

// The payload schemas of the commands (SPEC.md 5.3, bpiiot.cddl).
static bool check_schema(const uint8_t *p, uint16_t n, Command *c) {
    CborReader r = {p, n, 0};
    uint8_t major;
    uint32_t arg, v;
    if (!cbor_read_head(&r, &major, &arg)) return false;
    switch (c->type) {
        case T_SET_CONFIG: {
            if (major != 5 || arg < 1 || arg > 5) return false;
            uint8_t last = 0;
            c->present = 0;
            for (uint8_t i = 0; i < arg; i++) {
                uint32_t k;
                if (!cbor_read_uint(&r, 1, 5, &k) || k <= last) return false;
                last = (uint8_t)k;
                uint16_t lo, hi;  // a switch, not a table: tables cost RAM on the AVR
                switch (k) {
                    case CFG_SAMPLE_RATE_HZ:
                        lo = CFG_SAMPLE_RATE_HZ_MIN, hi = CFG_SAMPLE_RATE_HZ_MAX;
                        break;
                    case CFG_WINDOW_MS: lo = CFG_WINDOW_MS_MIN, hi = CFG_WINDOW_MS_MAX; break;
                    case CFG_HOP_MS: lo = CFG_HOP_MS_MIN, hi = CFG_HOP_MS_MAX; break;
                    case CFG_CHANNELS: lo = CFG_CHANNELS_MIN, hi = CFG_CHANNELS_MAX; break;
                    default: lo = CFG_MACHINE_CLASS_MIN, hi = CFG_MACHINE_CLASS_MAX; break;
                }
                if (!cbor_read_uint(&r, lo, hi, &v)) return false;
                c->present |= (uint8_t)(1 << (k - 1));
                switch (k) {
                    case CFG_SAMPLE_RATE_HZ: c->cfg.sample_rate_hz = (uint16_t)v; break;
                    case CFG_WINDOW_MS: c->cfg.window_ms = (uint16_t)v; break;
                    case CFG_HOP_MS: c->cfg.hop_ms = (uint16_t)v; break;
                    case CFG_CHANNELS: c->cfg.channels = (uint8_t)v; break;
                    default: c->cfg.machine_class = (uint8_t)v; break;
                }
            }
            return true;
        }
        case T_SET_OUTPUT:
            if (major != 4 || arg != 2) return false;
            if (!cbor_read_uint(&r, 0, 255, &v)) return false;
            c->pin = (uint8_t)v;
            if (!cbor_read_uint(&r, 0, 1, &v)) return false;
            c->value = (uint8_t)v;
            return true;
        case T_SET_KEY:
            if (major != 4 || arg != 1) return false;
            if (!cbor_read_head(&r, &major, &arg) || major != 2) return false;
            if (arg < LIM_KEY_MIN || arg > LIM_KEY_MAX) return false;
            c->key = p + r.pos;
            c->key_len = (uint8_t)arg;
            return true;
        default:
            return major == 4 && arg == 0;
    }
}

uint8_t verify_chunk(Verifier *v, uint8_t *chunk, uint16_t n, Command *cmd, bool *seq_known) {
    *seq_known = false;
    if (n > MAX_ENCODED) return R_OVERSIZE;
    int m = cobs_decode_inplace(chunk, n);
    if (m < 0) return R_COBS;
    uint16_t len = (uint16_t)m;
    if (len > MAX_BODY) return R_OVERSIZE;
    if (len < MIN_BODY) return R_TRUNCATED;
    if (crc32_update(0, chunk, len) != CRC_RESIDUE) return R_CRC;
    uint8_t vf = chunk[0];
    if ((vf >> 4) != PROTO_MAJOR) return R_VERSION;
    uint8_t flags = vf & 0x0F;
    if (flags & ~(FLAG_AUTH | FLAG_HOST)) return R_FLAGS;
    bool host_side = v->host_schema != 0;
    if (!(flags & FLAG_HOST) != host_side) return R_DIRECTION;
    uint16_t end = len - CRC_LEN;
    if (flags & FLAG_AUTH) {
        end -= TAG_LEN;
        if (end <= HEADER_LEN) return R_TRUNCATED;
    }
    cmd->type = chunk[1];
    cmd->session = (uint16_t)((chunk[2] << 8) | chunk[3]);
    cmd->seq = be32(chunk + 4);
    *seq_known = true;
    if (v->has_key) {
        if (!(flags & FLAG_AUTH)) return R_UNAUTHENTICATED;
        uint8_t tag[TAG_LEN];
        hmac_tag(v->key, chunk, end, tag);
        uint8_t diff = 0;  // constant time: a timing side channel tells nothing
        for (uint8_t i = 0; i < TAG_LEN; i++) diff |= tag[i] ^ chunk[end + i];
        if (diff) return R_MAC;
    }
    cmd->authenticated = v->has_key;
    if (host_side) {
        // Host: (session, seq) must be newer; sessions in RFC 1982 arithmetic.
        if (!v->any_session) {
            uint16_t d = (uint16_t)(cmd->session - v->session);
            if (d == 0 ? cmd->seq <= v->seq : d >= 0x8000) return R_REPLAY;
        }
        if (cmd->type < T_HELLO || cmd->type > T_CONFIG) return R_TYPE;
    } else {
        // Hello requests are how a host learns the session: answered whatever it names.
        if (cmd->type != T_HELLO_REQUEST) {
            if (!v->any_session && cmd->session != v->session) return R_SESSION;
            if (cmd->seq <= v->seq) return R_REPLAY;
        }
        if (cmd->type < T_PING || cmd->type > T_GET_CONFIG) return R_TYPE;
    }
    const uint8_t *payload = chunk + HEADER_LEN;
    uint16_t plen = end - HEADER_LEN, used;
    cmd->payload = payload;
    cmd->payload_len = plen;
    if (!cbor_well_formed(payload, plen, &used)) return R_CBOR;
    if (used != plen) return R_TRAILING;
    if (!cbor_allowed(payload, plen)) return R_SCHEMA;
    if (host_side) {
        if (!v->host_schema(cmd->type, payload, plen)) return R_SCHEMA;
        v->session = cmd->session;
        v->seq = cmd->seq;
        v->any_session = false;
        return 0;
    }
    if (!check_schema(payload, plen, cmd)) return R_SCHEMA;
    // A hello_request from another session, or with an old seq, is answered but moves
    // nothing (SPEC.md 3.1): a replayed old request must not lock the SBC out.
    if ((v->any_session || cmd->session == v->session) && cmd->seq > v->seq) v->seq = cmd->seq;
    return 0;
}

void payload_writer(CborWriter *w, uint8_t *body, uint16_t cap) {
    uint16_t room = cap > FRAME_OVERHEAD ? cap - FRAME_OVERHEAD : 0;
    cbor_writer_init(w, body + HEADER_LEN, room);
}

uint16_t finish_body(Encoder *e, uint8_t type, CborWriter *w, uint8_t *body, uint16_t cap) {
    if (w->overflow) return 0;
    uint16_t n = HEADER_LEN + w->len;
    if ((uint16_t)(n + (e->has_key ? TAG_LEN : 0) + CRC_LEN) > cap) return 0;
    uint32_t seq = ++e->seq;
    body[0] = (uint8_t)((PROTO_MAJOR << 4) | (e->has_key ? FLAG_AUTH : 0));
    body[1] = type;
    body[2] = (uint8_t)(e->session >> 8);
    body[3] = (uint8_t)e->session;
    for (uint8_t i = 0; i < 4; i++) body[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
    if (e->has_key) {
        hmac_tag(e->key, body, n, body + n);
        n += TAG_LEN;
    }
    uint32_t crc = crc32_update(0, body, n);
    for (uint8_t i = 0; i < 4; i++) body[n++] = (uint8_t)(crc >> (8 * i));
    return n;
}

void write_hello(CborWriter *w, const char *board_id, const uint16_t fw[3], uint32_t caps,
                 uint32_t boot, uint32_t last_host_seq) {
    cbor_array(w, 6);
    cbor_text(w, board_id, (uint16_t)strlen(board_id));
    cbor_array(w, 3);
    for (uint8_t i = 0; i < 3; i++) cbor_uint(w, fw[i]);
    cbor_array(w, 2);
    cbor_uint(w, PROTO_MAJOR);
    cbor_uint(w, PROTO_MINOR);
    cbor_uint(w, caps);
    cbor_uint(w, boot);
    cbor_uint(w, last_host_seq);
}

void write_report(CborWriter *w, const Report *r) {
    cbor_array(w, r->flags ? REPORT_ITEMS + 1 : REPORT_ITEMS);
    cbor_uint(w, r->window_seq);
    cbor_uint(w, r->board_time_ms);
    cbor_uint(w, r->samples);
    for (uint8_t i = 0; i < 3; i++) cbor_uint(w, r->acc_rms_mg[i]);
    for (uint8_t i = 0; i < 3; i++) cbor_uint(w, r->acc_peak_mg[i]);
    for (uint8_t i = 0; i < 3; i++) cbor_uint(w, r->vel_rms_um_s[i]);
    if (r->has_temperature)
        cbor_int(w, r->temperature_cdeg_c);
    else
        cbor_null(w);
    if (r->flags) cbor_uint(w, r->flags);
}

void write_status(CborWriter *w, const uint32_t values[7]) {
    cbor_array(w, 7);
    for (uint8_t i = 0; i < 7; i++) cbor_uint(w, values[i]);
}

void write_ack(CborWriter *w, uint32_t ref_seq) {
    cbor_array(w, 1);
    cbor_uint(w, ref_seq);
}

static uint16_t cut(const char *s, uint16_t max) {
    uint16_t n = (uint16_t)strlen(s);
    if (n <= max) return n;
    // Never cut a UTF-8 sequence in two: back up to the start of a character.
    while (n > max || (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)) n--;
    return n;
}

void write_nack(CborWriter *w, uint32_t ref_seq, uint8_t code, const char *detail) {
    cbor_array(w, 3);
    cbor_uint(w, ref_seq);
    cbor_uint(w, code);
    cbor_text(w, detail, cut(detail, LIM_NACK_DETAIL_MAX));
}

void write_log(CborWriter *w, uint8_t level, const char *text) {
    cbor_array(w, 2);
    cbor_uint(w, level);
    cbor_text(w, text, cut(text, LIM_LOG_TEXT_MAX));
}

void write_config(CborWriter *w, const Config *c) {
    cbor_map(w, 5);
    cbor_uint(w, CFG_SAMPLE_RATE_HZ);
    cbor_uint(w, c->sample_rate_hz);
    cbor_uint(w, CFG_WINDOW_MS);
    cbor_uint(w, c->window_ms);
    cbor_uint(w, CFG_HOP_MS);
    cbor_uint(w, c->hop_ms);
    cbor_uint(w, CFG_CHANNELS);
    cbor_uint(w, c->channels);
    cbor_uint(w, CFG_MACHINE_CLASS);
    cbor_uint(w, c->machine_class);
}
