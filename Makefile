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

# Installation (GNU conventions: PREFIX, DESTDIR for staged installs by packagers).
PREFIX      ?= /usr/local
bindir      ?= $(PREFIX)/bin
libdir      ?= $(PREFIX)/lib
includedir  ?= $(PREFIX)/include
docdir      ?= $(PREFIX)/share/doc/shmtrace
man7dir     ?= $(PREFIX)/share/man/man7
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR       := $(firstword $(subst ., ,$(VERSION)))
SONAME      := libshmtrace.so.$(MAJOR)
INSTALLED   := $(bindir)/shmtrace $(libdir)/libshmtrace.so.$(VERSION) $(libdir)/$(SONAME) $(libdir)/libshmtrace.so \
               $(includedir)/shmtrace.h $(libdir)/pkgconfig/shmtrace.pc \
               $(docdir)/README.md $(docdir)/log-format.md $(docdir)/findings.md \
               $(docdir)/shmtrace-command.md \
               $(man7dir)/shmtrace.7

.PHONY: all lib header demo demo-log demo-leak bench bench-profile install uninstall test \
        test-install test-edge test-hostile stress test-rust test-c test-binary test-findings lint \
        fmt clean fuzz test-fuzz-short

all: lib

# The soname symlink lets programs linked in the build tree (they need libshmtrace.so.0) run.
lib:
	$(CARGO) build --release
	ln -sf libshmtrace.so $(LIBDIR)/$(SONAME)

install: lib
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir)/pkgconfig $(DESTDIR)$(includedir) \
	  $(DESTDIR)$(docdir) $(DESTDIR)$(man7dir)
	install -m 0755 $(LIBDIR)/shmtrace $(DESTDIR)$(bindir)/shmtrace
	install -m 0755 $(LIB) $(DESTDIR)$(libdir)/libshmtrace.so.$(VERSION)
	ln -sf libshmtrace.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(libdir)/libshmtrace.so
	install -m 0644 include/shmtrace.h $(DESTDIR)$(includedir)/shmtrace.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(libdir)|' -e 's|@INCLUDEDIR@|$(includedir)|' \
	  -e 's|@VERSION@|$(VERSION)|' -e 's|@MAJOR@|$(MAJOR)|' shmtrace.pc.in \
	  > $(DESTDIR)$(libdir)/pkgconfig/shmtrace.pc
	install -m 0644 README.md docs/log-format.md docs/findings.md $(DESTDIR)$(docdir)/
	install -m 0644 cli/README.md $(DESTDIR)$(docdir)/shmtrace-command.md
	sed -e 's|@VERSION@|$(VERSION)|' docs/shmtrace.7 > $(DESTDIR)$(man7dir)/shmtrace.7

# Removes exactly the files `install` puts in place (and the doc directory it created).
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(docdir) 2>/dev/null

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

# The main job on a bundled example: `shmtrace` runs a program that leaks (examples/leaky.c)
# and explains the result; the SysV objects it leaves in the kernel are removed afterwards
# (ipcrm, ids from its stdout).
demo: lib $(BUILD)/leaky
	@$(LIBDIR)/shmtrace --out $(BUILD)/leaky.run.$$$$ -- $(BUILD)/leaky | tee $(BUILD)/leaky.out; \
	  set -- $$(sed -n 's/^leaky: created segment \([0-9]*\) and semaphore set \([0-9]*\)$$/\1 \2/p' $(BUILD)/leaky.out); \
	  [ -n "$$1" ] && ipcrm -m "$$1" -s "$$2"; echo "(leftovers removed with ipcrm -m $$1 -s $$2)"

# The live, strace-like log of a clean program (examples/demo.c), on stderr.
demo-log: lib $(BUILD)/demo
	LD_PRELOAD=$(LIB) $(BUILD)/demo

# A program with real leaks: the report names them, and SHMTRACE_EXITCODE fails the run. The
# segment and set it leaves in the kernel are removed afterwards (ipcrm, ids from its stdout).
demo-leak: lib $(BUILD)/leaky
	@SHMTRACE_EXITCODE=3 LD_PRELOAD=$(LIB) $(BUILD)/leaky 2>&1 | tee $(BUILD)/leaky.out \
	  | grep -v ' caller=' ; status=$${PIPESTATUS[0]}; \
	  set -- $$(sed -n 's/^leaky: created segment \([0-9]*\) and semaphore set \([0-9]*\)$$/\1 \2/p' $(BUILD)/leaky.out); \
	  [ -n "$$1" ] && ipcrm -m "$$1" -s "$$2"; echo "(exit status $$status; leftovers removed with ipcrm)"

# Figures, never pass/fail: see BENCHMARKS.md.
# BENCH_REPS=N pairs of runs per cell (default 3), BENCH_QUICK=1 a smoke test; see bench/run.py.
bench: lib $(BUILD)/bench/bench
	$(PYTHON) bench/run.py

# Instructions per hooked call under callgrind, native and per mode (needs valgrind).
bench-profile: lib $(BUILD)/bench/bench
	$(PYTHON) bench/callgrind.py

$(BUILD)/bench/%: bench/%.c include/shmtrace.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -Iinclude -o $@ $< -ldl -lpthread

# Installs into temporary prefixes, checks pkg-config and uninstall, and runs the downstream
# recipe in examples/downstream (its `make check` must fail on the leak, pass once fixed).
test-install: lib
	$(PYTHON) tests/install_recipe.py

# Hostile input and conditions: bad arguments to every hook, signals, SIGKILL, secure mode,
# log file safety, late calls (c_tests/edge; needs root for setcap/setuid).
test-edge: lib
	$(PYTHON) c_tests/edge/run.py

# Foreign allocators (jemalloc, tcmalloc: apt-get install libjemalloc2 libtcmalloc-minimal4),
# 8 threads on every hook, fork storms, 1M-call memory flatness (c_tests/hostile): about one
# minute on 2 cores, part of `test`.
test-hostile: lib
	$(PYTHON) c_tests/hostile/run.py

# The long variants (about 5 minutes): 10M calls, 10 s fork storms, 30 s of 8 threads, a
# bigger process tree, three rounds of every allocator configuration.
stress: lib
	$(PYTHON) c_tests/hostile/run.py --stress

# The binary log (SHMTRACE_FORMAT=binary): SIGKILL, threads, fork, exec, a full disk (a tiny
# tmpfs: needs root, else skipped with a note), bad settings, decoding (c_tests/binary).
test-binary: lib
	$(PYTHON) c_tests/binary/run.py

# One program per audit finding and its corrected version, suppressions, exit codes
# (c_tests/findings).
test-findings: lib
	$(PYTHON) c_tests/findings/run.py

# The differential fuzzer (fuzz/): random sequences of every hooked call, native against under
# the shim (results, errno, what calls wrote), the ledger against the kernel, the log against the
# calls; each run in a private IPC namespace (unshare, root). Reserves 8 huge pages for the run
# and restores vm.nr_hugepages. FUZZ_ARGS passes options to fuzz/run.py (--seeds, --calls...).
fuzz: lib
	$(PYTHON) fuzz/run.py --seeds 10 --calls 20000 $(FUZZ_ARGS)

# A short fixed-seed run of the same (seconds), for `make test`.
test-fuzz-short: lib
	$(PYTHON) fuzz/run.py --seeds 5 --calls 10000

test: lint test-rust test-install test-edge test-c test-binary test-findings test-hostile

# The command's tests (cli/tests) run programs under the built library.
test-rust: lib
	$(CARGO) test --release

test-c: lib
	$(PYTHON) c_tests/run.py

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
