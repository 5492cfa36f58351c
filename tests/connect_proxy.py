#!/usr/bin/python3
"""A small HTTP CONNECT proxy for the engine tests (127.0.0.1 only).

Usage: connect_proxy.py MODE LOGFILE
Prints its port on one line. Each request line and Proxy-Authorization value
it receives is appended to LOGFILE. Exits after 60 seconds at the latest.

MODE:
  open        tunnels every CONNECT (the target host is resolved here)
  auth:U:P    tunnels only with "Proxy-Authorization: Basic base64(U:P)", else 407
  407 / 403   answers with that status and closes
  silent      accepts and never answers
  early       answers 200 and then sends bytes of its own
  garbage     answers with something that is not HTTP
"""
import asyncio, base64, os, sys

MODE, LOG = sys.argv[1], sys.argv[2]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except Exception:
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    log(lines[0])
    auth = ""
    for line in lines[1:]:
        if line.lower().startswith("proxy-authorization:"):
            auth = line.split(":", 1)[1].strip()
            log("auth " + auth)
        if line.lower().startswith("host:"):
            log("host " + line.split(":", 1)[1].strip())
    if MODE == "silent":
        await asyncio.sleep(30)
        writer.close()
        return
    if MODE in ("407", "403"):
        writer.write(b"HTTP/1.1 %s No\r\nContent-Length: 0\r\n\r\n" % MODE.encode())
        await writer.drain()
        writer.close()
        return
    if MODE == "garbage":
        writer.write(b"SSH-2.0-hello\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    if MODE.startswith("auth:"):
        want = "Basic " + base64.b64encode(MODE[5:].encode()).decode()
        if auth != want:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
    method, target = lines[0].split(" ")[:2]
    if method != "CONNECT":
        writer.write(b"HTTP/1.1 405 No\r\n\r\n")
        writer.close()
        return
    host, port = target.rsplit(":", 1)
    try:
        # "localhost" is answered here (RFC 6761), as the library's own
        # resolver does: a minimal root may have no /etc/hosts at all.
        target = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
        up_r, up_w = await asyncio.open_connection(target, int(port))
    except Exception:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        writer.close()
        return
    # early: the bytes of its own go in the same write as the reply
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n" + (b"surprise" if MODE == "early" else b""))
    await writer.drain()
    await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)
    os._exit(0)


asyncio.run(main())
