// BPIIoT interface board firmware for the Arduino Uno (ATmega328P, 16 MHz).
//
// Open this folder in the Arduino IDE (or build it with arduino-cli, board
// arduino:avr:uno) and upload: the firmware is the .cpp and .h files beside this one;
// setup() and loop() are in app.cpp. This file stays empty on purpose: the IDE
// generates prototypes for an .ino's functions and puts them above the types those
// functions use, which breaks code that a C++ compiler accepts.
//
// Wiring: ADXL335 X/Y/Z on A0-A2 (powered from 3.3 V), TMP36 on A3, outputs on
// D2-D13, 115200 baud; A4 is a timing probe output (leave it unconnected). The
// protocol is protocol/SPEC.md of the BPIIoT kit; `make uno` builds the same sources
// with Debian's gcc-avr, and `bpiiot flash --arduino PORT` uploads them.
