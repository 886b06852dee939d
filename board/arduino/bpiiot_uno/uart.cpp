#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#include "sampler.h"

// RX: a power-of-two ring indexed by free-running 8-bit counters. TX: a report
// with its tag (65 bytes) and an ack fit; indexes wrap explicitly.
#define RX_SIZE 64
#define TX_SIZE 96

static volatile uint8_t rx_buf[RX_SIZE];
volatile uint8_t uart_rx_head, uart_rx_tail;
#define rx_head uart_rx_head
#define rx_tail uart_rx_tail
static volatile uint16_t rx_lost;
static volatile uint8_t tx_buf[TX_SIZE];
static volatile uint8_t tx_head, tx_tail;

void uart_begin(uint32_t baud) {
    // Double speed, as the Arduino core does: 115200 baud is 2.1 % off at 16 MHz.
    uint16_t ubrr = (uint16_t)((F_CPU / 4 / baud - 1) / 2);
    UCSR0A = _BV(U2X0);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);  // 8N1
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(USART_RX_vect) {
    uint8_t b = UDR0;
    if ((uint8_t)(rx_head - rx_tail) >= RX_SIZE) {
        rx_lost++;
        // Keep frame boundaries: a delimiter takes the place of the newest (unread)
        // byte, so the damaged frame is refused and counted on its own instead of
        // merging with the next one.
        if (b == 0) rx_buf[(uint8_t)(rx_head - 1) % RX_SIZE] = 0;
        return;
    }
    rx_buf[rx_head % RX_SIZE] = b;
    rx_head = (uint8_t)(rx_head + 1);
    GPIOR0 |= _BV(SAMPLER_WORK);  // wakes the idle loop (sampler.h)
}

ISR(USART_UDRE_vect) {
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx_buf[tx_tail];
    tx_tail = tx_tail + 1 == TX_SIZE ? 0 : tx_tail + 1;
}

int16_t uart_read(void) {
    if (rx_head == rx_tail) return -1;
    uint8_t b = rx_buf[rx_tail % RX_SIZE];
    rx_tail = (uint8_t)(rx_tail + 1);
    return b;
}

uint16_t uart_tx_room(void) {
    uint8_t h = tx_head, t = tx_tail;
    uint8_t used = h >= t ? h - t : (uint8_t)(TX_SIZE - t + h);
    return (uint16_t)(TX_SIZE - 1 - used);
}

void uart_put(uint8_t b) {
    tx_buf[tx_head] = b;
    tx_head = tx_head + 1 == TX_SIZE ? 0 : tx_head + 1;
    UCSR0B |= _BV(UDRIE0);
}

uint16_t uart_rx_lost(void) {
    uint8_t s = SREG;
    cli();
    uint16_t n = rx_lost;
    SREG = s;
    return n;
}

bool uart_tx_empty(void) { return tx_head == tx_tail; }
