#!/bin/sh
# Runs the examples against a local emulator and checks what they do:
#   run_command   output and stderr apart, exit code 3 passed through
#   port_forward  2 connections x 100000 bytes echoed through the forward,
#                 then a clean stop on SIGINT
#   poll_shell    a command from a piped stdin, the end of input ends it
#   game_loop     the command's output and exit code, tick statistics
# Everything listens on 127.0.0.1, every step is bounded by timeout, and
# every process started here is stopped by its PID.
#   tests/examples_check.sh BUILD_DIR        (exits non-zero on failure)
set -u
B=${1:?usage: examples_check.sh BUILD_DIR}
PY=/usr/bin/python3
TARGET=i-0123456789abcdef0
T=$(mktemp -d "${TMPDIR:-/tmp}/ssmb-examples.XXXXXX") || exit 1
LOCAL_PID= ECHO_PID= PF_PID=
fails=0

stop() { # stop PID: TERM, then KILL after 5 s
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
cleanup() {
    stop "$PF_PID"
    stop "$ECHO_PID"
    stop "$LOCAL_PID"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "examples: FAIL $*"; fails=$((fails + 1)); }
passes=0
pass() { echo "examples: ok   $*"; passes=$((passes + 1)); }
# wait_for FILE PATTERN: until FILE has a line matching PATTERN (10 s at most)
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        [ $i -ge 100 ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
}

for x in ssmb-local example-run_command example-port_forward example-poll_shell example-game_loop; do
    [ -x "$B/$x" ] || { echo "examples: $B/$x is not built (make all)"; exit 1; }
done

# ---- the emulator, plain HTTP on a free port; the examples read the
# standard AWS environment ----
timeout 600 "$B/ssmb-local" --port 0 --no-tls >"$T/local.out" 2>"$T/local.err" &
LOCAL_PID=$!
wait_for "$T/local.out" '^secret-access-key: ' || { echo "examples: ssmb-local did not start"; exit 1; }
val() { sed -n "s/^$1: //p" "$T/local.out"; }
AWS_ENDPOINT_URL_SSM=$(val endpoint)
AWS_REGION=$(val region)
AWS_ACCESS_KEY_ID=$(val access-key-id)
AWS_SECRET_ACCESS_KEY=$(val secret-access-key)
export AWS_ENDPOINT_URL_SSM AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE HTTPS_PROXY https_proxy

# ---- run_command ----
timeout 30 "$B/example-run_command" "$TARGET" 'echo hi; echo err >&2; exit 3' >"$T/rc.out" 2>"$T/rc.err"
rc=$?
if [ $rc -eq 3 ] && [ "$(cat "$T/rc.out")" = hi ] && [ "$(cat "$T/rc.err")" = err ]; then
    pass "run_command: exit 3, stdout and stderr apart"
else
    fail "run_command: exit $rc, stdout '$(cat "$T/rc.out")', stderr '$(cat "$T/rc.err")'"
fi
# the endpoint as an argument instead of the environment, exit 0
timeout 30 env -u AWS_ENDPOINT_URL_SSM "$B/example-run_command" --endpoint-url "$AWS_ENDPOINT_URL_SSM" "$TARGET" \
    'printf "%s\n" a b' >"$T/rc2.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$T/rc2.out")" = "$(printf 'a\nb')" ]; then
    pass "run_command --endpoint-url: exit 0"
else
    fail "run_command --endpoint-url: exit $rc, output '$(cat "$T/rc2.out")'"
fi

# ---- port_forward through tcp_echo.py ----
timeout 300 "$PY" tests/tcp_echo.py >"$T/echo.out" 2>/dev/null &
ECHO_PID=$!
if wait_for "$T/echo.out" '^[0-9]'; then
    timeout 120 "$B/example-port_forward" "$TARGET" "$(head -n 1 "$T/echo.out")" >"$T/pf.out" 2>"$T/pf.err" &
    PF_PID=$!
    if wait_for "$T/pf.out" '^listening on '; then
        addr=$(sed -n 's/^listening on //p' "$T/pf.out")
        got=$(timeout 60 "$PY" tests/pf_client.py "$addr" 2 100000 2>&1)
        [ "$got" = "ok 2" ] && pass "port_forward: 2 x 100000 bytes through $addr" ||
            fail "port_forward: pf_client said '$got'"
    else
        fail "port_forward: no address printed: $(cat "$T/pf.err")"
    fi
    # SIGINT (Ctrl-C) to the example (timeout passes it on): a clean stop.
    kill -INT "$PF_PID" 2>/dev/null
    i=0
    while kill -0 "$PF_PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$PF_PID" 2>/dev/null; then
        fail "port_forward: still running 10 s after SIGINT"
    else
        wait "$PF_PID"
        rc=$?
        [ $rc -eq 0 ] && grep -q 'session closed: SSMB_CLOSED' "$T/pf.err" && pass "port_forward: clean stop on SIGINT" ||
            fail "port_forward: exit $rc after SIGINT: $(tail -n 2 "$T/pf.err")"
    fi
    PF_PID=
else
    fail "port_forward: tcp_echo.py did not start"
fi

# ---- poll_shell, stdin a pipe (no raw mode): `exit` ends the remote shell ----
printf 'echo $((6*7))x\nexit\n' | timeout 30 "$B/example-poll_shell" "$TARGET" >"$T/sh.out" 2>"$T/sh.err"
rc=$?
if [ $rc -eq 0 ] && grep -q '42x' "$T/sh.out"; then
    pass "poll_shell: piped command ran, shell ended at end of input"
else
    fail "poll_shell: exit $rc: $(cat "$T/sh.out" "$T/sh.err")"
fi

# ---- game_loop ----
timeout 60 "$B/example-game_loop" "$TARGET" 'echo frame; exit 5' >"$T/game.out" 2>"$T/game.err"
rc=$?
if [ $rc -eq 0 ] && grep -qx frame "$T/game.out" && grep -qx 'exit code: 5' "$T/game.out" &&
    grep -q '^tick: max [0-9.]* us, avg [0-9.]* us' "$T/game.out"; then
    pass "game_loop: $(grep '^tick:' "$T/game.out")"
else
    fail "game_loop: exit $rc: $(cat "$T/game.out" "$T/game.err")"
fi

echo "examples: $passes passed, $fails failed"
[ $fails -eq 0 ]
