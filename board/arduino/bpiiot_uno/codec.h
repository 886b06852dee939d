// Frames (SPEC.md 3): build the board's frames, verify the host's commands in the
// order of checks of section 3.3. Hardware-free: the same source runs on the Uno and
// in the host build (g++) that the conformance vectors judge.
#ifndef BPIIOT_CODEC_H
#define BPIIOT_CODEC_H
#include <stddef.h>
#include <stdint.h>

#include "cbor.h"
#include "protocol_constants.h"
#include "sha256.h"

// The board's configuration (SPEC.md 5.3, config map keys 1-5).
struct Config {
    uint16_t sample_rate_hz;
    uint16_t window_ms;
    uint16_t hop_ms;
    uint8_t channels;
    uint8_t machine_class;
};

// A verified, schema-checked command.
struct Command {
    uint8_t type;
    uint16_t session;
    uint32_t seq;
    bool authenticated;
    // set_config: which keys came (bit k-1 for key k) and their values.
    uint8_t present;
    Config cfg;
    // set_output
    uint8_t pin;
    uint8_t value;
    // set_key: points into the chunk that was verified (valid until it is reused).
    const uint8_t *key;
    uint8_t key_len;
    // The payload, in the verified chunk.
    const uint8_t *payload;
    uint16_t payload_len;
};

// Schema check of the board's own messages, for a receiver on the host side (the
// host build's conformance runner); a board leaves it null and checks commands.
typedef bool (*board_schema_fn)(uint8_t type, const uint8_t *payload, uint16_t len);

// The board's receiver: its session, the last host seq accepted and the key.
struct Verifier {
    bool has_key;
    const HmacKey *key;
    uint16_t session;
    uint32_t seq;
    bool any_session;  // a receiver that has no session yet (the vectors' fresh board)
    // Non-null: this receiver is the host's (frames from a board, SPEC.md 3.1 host
    // replay rule, types 0x01-0x07), checking payloads with this function.
    board_schema_fn host_schema;
};

// Check one chunk (COBS, no delimiter), decoded in place. Returns 0 and fills *cmd,
// or a drop reason R_* (protocol_constants.h); *seq_known tells whether cmd->seq
// holds the frame's seq (reasons from `unauthenticated` on), which a nack refers to.
uint8_t verify_chunk(Verifier *v, uint8_t *chunk, uint16_t n, Command *cmd, bool *seq_known);

// The board's sender.
struct Encoder {
    bool has_key;
    const HmacKey *key;
    uint16_t session;
    uint32_t seq;
};

// Room a frame body needs beyond its payload: header, tag and CRC.
#define FRAME_OVERHEAD (HEADER_LEN + TAG_LEN + CRC_LEN)

// The payload of the next frame is written at body + HEADER_LEN (see payload_writer).
void payload_writer(CborWriter *w, uint8_t *body, uint16_t cap);
// Complete the body whose payload w holds: header with the next seq, tag, CRC.
// Returns the body length, or 0 (nothing consumed) when the payload did not fit.
uint16_t finish_body(Encoder *e, uint8_t type, CborWriter *w, uint8_t *body, uint16_t cap);

// The board's messages (SPEC.md 5), written into w.
void write_hello(CborWriter *w, const char *board_id, const uint16_t fw[3], uint32_t caps,
                 uint32_t boot, uint32_t last_host_seq);
struct Report {
    uint32_t window_seq;
    uint32_t board_time_ms;
    uint32_t samples;
    uint16_t acc_rms_mg[3];
    uint16_t acc_peak_mg[3];
    uint16_t vel_rms_um_s[3];
    bool has_temperature;
    int32_t temperature_cdeg_c;
    uint16_t flags;  // ReportFlag bits; the 14th element is written only when non-zero
};
void write_report(CborWriter *w, const Report *r);
void write_status(CborWriter *w, const uint32_t values[7]);
void write_ack(CborWriter *w, uint32_t ref_seq);
void write_nack(CborWriter *w, uint32_t ref_seq, uint8_t code, const char *detail);
void write_log(CborWriter *w, uint8_t level, const char *text);
void write_config(CborWriter *w, const Config *c);

#endif
