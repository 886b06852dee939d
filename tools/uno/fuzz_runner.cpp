// The Uno firmware's verifier (board/arduino/bpiiot_uno/codec.cpp) on every frame of a
// fuzz batch written by tools/fuzz_wire.py, built for the host with AddressSanitizer
// and UndefinedBehaviorSanitizer (`make uno-fuzz`): a read or write outside a buffer,
// a use of uninitialised stack, an overflowing shift or a misaligned load stops the
// run with the sanitizer's report instead of passing silently.
//
// Usage: uno_fuzz_runner BATCH
// BATCH: key length (1 byte), key, then records: receiver (0 host, 1 board), chunk
// length (2 bytes, big-endian), the COBS chunk without its delimiter. Prints one
// character per record ("." for ok, 'a' + reason - 1 for a drop reason R_*, the order
// of wire.REASONS), in lines of at most 1000, then "DONE n" (tools/fuzz_wire_fw.py's
// format). Receivers are long-lived, as on a board and on a host: the board's knows
// session 7 and starts at seq 0, the host's learns its session from the first frame.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

extern "C" bool uno_board_schema(uint8_t type, const uint8_t *p, uint16_t n);

static const uint16_t SESSION = 7;

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BATCH\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = (uint8_t *)malloc(size > 0 ? (size_t)size : 1);
    bool read = size > 0 && fread(data, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    uint8_t klen = read ? data[0] : 0;
    long pos = 1 + klen;
    if (!read || pos > size) {
        fprintf(stderr, "%s: not a batch (short read or key past its end)\n", argv[1]);
        free(data);
        return 2;
    }
    HmacKey key;
    if (klen) hmac_key_init(&key, data + 1, klen);
    Verifier v[2];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 2; i++) {
        v[i].has_key = klen > 0;
        v[i].key = &key;
    }
    v[0].host_schema = uno_board_schema;
    v[0].any_session = true;
    v[1].session = SESSION;
    char line[1001];
    int used = 0;
    long count = 0;
    while (pos < size) {
        uint8_t rx = pos + 3 <= size ? data[pos] : 0xFF;
        uint16_t n = rx <= 1 ? (uint16_t)((data[pos + 1] << 8) | data[pos + 2]) : 0;
        pos += 3;
        if (rx > 1 || pos + n > size) {
            fprintf(stderr, "%s: record %ld is cut short or names receiver %u\n", argv[1],
                    count, rx);
            free(data);
            return 2;
        }
        // A chunk of its own, exactly as long as the record: the sanitizer sees a
        // read one byte past it.
        uint8_t *chunk = (uint8_t *)malloc(n ? n : 1);
        memcpy(chunk, data + pos, n);
        pos += n;
        Command cmd;
        bool known;
        uint8_t r = verify_chunk(&v[rx], chunk, n, &cmd, &known);
        if (r == 0 && rx == 1 && (cmd.payload < chunk || cmd.payload + cmd.payload_len > chunk + n))
            r = 0x7F;  // an accepted payload outside its chunk
        free(chunk);
        line[used++] = r == 0 ? '.' : (r <= R_COUNT ? (char)('a' + r - 1) : '!');
        count++;
        if (used == 1000) {
            line[used] = 0;
            puts(line);
            used = 0;
        }
    }
    if (used) {
        line[used] = 0;
        puts(line);
    }
    printf("DONE %ld\n", count);
    free(data);
    return 0;
}
