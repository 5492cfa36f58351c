#!/bin/sh
# Runs the test matrix built by `make all`: the suite under gcc, clang,
# ASan+UBSan and the C++ build, then the symbol and no-printing checks.
# Each step is one line; the last line sums every test of every step.
B=${1:-build}
passed=0
failed=0
run_suite() { # run_suite NAME BINARY
    name=$1; bin=$2
    out=$B/$name.log
    if timeout 600 "$bin" >"$out" 2>&1; then st=ok; else st=FAILED; fi
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$last" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
    [ -n "$p" ] || { p=0; f=1; }
    [ "$st" = ok ] || [ "$f" -gt 0 ] || f=1
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$name" = test-gcc ]; then grep -E '^[^ ].*: [0-9]+/[0-9]+ ' "$out"; fi
    grep -E '^  FAIL|^FAILED|ERROR|runtime error' "$out" | head -n 30
    echo "suite $name: $p passed, $f failed ($st)"
}
check() { # check NAME COMMAND...: one test that passes when the command does
    name=$1; shift
    if msg=$("$@" 2>&1); then passed=$((passed + 1)); echo "check $name: ok"
    else failed=$((failed + 1)); echo "check $name: FAILED"; echo "$msg" | head -n 20; fi
}
exports_only_ssmb() {
    bad=$(nm -g --defined-only "$B/impl-gcc.o" | awk '{print $3}' | grep -v '^ssmb_' || true)
    [ -z "$bad" ] || { echo "exported symbols without the ssmb_ prefix: $bad"; return 1; }
    nm -g --defined-only "$B/impl-gcc.o" | grep -q ' T ssmb_sha256$' || { echo "ssmb_sha256 is not exported"; return 1; }
}
static_exports_nothing() {
    [ -f "$B/static-gcc.o" ] || { echo "no $B/static-gcc.o (it did not build)"; return 1; }
    bad=$(nm -g --defined-only "$B/static-gcc.o")
    [ -z "$bad" ] || { echo "SSMBRIDGE_STATIC object exports: $bad"; return 1; }
}
implementation_prints_nothing() {
    # From the implementation marker on, no printing, aborting or exiting.
    hits=$(sed -n '/^#if defined(SSMBRIDGE_IMPLEMENTATION)/,$p' ssmbridge.h |
           grep -nE '\b(printf|fprintf|vfprintf|puts|fputs|perror|abort|exit|_exit)[[:space:]]*\(|\bstderr\b|\bstdout\b' || true)
    [ -z "$hits" ] || { echo "$hits"; return 1; }
}
run_suite test-gcc "$B/test-gcc"
run_suite test-clang "$B/test-clang"
run_suite test-asan "$B/test-asan"
run_suite test-cpp-gcc "$B/test-cpp-gcc"
run_suite test-cpp-clang "$B/test-cpp-clang"
run_suite test-mbedtls "$B/test-mbedtls"
fuzz_replay() { # the seed corpus and 20000 seeded mutations per target
    for t in msg json ws http conn; do
        "$B/fuzz-replay-$t" --name "$t" --mutations 20000 tests/fuzz/corpus/$t/* || return 1
    done
}
check fuzz-replay fuzz_replay
under_valgrind() { # the I/O-facing suites again under valgrind (leaks, uninitialised reads)
    for f in conn url ws_ http tls engine; do
        valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
            "$B/test-gcc" --filter "$f" >"$B/valgrind-$f.log" 2>&1 || { tail -n 20 "$B/valgrind-$f.log"; return 1; }
    done
}
check valgrind under_valgrind
run_script() { # run_script NAME COMMAND...: a script that ends with "N passed, M failed"
    name=$1; shift
    out=$B/$name.log
    if timeout 900 "$@" >"$out" 2>&1; then st=ok; else st=FAILED; fi
    last=$(grep -E '[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    p=$(echo "$last" | sed -n 's/.*[^0-9]\([0-9][0-9]*\) passed.*/\1/p'); f=$(echo "$last" | sed -n 's/.* \([0-9][0-9]*\) failed$/\1/p')
    [ -n "$p" ] || p=$(echo "$last" | sed -n 's/^\([0-9][0-9]*\) passed.*/\1/p')
    [ -n "$p" ] && [ -n "$f" ] || { p=0; f=1; }
    [ "$st" = ok ] || [ "$f" -gt 0 ] || f=1
    passed=$((passed + p)); failed=$((failed + f))
    grep -E 'FAIL|Traceback' "$out" | head -n 20
    echo "script $name: $p passed, $f failed ($st)"
}
run_script local-smoke sh tests/local_smoke.sh "$B"
run_script cli-args sh tests/cli_args.sh "$B"
run_script cli-e2e sh tests/cli_e2e.sh "$B"
run_script cli-e2e-more sh tests/cli_e2e_more.sh "$B"
run_script examples sh tests/examples_check.sh "$B"
check symbols-prefixed exports_only_ssmb
check static-exports-nothing static_exports_nothing
check prints-nothing implementation_prints_nothing
check config-cells test -f "$B/config-cells.stamp"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
