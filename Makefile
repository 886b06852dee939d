# Two commands matter: `make demo` and `make test`. Everything else is a step of those.
PY      := .venv/bin/python
VENV    := .venv/.installed
NODE    := node_modules/.installed
SYSDEPS := build/.sysdeps
PORT    ?=

.PHONY: all setup demo test lint typecheck pytest bench soak flash clean vectors artifacts

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

# Longer runs than `make test` allows: the whole demo (two minutes of wear, every
# transaction's evidence verified; fails if any is missing or does not verify).
soak: setup
	$(PY) tools/demo.py --duration 150

flash: $(VENV)
	@test -n "$(PORT)" || { echo "usage: make flash PORT=/dev/ttyACM0" >&2; exit 2; }
	.venv/bin/bpiiot flash $(PORT)

# Long randomized crash run of the outbox (issue 8): a sender worker SIGKILLed 200 times over
# 200 actions on anvil, then every action checked on chain: mined exactly once, no nonce gap.
.PHONY: soak
soak: setup
	BPIIOT_SOAK_KILLS=200 BPIIOT_SOAK_ACTIONS=200 $(PY) -m pytest -q tests/sbc/chain/test_crash.py -k random_sigkills

vectors: $(VENV)
	$(PY) tools/gen_vectors.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
