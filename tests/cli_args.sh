#!/bin/sh
# The argument handling of build/ssmb, without any network: plugin mode
# (`--version`, the one-argument message, malformed arguments) and the
# command line's usage errors. Every failure must be exactly one line on
# stderr, nothing on stdout, and a non-zero exit status.
# usage: sh tests/cli_args.sh BUILD_DIR
B=${1:-build}
SSMB=$(cd "$(dirname "$B/ssmb")" && pwd)/ssmb
[ -x "$SSMB" ] || { echo "cli_args: no $B/ssmb (make $B/ssmb)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# run_cmd NAME CMD...: runs with a bounded time and no environment that
# could reach AWS; sets rc, out (stdout), err (stderr) and lines (stderr lines).
run_cmd() {
    name=$1; shift
    env -u AWS_SSM_START_SESSION_RESPONSE AWS_EC2_METADATA_DISABLED=true \
        timeout 10 "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    out=$(cat "$T/out"); err=$(cat "$T/err")
    lines=$(wc -l <"$T/err" | tr -d ' ')
}

# expect_error NAME PATTERN CMD...: non-zero, one stderr line matching PATTERN, empty stdout.
expect_error() {
    name=$1; pat=$2; shift 2
    run_cmd "$name" "$@"
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 -a "$rc" -le 137 ]; then bad "$name: exit status $rc"; return; fi
    [ "$lines" = 1 ] || { bad "$name: $lines stderr lines: $err"; return; }
    [ -z "$out" ] || { bad "$name: stdout not empty: $out"; return; }
    echo "$err" | grep -qE "$pat" || { bad "$name: stderr '$err' does not match '$pat'"; return; }
    ok
}

# version_ok TEXT: digits and dots, at most four parts, above 1.2.497.0 (the
# AWS CLI then passes the response in the environment).
version_ok() {
    echo "$1" | grep -qE '^[0-9]+(\.[0-9]+){0,3}$' || return 1
    echo "$1" | awk -F. '{ v = sprintf("%05d%05d%05d%05d", $1, $2, $3, $4); exit !(v > sprintf("%05d%05d%05d%05d", 1, 2, 497, 0)) }'
}

# ---- plugin mode through the argument shape
run_cmd version "$SSMB" --version
if [ "$rc" = 0 ] && version_ok "$out" && [ -z "$err" ] && [ "$(wc -l <"$T/out" | tr -d ' ')" = 1 ]; then ok
else bad "ssmb --version: rc $rc, stdout '$out', stderr '$err'"; fi

# ---- plugin mode through the name
mkdir "$T/bin"
ln -s "$SSMB" "$T/bin/session-manager-plugin"
PLUGIN=$T/bin/session-manager-plugin
run_cmd plugin-version "$PLUGIN" --version
if [ "$rc" = 0 ] && version_ok "$out" && [ -z "$err" ]; then ok
else bad "session-manager-plugin --version: rc $rc, stdout '$out', stderr '$err'"; fi

run_cmd plugin-alone "$PLUGIN"
if [ "$rc" = 0 ] && echo "$out" | grep -q "The Session Manager plugin was installed successfully" && [ -z "$err" ]; then ok
else bad "session-manager-plugin alone: rc $rc, stdout '$out', stderr '$err'"; fi

RESP='{"SessionId": "user-0a1b2c3d4e5f67890", "TokenValue": "AAEAAtoken", "StreamUrl": "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/user-0a1b2c3d4e5f67890?role=publish_subscribe"}'
REQ='{"Target": "i-0123456789abcdef0"}'
EP=https://ssm.us-east-1.amazonaws.com

expect_error plugin-unknown 'Unknown operation' "$PLUGIN" whatever
expect_error plugin-bad-json 'not a JSON object' "$PLUGIN" '{"SessionId": ' us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-not-json 'not a JSON object' "$PLUGIN" 'hello' us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-operation 'Invalid Operation' "$PLUGIN" "$RESP" us-east-1 TerminateSession '' "$REQ" "$EP"
expect_error plugin-no-session-id 'SessionId' "$PLUGIN" '{"TokenValue": "t", "StreamUrl": "wss://x"}' \
    us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-empty-session-id 'SessionId' "$PLUGIN" '{"SessionId": "", "TokenValue": "t", "StreamUrl": "wss://x"}' \
    us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-no-token 'TokenValue' "$PLUGIN" '{"SessionId": "s", "StreamUrl": "wss://x"}' \
    us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-no-env 'AWS_SSM_START_SESSION_RESPONSE' "$PLUGIN" AWS_SSM_START_SESSION_RESPONSE \
    us-east-1 StartSession '' "$REQ" "$EP"
expect_error plugin-bad-request 'argument 5' "$PLUGIN" "$RESP" us-east-1 StartSession '' '{"Target": ' "$EP"
expect_error plugin-bad-parameters 'Parameters' "$PLUGIN" "$RESP" us-east-1 StartSession '' \
    '{"Target": "i-1", "Parameters": {"portNumber": [80]}}' "$EP"
expect_error plugin-bad-endpoint 'argument 6' "$PLUGIN" "$RESP" us-east-1 StartSession '' "$REQ" 'ftp://x'
expect_error plugin-bad-local-port 'localPortNumber' "$PLUGIN" "$RESP" us-east-1 StartSession '' \
    '{"Target": "i-1", "DocumentName": "AWS-StartPortForwardingSession", "Parameters": {"portNumber": ["80"], "localPortNumber": ["http"]}}' "$EP"
# The response in the environment, malformed there.
expect_error plugin-env-bad-json 'not a JSON object' env AWS_SSM_START_SESSION_RESPONSE='{' \
    "$PLUGIN" AWS_SSM_START_SESSION_RESPONSE us-east-1 StartSession '' "$REQ" "$EP"
# The seven-argument shape is plugin mode under the name ssmb as well.
expect_error shape-bad-json 'not a JSON object' "$SSMB" '{"SessionId"' us-east-1 StartSession '' "$REQ" "$EP"
expect_error shape-operation 'Invalid Operation' "$SSMB" "$RESP" us-east-1 GetDocument '' "$REQ" "$EP"

# ---- the command line
run_cmd help "$SSMB" --help
if [ "$rc" = 0 ] && echo "$out" | grep -q '^usage: ssmb start-session'; then ok; else bad "--help: rc $rc"; fi
run_cmd no-args "$SSMB"
if [ "$rc" -ne 0 ] && [ -z "$out" ] && echo "$err" | grep -q usage; then ok; else bad "no arguments: rc $rc"; fi

expect_error unknown-command "unknown command 'shell'" "$SSMB" shell --target i-1
expect_error missing-target 'needs --target' "$SSMB" start-session
expect_error empty-target 'needs --target' "$SSMB" start-session --target ''
expect_error run-missing-target 'needs --target' "$SSMB" run -- echo hi
expect_error run-no-command 'needs a COMMAND' "$SSMB" run --target i-1
expect_error run-no-command-dashes 'needs a COMMAND' "$SSMB" run --target i-1 --
expect_error unknown-option "unknown option '--colour'" "$SSMB" start-session --target i-1 --colour
expect_error option-needs-value "needs a value" "$SSMB" start-session --target
expect_error option-wrong-command "'--remote-port' is not for this command" "$SSMB" ssh-proxy --target i-1 --remote-port 80
expect_error stray-argument "unexpected argument 'extra'" "$SSMB" start-session --target i-1 extra
expect_error bad-parameters 'not valid JSON' "$SSMB" start-session --target i-1 --parameters '{"portNumber":'
expect_error parameters-not-object 'JSON object' "$SSMB" start-session --target i-1 --parameters '["80"]'
expect_error parameters-not-strings 'list of strings' "$SSMB" start-session --target i-1 --parameters '{"portNumber":[80]}'
expect_error bad-shorthand 'neither JSON' "$SSMB" start-session --target i-1 --parameters 'command=[ls'
expect_error parameters-twice 'twice' "$SSMB" start-session --target i-1 --parameters '{"a":["1"],"a":["2"]}'
expect_error bad-local-port-param 'localPortNumber' "$SSMB" start-session --target i-1 \
    --document-name AWS-StartPortForwardingSession --parameters '{"portNumber":["80"],"localPortNumber":["99999"]}'
expect_error port-forward-no-port 'needs --remote-port' "$SSMB" port-forward --target i-1
expect_error port-forward-bad-port 'not a port number' "$SSMB" port-forward --target i-1 --remote-port 0
expect_error port-forward-bad-port2 'not a port number' "$SSMB" port-forward --target i-1 --remote-port=80x
expect_error port-forward-bad-local 'host:port or unix:/path' "$SSMB" port-forward --target i-1 --remote-port 80 --local 8080
expect_error ssh-bad-port 'not a port number' "$SSMB" ssh-proxy --target i-1 --port 65536
expect_error bad-endpoint 'not an http\(s\) URL' "$SSMB" start-session --target i-1 --endpoint-url 'not a url'
expect_error dashes-not-run "unexpected '--'" "$SSMB" port-forward --target i-1 --remote-port 80 -- x

echo "cli_args: $passed passed, $failed failed"
[ "$failed" = 0 ]
