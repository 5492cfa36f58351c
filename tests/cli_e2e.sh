#!/bin/sh
# build/ssmb end to end against build/ssmb-local on loopback: `ssmb run`
# exit codes with stdout and stderr kept apart, a port-forward transfer
# through a local echo server, and stdin/stdout bridging (ssh-proxy). Every
# process started here is stopped by its PID; every step is bounded by
# timeout.
# usage: sh tests/cli_e2e.sh BUILD_DIR
B=${1:-build}
SSMB=$B/ssmb
LOCAL=$B/ssmb-local
for f in "$SSMB" "$LOCAL"; do [ -x "$f" ] || { echo "cli_e2e: no $f"; exit 1; }; done
command -v python3 >/dev/null || { echo "cli_e2e: python3 is needed for the echo server"; exit 1; }
. "$(dirname "$0")/e2e_common.sh"

# ---- the emulator
# TLS with the emulator's generated CA (its certificate names 127.0.0.1).
"$LOCAL" --port 0 >"$T/local.out" 2>"$T/local.err" &
pids="$pids $!"
wait_for "$T/local.out" '^secret-access-key: ' 20 || { echo "cli_e2e: ssmb-local did not start"; cat "$T/local.err"; exit 1; }
field() { sed -n "s/^$1: //p" "$T/local.out" | head -n 1; }
EP=$(field endpoint); CA=$(field ca-bundle)
export AWS_REGION="$(field region)" AWS_ACCESS_KEY_ID="$(field access-key-id)" AWS_SECRET_ACCESS_KEY="$(field secret-access-key)"
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CA_BUNDLE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none" AWS_EC2_METADATA_DISABLED=true
TARGET=i-0123456789abcdef0
set -- --target "$TARGET" --endpoint-url "$EP" --ca-bundle "$CA"

# ---- run: exit codes, stdout and stderr apart
# run_case NAME WANT_RC WANT_STDOUT STDERR_PATTERN COMMAND
run_case() {
    name=$1; want=$2; want_out=$3; err_pat=$4; shift 4
    timeout 30 "$SSMB" run "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    out=$(cat "$T/out"); err=$(cat "$T/err")
    [ "$rc" = "$want" ] || { bad "$name: exit $rc, want $want (stderr: $err)"; return; }
    [ "$out" = "$want_out" ] || { bad "$name: stdout '$out', want '$want_out'"; return; }
    if [ -z "$err_pat" ]; then [ -z "$err" ] || { bad "$name: stderr not empty: $err"; return; }
    else echo "$err" | grep -qE "$err_pat" || { bad "$name: stderr '$err' lacks '$err_pat'"; return; }; fi
    ok
}
run_case run-0 0 "hello world" "" "$@" -- echo hello world
run_case run-3 3 "out" "^oops$" "$@" -- 'echo out; echo oops >&2; exit 3'
run_case run-127 127 "" "not found" "$@" -- no-such-command-ssmb-e2e
run_case run-unknown-target 255 "" "TargetNotConnected|not connected|InvalidTarget" \
    --target i-00000000000000000 --endpoint-url "$EP" --ca-bundle "$CA" -- true

# ---- failures: one line naming the cause, a non-zero status
err_case() { # err_case NAME PATTERN CMD...
    name=$1; pat=$2; shift 2
    timeout 30 "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    lines=$(wc -l <"$T/err" | tr -d ' ')
    if [ "$rc" != 0 ] && [ "$rc" -lt 124 ] && [ "$lines" = 1 ] && [ ! -s "$T/out" ] && grep -qE "$pat" "$T/err"; then ok
    else bad "$name: exit $rc, stderr '$(cat "$T/err")'"; fi
}
err_case no-credentials '^ssmb: no AWS credentials found' \
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$SSMB" start-session "$@"
err_case connection-refused '^ssmb: cannot connect to http://127\.0\.0\.1:1' \
    "$SSMB" start-session --target "$TARGET" --endpoint-url http://127.0.0.1:1
err_case target-not-connected '^ssmb: TargetNotConnected: ' \
    "$SSMB" start-session --target i-00000000000000000 --endpoint-url "$EP" --ca-bundle "$CA"
err_case tls-refused '^ssmb: TLS certificate refused' \
    "$SSMB" start-session --target "$TARGET" --endpoint-url "$EP"
AWS_CA_BUNDLE=$CA run_case run-ca-from-env 0 "env" "" --target "$TARGET" --endpoint-url "$EP" -- echo env
unset AWS_CA_BUNDLE # (whether a prefix assignment outlives a function call varies between shells)

# ---- port-forward through a local echo server
cat >"$T/client.py" <<'EOF'
import os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
data = os.urandom(size)
c = socket.create_connection(("127.0.0.1", port), timeout=20)
got = bytearray(); sent = 0
c.setblocking(True)
import selectors
sel = selectors.DefaultSelector(); sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
while len(got) < size:
    for key, ev in sel.select(timeout=20) or [(None, 0)]:
        if key is None: sys.exit("timed out with %d of %d bytes back" % (len(got), size))
        if ev & selectors.EVENT_WRITE and sent < size:
            sent += c.send(data[sent:sent + 16384])
            if sent == size: sel.modify(c, selectors.EVENT_READ)
        if ev & selectors.EVENT_READ:
            d = c.recv(65536)
            if not d: sys.exit("closed with %d of %d bytes back" % (len(got), size))
            got += d
c.close()
sys.exit(0 if bytes(got) == data else "the bytes differ")
EOF
python3 "$(dirname "$0")/tcp_echo.py" >"$T/echo.port" 2>/dev/null &
pids="$pids $!"
wait_for "$T/echo.port" '^[0-9]+$' 10 || { echo "cli_e2e: echo server did not start"; exit 1; }
ECHO_PORT=$(head -n 1 "$T/echo.port")

# pf_start EXTRA...: a port-forward in the background, PF its PID, LPORT its port.
pf_start() {
    : >"$T/pf.err"
    "$SSMB" port-forward "$@" >"$T/pf.out" 2>"$T/pf.err" </dev/null &
    PF=$!
    pids="$pids $PF"
    LPORT=
    wait_for "$T/pf.err" '^listening on 127\.0\.0\.1:[0-9]+$' 20 &&
        LPORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/pf.err" | head -n 1)
    [ -n "$LPORT" ]
}
# pf_stop: SIGTERM ends the session cleanly, exit 0 within the 3 s shutdown
# bound (10 s for a terminate that hangs); after 20 s it is killed.
pf_stop() {
    kill "$PF" 2>/dev/null
    n=0
    while kill -0 "$PF" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
    kill -9 "$PF" 2>/dev/null
    wait "$PF"
}

if pf_start "$@" --remote-port "$ECHO_PORT" --local 127.0.0.1:0; then
    if timeout 40 python3 "$T/client.py" "$LPORT" 1000000 && timeout 40 python3 "$T/client.py" "$LPORT" 1; then ok
    else bad "port-forward: transfer failed ($(tail -n 3 "$T/pf.err"))"; fi
    [ -s "$T/pf.out" ] && bad "port-forward: wrote to stdout" || ok
    pf_stop; rc=$?
    [ "$rc" = 0 ] && ok || bad "port-forward: exit $rc after SIGTERM"
else
    bad "port-forward: no listening line ($(cat "$T/pf.err"))"
fi
# -v: a line when each connection opens and closes (FORWARD_OPEN / FORWARD_CLOSE).
if pf_start -v "$@" --remote-port "$ECHO_PORT"; then
    timeout 40 python3 "$T/client.py" "$LPORT" 1 || bad "port-forward -v: transfer failed"
    wait_for "$T/pf.err" 'connection [0-9]+ closed' 10
    grep -qE '^connection [0-9]+ opened$' "$T/pf.err" && grep -qE '^connection [0-9]+ closed$' "$T/pf.err" && ok ||
        bad "port-forward -v: no opened/closed lines ($(cat "$T/pf.err"))"
    pf_stop
else
    bad "port-forward -v: no listening line ($(cat "$T/pf.err"))"
fi

# ---- ssh-proxy: stdin and stdout bridged to the echo server
cat >"$T/stdio.py" <<'EOF'
import os, subprocess, sys
size = 300000
data = os.urandom(size)
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
import threading
def feed():
    p.stdin.write(data); p.stdin.flush()
threading.Thread(target=feed, daemon=True).start()
got = bytearray()
while len(got) < size:
    d = p.stdout.read1(65536)
    if not d: break
    got += d
p.stdin.close()
rc = p.wait(timeout=20)
if bytes(got) != data: sys.exit("ssh-proxy: %d of %d bytes back, or different" % (len(got), size))
sys.exit(0 if rc == 0 else "ssh-proxy: exit %d after stdin's end" % rc)
EOF
if timeout 60 python3 "$T/stdio.py" "$SSMB" ssh-proxy "$@" --port "$ECHO_PORT"; then ok; else bad "ssh-proxy: stdio bridge"; fi

# ---- start-session in a terminal: raw mode, a shell, the window size and its
# change (SIGWINCH), ~. and the terminal restored
cat >"$T/term_session.py" <<'EOF'
import fcntl, os, pty, select, signal, struct, sys, termios, time
def pump(fd, out, secs, until=None):
    end = time.time() + secs
    while time.time() < end:
        if until and until in out: return out
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try: d = os.read(fd, 4096)
            except OSError: return out
            if not d: return out
            out += d
    return out
def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    winsize(0, 33, 111)
    os.execv(sys.argv[1], sys.argv[1:])
before = termios.tcgetattr(fd)
out = pump(fd, b"", 20, b"$ ")
if b"$ " not in out: sys.exit("no prompt: %r" % out[-300:])
raw = termios.tcgetattr(fd)
if raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG): sys.exit("the terminal is not raw")
os.write(fd, b"echo sum=$((40+2))\r")
out = pump(fd, out, 10, b"sum=42")
if b"sum=42" not in out: sys.exit("no command output: %r" % out[-300:])
os.write(fd, b"stty size\r")
out = pump(fd, out, 10, b"33 111")
if b"33 111" not in out: sys.exit("the first size did not arrive: %r" % out[-300:])
winsize(fd, 44, 122)
os.kill(pid, signal.SIGWINCH)
time.sleep(0.5)
os.write(fd, b"stty size\r")
out = pump(fd, out, 10, b"44 122")
if b"44 122" not in out: sys.exit("the new size did not arrive: %r" % out[-300:])
os.write(fd, b"\r~.")
out = pump(fd, out, 15)
_, status = os.waitpid(pid, 0)
after = termios.tcgetattr(fd)
if after[3] != before[3] or after[0] != before[0] or after[1] != before[1]: sys.exit("the terminal was not restored")
code = os.waitstatus_to_exitcode(status)
sys.exit(0 if code == 0 else "exit %d: %r" % (code, out[-300:]))
EOF
if ! python3 -c 'import os; os.openpty()' 2>/dev/null; then
    echo "cli_e2e: no pseudo-terminals here (no /dev/pts): start-session in a terminal not checked"
elif timeout 60 python3 "$T/term_session.py" "$SSMB" start-session "$@"; then ok; else bad "start-session in a terminal"; fi

# ---- plugin mode under the real AWS CLI (when one is installed): it calls
# StartSession itself, asks `session-manager-plugin --version`, and passes
# the response in AWS_SSM_START_SESSION_RESPONSE. The pauses keep the
# output in messages of their own: this case is about the plugin's arguments.
# Debian's awscli (/usr/bin/aws, installed by tools/deps.sh) first: another
# aws earlier on PATH (pip's, pyenv's) is not the one this test is about.
AWS=/usr/bin/aws
[ -x "$AWS" ] || AWS=$(command -v aws || true)
if [ -n "$AWS" ]; then
    mkdir -p "$T/bin"
    ln -s "$(cd "$(dirname "$SSMB")" && pwd)/ssmb" "$T/bin/session-manager-plugin"
    PATH="$T/bin:$PATH" AWS_DEFAULT_REGION="$AWS_REGION" AWS_CA_BUNDLE="$CA" timeout 60 "$AWS" ssm start-session \
        --target "$TARGET" --endpoint-url "$EP" --document-name AWS-StartNonInteractiveCommand \
        --parameters '{"command":["sleep 0.3; echo plugin-ok; sleep 0.3"]}' >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    if [ "$rc" = 0 ] && [ "$(cat "$T/out")" = plugin-ok ] && grep -q '^Starting session with SessionId: ' "$T/err"; then ok
    else bad "$AWS ssm start-session with ssmb as the plugin: exit $rc, stdout '$(cat "$T/out")', stderr '$(cat "$T/err")'"; fi

    # A port forward the AWS CLI starts: the plugin listens on localPortNumber.
    AWS_LPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    : >"$T/awspf.err"
    PATH="$T/bin:$PATH" AWS_DEFAULT_REGION="$AWS_REGION" AWS_CA_BUNDLE="$CA" "$AWS" ssm start-session \
        --target "$TARGET" --endpoint-url "$EP" --document-name AWS-StartPortForwardingSession \
        --parameters "{\"portNumber\":[\"$ECHO_PORT\"],\"localPortNumber\":[\"$AWS_LPORT\"]}" \
        >"$T/awspf.out" 2>"$T/awspf.err" </dev/null &
    AWSPF=$!
    pids="$pids $AWSPF"
    if wait_for "$T/awspf.err" "listening on 127\.0\.0\.1:$AWS_LPORT" 30 &&
        timeout 40 python3 "$T/client.py" "$AWS_LPORT" 1000000; then ok
    else bad "$AWS ssm start-session port forward with ssmb as the plugin: $(tail -n 3 "$T/awspf.err")"; fi
    # The AWS CLI ignores SIGINT while its plugin runs: end the plugin (its child) by PID.
    for c in $(children_of "$AWSPF"); do kill "$c" 2>/dev/null; done
    n=0
    while kill -0 "$AWSPF" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    kill "$AWSPF" 2>/dev/null
    wait "$AWSPF" 2>/dev/null
else
    bad "no aws command (Debian's awscli): plugin mode under the AWS CLI not checked"
fi

# ---- real ssh through `ssmb ssh-proxy` as its ProxyCommand, to an sshd of
# our own on 127.0.0.1 (when openssh is installed): a command, and a
# megabyte up with its SHA-256 checked on the other side.
SSHD=$(command -v sshd || ls /usr/sbin/sshd 2>/dev/null)
if [ -n "$SSHD" ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && [ "$(id -u)" = 0 ]; then
    mkdir -p "$T/ssh" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/client"
    cp "$T/ssh/client.pub" "$T/ssh/authorized_keys"; chmod 600 "$T/ssh/authorized_keys"
    SSH_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '%s\n' "Port $SSH_PORT" "ListenAddress 127.0.0.1" "HostKey $T/ssh/host" \
        "AuthorizedKeysFile $T/ssh/authorized_keys" "PidFile $T/ssh/sshd.pid" "StrictModes no" "UsePAM no" \
        "PasswordAuthentication no" "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" \
        >"$T/ssh/sshd_config"
    "$SSHD" -D -e -f "$T/ssh/sshd_config" 2>"$T/ssh/sshd.log" &
    pids="$pids $!"
    wait_for "$T/ssh/sshd.log" 'Server listening' 10
    head -c 1000000 /dev/urandom >"$T/ssh/blob"
    want=$(sha256sum <"$T/ssh/blob" | cut -d' ' -f1)
    SSMB_ABS=$(cd "$(dirname "$SSMB")" && pwd)/ssmb
    got=$(timeout 60 ssh -F /dev/null -i "$T/ssh/client" -o BatchMode=yes -o LogLevel=ERROR \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ProxyCommand="$SSMB_ABS ssh-proxy --target %h --port $SSH_PORT --endpoint-url $EP --ca-bundle $CA" \
        "root@$TARGET" 'echo ssh-ok; sha256sum' <"$T/ssh/blob" 2>"$T/ssh/err")
    if [ "$got" = "ssh-ok
$want  -" ]; then ok; else bad "ssh through ssh-proxy: '$got' ($(cat "$T/ssh/err"))"; fi
else
    echo "cli_e2e: no sshd (or not root), ssh through ssh-proxy not checked"
fi

echo "cli_e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
