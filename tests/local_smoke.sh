#!/bin/sh
# Runs the ssmb-local smoke test against an already built tree.
#   usage: tests/local_smoke.sh BUILD_DIR
# Exits non-zero when any check fails. Builds nothing.
set -eu
BUILD=${1:?usage: tests/local_smoke.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$BUILD/ssmb-local" ] || { echo "local_smoke: $BUILD/ssmb-local is not built" >&2; exit 1; }
/usr/bin/python3 -c 'import websockets' 2>/dev/null || {
    echo "local_smoke: needs Debian's python3-websockets (apt-get install python3-websockets)" >&2; exit 1; }
exec timeout 600 /usr/bin/python3 "$HERE/local_smoke.py" "$BUILD"
