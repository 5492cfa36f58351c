#!/bin/sh
# Makes sure the Debian packages the build and the tests need are installed.
# As root with apt-get: installs what is missing. Otherwise: prints the exact
# command and fails.
set -u
PKGS="g++ valgrind libclang-rt-14-dev libbearssl-dev libmbedtls-dev libjsmn-dev libssl-dev clang pkg-config python3-websockets openssl binutils awscli openssh-server openssh-client"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || { echo "deps: apt-get update failed"; exit 1; }
    apt-get install -y -qq $missing >/dev/null || { echo "deps: apt-get install$missing failed"; exit 1; }
    exit 0
fi
echo "deps: missing Debian packages:$missing"
echo "deps: run as root:  apt-get update && apt-get install -y$missing"
exit 1
