# yhc -- build, test, fuzz, bench, demo.  `make test` runs everything CI runs.
CC      ?= cc
CLANG   ?= clang
CXX     ?= g++
WARN    := -Wall -Wextra -pedantic -Werror
CSTD    := -std=c99
CFLAGS  ?= -O2 -g
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
B       := build
TESTS   := $(basename $(notdir $(wildcard tests/test_*.c)))
SHARED  ?= $(abspath ../shared)
export YHC_SHARED := $(SHARED)

# Jobs run on every core and two more unless the caller chose -j: most test jobs wait on
# sockets and timers, and the spare slots keep the cores busy meanwhile.
NPROC := $(shell nproc 2>/dev/null || echo 2)
ifeq (,$(filter -j%,$(MAKEFLAGS)))
ifeq (0,$(MAKELEVEL))
MAKEFLAGS += -j$(shell echo $$(($(NPROC) + 2)))
endif
endif

.PHONY: all test test-run check test-fast sim-deps fuzz bench demo examples clean
# yhc.h is the library and its own source; tools/split.sh and tools/join.sh cut it into
# per-layer files and back for parallel work.
all: $(B)/c/test_json

$(B)/c/%: tests/%.c yhc.h tests/yt.h | $(B)/c
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -I. $< -o $@ -lm $(LIBS_$*)
# The C++ build checks that the header compiles and behaves as C++; -O1 without debug
# information builds it in about half the time (the C build keeps -O2 -g for valgrind).
CXXFLAGS_TEST ?= -O1
$(B)/cxx/%: tests/%.c yhc.h tests/yt.h | $(B)/cxx
	$(CXX) -x c++ -std=c++11 -Wall -Wextra -Werror $(CXXFLAGS_TEST) -I. $< -o $@ -lm $(LIBS_$*)
$(B)/san/%: tests/%.c yhc.h tests/yt.h | $(B)/san
	$(CLANG) $(CSTD) $(WARN) -O1 -g $(SAN) -I. $< -o $@ -lm $(LIBS_$*)
# The TLS variant: the same tests built with mbedTLS compiled in (tests that need TLS skip
# themselves in the other variants).
TLS_LIBS := -lmbedtls -lmbedx509 -lmbedcrypto
TLS_TESTS := $(filter test_tls test_http test_ws,$(TESTS))
$(B)/tls/%: tests/%.c yhc.h tests/yt.h | $(B)/tls
	$(CLANG) $(CSTD) $(WARN) -O1 -g $(SAN) -DYHC_MBEDTLS -I. $< -o $@ -lm $(LIBS_$*) $(TLS_LIBS)
# per-test link flags: only test_loop runs a second thread
LIBS_test_loop := -lpthread
# test_resilience.c builds test_cluster.c again (the issue-11 groups)
$(B)/c/test_resilience $(B)/cxx/test_resilience $(B)/san/test_resilience: tests/test_cluster.c
$(B)/c $(B)/cxx $(B)/san $(B)/tls:
	mkdir -p $@

# A decimal-comma locale for test_json's locale checks, compiled here when localedef and the
# locale sources exist (the test skips those checks otherwise).
$(B)/locale/de_DE.UTF-8:
	@mkdir -p $(B)/locale; localedef -i de_DE -f UTF-8 $@ >/dev/null 2>&1 || \
	  echo "localedef de_DE.UTF-8 failed: test_json skips its comma-locale checks"

sim-deps: tests/yagna-sim/node_modules/.package-lock.json
tests/yagna-sim/node_modules/.package-lock.json: tests/yagna-sim/package-lock.json
	cd tests/yagna-sim && npm ci --no-audit --no-fund --loglevel=error

# The whole suite: plain C99 build, C++ build, ASan+UBSan build (leaks included), TLS build,
# the stand-in's own tests; one total line at the end. tests/setup.sh first installs the
# Debian packages that are missing (when root or sudo allows) and says what it must skip;
# the variants that can run are then built and run by a second make that reads its answer.
-include $(B)/setup.mk
VARIANTS := c $(if $(YHC_HAVE_cxx),cxx) $(if $(YHC_HAVE_san),san) $(if $(YHC_HAVE_tls),tls)
# The long end-to-end programs are not built as C++: the other tests compile the same
# implementation as C++, and the C and sanitizer runs cover their behaviour.
LONG_TESTS := test_cluster test_golem test_money test_resilience
VARIANT_TESTS_c := $(TESTS)
VARIANT_TESTS_cxx := $(filter-out $(LONG_TESTS),$(TESTS))
VARIANT_TESTS_san := $(TESTS)
VARIANT_TESTS_tls := $(TLS_TESTS)
VALGRIND_TESTS := $(filter test_json test_wscodec test_http test_tls test_dns,$(TESTS))
test:
	@./tests/setup.sh $(B)
	@$(MAKE) --no-print-directory test-run
# Each libFuzzer target also runs briefly (FUZZ_BRIEF seconds) when clang's libFuzzer
# runtime is there; fuzz_tls only with mbedTLS. `make fuzz` runs them longer.
FUZZ_TARGETS := $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))
FUZZ_BRIEF ?= 2
FUZZ_RUN := $(if $(YHC_HAVE_fuzz),$(if $(YHC_HAVE_tls),$(FUZZ_TARGETS),$(filter-out fuzz_tls,$(FUZZ_TARGETS))))
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
$(B)/fuzz/%: fuzz/%.c yhc.h $(wildcard fuzz/*.h) | $(B)/fuzz
	$(CLANG) $(FUZZ_FLAGS) $(if $(filter fuzz_tls,$*),-DYHC_MBEDTLS) -I. $< -o $@ -lm $(if $(filter fuzz_tls,$*),$(TLS_LIBS))
$(B)/fuzz:
	mkdir -p $@
# The YHC_RESOLVER_GETADDRINFO cut, built and run with test_dns.
$(B)/gai/test_dns: tests/test_dns.c yhc.h tests/yt.h
	@mkdir -p $(B)/gai
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -DYHC_RESOLVER_GETADDRINFO -I. $< -o $@ -lm

# The poll() cut of tier 1 (YHC_NO_EPOLL; Linux waits in epoll otherwise), with the tests
# that turn the built-in loop hardest.
POLL_TESTS := test_loop test_http test_ws
$(B)/poll/%: tests/%.c yhc.h tests/yt.h
	@mkdir -p $(B)/poll
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -DYHC_NO_EPOLL -I. $< -o $@ -lm $(LIBS_$*)

# Every job of the suite is a make target that writes $(L)/JOB.log (tests/run-one.sh), so
# builds and runs overlap: most tests wait on sockets and timers, not on the CPU. The long
# jobs' prerequisites are made first, so that they start first: make queues the jobs that
# are ready in goal order, and one whose prerequisite was still being built waits behind
# every compile. tests/run-all.sh tallies in JOBS_ALL's order.
L := $(B)/log
RUN1 := ./tests/run-one.sh
JOBS_LONG := sim sim-b sim-golemjs $(foreach t,$(LONG_TESTS),$(foreach v,c $(filter san,$(VARIANTS)),$(v)/$(t)))
JOBS_ALL := $(foreach v,$(VARIANTS),$(addprefix $(v)/,$(VARIANT_TESTS_$(v)))) \
            $(if $(YHC_HAVE_valgrind),$(addprefix valgrind/,$(VALGRIND_TESTS))) \
            symbols header gai/test_dns $(addprefix poll/,$(POLL_TESTS)) $(if $(FUZZ_RUN),fuzz) loops sim sim-b sim-golemjs
JOBS_RUN := $(filter $(JOBS_ALL),$(JOBS_LONG)) $(filter-out $(JOBS_LONG),$(JOBS_ALL))
LONG_BINS := $(foreach t,$(LONG_TESTS),$(foreach v,c $(filter san,$(VARIANTS)),$(B)/$(v)/$(t)))
test-run:
	@rm -rf $(L)
	@$(MAKE) --no-print-directory sim-deps $(B)/locale/de_DE.UTF-8 $(LONG_BINS)
	@$(MAKE) --no-print-directory $(addprefix $(L)/,$(addsuffix .log,$(JOBS_RUN)))
	@./tests/run-all.sh $(B) $(JOBS_ALL)

# Quick loop while developing: plain build only.
test-fast:
	@rm -rf $(L)/c
	@$(MAKE) --no-print-directory $(addprefix $(L)/c/,$(addsuffix .log,$(TESTS)))
	@./tests/run-all.sh $(B) $(addprefix c/,$(TESTS))

# a bound per program: the long end-to-end ones take 2-3 minutes alone, and a busy machine
# (a fresh Debian run beside other work) made a sanitizer build of one take over 5
TEST_LIMIT = $(if $(filter $(LONG_TESTS),$*),900,300)
$(L)/c/%.log: $(B)/c/% | $(B)/locale/de_DE.UTF-8
	@$(RUN1) $@ $(TEST_LIMIT) $<
$(L)/cxx/%.log: $(B)/cxx/% | $(B)/locale/de_DE.UTF-8
	@$(RUN1) $@ $(TEST_LIMIT) $<
$(L)/san/%.log: $(B)/san/% | $(B)/locale/de_DE.UTF-8
	@$(RUN1) $@ $(TEST_LIMIT) $<
$(L)/tls/%.log: $(B)/tls/%
	@$(RUN1) $@ 300 $<
# valgrind over the plain C build of the tests that need no outside daemon (YT_LIGHT: their
# randomized loops shortened, see tests/yt.h)
$(L)/valgrind/%.log: $(B)/c/%
	@YT_LIGHT=1 $(RUN1) $@ 600 valgrind -q --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite $<
$(L)/gai/test_dns.log: $(B)/gai/test_dns
	@$(RUN1) $@ 300 $<
$(L)/poll/%.log: $(B)/poll/%
	@$(RUN1) $@ 300 $<
$(L)/symbols.log: yhc.h
	@$(RUN1) $@ 300 ./tests/check_symbols.sh
# README snippets, YHC_STATIC, include order, two translation units, with every compiler
$(L)/header.log: yhc.h
	@$(RUN1) $@ 600 ./tests/header_builds.sh
# every libFuzzer target briefly, from its seeds and the corpus earlier runs left
$(L)/fuzz.log: $(addprefix $(B)/fuzz/,$(FUZZ_RUN))
	@FUZZ_NO_BUILD=1 FUZZ_TARGETS="$(FUZZ_RUN)" FUZZ_SECONDS=$(FUZZ_BRIEF) $(RUN1) $@ 600 ./fuzz/run.sh
# the stand-in's node tests in three parts that run side by side (each file starts its own
# stand-in on a free port): golem-js's, SIM_A's files, and the rest
SIM_A := accounting activity failures fallback faults
space := $(subst x, ,x)
SIM_A_RE := $(subst $(space),|,$(addprefix /,$(addsuffix \.,$(SIM_A))))
$(L)/sim.log: sim-deps
	@$(RUN1) $@ 600 sh -c 'cd tests/yagna-sim && node --test --test-concurrency=1 $(addprefix test/,$(addsuffix .test.js,$(SIM_A)))'
$(L)/sim-b.log: sim-deps
	@$(RUN1) $@ 600 sh -c 'cd tests/yagna-sim && node --test --test-concurrency=1 $$(ls test/*.test.js | grep -vE "golemjs|$(SIM_A_RE)")'
$(L)/sim-golemjs.log: sim-deps
	@$(RUN1) $@ 600 sh -c 'cd tests/yagna-sim && node --test --test-concurrency=1 test/golemjs.test.js'

check: test

# libFuzzer targets (clang): every fuzz/fuzz_*.c runs for FUZZ_SECONDS; any crash fails.
FUZZ_SECONDS ?= 60
fuzz: yhc.h
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh

# Side-by-side benchmarks against the peers (installs them from Debian packages).
bench: yhc.h
	./bench/run.sh

# The examples, built against the generated header. The libuv and libevent loop examples
# need their library (tests/setup.sh installs it or says it is skipped).
EXAMPLES := $(filter-out $(if $(YHC_HAVE_libuv),,loop_libuv) $(if $(YHC_HAVE_libevent),,loop_libevent),\
              $(basename $(notdir $(wildcard examples/*.c))))
LIBS_loop_libuv := -luv
LIBS_loop_libevent := -levent
LOOP_EXAMPLES := $(addprefix $(B)/,$(filter loop_%,$(EXAMPLES)))
# the tier-3 loop examples (epoll, libuv, libevent) drive sessions on the stand-in (this
# rule comes after LOOP_EXAMPLES: a rule's prerequisites are expanded where it is written)
$(L)/loops.log: $(LOOP_EXAMPLES) sim-deps
	@$(RUN1) $@ 600 ./tests/loop_examples.sh $(B)
$(B)/%: examples/%.c examples/loop_demo.h yhc.h | $(B)/c
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -I. $< -o $@ -lm $(LIBS_$*)
examples: $(addprefix $(B)/,$(EXAMPLES))
# An example with TLS, as a real yagna set-up needs (the image registry is https://).
$(B)/tls-%: examples/%.c yhc.h | $(B)/c
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -DYHC_MBEDTLS -I. $< -o $@ -lm $(TLS_LIBS)

# The main job: the calculator example against the bundled yagna stand-in.
demo: $(B)/calculator sim-deps
	./examples/demo.sh

clean:
	rm -rf $(B)
