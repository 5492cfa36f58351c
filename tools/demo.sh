#!/bin/sh
# make demo: a Session Manager session through the whole stack on this
# machine: build/ssmb <-> TLS <-> WebSocket <-> build/ssmb-local (the AWS
# side: SSM API, data channel, agent) <-> a shell in a PTY.
#   With a terminal: an interactive shell (type exit, or ~. to disconnect).
#   Without one: a scripted run: a command with its output and exit code,
#   then a port-forward transfer with its MB/s.
# Everything started here is stopped here, by PID.
set -u
B=${1:-build}
PY=/usr/bin/python3
TARGET=i-0123456789abcdef0
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ssmb-demo.XXXXXX")
LOCAL_PID=
ECHO_PID=
PF_PID=
cleanup() {
    for p in $PF_PID $ECHO_PID $LOCAL_PID; do kill "$p" 2>/dev/null; done
    for p in $PF_PID $ECHO_PID $LOCAL_PID; do wait "$p" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The value printed after "NAME: " in FILE.
field() { sed -n "s/^$1: //p" "$2" | head -n 1; }

# Waits (at most 10 s) until FILE has LINES lines.
wait_lines() {
    i=0
    until [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; do
        i=$((i + 1)); [ $i -le 100 ] || return 1; sleep 0.1
    done
}

"$B/ssmb-local" --port 0 --cert-dir "$DIR/certs" >"$DIR/local.out" 2>"$DIR/local.err" &
LOCAL_PID=$!
wait_lines "$DIR/local.out" 5 || { echo "demo: ssmb-local did not start:"; cat "$DIR/local.err"; exit 1; }
ENDPOINT=$(field endpoint "$DIR/local.out")
export AWS_CA_BUNDLE="$(field ca-bundle "$DIR/local.out")"
export AWS_REGION="$(field region "$DIR/local.out")"
export AWS_ACCESS_KEY_ID="$(field access-key-id "$DIR/local.out")"
export AWS_SECRET_ACCESS_KEY="$(field secret-access-key "$DIR/local.out")"
unset AWS_SESSION_TOKEN AWS_PROFILE
echo "demo: ssmb-local (the AWS side) listens at $ENDPOINT"
echo "demo: the same client talks to AWS when the endpoint, CA bundle and keys are AWS's (see README.md)"

if [ -t 0 ] && [ -t 1 ]; then
    echo "demo: opening a shell on $TARGET (type exit, or ~. to disconnect)"
    "$B/ssmb" start-session --endpoint-url "$ENDPOINT" --target "$TARGET"
    echo "demo: session ended with status $?"
    exit 0
fi

echo
echo "demo: ssmb run --target $TARGET -- 'uname -sr; echo to stderr >&2; exit 7'"
"$B/ssmb" run --endpoint-url "$ENDPOINT" --target "$TARGET" -- 'uname -sr; echo to stderr >&2; exit 7'
st=$?
[ $st -eq 7 ] || { echo "demo: the command failed (status $st)"; exit 1; }
echo "demo: ssmb exited with the remote exit code: $st"

echo
"$PY" "$(dirname "$0")/../tests/tcp_echo.py" >"$DIR/echo.out" &
ECHO_PID=$!
wait_lines "$DIR/echo.out" 1 || { echo "demo: the echo server did not start"; exit 1; }
REMOTE_PORT=$(head -n 1 "$DIR/echo.out")
echo "demo: ssmb port-forward --target $TARGET --remote-port $REMOTE_PORT (an echo server on the far side)"
"$B/ssmb" port-forward --endpoint-url "$ENDPOINT" --target "$TARGET" --remote-port "$REMOTE_PORT" \
    --local 127.0.0.1:0 2>"$DIR/pf.err" &
PF_PID=$!
i=0
until grep -q 'listening on' "$DIR/pf.err" 2>/dev/null; do
    i=$((i + 1)); [ $i -le 100 ] || { echo "demo: port-forward did not start:"; cat "$DIR/pf.err"; exit 1; }
    sleep 0.1
done
ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$DIR/pf.err" | head -n 1)
"$PY" - "$ADDR" <<'EOF'
import hashlib, os, socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
size = 32 * 1000 * 1000
data = os.urandom(size)
s = socket.create_connection((host, int(port)), timeout=60)
got = hashlib.sha256()
n = 0
def reader():
    global n
    while n < size:
        d = s.recv(1 << 16)
        if not d:
            break
        got.update(d)
        n += len(d)
t0 = time.time()
th = threading.Thread(target=reader)
th.start()
s.sendall(data)
th.join(120)
dt = time.time() - t0
ok = n == size and got.digest() == hashlib.sha256(data).digest()
print("demo: %d MB each way through the forward in %.2f s: %.1f MB/s up and down at once, %s" %
      (size // 1000000, dt, size / dt / 1e6, "byte-exact (SHA-256)" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
EOF
st=$?
echo
[ $st -eq 0 ] && echo "demo: done" || echo "demo: the transfer failed"
exit $st
