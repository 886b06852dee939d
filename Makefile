# Two commands matter: `make demo` and `make test`. Everything else is a step of those.
PY      := .venv/bin/python
VENV    := .venv/.installed
NODE    := node_modules/.installed
SYSDEPS := build/.sysdeps
PORT    ?=

.PHONY: all setup demo test lint typecheck pytest bench flash clean vectors artifacts fuzz mutation \
	uno uno-host uno-fuzz uno-size flash-uno

all: test

$(SYSDEPS): tools/install-system-deps.sh
	bash tools/install-system-deps.sh
	@mkdir -p build && touch $@

$(VENV): setup.cfg pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
	@touch $@

$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(SYSDEPS) $(VENV) $(NODE)

demo: setup
	$(PY) tools/demo.py

lint: $(VENV)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: $(VENV)
	.venv/bin/mypy

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup
	$(PY) tools/bench/run.py

flash: $(VENV)
	@test -n "$(PORT)" || { echo "usage: make flash PORT=/dev/ttyACM0" >&2; exit 2; }
	.venv/bin/bpiiot flash $(PORT)

# Long randomized crash run of the outbox (issue 8): a sender worker SIGKILLed 200 times over
# 200 actions on anvil, then every action checked on chain: mined exactly once, no nonce gap.
# Then the whole demo (wear over 150 s, every transaction's evidence verified).
.PHONY: soak
soak: setup
	BPIIOT_SOAK_KILLS=200 BPIIOT_SOAK_ACTIONS=200 $(PY) -m pytest -q tests/sbc/chain/test_crash.py -k random_sigkills
	$(PY) tools/demo.py --duration 150
	BPIIOT_POWER_CUT_STRIDE=1 $(PY) -m pytest -q tests/board/arduino/test_uno_power_cut.py

vectors: $(VENV)
	$(PY) tools/gen_vectors.py

# 1,000,000 hostile payloads through the SDK, a Link, the MicroPython firmware codec (Unix
# port) and the Uno's verifier under AddressSanitizer and UBSan.
fuzz: setup uno-fuzz
	$(PY) tools/fuzz_wire.py --inputs 1000000 --uno

# mutmut 3 on wire.py and messages.py; writes build/mutation.json (read by `make bench`).
mutation: setup
	$(PY) tools/mutation.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

# --- Arduino Uno firmware (board/arduino/bpiiot_uno), Debian's gcc-avr + arduino-core-avr.
# `make uno` builds the firmware (ELF and HEX), the host build of its codec (the
# conformance vectors run against it) and the simavr bridge; outputs under build/uno/.
UNO_SRC  := board/arduino/bpiiot_uno
UNO_OUT  := build/uno
AVR_CORE ?= /usr/share/arduino/hardware/arduino/avr
UNO_DEFS := -mmcu=atmega328p -DF_CPU=16000000L -DARDUINO=10807 -DARDUINO_AVR_UNO \
            -DARDUINO_ARCH_AVR -DDECIMAL_DIG=__DECIMAL_DIG__
UNO_INC  := -I$(AVR_CORE)/cores/arduino -I$(AVR_CORE)/variants/standard -I$(UNO_SRC)
UNO_OPT  := -Os -ffunction-sections -fdata-sections -Wall
UNO_CXX  = avr-g++ $(UNO_DEFS) $(UNO_INC) $(UNO_OPT) -std=gnu++11 -fno-exceptions \
            -fno-threadsafe-statics -fpermissive
UNO_CC   = avr-gcc $(UNO_DEFS) $(UNO_INC) $(UNO_OPT) -std=gnu11
UNO_CORE_SRC := $(wildcard $(AVR_CORE)/cores/arduino/*.c $(AVR_CORE)/cores/arduino/*.cpp \
                $(AVR_CORE)/cores/arduino/*.S)
UNO_CORE_OBJ := $(patsubst $(AVR_CORE)/cores/arduino/%,$(UNO_OUT)/core/%.o,$(UNO_CORE_SRC))
UNO_FW_SRC   := $(wildcard $(UNO_SRC)/*.cpp)
UNO_FW_OBJ   := $(patsubst $(UNO_SRC)/%,$(UNO_OUT)/fw/%.o,$(UNO_FW_SRC)) $(UNO_OUT)/fw/bpiiot_uno.ino.o
UNO_HDRS     := $(wildcard $(UNO_SRC)/*.h)
UNO_CODEC    := codec cbor cobs crc32 sha256 dsp

uno: $(UNO_OUT)/bpiiot_uno.hex $(UNO_OUT)/host/libuno_codec.so $(UNO_OUT)/simavr_bridge \
	$(UNO_OUT)/vector_runner.elf

uno-host: $(UNO_OUT)/host/libuno_codec.so

uno-fuzz: $(UNO_OUT)/host/uno_fuzz_runner

$(UNO_OUT)/core/%.c.o: $(AVR_CORE)/cores/arduino/%.c
	@mkdir -p $(@D)
	$(UNO_CC) -c $< -o $@
$(UNO_OUT)/core/%.cpp.o: $(AVR_CORE)/cores/arduino/%.cpp
	@mkdir -p $(@D)
	$(UNO_CXX) -c $< -o $@
$(UNO_OUT)/core/%.S.o: $(AVR_CORE)/cores/arduino/%.S
	@mkdir -p $(@D)
	avr-gcc $(UNO_DEFS) $(UNO_INC) -x assembler-with-cpp -c $< -o $@
$(UNO_OUT)/core.a: $(UNO_CORE_OBJ)
	rm -f $@ && avr-gcc-ar rcs $@ $^

$(UNO_OUT)/fw/%.cpp.o: $(UNO_SRC)/%.cpp $(UNO_HDRS)
	@mkdir -p $(@D)
	$(UNO_CXX) -c $< -o $@
# The sketch's .ino holds only comments (setup and loop are in app.cpp); compiled as the
# IDE compiles it, after Arduino.h.
$(UNO_OUT)/fw/bpiiot_uno.ino.o: $(UNO_SRC)/bpiiot_uno.ino $(UNO_HDRS)
	@mkdir -p $(@D)
	$(UNO_CXX) -x c++ -include Arduino.h -c $< -o $@

$(UNO_OUT)/bpiiot_uno.elf: $(UNO_FW_OBJ) $(UNO_OUT)/core.a
	avr-gcc -mmcu=atmega328p -Os -Wl,--gc-sections -o $@ $(UNO_FW_OBJ) $(UNO_OUT)/core.a -lm
$(UNO_OUT)/bpiiot_uno.hex: $(UNO_OUT)/bpiiot_uno.elf
	avr-objcopy -O ihex -R .eeprom $< $@
	@avr-size -C --mcu=atmega328p $<

uno-size: $(UNO_OUT)/bpiiot_uno.elf
	avr-size -C --mcu=atmega328p $<

$(UNO_OUT)/host/libuno_codec.so: tools/uno/codec_host.cpp $(UNO_HDRS) \
		$(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))
	@mkdir -p $(@D)
	g++ -O2 -Wall -Wextra -shared -fPIC -I$(UNO_SRC) -o $@ $< $(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))

# The firmware's verifier under AddressSanitizer and UBSan, for tools/fuzz_wire.py --uno.
$(UNO_OUT)/host/uno_fuzz_runner: tools/uno/fuzz_runner.cpp tools/uno/codec_host.cpp $(UNO_HDRS) \
		$(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))
	@mkdir -p $(@D)
	g++ -O1 -g -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -I$(UNO_SRC) -o $@ $< tools/uno/codec_host.cpp \
		$(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))

# The codec compiled by avr-gcc with the host build's C ABI, for vectors in simavr.
$(UNO_OUT)/vector_runner.elf: tools/uno/vector_runner.cpp tools/uno/codec_host.cpp $(UNO_HDRS) \
		$(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))
	avr-g++ $(UNO_DEFS) -I$(UNO_SRC) -Os -fno-exceptions -Wl,--gc-sections \
		-ffunction-sections -fdata-sections -o $@ $< tools/uno/codec_host.cpp \
		$(patsubst %,$(UNO_SRC)/%.cpp,$(UNO_CODEC))

$(UNO_OUT)/simavr_bridge: tools/uno/simavr_bridge.c
	@mkdir -p $(@D)
	gcc -O2 -Wall -Wextra -I/usr/include/simavr -o $@ $< -lsimavr -lutil

# Upload through the Uno's bootloader (optiboot, 115200 baud), as the IDE does.
flash-uno: $(UNO_OUT)/bpiiot_uno.hex
	@test -n "$(PORT)" || { echo "usage: make flash-uno PORT=/dev/ttyACM0" >&2; exit 2; }
	avrdude -p atmega328p -c arduino -P $(PORT) -b 115200 -D -U flash:w:$<:i
