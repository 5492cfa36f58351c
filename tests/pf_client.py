# Port-forward client for the tests: N connections to ADDR at once, each
# sends SIZE random bytes and reads the echo; prints "ok N" when every
# connection got its bytes back byte-exact (SHA-256), else "bad ...".
#   pf_client.py ADDR N SIZE      ADDR: host:port or unix:/path
import hashlib
import os
import socket
import sys
import threading

addr, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def connect():
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(addr[5:])
        return s
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host.strip("[]"), int(port)), timeout=60)


results = []


def one():
    try:
        s = connect()
        data = os.urandom(size)
        got = bytearray()

        def reader():
            while len(got) < size:
                d = s.recv(65536)
                if not d:
                    return
                got.extend(d)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        t.join(120)
        s.close()
        results.append(hashlib.sha256(data).digest() == hashlib.sha256(bytes(got)).digest())
    except OSError as e:
        print("error", e, file=sys.stderr)
        results.append(False)


threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
good = sum(1 for r in results if r)
print("ok %d" % good if good == n else "bad %d of %d" % (good, n), flush=True)
