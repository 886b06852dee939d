// The Uno codec on the AVR itself: a test program for simavr that runs conformance
// vectors through the firmware's codec as compiled by avr-gcc (16-bit int, 8-bit
// core), the same C ABI as the host build (codec_host.cpp, compiled in). The host
// test sends requests over UART0 and compares the answers with the vectors.
//
//   'V' key_len key.. has_prior session:u16 seq:u32 host_side n:u16 wire..
//       -> 'R' reason hdr:7 x u32 out_len:u16 out..
//   'E' type fields:16 x i64 text_len text.. key_len key.. session:u16 seq:u32
//       -> 'R' n:i16 out..
//   'S' step n:u16 data..  -> 'R' sha256:32 (data given to sha256_update in steps)
//   'H' key_len key.. n:u16 data..  -> 'R' tag:8
// Integers little-endian.
#include <avr/io.h>
#include <stdint.h>
#include <string.h>

extern "C" {
int uno_verify(const uint8_t *key, int key_len, int has_prior, int session, uint32_t seq,
               uint8_t *chunk, int n, uint8_t *out, int cap, uint32_t *hdr, int host_side);
int uno_encode(int type, const long long *f, const char *text, const uint8_t *key, int key_len,
               int session, uint32_t seq, uint8_t *out, int cap);
void uno_sha256(const uint8_t *data, int n, int step, uint8_t *out);
void uno_hmac_tag(const uint8_t *key, int key_len, const uint8_t *data, int n, uint8_t *tag);
}

static uint8_t getb(void) {
    while (!(UCSR0A & _BV(RXC0))) {
    }
    return UDR0;
}

static void putb(uint8_t b) {
    while (!(UCSR0A & _BV(UDRE0))) {
    }
    UDR0 = b;
}

static uint32_t getn(uint8_t bytes) {
    uint32_t v = 0;
    for (uint8_t i = 0; i < bytes; i++) v |= (uint32_t)getb() << (8 * i);
    return v;
}

static void putn(uint32_t v, uint8_t bytes) {
    for (uint8_t i = 0; i < bytes; i++) putb((uint8_t)(v >> (8 * i)));
}

static uint8_t key[64], wire[96], out[128], data[256];
static char text[72];
static long long fields[16];

int main(void) {
    UCSR0A = _BV(U2X0);
    UBRR0H = 0;
    UBRR0L = 16;  // 115200 baud at 16 MHz
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0);
    for (;;) {
        uint8_t op = getb();
        if (op == 'V') {
            uint8_t kl = getb();
            for (uint8_t i = 0; i < kl; i++) key[i] = getb();
            uint8_t prior = getb();
            uint16_t session = (uint16_t)getn(2);
            uint32_t seq = getn(4);
            uint8_t host = getb();
            uint16_t n = (uint16_t)getn(2);
            for (uint16_t i = 0; i < n; i++) {
                uint8_t b = getb();
                if (i < sizeof wire) wire[i] = b;
            }
            uint32_t hdr[7];
            int r = n <= sizeof wire
                        ? uno_verify(key, kl, prior, session, seq, wire, n, out, sizeof out, hdr,
                                     host)
                        : -1;
            putb('R');
            putb((uint8_t)r);
            for (uint8_t i = 0; i < 7; i++) putn(r < 0 ? 0 : hdr[i], 4);
            uint16_t len = r == 0 ? (uint16_t)hdr[4] : 0;
            putn(len, 2);
            for (uint16_t i = 0; i < len; i++) putb(out[i]);
        } else if (op == 'E') {
            uint8_t type = getb();
            for (uint8_t i = 0; i < 16; i++) {
                uint32_t lo = getn(4), hi = getn(4);
                fields[i] = (long long)(((uint64_t)hi << 32) | lo);
            }
            uint8_t tl = getb();
            for (uint8_t i = 0; i < tl; i++) {
                char c = (char)getb();
                if (i < sizeof text - 1) text[i] = c;
            }
            text[tl < sizeof text ? tl : sizeof text - 1] = 0;
            uint8_t kl = getb();
            for (uint8_t i = 0; i < kl; i++) key[i] = getb();
            uint16_t session = (uint16_t)getn(2);
            uint32_t seq = getn(4);
            int n = uno_encode(type, fields, text, key, kl, session, seq, out, sizeof out);
            putb('R');
            putn((uint16_t)n, 2);
            for (int i = 0; i < n; i++) putb(out[i]);
        } else if (op == 'S' || op == 'H') {
            uint8_t step = 0, kl = 0;
            if (op == 'S') {
                step = getb();
            } else {
                kl = getb();
                for (uint8_t i = 0; i < kl; i++) key[i] = getb();
            }
            uint16_t n = (uint16_t)getn(2);
            for (uint16_t i = 0; i < n; i++) {
                uint8_t b = getb();
                if (i < sizeof data) data[i] = b;
            }
            if (n > sizeof data) n = sizeof data;
            if (op == 'S')
                uno_sha256(data, n, step, out);
            else
                uno_hmac_tag(key, kl, data, n, out);
            putb('R');
            for (uint8_t i = 0; i < (op == 'S' ? 32 : 8); i++) putb(out[i]);
        }
    }
}
