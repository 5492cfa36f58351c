#!/usr/bin/python3
"""WebSocket peers for the engine tests: Debian's python3-websockets, 127.0.0.1 only.

Usage: ws_server.py [CERT KEY]   (with a certificate: wss://, else ws://)
Prints one line "WS STALL": two ports. Exits after 60 seconds at the latest.

WS, by path:
  /echo    sends every message back as it came
  /close   sends "bye", then closes with 1000 "done"
  /ping    pings with "are-you-there", closes with 1000 "pong" once the pong
           came (4002 if none within 5 s)
  /check   sends a battery (empty, UTF-8, 125/126/65535/65536 bytes, 1 MiB,
           a message in fragments), expects each echoed exactly, then closes
           with 1000 "ok" (4001 "bad N" at the first mismatch)
STALL: completes the upgrade by hand, then neither reads nor writes (a dead peer).
"""
import asyncio, base64, hashlib, os, ssl, sys
import websockets

CTX = None
if len(sys.argv) == 3:
    CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CTX.load_cert_chain(sys.argv[1], sys.argv[2])

BATTERY = ["", "gr\u00fc\u00df dich \u2603 \U0001f600", b"", bytes(range(256)), b"x" * 125, b"y" * 126,
           os.urandom(65535), os.urandom(65536), os.urandom(1 << 20), "z" * 70000]
FRAGMENTS = [b"first-", b"", b"second-" * 1000, b"third"]


async def check(ws):
    for i, msg in enumerate(BATTERY):
        await ws.send(msg)
        back = await asyncio.wait_for(ws.recv(), 10)
        if back != msg:
            await ws.close(4001, "bad %d" % i)
            return
    await ws.send(FRAGMENTS)  # one message in four frames
    back = await asyncio.wait_for(ws.recv(), 10)
    if back != b"".join(FRAGMENTS):
        await ws.close(4001, "bad fragments")
        return
    await ws.close(1000, "ok")


async def handler(ws, path):
    try:
        if path == "/echo":
            async for msg in ws:
                await ws.send(msg)
        elif path == "/close":
            await ws.send("bye")
            await ws.close(1000, "done")
        elif path == "/ping":
            pong = await ws.ping(b"are-you-there")
            try:
                await asyncio.wait_for(pong, 5)
                await ws.close(1000, "pong")
            except asyncio.TimeoutError:
                await ws.close(4002, "no pong")
        elif path == "/check":
            await check(ws)
    except websockets.ConnectionClosed:
        pass


async def stall(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(30)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=CTX, max_size=None, ping_interval=None) as srv:
        stall_srv = await asyncio.start_server(stall, "127.0.0.1", 0, ssl=CTX)
        print(srv.sockets[0].getsockname()[1], stall_srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(60)
    os._exit(0)


asyncio.run(main())
