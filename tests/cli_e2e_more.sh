#!/bin/sh
# More of build/ssmb end to end against build/ssmb-local on loopback:
# concurrent port forwards (smux and basic mode, a remote host, a Unix
# socket), the emulator's faults under a bulk transfer and a command, bad
# input refused with one line, a shell in a pseudo-terminal (Ctrl-C, exit),
# and the AWS CLI's interactive shell with ssmb as its plugin. Every process
# started here is stopped by its PID; every step is bounded by timeout.
# usage: sh tests/cli_e2e_more.sh BUILD_DIR
B=${1:-build}
SSMB=$(cd "$(dirname "$B/ssmb")" 2>/dev/null && pwd)/ssmb
LOCAL=$B/ssmb-local
for f in "$SSMB" "$LOCAL"; do [ -x "$f" ] || { echo "cli_e2e_more: no $f"; exit 1; }; done
command -v python3 >/dev/null || { echo "cli_e2e_more: python3 is needed"; exit 1; }
. "$(dirname "$0")/e2e_common.sh"
START=$(date +%s)

# failed_rc RC: a failure of the program's own (not timeout's 124, nor a signal's 125..137).
failed_rc() { [ "$1" != 0 ] && { [ "$1" -lt 124 ] || [ "$1" -gt 137 ]; }; }

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; the exit status.
stop_pid() {
    kill "$1" 2>/dev/null
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    kill -9 "$1" 2>/dev/null
    wait "$1"
}

# local_start NAME ARGS...: an emulator in the background; NAME_EP, NAME_CA, NAME_PID.
local_start() {
    lname=$1; shift
    mkdir -p "$T/$lname.certs"
    rm -f "$T/$lname.out"
    "$LOCAL" --port 0 --cert-dir "$T/$lname.certs" "$@" >"$T/$lname.out" 2>"$T/$lname.err" &
    eval "${lname}_PID=$!"
    pids="$pids $!"
    wait_for "$T/$lname.out" '^secret-access-key: ' 20 || { echo "cli_e2e_more: ssmb-local $* did not start"; cat "$T/$lname.err"; exit 1; }
    eval "${lname}_EP=\$(sed -n 's/^endpoint: //p' \"\$T/$lname.out\")"
    eval "${lname}_CA=\$(sed -n 's/^ca-bundle: //p' \"\$T/$lname.out\")"
}

local_start L
export AWS_REGION="$(sed -n 's/^region: //p' "$T/L.out")"
export AWS_ACCESS_KEY_ID="$(sed -n 's/^access-key-id: //p' "$T/L.out")"
export AWS_SECRET_ACCESS_KEY="$(sed -n 's/^secret-access-key: //p' "$T/L.out")"
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CA_BUNDLE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none" AWS_EC2_METADATA_DISABLED=true
TARGET=i-0123456789abcdef0

# ---- the echo server and a client of N concurrent connections
# mclient.py ADDR SIZE N [IDLE_SECONDS]: N connections at once to ADDR (a
# port on 127.0.0.1 or unix:/path), each sending SIZE pseudo-random bytes
# while reading them back; the SHA-256 of what came back must be that of
# what was sent. A connection quiet for IDLE_SECONDS fails.
cat >"$T/mclient.py" <<'EOF'
import hashlib, random, socket, sys, threading
addr, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
idle = float(sys.argv[4]) if len(sys.argv) > 4 else 30
errors = []
def one(i):
    try:
        if addr.startswith("unix:"):
            c = socket.socket(socket.AF_UNIX); c.settimeout(idle); c.connect(addr[5:])
        else:
            c = socket.create_connection(("127.0.0.1", int(addr)), timeout=idle)
        c.settimeout(idle)
        sent = hashlib.sha256()
        def feed():
            r = random.Random(i * 7919 + size); left = size
            try:
                while left:
                    d = r.getrandbits(8 * min(65536, left)).to_bytes(min(65536, left), "little")
                    sent.update(d); c.sendall(d); left -= len(d)
            except OSError as e: errors.append("conn %d send: %s" % (i, e))
        t = threading.Thread(target=feed, daemon=True); t.start()
        got = hashlib.sha256(); n_got = 0
        while n_got < size:
            d = c.recv(262144)
            if not d: break
            got.update(d); n_got += len(d)
        t.join(idle)
        c.close()
        if n_got != size: errors.append("conn %d: %d of %d bytes back" % (i, n_got, size))
        elif got.digest() != sent.digest(): errors.append("conn %d: the bytes differ" % i)
    except Exception as e:
        errors.append("conn %d: %s" % (i, e))
ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
sys.exit("; ".join(errors[:3]) if errors else 0)
EOF
python3 "$(dirname "$0")/tcp_echo.py" >"$T/echo.port" 2>/dev/null &
pids="$pids $!"
wait_for "$T/echo.port" '^[0-9]+$' 10 || { echo "cli_e2e_more: echo server did not start"; exit 1; }
ECHO_PORT=$(head -n 1 "$T/echo.port")

# pf_start TAG ARGS...: a port-forward in the background; PF its PID, LADDR
# what it listens on (a port, or unix:/path).
pf_start() {
    tag=$1; shift
    : >"$T/pf.$tag.err"
    "$SSMB" port-forward "$@" >"$T/pf.$tag.out" 2>"$T/pf.$tag.err" </dev/null &
    PF=$!
    pids="$pids $PF"
    LADDR=
    wait_for "$T/pf.$tag.err" '^listening on ' 20 || return 1
    LADDR=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p; s/^listening on \(unix:.*\)$/\1/p' "$T/pf.$tag.err" | head -n 1)
    [ -n "$LADDR" ]
}

# pf_case NAME SIZE N SECONDS IDLE ARGS...: N connections of SIZE bytes through a new forward.
pf_case() {
    name=$1; size=$2; conns=$3; secs=$4; idle=$5; shift 5
    if pf_start "$name" "$@"; then
        t0=$(date +%s)
        if timeout "$secs" python3 "$T/mclient.py" "$LADDR" "$size" "$conns" "$idle" 2>"$T/client.err"; then ok
        else bad "$name: $(tail -n 1 "$T/client.err") (rc $?; ssmb: $(tail -n 2 "$T/pf.$name.err" | tr '\n' ' '))"; fi
        echo "  $name: $(($(date +%s) - t0)) s"
        stop_pid "$PF"; rc=$?
        [ "$rc" = 0 ] || bad "$name: exit $rc after SIGTERM"
    else
        bad "$name: no listening line ($(cat "$T/pf.$name.err"))"
        stop_pid "$PF"
    fi
}

# ---- 1. port forwarding: 10 connections x 10 MB both ways
MB=1000000
pf_case smux-10x10MB $((10 * MB)) 10 60 20 --target "$TARGET" --endpoint-url "$L_EP" --ca-bundle "$L_CA" --remote-port "$ECHO_PORT"
local_start BASIC --agent-version 3.0.196.0
# Basic mode carries one connection at a time: the others wait in the backlog.
pf_case basic-10x10MB $((10 * MB)) 10 90 80 --target "$TARGET" --endpoint-url "$BASIC_EP" --ca-bundle "$BASIC_CA" --remote-port "$ECHO_PORT"
pf_case remote-host $((2 * MB)) 2 30 15 --target "$TARGET" --endpoint-url "$L_EP" --ca-bundle "$L_CA" \
    --remote-host 127.0.0.1 --remote-port "$ECHO_PORT"
grep -q 'AWS-StartPortForwardingSessionToRemoteHost' "$T/L.err" && ok ||
    bad "remote-host: no AWS-StartPortForwardingSessionToRemoteHost session ($(tail -n 2 "$T/L.err"))"
pf_case unix-socket $((2 * MB)) 2 30 15 --target "$TARGET" --endpoint-url "$L_EP" --ca-bundle "$L_CA" \
    --remote-port "$ECHO_PORT" --local "unix:$T/pf.sock"
stop_pid "$BASIC_PID"

# ---- 2. faults: a 20 MB transfer and a command through each, byte-exact and bounded
# fault_case NAME FAULT_ARGS...
fault_case() {
    fname=$1; shift
    local_start F --seed 7 "$@"
    pf_case "fault-$fname" $((20 * MB)) 1 40 15 --target "$TARGET" --endpoint-url "$F_EP" --ca-bundle "$F_CA" --remote-port "$ECHO_PORT"
    t0=$(date +%s)
    timeout 20 "$SSMB" run --target "$TARGET" --endpoint-url "$F_EP" --ca-bundle "$F_CA" -- \
        'seq 1 20000 | tail -n 1; exit 4' >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    if [ "$rc" = 4 ] && [ "$(cat "$T/out")" = 20000 ]; then ok
    else bad "fault-$fname run: exit $rc, stdout '$(cat "$T/out")', stderr '$(cat "$T/err")'"; fi
    echo "  fault-$fname run: $(($(date +%s) - t0)) s"
    stop_pid "$F_PID"
}
fault_case duplicate-10 --duplicate 10
fault_case reorder-10 --reorder 10
fault_case withhold-acks-10 --withhold-acks 10
fault_case cut-after-500 --cut-after 500
fault_case cut-every-1 --cut-every 1
fault_case drop-5 --drop 5
fault_case delay-20 --delay 20
fault_case corrupt-digest-5 --corrupt-digest 5

# A session that cannot resume: one line naming ResumeSession or the timeout, no hang.
local_start F --seed 7 --cut-after 50 --refuse-resume
t0=$(date +%s)
timeout 20 "$SSMB" run --target "$TARGET" --endpoint-url "$F_EP" --ca-bundle "$F_CA" -- 'seq 1 200000' \
    >"$T/out" 2>"$T/err" </dev/null
rc=$?
if failed_rc "$rc" && [ "$(wc -l <"$T/err" | tr -d ' ')" = 1 ] && grep -qiE 'ResumeSession|timed out' "$T/err"; then ok
else bad "refuse-resume run: exit $rc, stderr $(wc -l <"$T/err") lines '$(cat "$T/err")'"; fi
echo "  refuse-resume run: $(($(date +%s) - t0)) s"
if pf_start refuse --target "$TARGET" --endpoint-url "$F_EP" --ca-bundle "$F_CA" --remote-port "$ECHO_PORT"; then
    timeout 20 python3 "$T/mclient.py" "$LADDR" $((2 * MB)) 1 10 2>/dev/null && bad "refuse-resume port-forward: the transfer went through"
    n=0
    while kill -0 "$PF" 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$PF" 2>/dev/null; then bad "refuse-resume port-forward: still running 30 s after the cut"; stop_pid "$PF"
    else
        wait "$PF"; rc=$?
        grep -v '^listening on \|^Starting session\|^reconnecting$' "$T/pf.refuse.err" >"$T/err"
        if failed_rc "$rc" && [ "$(wc -l <"$T/err" | tr -d ' ')" = 1 ] && grep -qiE 'ResumeSession|timed out' "$T/err"; then ok
        else bad "refuse-resume port-forward: exit $rc, stderr '$(cat "$T/pf.refuse.err")'"; fi
    fi
else
    bad "refuse-resume port-forward: no listening line ($(cat "$T/pf.refuse.err"))"
fi
stop_pid "$F_PID"


# ---- 3. bad input: one line on stderr naming the cause, a non-zero status, nothing on stdout
err_case() { # err_case NAME PATTERN CMD...
    ename=$1; pat=$2; shift 2
    timeout 15 "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    lines=$(wc -l <"$T/err" | tr -d ' ')
    if failed_rc "$rc" && [ "$lines" = 1 ] && [ ! -s "$T/out" ] && grep -qE "$pat" "$T/err"; then ok
    else bad "$ename: exit $rc, stdout '$(cat "$T/out")', stderr '$(cat "$T/err")'"; fi
}
set -- --target "$TARGET" --endpoint-url "$L_EP" --ca-bundle "$L_CA"
err_case bad-signature '^ssmb: .*InvalidSignatureException' \
    env AWS_SECRET_ACCESS_KEY=wrongSecretKey0123456789wrongSecretKey0 "$SSMB" start-session "$@"
err_case bad-signature-run '^ssmb: .*InvalidSignatureException' \
    env AWS_SECRET_ACCESS_KEY=wrongSecretKey0123456789wrongSecretKey0 "$SSMB" run "$@" -- true
err_case unknown-target '^ssmb: .*TargetNotConnected' \
    "$SSMB" run --target i-0fedcba9876543210 --endpoint-url "$L_EP" --ca-bundle "$L_CA" -- true
err_case expired-token '^ssmb: .*ExpiredTokenException' env AWS_SESSION_TOKEN=expired "$SSMB" start-session "$@"
err_case untrusted-certificate '^ssmb: .*(certificate|TLS)' "$SSMB" run --target "$TARGET" --endpoint-url "$L_EP" -- true
# Plugin mode (the AWS CLI's seven arguments) with a StreamUrl on a host that
# only looks like AWS: refused before any connection (no DNS query either).
EVIL='{"SessionId": "user-0a1b2c3d4e5f67890", "TokenValue": "AAEAAtoken", "StreamUrl": "wss://ssmmessages.us-east-1.amazonaws.com.evil.example/v1/data-channel/user-0a1b2c3d4e5f67890?role=publish_subscribe"}'
REQ="{\"Target\": \"$TARGET\"}"
mkdir -p "$T/bin"
ln -s "$SSMB" "$T/bin/session-manager-plugin"
err_case foreign-stream-url 'StreamUrl|evil\.example' "$T/bin/session-manager-plugin" "$EVIL" us-east-1 StartSession '' "$REQ" \
    https://ssm.us-east-1.amazonaws.com
if command -v strace >/dev/null; then
    timeout 30 strace -f -qq -e trace=connect -o "$T/strace.out" "$SSMB" "$EVIL" us-east-1 StartSession '' "$REQ" \
        https://ssm.us-east-1.amazonaws.com >/dev/null 2>&1 </dev/null
    if grep -q 'AF_INET' "$T/strace.out"; then bad "foreign-stream-url: connected first: $(grep AF_INET "$T/strace.out" | head -n 2)"
    else ok; fi
fi

# ---- 4. a shell in a pseudo-terminal: prompt, a command, Ctrl-C, exit
cat >"$T/pty_shell.py" <<'EOF'
import os, pty, select, sys, termios, time
# usage: pty_shell.py COMMAND WANT CTRL_C(0|1) PROGRAM ARGS...
cmd, want, ctrl_c = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3] == "1"
def pump(fd, out, secs, until=None, since=0):
    end = time.time() + secs
    while time.time() < end:
        if until and until in out[since:]: return out
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try: d = os.read(fd, 4096)
            except OSError: return out
            if not d: return out
            out += d
    return out
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[4], sys.argv[4:])
before = termios.tcgetattr(fd)
out = pump(fd, b"", 30, b"$ ")
if b"$ " not in out: sys.exit("no prompt: %r" % out[-300:])
os.write(fd, cmd + b"\r")
out = pump(fd, out, 15, want)
if want not in out: sys.exit("no output %r: %r" % (want, out[-300:]))
if ctrl_c:
    out = pump(fd, out, 5, b"$ ", out.rfind(want))
    os.write(fd, b"sleep 30\r")
    out = pump(fd, out, 1)
    mark = len(out)
    t0 = time.time()
    os.write(fd, b"\x03")
    out = pump(fd, out, 10, b"$ ", mark)
    if b"$ " not in out[mark:]: sys.exit("no prompt after Ctrl-C: %r" % out[-300:])
    if time.time() - t0 > 5: sys.exit("Ctrl-C took %.1f s" % (time.time() - t0))
    os.write(fd, b"echo back-$((1+1))\r")
    out = pump(fd, out, 10, b"back-2", mark)
    if b"back-2" not in out[mark:]: sys.exit("no output after Ctrl-C: %r" % out[-300:])
os.write(fd, b"exit\r")
out = pump(fd, out, 20)
end = time.time() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done: break
    if time.time() > end: sys.exit("still running after exit: %r" % out[-300:])
    time.sleep(0.1)
after = termios.tcgetattr(fd)
if after[3] != before[3] or after[0] != before[0] or after[1] != before[1]: sys.exit("the terminal was not restored")
code = os.waitstatus_to_exitcode(status)
sys.exit(0 if code == 0 else "exit %d: %r" % (code, out[-300:]))
EOF
# (both need pseudo-terminals: a chroot without /dev/pts has none)
HAVE_PTY=1
python3 -c 'import os; os.openpty()' 2>/dev/null || HAVE_PTY=0
t0=$(date +%s)
if [ $HAVE_PTY = 0 ]; then
    echo "cli_e2e_more: no pseudo-terminals here (no /dev/pts): the terminal cases are not run"
elif timeout 45 python3 "$T/pty_shell.py" 'echo pty-$((20+22))' pty-42 1 "$SSMB" start-session "$@" 2>"$T/err"; then ok
else bad "start-session in a pty: $(cat "$T/err")"; fi
echo "  pty shell: $(($(date +%s) - t0)) s"

# ---- 5. the AWS CLI's interactive shell with ssmb as its session-manager-plugin
AWS=/usr/bin/aws
if [ $HAVE_PTY = 0 ]; then
    :
elif [ -x "$AWS" ] && "$AWS" --version 2>&1 | grep -q '^aws-cli/2\.'; then
    t0=$(date +%s)
    if PATH="$T/bin:$PATH" AWS_DEFAULT_REGION="$AWS_REGION" AWS_CA_BUNDLE="$L_CA" timeout 60 python3 "$T/pty_shell.py" \
        'echo aws-shell-$((6*7))' aws-shell-42 0 "$AWS" ssm start-session --target "$TARGET" --endpoint-url "$L_EP" 2>"$T/err"; then ok
    else bad "aws ssm start-session (shell) with ssmb as the plugin: $(cat "$T/err")"; fi
    echo "  aws shell: $(($(date +%s) - t0)) s"
else
    bad "no $AWS (version 2): the AWS CLI's shell with ssmb as its plugin not checked"
fi
echo "cli_e2e_more: $passed passed, $failed failed"
[ "$failed" = 0 ]
