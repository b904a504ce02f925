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
SUITES  := lint rust install transparency bad-input binary-log findings allocators verdict html fuzz posix msgq

# Installation (GNU conventions: PREFIX, DESTDIR for staged installs by packagers).
PREFIX      ?= /usr/local
bindir      ?= $(PREFIX)/bin
libdir      ?= $(PREFIX)/lib
includedir  ?= $(PREFIX)/include
docdir      ?= $(PREFIX)/share/doc/shmtrace
man7dir     ?= $(PREFIX)/share/man/man7
# The user documentation installed beside the README (docs/command.md goes in as
# shmtrace-command.md, the name `shmtrace --help` gives).
USERDOCS    := docs/library.md docs/log-format.md docs/findings.md docs/allocators.md docs/limits.md
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR       := $(firstword $(subst ., ,$(VERSION)))
SONAME      := libshmtrace.so.$(MAJOR)
INSTALLED   := $(bindir)/shmtrace $(libdir)/libshmtrace.so.$(VERSION) $(libdir)/$(SONAME) $(libdir)/libshmtrace.so \
               $(includedir)/shmtrace.h $(libdir)/pkgconfig/shmtrace.pc \
               $(docdir)/README.md $(addprefix $(docdir)/,$(notdir $(USERDOCS))) \
               $(docdir)/shmtrace-command.md \
               $(man7dir)/shmtrace.7

.PHONY: all lib header demo demo-log demo-leak bench bench-profile bench-where bench-real install uninstall test \
        $(SUITES:%=test-%) test-c test-edge test-hostile test-binary stress fuzz lint fmt clean

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
	install -m 0644 README.md $(USERDOCS) $(DESTDIR)$(docdir)/
	install -m 0644 docs/command.md $(DESTDIR)$(docdir)/shmtrace-command.md
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
# and explains the result, also as an HTML page (build/leaky.html); the SysV objects it leaves
# in the kernel are removed afterwards (ipcrm, ids from its stdout).
demo: lib $(BUILD)/leaky
	@$(LIBDIR)/shmtrace --out $(BUILD)/leaky.run.$$$$ --html $(BUILD)/leaky.html -- $(BUILD)/leaky | tee $(BUILD)/leaky.out; \
	  set -- $$(sed -n 's/^leaky: created segment \([0-9]*\) and semaphore set \([0-9]*\)$$/\1 \2/p' $(BUILD)/leaky.out); \
	  [ -n "$$1" ] && ipcrm -m "$$1" -s "$$2"; echo "(leftovers removed with ipcrm -m $$1 -s $$2)"; \
	  echo "HTML report: $(BUILD)/leaky.html"

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
bench: lib $(BUILD)/bench/bench $(BUILD)/bench/scan $(BUILD)/bench/standin.so
	$(PYTHON) bench/run.py

# Instructions per hooked call under callgrind, native and per mode (needs valgrind).
bench-profile: lib $(BUILD)/bench/bench $(BUILD)/bench/standin.so
	$(PYTHON) bench/callgrind.py

# Where the time of a hooked call goes (the shim, the kernel, libc), natively and per mode,
# from perf's software clock (needs perf: Debian's linux-perf).
bench-where: lib $(BUILD)/bench/bench
	$(PYTHON) bench/where.py

# Programs nobody here wrote (stress-ng's IPC and mapping stressors, Apache httpd under ab),
# natively and under the shim in each mode (installs stress-ng, apache2-bin, apache2-utils).
bench-real: lib
	$(PYTHON) bench/real.py

# The C stand-in the text and JSON logs are measured against (bench/standin.c).
$(BUILD)/bench/standin.so: bench/standin.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -shared -fPIC -o $@ $< -ldl -lpthread

$(BUILD)/bench/%: bench/%.c include/shmtrace.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -Iinclude -o $@ $< -ldl -lpthread

# The test suites, each named after what it proves (tests/run.py describes them; docs/testing.md
# says what they need). `make test` runs them all, installing the Debian packages they need
# when missing, and ends with one line `N passed, M failed, K skipped`; `make test-SUITE` runs
# one the same way.
test: lib
	$(PYTHON) tests/run.py

$(SUITES:%=test-%): lib
	$(PYTHON) tests/run.py $(@:test-%=%)

# The names these suites had before.
test-c: test-transparency
test-edge: test-bad-input
test-hostile: test-allocators
test-binary: test-binary-log

# The allocator suite's long variants (about 5 minutes): 10M calls, 10 s fork storms, 30 s of
# 8 threads, a bigger process tree, three rounds of every allocator configuration.
stress: lib
	$(PYTHON) c_tests/hostile/run.py --stress

# The differential fuzzer (fuzz/) at length: random sequences of every hooked call, native
# against under the shim (results, errno, what calls wrote), the ledger against the kernel, the
# log against the calls; each run in a private IPC namespace (unshare, root). Reserves 8 huge
# pages for the run and restores vm.nr_hugepages. FUZZ_ARGS passes options to fuzz/run.py
# (--seeds, --calls...). Its short fixed-seed run is the `fuzz` suite (`make test-fuzz`).
fuzz: lib
	$(PYTHON) fuzz/run.py --seeds 10 --calls 20000 $(FUZZ_ARGS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
