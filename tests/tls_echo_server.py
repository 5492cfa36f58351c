#!/usr/bin/env python3
"""TLS echo peer for tests/test_internal_tls.c, on Python's ssl module.

    tls_echo_server.py CERT KEY [CLOSE_AFTER [ADDRESS]]

Listens on ADDRESS (default 127.0.0.1; an IPv6 address such as ::1 too)
at a free port and prints that port on stdout once listening. Serves one
connection: echoes every byte it receives. With CLOSE_AFTER (a negative
one counts as none), it sends close_notify itself once it has echoed that
many bytes; otherwise it answers the client's close_notify with its own.
Exits after that connection, or when nothing happens for IDLE seconds.
"""
import socket
import ssl
import sys

IDLE = 5.0


def serve(conn, close_after):
    echoed = 0
    while close_after is None or echoed < close_after:
        data = conn.recv(65536)
        if not data:  # close_notify (or EOF) from the client
            break
        conn.sendall(data)
        echoed += len(data)
    conn.unwrap()  # our close_notify; waits for the client's


def main():
    cert, key = sys.argv[1], sys.argv[2]
    close_after = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    if close_after < 0:
        close_after = None
    address = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with socket.socket(family, socket.SOCK_STREAM) as ls:
        ls.bind((address, 0))
        ls.listen(1)
        ls.settimeout(IDLE)
        print(ls.getsockname()[1], flush=True)
        try:
            raw, _ = ls.accept()
        except OSError:
            return
        raw.settimeout(IDLE)
        try:
            with ctx.wrap_socket(raw, server_side=True) as conn:
                serve(conn, close_after)
        except (OSError, ssl.SSLError):
            pass  # the client refused the certificate, or went away


if __name__ == "__main__":
    main()
