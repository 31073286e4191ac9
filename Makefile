# maia-rtl: every target bootstraps .venv (and iverilog) on a fresh machine first.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SIM   ?=
WAVES ?= 0
BENCH ?=
JOBS  ?= auto
export MAIA_WAVES := $(WAVES)

.PHONY: all run test test-long verilog verilog-large lint lint-large sim bench bench-tray8 bench-long prune clean setup help

help:
	@echo "make run        main job: set up, generate Verilog, run the demonstration"
	@echo "make test       default test run (what CI runs)"
	@echo "make test-long  long regressions (exhaustive RTL sweeps, big configurations)"
	@echo "make verilog    write every block's Verilog to build/verilog/, the large tops too"
	@echo "                (default chip, maia200 cluster, tray: ~20 min the first time)"
	@echo "make verilog-large  only the large tops"
	@echo "make lint       ruff + Verilator lint of the generated Verilog"
	@echo "make lint-large Verilator lint of the large tops"
	@echo "make sim        cocotb benches only [SIM=icarus|verilator] [WAVES=1]"
	@echo "make bench      all benchmarks [BENCH=<name>] -> build/bench/<name>.json"
	@echo "                (BENCH=tray alone: ~16 min from a cold build, ~10 min cached: 4 RTL chips)"
	@echo "make bench-tray8 the 8-chip RTL tray rows (two trays of tray4_perf, 1 MiB per chip;"
	@echo "                ~1 h: build ~10 min, each of the 2 runs ~20 min; not timed whole)"
	@echo "make bench-long the tray bench's whole RTL scaling line, 2 -> 4 -> 8 chips"
	@echo "                (2-chip pair, 4 tray_perf, 8 tray4_perf; ~75 min, not timed whole)"
	@echo "make prune      delete stale simulator builds (keeps the 3 newest per design)"
	@echo "make clean      remove build/ (keeps .venv)"

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/bootstrap.sh
	VENV=$(VENV) bash .ci/bootstrap.sh

run: $(STAMP)
	$(PY) -m cosim.verilog
	$(PY) -m cosim.demo

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m "not slow" tests

test-long: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m slow tests

verilog: $(STAMP)
	$(PY) -m cosim.verilog --all

verilog-large: $(STAMP)
	$(PY) -m cosim.verilog --large

lint: $(STAMP)
	$(VENV)/bin/ruff check rtl golden cosim spec tests
	$(PY) -m cosim.lint

lint-large: $(STAMP)
	$(PY) -m cosim.lint --large

sim: $(STAMP)
	MAIA_SIM=$(SIM) $(PY) -m pytest -n $(JOBS) -m "sim and not slow" tests

bench: $(STAMP)
	MAIA_VERILATOR_OPT=$${MAIA_VERILATOR_OPT:--O2} $(PY) -m cosim.bench $(BENCH)

bench-tray8: $(STAMP)
	MAIA_TRAY_RTL=8 MAIA_TRAY_RTL_8_CFG=tray4_perf \
	MAIA_VERILATOR_OPT=$${MAIA_VERILATOR_OPT:--O2} $(PY) -m cosim.bench tray

bench-long: $(STAMP)
	MAIA_TRAY_RTL=all MAIA_TRAY_RTL_8_CFG=tray4_perf \
	MAIA_VERILATOR_OPT=$${MAIA_VERILATOR_OPT:--O2} $(PY) -m cosim.bench tray

prune: $(STAMP)
	$(PY) -m cosim.prune

clean:
	rm -rf build sim_build results.xml .pytest_cache
