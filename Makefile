# One entry point for people and CI. Everything installs into ./.venv from nothing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# No SDL driver is forced here: `make demo` must open a real window on a desktop. The test
# suite (tests/conftest.py) and the `test` target pick SDL's dummy drivers for themselves.
HEADLESS_SDL := SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

.PHONY: install test lint demo bench proof soak clean

# llama.cpp is built with -march=native, which turns on Intel AMX tiles wherever the CPU lists
# them. Virtual machines that list AMX without granting it (seen on a Xeon under Firecracker)
# then segfault in ggml_backend_amx_mul_mat on the first prompt of a few hundred tokens. AVX-512
# serves a small model as well, so on x86-64 the build leaves AMX out.
NO_AMX := $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# llama-cpp-python builds from source the first time (~7 min on 2 cores); pip caches the wheel.
	CFLAGS="$(NO_AMX) $$CFLAGS" CXXFLAGS="$(NO_AMX) $$CXXFLAGS" \
		$(PY) -m pip install -q -e '.[dev,demo,ollama,embedded,openai,bench]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(HEADLESS_SDL) $(PY) -m pytest -q

demo: install
	$(PY) run_demo.py $(ARGS)

bench: install
	# BENCH_ARGS=--check: every benchmark still runs; the target fails if any missed a target.
	# bench/proof.py runs all of them itself (see `make proof`), and bench/soak.py has its own
	# target (`make soak`), so the loop leaves them out.
	status=0; for b in bench/*.py; do case $$b in bench/_*|bench/proof.py|bench/soak.py) continue;; esac; \
		echo "== $$b"; \
		$(HEADLESS_SDL) $(PY) $$b $(BENCH_ARGS) || status=1; done; exit $$status

# Every comparison in docs/BENCHMARKS.md, measured from scratch (10-20 min on 2 cores), with its
# plots in docs/benchmarks/. PROOF_ARGS=--quick for a fast rehearsal, --check to gate on targets.
proof: install
	$(HEADLESS_SDL) $(PY) bench/proof.py $(PROOF_ARGS)

# 30 game minutes, 50 agents, a backend failing a third of the time (~2 min on 2 cores); the
# figures go to docs/soak.md. SOAK_ARGS="--minutes 2 --agents 10" for a quick look.
soak: install
	$(HEADLESS_SDL) $(PY) bench/soak.py --check --write docs/soak.md $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
