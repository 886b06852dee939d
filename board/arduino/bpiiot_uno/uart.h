// USART0 driver with interrupt-driven RX and TX rings, so that sending never waits
// on the line while bytes fit the queue (the sampler runs from its own interrupts).
#ifndef BPIIOT_UART_H
#define BPIIOT_UART_H
#include <stdint.h>

void uart_begin(uint32_t baud);
// Next received byte, or -1.
int16_t uart_read(void);
// True when a received byte is waiting (inline: the idle loop asks at every wake-up).
extern volatile uint8_t uart_rx_head, uart_rx_tail;
static inline bool uart_rx_ready(void) { return uart_rx_head != uart_rx_tail; }
// Bytes free in the TX queue.
uint16_t uart_tx_room(void);
// True once every queued byte went to the USART.
bool uart_tx_empty(void);
// Queue one byte (the caller checked uart_tx_room).
void uart_put(uint8_t b);
// Received bytes lost because the RX ring was full.
uint16_t uart_rx_lost(void);

#endif
