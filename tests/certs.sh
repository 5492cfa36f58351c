#!/bin/sh
# Generates the certificates the TLS tests use, with the openssl command,
# into DIR (default build/certs); does nothing when they are already there.
#   ca.pem / ca.key            the test CA
#   server.pem / server.key    localhost and 127.0.0.1, issued by the CA
#   wrong.pem / wrong.key      wrong.example only, issued by the CA
#   expired.pem / expired.key  localhost, issued by the CA, expired in 2021
#   rogue-ca.pem, rogue.pem / rogue.key   localhost from a CA nobody trusts
#   dnsonly.pem / .key         localhost only, no IP address
#   otherip.pem / .key         127.0.0.2 only
#   dnsip.pem / .key           "127.0.0.1" as a DNS name, not as an address
#   ip6.pem / .key             127.0.0.1 and ::1, no DNS name
set -eu
DIR=${1:-build/certs}
# The stamp names the set: a directory made for an older set is redone.
STAMP=done-2
[ -f "$DIR/$STAMP" ] && exit 0
mkdir -p "$DIR"
cd "$DIR"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # ca NAME CN
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -subj "/CN=$2" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
# leaf NAME CA SAN [STARTDATE ENDDATE]: a server certificate signed by CA.
leaf() {
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    mkdir -p "db-$1"
    : >"db-$1/index.txt"
    echo 1000 >"db-$1/serial"
    cat >"$1.cnf" <<CNF
[ca]
default_ca = c
[c]
database = db-$1/index.txt
serial = db-$1/serial
new_certs_dir = db-$1
default_md = sha256
policy = p
copy_extensions = none
x509_extensions = ext
[p]
commonName = supplied
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $3
CNF
    if [ $# -ge 5 ]; then dates="-startdate $4 -enddate $5"; else dates="-days 3650"; fi
    openssl ca -batch -config "$1.cnf" -cert "$2.pem" -keyfile "$2.key" -in "$1.csr" -out "$1.pem" \
        -notext $dates 2>/dev/null
}
ca ca "ssmbridge test CA"
ca rogue-ca "rogue test CA"
leaf server ca "DNS:localhost,IP:127.0.0.1"
leaf wrong ca "DNS:wrong.example"
leaf expired ca "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20210101000000Z
leaf rogue rogue-ca "DNS:localhost,IP:127.0.0.1"
leaf dnsonly ca "DNS:localhost"
leaf otherip ca "IP:127.0.0.2"
leaf dnsip ca "DNS:127.0.0.1"
leaf ip6 ca "IP:127.0.0.1,IP:::1"
touch "$STAMP"
