# ssmbridge - build, test, bench.  `make test` is the one test command (CI runs it).
BUILD   ?= build
GCC     ?= gcc
CLANG   ?= clang
GXX     ?= g++
CLANGXX ?= clang++
HDR     := ssmbridge.h

WARN    := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wcast-qual -Wpointer-arith
C99     := -std=c99 $(WARN)
CXXWARN := -std=c++11 -Wall -Wextra -Wpedantic -Werror -fno-exceptions -fno-rtti
TESTDEF := -D_POSIX_C_SOURCE=200809L
TLSLIB  := -lbearssl
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_DEPS := $(HDR) tests/ssmb_test.h tests/runner.c tests/impl.c $(TEST_SRCS)
TEST_ALL  := tests/impl.c tests/runner.c $(TEST_SRCS)

TEST_BINS := $(BUILD)/test-gcc $(BUILD)/test-clang $(BUILD)/test-asan $(BUILD)/test-cpp-gcc $(BUILD)/test-cpp-clang \
             $(BUILD)/test-mbedtls
CHECK_OBJS := $(BUILD)/impl-gcc.o $(BUILD)/static-gcc.o $(BUILD)/config-cells.stamp

FUZZ_TARGETS := msg json ws http conn
FUZZ_REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/fuzz-replay-%)
FUZZ_SECONDS ?= 60

.PHONY: all test deps bench clean fuzz demo
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/example-%,$(wildcard examples/*.c))
all: $(TEST_BINS) $(CHECK_OBJS) $(BUILD)/ws-echo $(BUILD)/ssmb-local $(BUILD)/local-client $(BUILD)/ssmb $(EXAMPLES) $(FUZZ_REPLAY)

deps:
	@sh tools/deps.sh

$(BUILD):
	@mkdir -p $(BUILD)

$(BUILD)/test-gcc: $(TEST_DEPS) | $(BUILD)
	$(GCC) $(C99) $(TESTDEF) -O2 -g $(TEST_ALL) -o $@ $(TLSLIB)

$(BUILD)/test-clang: $(TEST_DEPS) | $(BUILD)
	$(CLANG) $(C99) $(TESTDEF) -O2 -g $(TEST_ALL) -o $@ $(TLSLIB)

$(BUILD)/test-asan: $(TEST_DEPS) | $(BUILD)
	$(CLANG) $(C99) $(TESTDEF) -O1 -g $(SAN) $(TEST_ALL) -o $@ $(TLSLIB)

# The suite again with the mbedTLS backend compiled in (BearSSL stays linked:
# some tests use it as an independent reference).
MBEDLIB := -lmbedtls -lmbedx509 -lmbedcrypto
$(BUILD)/test-mbedtls: $(TEST_DEPS) | $(BUILD)
	$(GCC) $(C99) $(TESTDEF) -DSSMB_USE_MBEDTLS -O1 -g $(TEST_ALL) -o $@ $(MBEDLIB) -lbearssl

# The whole implementation compiled as C++11, with the test suite linked to it.
$(BUILD)/test-cpp-gcc: $(TEST_DEPS) tests/impl_cpp.cpp | $(BUILD)
	$(GXX) $(CXXWARN) -O2 -c tests/impl_cpp.cpp -o $(BUILD)/impl_cpp-gcc.o
	$(GCC) $(C99) $(TESTDEF) -O2 tests/runner.c $(TEST_SRCS) $(BUILD)/impl_cpp-gcc.o -o $@ $(TLSLIB)

$(BUILD)/test-cpp-clang: $(TEST_DEPS) tests/impl_cpp.cpp | $(BUILD)
	$(CLANGXX) $(CXXWARN) -O2 -c tests/impl_cpp.cpp -o $(BUILD)/impl_cpp-clang.o
	$(CLANG) $(C99) $(TESTDEF) -O2 tests/runner.c $(TEST_SRCS) $(BUILD)/impl_cpp-clang.o -o $@ $(TLSLIB)

# Objects for the symbol checks: the default implementation must export only
# ssmb_ symbols, a SSMBRIDGE_STATIC one nothing at all.
$(BUILD)/impl-gcc.o: $(HDR) tests/impl.c | $(BUILD)
	$(GCC) $(C99) -O2 -c tests/impl.c -o $@

$(BUILD)/static-gcc.o: $(HDR) tests/static_impl.c | $(BUILD)
	$(GCC) $(C99) -O2 -c tests/static_impl.c -o $@

# Every configuration macro compiles warning-free with both compilers.
CONFIGS := -DSSMB_USE_BEARSSL -DSSMB_USE_MBEDTLS -DSSMB_NO_TLS -DSSMB_NO_SOCKETS -DSSMB_NO_SHA_NI \
           -DSSMBRIDGE_STATIC "-DSSMB_MALLOC(n)=malloc(n)" "-DSSMB_FREE(p)=free(p)"
$(BUILD)/config-cells.stamp: $(HDR) tests/impl.c | $(BUILD)
	@set -e; for cc in $(GCC) $(CLANG); do \
	  for cfg in -DSSMB_USE_BEARSSL -DSSMB_USE_MBEDTLS -DSSMB_NO_TLS -DSSMB_NO_SOCKETS -DSSMB_NO_SHA_NI \
	             -DSSMBRIDGE_STATIC "-DSSMB_MALLOC(n)=malloc(n) -DSSMB_FREE(p)=free(p) -include stdlib.h"; do \
	    $$cc $(C99) -O1 $$cfg -c tests/impl.c -o $(BUILD)/cell.o || { echo "config cell failed: $$cc $$cfg"; exit 1; }; \
	  done; \
	  printf '#include "ssmbridge.h"\n#include "ssmbridge.h"\nint ssmb_user(void);\nint ssmb_user(void) { return (int)ssmb_version()[0]; }\n' \
	    | $$cc $(C99) -I. -x c -fsyntax-only - || { echo "header alone does not compile: $$cc"; exit 1; }; \
	done; touch $@

# Fuzz targets: replayed over the seed corpus and seeded mutations by `make
# test` (ASan+UBSan, a few seconds), run under libFuzzer by `make fuzz`.
$(BUILD)/fuzz-replay-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(HDR) tests/impl.c | $(BUILD)
	$(CLANG) $(C99) -O1 -g $(SAN) tests/fuzz/fuzz_$*.c tests/fuzz/replay.c tests/impl.c -o $@ $(TLSLIB)

$(BUILD)/fuzz-%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(HDR) tests/impl.c | $(BUILD)
	$(CLANG) -std=c99 -O1 -g -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_$*.c tests/impl.c -o $@ $(TLSLIB)

fuzz: deps $(FUZZ_TARGETS:%=$(BUILD)/fuzz-%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD)/fuzz-corpus/$$t; cp tests/fuzz/corpus/$$t/* $(BUILD)/fuzz-corpus/$$t/; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	  $(BUILD)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=70000 -print_final_stats=1 $(BUILD)/fuzz-corpus/$$t 2>&1 | tail -n 3; \
	done

# A session through the whole stack against ssmb-local: a shell with a
# terminal, a scripted command and port-forward transfer without one.
demo: deps
	@$(MAKE) --no-print-directory -j2 $(BUILD)/ssmb $(BUILD)/ssmb-local
	@sh tools/demo.sh $(BUILD)

test: deps
	@$(MAKE) --no-print-directory -j2 all
	@sh tests/run.sh $(BUILD)

$(BUILD)/bench: tools/bench.c tools/bench_net.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -Wno-missing-prototypes -O2 -D_POSIX_C_SOURCE=200809L tools/bench.c -o $@ -lbearssl -lssl -lcrypto

# Echoes every message of a WebSocket server back (the outside check's client).
$(BUILD)/ws-echo: tools/ws-echo.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -D_POSIX_C_SOURCE=200809L -O2 tools/ws-echo.c -o $@ $(TLSLIB)

# The command-line client (and, through a symlink, session-manager-plugin).
$(BUILD)/ssmb: tools/ssmb.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -D_POSIX_C_SOURCE=200809L -O2 tools/ssmb.c -o $@ $(TLSLIB)

# The AWS side on loopback: SSM API, data channel and agent (tests, demos).
# A client of ssmb-local made of the header's public pieces (the smoke test runs it).
$(BUILD)/local-client: tests/local_client.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -D_POSIX_C_SOURCE=200809L -O2 tests/local_client.c -o $@ $(TLSLIB)

$(BUILD)/ssmb-local: tools/ssmb-local.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -D_GNU_SOURCE -O2 tools/ssmb-local.c -o $@ $(TLSLIB) -lutil

# The examples compile warning-free with the project's flags.
$(BUILD)/example-%: examples/%.c $(HDR) | $(BUILD)
	$(GCC) $(C99) -D_POSIX_C_SOURCE=200809L -O2 $< -o $@ $(TLSLIB)

bench: deps $(BUILD)/bench $(BUILD)/ssmb-local $(BUILD)/ssmb
	@sh tests/certs.sh $(BUILD)/certs
	@$(BUILD)/bench
	@/usr/bin/python3 tools/bench_e2e.py $(BUILD)

clean:
	rm -rf $(BUILD)
