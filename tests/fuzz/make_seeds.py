#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from the test vectors:
corpus/<target>/<n>.bin. Run from the repository root."""
import json, os

V = "tests/vectors"
OUT = "tests/fuzz/corpus"


def put(target, items):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    for i, data in enumerate(items):
        with open(f"{OUT}/{target}/{i:03d}.bin", "wb") as f:
            f.write(data)


cm = json.load(open(f"{V}/ssm/clientmessage_vectors.json"))["vectors"]
frames = [bytes.fromhex(v["expected_hex"]) for v in cm if v.get("expected_hex")]
other = json.load(open(f"{V}/ssm/other_vectors.json"))
payloads = []


def walk(x):
    if isinstance(x, dict):
        for v in x.values():
            walk(v)
    elif isinstance(x, list):
        for v in x:
            walk(v)
    elif isinstance(x, str) and x.startswith("{"):
        payloads.append(x.encode())


walk(other["json_examples"])
payloads += [b"EXIT_CODE: 3", b"EXIT_CODE: -1\n", b"\x00\x00\x00\x02"]
put("msg", frames + payloads)
put("json", payloads + [b'{"a":[1,2,{"b":null}],"c":"\\ud83d\\ude00"}', b"[true,false,-0,1e5]"])
ws = json.load(open(f"{V}/websocket/rfc6455-frames.json"))
wsf = []
for section in ("rfc6455_section_5_7", "derived_valid", "invalid"):
    for e in ws.get(section, []):
        for fr in e.get("frames", [e]):
            h = fr.get("hex") or fr.get("frame_hex")
            if h and len(h) < 4000:
                wsf.append(bytes.fromhex(h))
put("ws", wsf)
put("http", [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
             b"5\r\nhello\r\n0\r\n\r\n"])
put("conn", [f for f in wsf if f and not (f[1] & 0x80)] + [b"".join(f for f in wsf[:6] if not (f[1] & 0x80))])
