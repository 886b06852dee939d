// BPIIoT interface board firmware for the Arduino Uno (ATmega328P, 16 MHz).
//
// Speaks protocol/SPEC.md over the USB serial port at 115200 baud: hello at boot,
// one report per window (acceleration RMS and peak, velocity RMS, temperature),
// and exactly one ack or nack for every command. Sampling runs from Timer1 and ADC
// interrupts (sampler.cpp); frames leave through an interrupt-driven TX queue
// (uart.cpp), so sampling never waits on the line. Wiring: ADXL335 X/Y/Z on A0-A2
// (powered from 3.3 V), TMP36 on A3, outputs on D2-D13. A4 is a timing probe: high
// while a report is built and queued (make bench reads it in simavr; leave it open).
//
// setup() and loop() are here, in a plain C++ file, not in bpiiot_uno.ino: the IDE
// rewrites an .ino (prototypes for its functions, inserted above the types they
// use), a .cpp it compiles as it is. protocol_constants.h is generated from
// protocol/constants.json by tools/gen_constants.py.
#include <Arduino.h>
#include <avr/sleep.h>
#include <util/delay.h>
#include <avr/wdt.h>
#include <string.h>

#include "cobs.h"
#include "codec.h"
#include "dsp.h"
#include "protocol_constants.h"
#include "sampler.h"
#include "sensors.h"
#include "store.h"
#include "uart.h"
#include "uptime.h"

static const char BOARD_ID[] = "bpiiot-uno";
static const uint16_t FW_VERSION[3] = {0, 1, 1};
#define BAUD 115200UL
// Host chunks longer than this cannot be a command (the longest, set_key with a
// 32-byte key and a tag, is 57 bytes encoded): dropped as oversize, not buffered.
#define RX_CHUNK 64
// The longest board frame is a log with a 47-character text (send_log's buffer): 71
// bytes of body.
#define BODY_CAP 80
#define STACK_PAINT 0xA5

// --- stack painting: RAM between the static data and the stack gets a pattern at
// reset; what is still untouched later is RAM the stack never reached.
extern uint8_t __heap_start;
extern "C" void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void) {
    // A watchdog reset (the reboot command) leaves the watchdog running at 15 ms.
    MCUSR = 0;
    wdt_disable();
    uint8_t *p = &__heap_start;
    uint8_t *top = (uint8_t *)SP - 4;
    while (p < top) *p++ = STACK_PAINT;
}

static uint16_t stack_free(void) {
    const uint8_t *p = &__heap_start;
    uint16_t n = 0;
    while (p[n] == STACK_PAINT && (uint16_t)(p + n) < SP) n++;
    return n;
}

// --- state ------------------------------------------------------------------------
static Config cfg;
// One key for both directions (64 bytes: the HMAC's inner and outer states).
static HmacKey hmac_key;
static Encoder enc = {false, &hmac_key, 0, 0};
static Verifier ver = {false, &hmac_key, 0, 0, false, 0};
static uint32_t boot_counter;
// STORE_LOST_* bits: records the EEPROM lost, told after every hello until rewritten.
static uint8_t store_lost;
static uint32_t frames_sent, frames_rejected, windows;
static uint8_t body[BODY_CAP];
static uint8_t rx[RX_CHUNK];
static uint8_t rx_len;
static bool rx_discarding;

static AxisState axes[3];
static uint32_t window_n;
static uint16_t window_left;  // samples still to come in this window
static uint16_t settle_left, settle_n;
static uint16_t window_flags;
static uint32_t overruns_seen;
// Idle time as whole ticks plus a count of cycles (combined once a second).
static uint16_t idle_ticks;
static int32_t idle_count;
static uint8_t load_mark;  // uptime_overflows8 when the last second began
static uint16_t load_permille;

// --- sending ----------------------------------------------------------------------
static void put_byte(void *, uint8_t b) { uart_put(b); }

// Whatever is queued is written and sent, then the watchdog resets the board.
__attribute__((noreturn)) static void reboot_now(void) {
    store_flush();
    while (!uart_tx_empty()) {
    }
    _delay_ms(2);  // the last byte leaves the shift register
    wdt_enable(WDTO_15MS);
    for (;;) {
    }
}

// Frame the payload in w and queue it; waits only for room in the TX queue. Sequence
// numbers never wrap (SPEC.md 3.1): the board reboots instead of passing 2^32 - 1.
static void send(uint8_t type, CborWriter *w) {
    if (enc.seq == 0xFFFFFFFFUL) reboot_now();
    uint16_t n = finish_body(&enc, type, w, body, sizeof body);
    if (!n) return;
    uint16_t need = (uint16_t)(cobs_max(n) + 1);
    while (uart_tx_room() < need) {
    }
    cobs_encode(body, n, put_byte, 0);
    uart_put(0);
    frames_sent++;
}

static void send_ack(uint32_t seq) {
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_ack(&w, seq);
    send(T_ACK, &w);
}

// detail is a string in flash (PSTR): RAM is the Uno's scarcest resource.
static void send_nack(uint32_t seq, uint8_t code, PGM_P detail) {
    char text[32];
    strncpy_P(text, detail, sizeof text);
    text[sizeof text - 1] = 0;
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_nack(&w, seq, code, text);
    send(T_NACK, &w);
}

static void send_log(uint8_t level, PGM_P text) {
    char t[48];
    strncpy_P(t, text, sizeof t);
    t[sizeof t - 1] = 0;
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_log(&w, level, t);
    send(T_LOG, &w);
}

static void send_hello(void) {
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    uint32_t caps = CAP_AUTH | CAP_OUTPUTS | CAP_REBOOT | CAP_PERSIST | CAP_TEMPERATURE;
    write_hello(&w, BOARD_ID, FW_VERSION, caps, boot_counter, ver.seq);
    send(T_HELLO, &w);
    // Whoever reads this hello learns what the EEPROM lost (a host may start later
    // than the board: told again after every hello until the record is rewritten).
    if (store_lost & STORE_LOST_CONFIG) send_log(LOG_ERROR, PSTR("EEPROM config lost: defaults used"));
    if (store_lost & STORE_LOST_KEY) send_log(LOG_ERROR, PSTR("EEPROM key lost: running without a key"));
    if (store_lost & STORE_LOST_BOOT)
        send_log(LOG_ERROR, PSTR("EEPROM boot counter lost: counting from 0"));
}

static void send_config(void) {
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_config(&w, &cfg);
    send(T_CONFIG, &w);
}

static void send_status(void) {
    uint32_t v[7] = {frames_sent, frames_rejected, sampler_overruns(), stack_free(),
                     load_permille, uptime_ms(), windows};
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_status(&w, v);
    send(T_STATUS, &w);
}

// --- acquisition ------------------------------------------------------------------
static void start_acquisition(void) {
    sampler_stop();
    dsp_select(cfg.sample_rate_hz);
    for (uint8_t a = 0; a < 3; a++) axis_reset(&axes[a]);
    window_n = (uint32_t)cfg.sample_rate_hz * cfg.window_ms / 1000;
    window_left = (uint16_t)window_n;
    settle_n = (uint16_t)((uint32_t)cfg.sample_rate_hz * DSP_SETTLE_MS / 1000);
    settle_left = settle_n;
    window_flags = 0;
    overruns_seen = sampler_overruns();
    uint32_t sum;
    uint16_t n;
    sampler_take_temperature(&sum, &n);
    sampler_start(cfg.sample_rate_hz);
}

#define PROBE_ON() (PORTC |= _BV(PC4))
#define PROBE_OFF() (PORTC &= (uint8_t)~_BV(PC4))

// Out of line: once a window, and acquire() keeps a small frame.
__attribute__((noinline)) static void finish_window(void) {
    PROBE_ON();
    Report r;
    r.window_seq = ++windows;
    r.board_time_ms = uptime_ms();
    r.samples = window_n;
    uint16_t flags = window_flags;
    for (uint8_t a = 0; a < 3; a++) {
        AxisResult res;
        axis_finish(&axes[a], (uint16_t)window_n, &res);
        bool on = cfg.channels & (1 << a);
        r.acc_rms_mg[a] = on ? res.rms_mg : 0;
        r.acc_peak_mg[a] = on ? res.peak_mg : 0;
        r.vel_rms_um_s[a] = on ? res.vel_um_s : 0;
        if (on && res.vel_saturated) flags |= RF_VEL_SATURATED;
        if (on && res.acc_saturated) flags |= RF_ACC_SATURATED;
    }
    uint32_t sum;
    uint16_t n;
    sampler_take_temperature(&sum, &n);
    r.has_temperature = false;
    if (cfg.channels & CH_TEMP) {
        uint32_t m16 = n ? (sum << 4) / n : 0;
        if (!n || m16 < 16 || m16 >= 1023UL * 16) {
            flags |= RF_SENSOR_FAULT;  // no reading, or a sensor stuck at a rail
        } else {
            r.has_temperature = true;
            r.temperature_cdeg_c = temperature_cdeg(m16);
        }
    }
    uint32_t ov = sampler_overruns();
    if (ov != overruns_seen) flags |= RF_OVERRUN;
    overruns_seen = ov;
    r.flags = flags;
    window_flags = 0;
    window_left = (uint16_t)window_n;
    CborWriter w;
    payload_writer(&w, body, sizeof body);
    write_report(&w, &r);
    send(T_REPORT, &w);
    PROBE_OFF();
}

// Keeps gcc from merging a byte shift into a 16-bit one (a bit loop on the AVR).
#define OPAQUE(v) __asm__("" : "+r"(v))

// Every waiting triplet through the features (DSP.md 8). Inline in loop(): its
// registers are saved once, not at every triplet.
__attribute__((always_inline)) static inline void acquire(void) {
    while (sampler_ready()) {
        if (sampler_take_gap()) {
            // Samples were lost before this one: the window is flagged, and the jump
            // rings through the filters, so the next 600 ms settle again (DSP.md 2.1).
            window_flags |= RF_OVERRUN;
            settle_left = settle_n;
        }
        const uint8_t *p = sampler_slot();
        uint8_t h = p[3], hy = (uint8_t)(h >> 2), hz = __builtin_avr_swap(h);
        OPAQUE(hy);
        uint16_t x = (uint16_t)((uint16_t)(uint8_t)(h & 3) << 8 | p[0]);
        uint16_t y = (uint16_t)((uint16_t)(uint8_t)(hy & 3) << 8 | p[1]);
        uint16_t z = (uint16_t)((uint16_t)(uint8_t)(hz & 3) << 8 | p[2]);
        sampler_next();
        // Unrolled: constant channel masks (a variable 1 << a is a shift loop).
        uint8_t ch = cfg.channels;
        if ((adc_clipped(x) && (ch & CH_X)) || (adc_clipped(y) && (ch & CH_Y)) ||
            (adc_clipped(z) && (ch & CH_Z)))
            window_flags |= RF_CLIPPED;
        int16_t mg[3] = {adxl335_mg(x), adxl335_mg(y), adxl335_mg(z)};
        axes_step(axes, mg, 3);
        if (settle_left) {
            settle_left--;
            window_flags |= RF_SETTLING;
        }
        if (!--window_left) finish_window();
    }
}

// --- commands ---------------------------------------------------------------------
static bool valid_output(uint8_t pin) { return pin >= 2 && pin <= 13; }

// Nothing changes unless every value is possible (SPEC.md 5.3).
static PGM_P apply_config(const Command *c) {
    Config n = cfg;
    if (c->present & 1) n.sample_rate_hz = c->cfg.sample_rate_hz;
    if (c->present & 2) n.window_ms = c->cfg.window_ms;
    if (c->present & 4) n.hop_ms = c->cfg.hop_ms;
    if (c->present & 8) n.channels = c->cfg.channels;
    if (c->present & 16) n.machine_class = c->cfg.machine_class;
    if (!dsp_rate_supported(n.sample_rate_hz)) return PSTR("rate: 800 or 1600 S/s only");
    if (n.hop_ms > n.window_ms) return PSTR("hop longer than the window");
    if (n.hop_ms != n.window_ms) return PSTR("no sliding windows");
    if (((uint32_t)n.sample_rate_hz * n.window_ms) % 1000) return PSTR("window not whole samples");
    if ((uint32_t)n.sample_rate_hz * n.window_ms / 1000 > 65535UL) return PSTR("window too long");
    // The temperature is converted at every 8th tick (sampler.cpp): a window holds one.
    if ((uint32_t)n.sample_rate_hz * n.window_ms / 1000 < 8) return PSTR("window under 8 samples");
    bool restart = n.sample_rate_hz != cfg.sample_rate_hz || n.window_ms != cfg.window_ms ||
                   n.hop_ms != cfg.hop_ms;
    if (memcmp(&n, &cfg, sizeof n) || (store_lost & STORE_LOST_CONFIG)) {
        cfg = n;
        store_save_config(&cfg);
        store_lost &= (uint8_t)~STORE_LOST_CONFIG;
    }
    if (restart) start_acquisition();
    return 0;
}

// set_key and clear_key are acked once the new key is on the EEPROM (its first copy
// whole, some 130 ms of writes later), so an ack means the key survives a power cut;
// the loop keeps sampling meanwhile. Until the ack, the old key stays in use both
// ways (the ack itself goes out under it) and another key change or a reboot is
// refused with nack busy.
static bool key_ack_pending;
static uint32_t key_ack_seq;

static void set_key(const uint8_t *key, uint8_t len, uint32_t seq) {
    store_save_key(key, len);
    key_ack_pending = true;
    key_ack_seq = seq;
}

// From the loop, while the EEPROM is written: the ack, then the new key.
static void key_written(void) {
    send_ack(key_ack_seq);
    key_ack_pending = false;
    uint8_t len;
    const uint8_t *key = store_key_saved(&len);
    enc.has_key = ver.has_key = len > 0;
    if (len) hmac_key_init(&hmac_key, key, len);
    store_lost &= (uint8_t)~STORE_LOST_KEY;
}

static void command(Command *c) {
    switch (c->type) {
        case T_PING:
            break;
        case T_HELLO_REQUEST:
            send_hello();
            break;
        case T_GET_STATUS:
            send_status();
            break;
        case T_GET_CONFIG:
            send_config();
            break;
        case T_SET_CONFIG: {
            PGM_P err = apply_config(c);
            if (err) {
                send_nack(c->seq, E_BAD_VALUE, err);
                return;
            }
            send_config();
            break;
        }
        case T_SET_OUTPUT:
            if (!valid_output(c->pin)) {
                send_nack(c->seq, E_BAD_VALUE, PSTR("pin is not an output"));
                return;
            }
            pinMode(c->pin, OUTPUT);
            digitalWrite(c->pin, c->value ? HIGH : LOW);
            break;
        case T_SET_KEY:
        case T_CLEAR_KEY:
            if (key_ack_pending) {
                send_nack(c->seq, E_BUSY, PSTR("writing the last key"));
                return;
            }
            // Acked from the loop once written (key_written); the key is copied
            // out of the chunk now.
            set_key(c->key, c->type == T_SET_KEY ? c->key_len : 0, c->seq);
            return;
        case T_REBOOT:
            if (key_ack_pending) {
                send_nack(c->seq, E_BUSY, PSTR("writing the last key"));
                return;
            }
            send_ack(c->seq);
            reboot_now();
        default:
            send_nack(c->seq, E_UNKNOWN_TYPE, PSTR("type"));
            return;
    }
    send_ack(c->seq);
}

#define BPIIOT_REASON_NAMES
#include "protocol_constants.h"

static void handle_chunk(uint8_t *chunk, uint8_t n) {
    Command c;
    bool seq_known;
    uint8_t reason = verify_chunk(&ver, chunk, n, &c, &seq_known);
    if (reason) {
        frames_rejected++;
        uint8_t code = pgm_read_byte(&NACK_FOR_REASON[reason]);
        if (code && seq_known) send_nack(c.seq, code, (PGM_P)pgm_read_word(&REASON_NAMES[reason]));
        return;
    }
    command(&c);
}

// Out of line: loop() keeps a small frame (commands need a large one).
__attribute__((noinline)) static void rx_byte(uint8_t b) {
    if (b == 0) {
        if (!rx_discarding && rx_len) handle_chunk(rx, rx_len);
        rx_len = 0;
        rx_discarding = false;
        return;
    }
    if (rx_discarding) return;
    if (rx_len == sizeof rx) {
        rx_discarding = true;  // oversize: dropped up to the next delimiter
        frames_rejected++;
        rx_len = 0;
        return;
    }
    rx[rx_len++] = b;
}

// --- main loop --------------------------------------------------------------------
// Timer1's count and ticks, read with interrupts off: a tick whose interrupt has not
// run yet is counted.
struct TickClock {
    uint8_t ticks;
    uint16_t count;
};
__attribute__((always_inline)) static inline TickClock tick_clock(void) {
    TickClock t = {SAMPLER_TICKS, TCNT1};
    if (TIFR1 & _BV(OCF1A)) {
        t.count = TCNT1;
        t.ticks++;
    }
    return t;
}

// Sleep until an interrupt left work (SAMPLER_WORK: a triplet or a received byte).
// Every interrupt wakes the CPU (a tick, three or four conversions); the test at each
// wake-up is one bit, with interrupts on. Work that arrives between the test and SLEEP
// waits for the next interrupt, at most one conversion or one Timer2 overflow later
// (the ring holds it meanwhile). The bit is cleared here, before the work is drained,
// so work that arrives meanwhile sets it again.
__attribute__((always_inline)) static inline void idle(void) {
    cli();
    TickClock t0 = tick_clock();
    sei();
    __asm__ volatile(
        "1: sbic %[g0], %[work]\n\t"
        "rjmp 2f\n\t"
        "sleep\n\t"
        "rjmp 1b\n"
        "2:\n\t"
        :
        : [g0] "I"(_SFR_IO_ADDR(GPIOR0)), [work] "I"(SAMPLER_WORK)
        : "memory");
    cli();
    TickClock t1 = tick_clock();
    GPIOR0 &= (uint8_t)~_BV(SAMPLER_WORK);
    sei();
    // Ticks modulo 256: an idle period ends at the next triplet, within two ticks.
    idle_ticks += (uint8_t)(t1.ticks - t0.ticks);
    idle_count += (int16_t)(t1.count - t0.count);  // within +-1 tick
}

// Busy share over the last second (61 Timer2 overflows, 999.4 ms): cycles not spent
// in idle() over all cycles.
static void account_load(void) {
    uint8_t n = (uint8_t)(uptime_overflows8 - load_mark);
    if (n < UPTIME_OVERFLOWS_PER_S) return;
    load_mark = (uint8_t)(load_mark + n);
    int32_t idle = (int32_t)idle_ticks * sampler_period() + idle_count;
    // An overflow is 16,384 x 16 cycles.
    uint32_t idle_permille = idle > 0 ? ((uint32_t)idle >> 4) * 1000 / (n * 16384UL) : 0;
    load_permille = (uint16_t)(idle_permille >= 1000 ? 0 : 1000 - idle_permille);
    idle_ticks = 0;
    idle_count = 0;
}

void setup() {
    uint8_t key[LIM_KEY_MAX];
    uint8_t key_len;
    store_lost = store_load(&cfg, key, &key_len);
    boot_counter = store_boot();
    enc.session = ver.session = (uint16_t)boot_counter;
    if (key_len) {
        enc.has_key = ver.has_key = true;
        hmac_key_init(&hmac_key, key, key_len);
    }
    // A stored configuration this firmware cannot run falls back to the defaults.
    if (!dsp_rate_supported(cfg.sample_rate_hz) || cfg.hop_ms != cfg.window_ms || !cfg.window_ms ||
        cfg.machine_class > 3 || cfg.channels > 15 ||
        (uint32_t)cfg.sample_rate_hz * cfg.window_ms / 1000 > 65535UL ||
        (uint32_t)cfg.sample_rate_hz * cfg.window_ms / 1000 < 8) {
        cfg = Config{DSP_DEFAULT_RATE_HZ, 1000, 1000, CH_X | CH_Y | CH_Z | CH_TEMP, 2};
        store_lost |= STORE_LOST_CONFIG;  // readable, yet not a configuration this runs
    }
    DDRC |= _BV(PC4);  // the report timing probe
    uptime_begin();
    set_sleep_mode(SLEEP_MODE_IDLE);
    sleep_enable();  // for good: the CPU only sleeps in idle()
    uart_begin(BAUD);
    uart_put(0);  // flush whatever partial frame the host holds
    send_hello();
    load_mark = uptime_overflows8;
    start_acquisition();
    // A hung loop resets the board (and the SBC sees a new session) instead of
    // leaving a silent one; the loop turns at least at the sample rate.
    wdt_enable(WDTO_2S);
}

// One call that never returns: loop()'s prologue then runs once, not at every turn.
void loop() {
    for (;;) {
        wdt_reset();
        if (uart_rx_ready()) {
            int16_t b;
            while ((b = uart_read()) >= 0) rx_byte((uint8_t)b);
        }
        acquire();
        if (store_pending()) {
            store_poll();
            if (key_ack_pending && store_key_durable()) key_written();
        }
        account_load();
        idle();
    }
}
