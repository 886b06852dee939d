/*
 * simavr_bridge: runs an ATmega328P firmware in simavr (cycle-accurate) and connects
 * it to the host the way an Arduino Uno's USB serial port would be.
 *
 *   simavr_bridge -f FIRMWARE.elf [-b BOOTLOADER.hex] [-s SIGNAL] [-e EEPROM]
 *                 [-t STATS] [-d RAMDUMP] [-p PROFILE] [-r] [-k N:CYCLES[:VALUE]]
 *                 [-m ADDR:HEX]
 *
 * - UART0 <-> a pseudo-terminal whose path is printed as the first line on stdout;
 *   bytes from the host are fed to the UART only while simavr signals XON (its input
 *   FIFO has room), so nothing is dropped or reordered.
 * - ADC: every conversion of channel c reads column c of the current row of SIGNAL
 *   (rows of four little-endian uint16 millivolt values, for A0..A3); a conversion of
 *   A0 starts the next row; the file repeats. Without SIGNAL: 0 g on X and Y, 1 g
 *   on Z, 25 C on a TMP36. AVcc is 5000 mV; simavr's conversion is mV * 1023 / 5000.
 * - EEPROM: loaded from and saved to EEPROM (created when absent), so a board keeps
 *   its boot counter, key and configuration across runs, as a real one does. A byte
 *   write keeps EECR.EEPE set for 3.4 ms, as the ATmega328P's does (simavr clears it
 *   at once, so a firmware's waits for the EEPROM would never be exercised).
 * - -k N:CYCLES[:VALUE]: a power cut CYCLES cycles after the N-th EEPROM byte write
 *   of this run began. If that write is still going on (under 3.4 ms, 54,400
 *   cycles), its byte is left torn, holding VALUE (default 0xFF: erased, not yet
 *   programmed). The simulation stops there, saves EEPROM, STATS and RAMDUMP as on
 *   SIGTERM, prints "power cut" on stderr and exits with status 3, once the host has
 *   read the bytes sent before the cut (at most 2 s later).
 * - -m ADDR:HEX: write these bytes into SRAM at data address ADDR (as avr-nm prints it,
 *   less 0x800000) once, when the firmware first enables its UART receiver (after its
 *   static data is set up): a test puts the firmware into a state that would take
 *   years to reach, such as its sequence numbers about to run out.
 * - -b: start in a bootloader (optiboot) as after an external reset, once the host
 *   sends its first byte (the Uno's DTR auto-reset), so avrdude can upload.
 * - SIGUSR1 writes STATS while the simulation goes on (a snapshot for benchmarks).
 * - On SIGTERM or SIGINT the simulation stops, STATS gets a JSON line (cycles,
 *   cycles asleep, conversions, bytes each way) and RAMDUMP the 2 KiB of SRAM (for the
 *   stack-painting check). -r paces the simulation to real time (default: as fast as
 *   the host runs it; the firmware's clock is simulated time either way); -b implies
 *   -r, since a bootloader's timeouts must run at the uploader's pace.
 * - PC4 (A4) is the firmware's timing probe: STATS counts its high pulses and the
 *   cycles they lasted (probe_pulses, probe_cycles), e.g. building and queueing reports.
 * - -p PROFILE: on stop, the cycles the CPU spent awake at each program address
 *   (lines "byte_address cycles"), to attribute them to functions with avr-nm
 *   (tools/uno_profile.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_eeprom.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_hex.h"

static volatile sig_atomic_t stop, snapshot;
static avr_t *avr;
static int master = -1;
static int xon = 1;
static uint64_t sleep_cycles, conversions, bytes_in, bytes_out, bytes_dropped;
static uint16_t *signal_rows;
static size_t signal_count, signal_row;
static uint16_t fixed_row[4] = {1650, 1650, 1980, 750};
static avr_irq_t *adc_irq;
static avr_irq_t *uart_in;
static uint64_t *profile;  // awake cycles per flash word, with -p
static uint64_t probe_start, probe_cycles, probe_pulses;

// --- EEPROM write timing and power cuts ---------------------------------------------
#define EECR_ADDR 0x3F
#define EEPE_BIT 0x02
#define EEMPE_BIT 0x04
static avr_io_write_t eeprom_write_orig;
static uint8_t *eeprom_mem;
static int ee_busy;
static uint16_t ee_addr;
static uint64_t ee_writes;
static uint64_t cut_n, cut_cycles;
static int cut_value = 0xFF;
static uint8_t poke_bytes[64];
static size_t poke_len;
static unsigned poke_addr;
static volatile int power_cut;

static avr_cycle_count_t eeprom_done(avr_t *a, avr_cycle_count_t when, void *param) {
    (void)when;
    (void)param;
    ee_busy = 0;
    a->data[EECR_ADDR] &= (uint8_t)~EEPE_BIT;
    return 0;
}

static avr_cycle_count_t cut_power(avr_t *a, avr_cycle_count_t when, void *param) {
    (void)a;
    (void)when;
    (void)param;
    if (ee_busy && eeprom_mem) eeprom_mem[ee_addr] = (uint8_t)cut_value;
    fprintf(stderr, "power cut %llu cycles after EEPROM write %llu (address %u, %s)\n",
            (unsigned long long)cut_cycles, (unsigned long long)cut_n, ee_addr,
            ee_busy ? "torn" : "complete");
    power_cut = 1;
    return 0;
}

static void eeprom_write(avr_t *a, avr_io_addr_t addr, uint8_t v, void *param) {
    uint8_t before = a->data[EECR_ADDR];
    if (ee_busy) v &= (uint8_t)~EEPE_BIT;  // the hardware ignores EEPE while writing
    int is_write = (before & EEMPE_BIT) && (v & EEPE_BIT);
    if (is_write) ee_addr = (uint16_t)(a->data[0x41] | (a->data[0x42] << 8)) & 0x3FF;
    eeprom_write_orig(a, addr, v, param);
    if (is_write) {
        ee_busy = 1;
        ee_writes++;
        avr_cycle_timer_register(a, (avr_cycle_count_t)a->frequency / 1000000 * 3400, eeprom_done, NULL);
        if (cut_n && ee_writes == cut_n)
            avr_cycle_timer_register(a, cut_cycles ? cut_cycles : 1, cut_power, NULL);
    }
    if (ee_busy) a->data[EECR_ADDR] |= EEPE_BIT;  // simavr cleared it
}

static void probe_pin(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    if (value) {
        probe_start = avr->cycle;
    } else if (probe_start) {
        probe_cycles += avr->cycle - probe_start;
        probe_pulses++;
        probe_start = 0;
    }
}

static void on_signal(int sig) {
    if (sig == SIGUSR1)
        snapshot = 1;
    else
        stop = 1;
}

// Bytes the pty did not take yet. A pty holds a few KB; the tty layer behind a real
// USB-serial chip holds 64 KB and more, so a host that is busy for a moment loses
// nothing. A host that stopped reading fills this too, and then bytes are dropped, as a
// real bridge drops what nobody reads.
#define OUT_BUF 65536
static uint8_t out_buf[OUT_BUF];
static size_t out_head, out_len;

static void out_flush(void) {
    while (out_len) {
        size_t run = OUT_BUF - out_head < out_len ? OUT_BUF - out_head : out_len;
        ssize_t n = write(master, out_buf + out_head, run);
        if (n <= 0) return;
        out_head = (out_head + (size_t)n) % OUT_BUF;
        out_len -= (size_t)n;
        bytes_out += (uint64_t)n;
    }
}

static void uart_out(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    uint8_t b = (uint8_t)value;
    if (out_len == 0 && write(master, &b, 1) == 1) {
        bytes_out++;
        return;
    }
    if (out_len == OUT_BUF) {
        bytes_dropped++;
        return;
    }
    out_buf[(out_head + out_len) % OUT_BUF] = b;
    out_len++;
}

static void uart_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    xon = 1;
}

static void uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    xon = 0;
}

static void adc_trigger(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    union {
        avr_adc_mux_t mux;
        uint32_t v;
    } e = {.v = value};
    if (e.mux.kind != ADC_MUX_SINGLE || e.mux.src > 3) return;
    unsigned ch = e.mux.src;
    const uint16_t *row = fixed_row;
    if (signal_count) {
        if (ch == 0 && conversions) signal_row = (signal_row + 1) % signal_count;
        row = signal_rows + 4 * signal_row;
    }
    if (ch == 0) conversions++;
    avr_raise_irq(adc_irq + ch, row[ch]);
}

// Asleep (the firmware's idle loop): count the cycles skipped. simavr advances the
// clock by 1 + how_long per sleep step (sim_avr.c, avr_callback_run_raw) and steps
// from one of its cycle timers to the next, so the extra cycle is sleep too: left
// out, it charged about 80 phantom busy cycles per axis-sample at 800 S/s.
static int realtime;
static uint64_t sleep_steps;
static void on_sleep(avr_t *a, avr_cycle_count_t how_long) {
    (void)a;
    sleep_cycles += how_long + 1;
    sleep_steps++;
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

// Real-time pacing: never let simulated time run ahead of the wall clock. A
// bootloader needs it: optiboot gives up after one second, which must be a second
// of the uploader's time, not a few milliseconds of a fast simulation.
static uint64_t pace_start_us, pace_start_cycle;
static void pace(void) {
    uint64_t sim_us = (avr->cycle - pace_start_cycle) * 1000000ULL / avr->frequency;
    uint64_t wall_us = now_us() - pace_start_us;
    if (sim_us > wall_us + 2000) usleep((useconds_t)(sim_us - wall_us));
}

static void load_signal(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    signal_count = (size_t)n / 8;
    if (!signal_count) {
        fprintf(stderr, "%s: empty signal file\n", path);
        exit(2);
    }
    signal_rows = malloc(signal_count * 8);
    if (fread(signal_rows, 8, signal_count, f) != signal_count) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

static void eeprom_io(const char *path, int save) {
    avr_eeprom_desc_t d = {.ee = NULL, .offset = 0, .size = 1024};
    if (save) {
        avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d);
        FILE *f = fopen(path, "wb");
        if (f && d.ee) {
            fwrite(d.ee, 1, d.size, f);
            fclose(f);
        }
        return;
    }
    uint8_t buf[1024];
    FILE *f = fopen(path, "rb");
    if (!f) return;  // a new board: blank EEPROM (0xFF)
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    d.ee = buf;
    d.size = (uint32_t)n;
    avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &d);
}

static void write_stats(const char *path, int state) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f,
            "{\"cycles\": %llu, \"sleep_cycles\": %llu, \"conversions\": %llu, "
            "\"bytes_in\": %llu, \"bytes_out\": %llu, \"bytes_dropped\": %llu, "
            "\"sleep_steps\": %llu, \"probe_pulses\": %llu, \"probe_cycles\": %llu, "
            "\"eeprom_writes\": %llu, \"power_cut\": %d, \"state\": %d}\n",
            (unsigned long long)avr->cycle, (unsigned long long)sleep_cycles,
            (unsigned long long)conversions, (unsigned long long)bytes_in,
            (unsigned long long)bytes_out, (unsigned long long)bytes_dropped,
            (unsigned long long)sleep_steps, (unsigned long long)probe_pulses,
            (unsigned long long)probe_cycles, (unsigned long long)ee_writes, power_cut, state);
    fclose(f);
}

static void load_bootloader(const char *path) {
    ihex_chunk_p chunks = NULL;
    int n = read_ihex_chunks(path, &chunks);
    if (n <= 0) {
        fprintf(stderr, "%s: not an Intel HEX file\n", path);
        exit(2);
    }
    uint32_t start = chunks[0].baseaddr;
    for (int i = 0; i < n; i++) {
        memcpy(avr->flash + chunks[i].baseaddr, chunks[i].data, chunks[i].size);
        if (chunks[i].baseaddr < start) start = chunks[i].baseaddr;
    }
    avr->reset_pc = start;  // BOOTRST fuse: reset jumps to the bootloader
    avr->pc = start;
}

int main(int argc, char **argv) {
    const char *fw = NULL, *boot = NULL, *sig = NULL, *eeprom = NULL, *stats = NULL,
               *ramdump = NULL;
    int opt;
    const char *prof = NULL;
    while ((opt = getopt(argc, argv, "f:b:s:e:t:d:p:rk:m:")) != -1) {
        switch (opt) {
            case 'f': fw = optarg; break;
            case 'b': boot = optarg; break;
            case 's': sig = optarg; break;
            case 'e': eeprom = optarg; break;
            case 't': stats = optarg; break;
            case 'd': ramdump = optarg; break;
            case 'p': prof = optarg; break;
            case 'r': realtime = 1; break;
            case 'k': {
                unsigned long long n, c;
                int val = 0xFF, got = sscanf(optarg, "%llu:%llu:%i", &n, &c, &val);
                if (got < 2 || !n || val < 0 || val > 255) {
                    fprintf(stderr, "-k N:CYCLES[:VALUE] with N >= 1, VALUE 0-255\n");
                    return 2;
                }
                cut_n = n;
                cut_cycles = c;
                cut_value = val;
                break;
            }
            case 'm': {
                char *hex = strchr(optarg, ':');
                poke_addr = (unsigned)strtoul(optarg, NULL, 0);
                poke_len = hex ? strlen(hex + 1) / 2 : 0;
                if (!hex || !poke_len || poke_len > sizeof poke_bytes || strlen(hex + 1) % 2 ||
                    poke_addr < 0x100 || poke_addr + poke_len > 0x900) {
                    fprintf(stderr, "-m ADDR:HEX, ADDR in SRAM (0x100-0x8ff), 1-64 bytes\n");
                    return 2;
                }
                for (size_t i = 0; i < poke_len; i++) {
                    unsigned v;
                    if (sscanf(hex + 1 + 2 * i, "%2x", &v) != 1) {
                        fprintf(stderr, "-m: not hex: %s\n", hex + 1);
                        return 2;
                    }
                    poke_bytes[i] = (uint8_t)v;
                }
                break;
            }
            default:
                fprintf(stderr, "usage: %s -f FW.elf [-b BOOT.hex] [-s SIGNAL] [-e EEPROM] "
                                "[-t STATS] [-d RAMDUMP] [-p PROFILE] [-r] "
                                "[-k N:CYCLES[:VALUE]] [-m ADDR:HEX]\n", argv[0]);
                return 2;
        }
    }
    if (!fw && !boot) {
        fprintf(stderr, "%s: -f FIRMWARE.elf or -b BOOTLOADER.hex is required\n", argv[0]);
        return 2;
    }
    avr = avr_make_mcu_by_name("atmega328p");
    if (!avr) {
        fprintf(stderr, "simavr has no atmega328p\n");
        return 2;
    }
    avr_init(avr);
    avr->frequency = 16000000;
    avr->vcc = avr->avcc = avr->aref = 5000;
    avr->log = 0;
    if (fw) {
        elf_firmware_t f;
        memset(&f, 0, sizeof f);
        if (elf_read_firmware(fw, &f)) {
            fprintf(stderr, "%s: cannot read the ELF\n", fw);
            return 2;
        }
        f.frequency = 16000000;
        strcpy(f.mmcu, "atmega328p");
        avr_load_firmware(avr, &f);
    }
    if (boot) load_bootloader(boot);
    if (sig) load_signal(sig);
    if (prof) profile = calloc(avr->flashend / 2 + 1, sizeof *profile);
    if (eeprom) eeprom_io(eeprom, 0);
    {
        avr_eeprom_desc_t d = {.ee = NULL, .offset = 0, .size = 1024};
        avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d);
        eeprom_mem = d.ee;
        int io = AVR_DATA_TO_IO(EECR_ADDR);
        eeprom_write_orig = avr->io[io].w.c;
        if (!eeprom_write_orig || !eeprom_mem) {
            fprintf(stderr, "simavr: no EEPROM controller to time\n");
            return 2;
        }
        avr->io[io].w.c = eeprom_write;
    }
    avr->sleep = on_sleep;
    pace_start_us = now_us();

    int slave;
    char name[256];
    if (openpty(&master, &slave, name, NULL, NULL) < 0) {
        perror("openpty");
        return 2;
    }
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    // Handlers first: a signal sent as soon as the path is read must not kill us.
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("%s\n", name);
    fflush(stdout);

    uint32_t flags = 0;
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~AVR_UART_FLAG_STDIO;
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            uart_out, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            uart_xon, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            uart_xoff, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('C'), 4), probe_pin, NULL);
    adc_irq = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, 0);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER),
                            adc_trigger, NULL);


    // With a bootloader, hold the MCU in reset until the host speaks (DTR reset),
    // and keep simulated time at the wall clock's pace.
    int held = boot != NULL;
    if (boot) realtime = 1;
    uint8_t pending[256];
    size_t npending = 0, ipending = 0;
    int state = cpu_Running;
    unsigned long iter = 0;
    while (!stop && !power_cut) {
        if ((iter++ & 255) == 0 || held) {
            if (ipending == npending) {
                ssize_t n = read(master, pending, sizeof pending);
                if (n > 0) {
                    npending = (size_t)n;
                    ipending = 0;
                    if (held) {
                        held = 0;
                        avr_reset(avr);
                        avr->pc = avr->reset_pc;
                        avr->data[0x54] = 0x02;  // MCUSR: EXTRF, an external reset
                        pace_start_us = now_us();
                        pace_start_cycle = avr->cycle;
                    }
                } else if (held) {
                    usleep(1000);
                    continue;
                }
            }
            // Held until the firmware enables its receiver (UCSR0B.RXEN0), as the
            // Uno's USB-serial chip holds them; simavr would drop them before that.
            int rx_on = avr->data[0xC1] & (1 << 4);
            if (rx_on && poke_len) {
                memcpy(avr->data + poke_addr, poke_bytes, poke_len);
                poke_len = 0;
            }
            while (xon && rx_on && ipending < npending) {
                avr_raise_irq(uart_in, pending[ipending++]);
                bytes_in++;
            }
        }
        if (out_len && (iter & 255) == 0) out_flush();
        if (snapshot) {
            snapshot = 0;
            if (stats) write_stats(stats, state);
        }
        if (held) continue;
        if (realtime && (iter & 255) == 1) pace();
        if (profile) {
            // One instruction (or interrupt entry) per avr_run: charge its cycles, minus
            // those spent asleep, to the address it started at.
            uint32_t pc = avr->pc;
            avr_cycle_count_t c0 = avr->cycle;
            uint64_t s0 = sleep_cycles;
            state = avr_run(avr);
            profile[(pc / 2) % (avr->flashend / 2 + 1)] +=
                (avr->cycle - c0) - (sleep_cycles - s0);
        } else {
            state = avr_run(avr);
        }
        if (state == cpu_Done || state == cpu_Crashed) break;
    }
    if (power_cut) {
        // Bytes already on the wire still reach the host: wait (up to 2 s) until it
        // has read them before the port goes away (closing it would discard them).
        // The tty layer moves written bytes to the reader's queue asynchronously, so
        // an empty queue counts only after 50 ms.
        for (int i = 0, empty_ms = 0; i < 2000 && empty_ms < 50; i++) {
            out_flush();
            int queued = 0;
            if (out_len == 0 && (ioctl(slave, FIONREAD, &queued) < 0 || queued == 0))
                empty_ms++;
            else
                empty_ms = 0;
            usleep(1000);
        }
    }
    if (eeprom) eeprom_io(eeprom, 1);
    if (stats) write_stats(stats, state);
    if (prof) {
        FILE *f = fopen(prof, "w");
        if (f) {
            for (uint32_t i = 0; i <= avr->flashend / 2; i++)
                if (profile[i]) fprintf(f, "%u %llu\n", i * 2, (unsigned long long)profile[i]);
            fclose(f);
        }
    }
    if (ramdump) {
        FILE *f = fopen(ramdump, "wb");
        if (f) {
            fwrite(avr->data, 1, avr->ramend + 1, f);
            fclose(f);
        }
    }
    close(slave);
    close(master);
    if (power_cut) return 3;
    return state == cpu_Crashed ? 1 : 0;
}
