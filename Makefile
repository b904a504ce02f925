# shmtrace: build, test and demo. `make demo` and `make test` are the two README commands.

SHELL   := /bin/bash
CARGO   ?= cargo
PYTHON  ?= python3
CC      ?= gcc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror
LIBDIR  := $(CURDIR)/target/release
LIB     := $(LIBDIR)/libshmtrace.so
BUILD   := $(CURDIR)/build

.PHONY: all lib header demo demo-leak bench test test-rust test-c lint fmt clean

all: lib

lib:
	$(CARGO) build --release

# Copies the header build.rs generated over the committed one (after changing src/api.rs).
header:
	@out=$$($(CARGO) build --release --message-format=json | $(PYTHON) -c 'import json, sys; \
	  print([m["out_dir"] for m in map(json.loads, sys.stdin) \
	         if m.get("reason") == "build-script-executed" and "shmtrace" in m["package_id"]][-1])') && \
	  cp "$$out/shmtrace.h" include/shmtrace.h && echo "include/shmtrace.h updated"

$(BUILD)/%: examples/%.c | $(BUILD)
	$(CC) $(CFLAGS) $(WARN) -o $@ $<

$(BUILD):
	mkdir -p $@

# The main job on the bundled example: its calls, as shmtrace logs them on stderr.
demo: lib $(BUILD)/demo
	LD_PRELOAD=$(LIB) $(BUILD)/demo

# A program with real leaks: the report names them, and SHMTRACE_EXITCODE fails the run. The
# segment and set it leaves in the kernel are removed afterwards (ipcrm, ids from its stdout).
demo-leak: lib $(BUILD)/leaky
	@SHMTRACE_EXITCODE=3 LD_PRELOAD=$(LIB) $(BUILD)/leaky 2>&1 | tee $(BUILD)/leaky.out \
	  | grep -v ' caller=' ; status=$${PIPESTATUS[0]}; \
	  set -- $$(sed -n 's/^leaky: created segment \([0-9]*\) and semaphore set \([0-9]*\)$$/\1 \2/p' $(BUILD)/leaky.out); \
	  [ -n "$$1" ] && ipcrm -m "$$1" -s "$$2"; echo "(exit status $$status; leftovers removed with ipcrm)"

# Figures, never pass/fail: see BENCHMARKS.md.
bench: lib $(BUILD)/bench/ledger_scale
	$(PYTHON) bench/run.py

$(BUILD)/bench/%: bench/%.c include/shmtrace.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -Iinclude -o $@ $< -ldl

test: lint test-rust test-c

test-rust:
	$(CARGO) test --release

test-c: lib
	$(PYTHON) c_tests/run.py

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
