#!/usr/bin/python3
"""A stub DNS server for the engine tests (RFC 1035 over UDP, 127.0.0.1 only).

Prints one line "GOOD MUTE" with two ports: GOOD answers from the table
below, MUTE never answers. Exits after 60 seconds at the latest.

Names (case-insensitive):
  a.test        A 127.0.0.1 (AAAA: no records)
  six.test      AAAA ::1 (A: no records)
  both.test     A 127.0.0.1 and AAAA ::1
  alias.test    CNAME mid.test, CNAME end.test, A 127.0.0.1 for end.test (chain in the answer)
  loop.test     CNAME loop.test (a loop)
  many.test     ten A records 127.0.0.1..127.0.0.10
  upper.test    A 127.0.0.1, owner name written in upper case, uncompressed
  nx.test       NXDOMAIN
  servfail.test SERVFAIL
  tc.test       TC bit set, no answer
  garbage.test  right id and question, then an answer section cut short
  ptrloop.test  right id and question, answer owner a compression pointer to itself
  junk.test     random bytes (a wrong id): to be ignored
  spoof.test    right id, but the question of another name: to be ignored
  silent.test   no answer at all
  fuzz-N.test   a CNAME chain and addresses with bytes after the question
                changed or cut, deterministically from N: the client must
                end every lookup without crashing or hanging
anything else   NXDOMAIN
"""
import os, select, socket, struct, sys, time

A, CNAME, AAAA = 1, 5, 28


def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(msg):
    pos, labels = 12, []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, qclass = struct.unpack("!HH", msg[pos + 1:pos + 5])
    return ".".join(labels), qtype, msg[12:pos + 5]


def rr(owner, rtype, rdata, ttl=60):
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def reply(qid, question, answers=b"", count=0, rcode=0, flags=0x8180):
    return struct.pack("!HHHHHH", qid, flags | rcode, 1, count, 0, 0) + question + answers


def mutated(qid, question, qtype, n):
    mid = name_wire("m.test")
    data = socket.inet_pton(socket.AF_INET, "127.0.0.1") if qtype == A else socket.inet_pton(socket.AF_INET6, "::1")
    out = bytearray(reply(qid, question, rr(b"\xc0\x0c", CNAME, mid) + rr(mid, qtype, data), 2))
    start = 12 + len(question)
    span = len(out) - start
    for k in range(1 + n % 3):
        out[start + (n * 7 + k * 11) % span] = (n * 13 + k * 29) & 0xff
    if n % 5 == 0:
        del out[start + (n * 3) % span:]
    return bytes(out)


def answer(msg):
    qid = struct.unpack("!H", msg[:2])[0]
    name, qtype, question = parse_question(msg)
    name = name.lower()
    at_q = b"\xc0\x0c"  # a pointer to the question name
    v4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
    v6 = socket.inet_pton(socket.AF_INET6, "::1")
    if name == "silent.test":
        return None
    if name.startswith("fuzz-") and name.endswith(".test"):
        return mutated(qid, question, qtype, int(name[5:-5] or 0))
    if name == "junk.test":
        return os.urandom(40)
    if name == "spoof.test":
        other = name_wire("evil.test") + struct.pack("!HH", qtype, 1)
        return reply(qid, other, rr(b"\xc0\x0c", qtype, v4 if qtype == A else v6), 1)
    if name in ("a.test", "both.test") and qtype == A:
        return reply(qid, question, rr(at_q, A, v4), 1)
    if name in ("six.test", "both.test") and qtype == AAAA:
        return reply(qid, question, rr(at_q, AAAA, v6), 1)
    if name in ("a.test", "six.test", "both.test"):
        return reply(qid, question)
    if name == "alias.test":
        mid, end = name_wire("mid.test"), name_wire("END.test")
        body = rr(at_q, CNAME, mid) + rr(mid, CNAME, end)
        if qtype == A:
            return reply(qid, question, body + rr(name_wire("end.test"), A, v4), 3)
        return reply(qid, question, body, 2)
    if name == "loop.test":
        return reply(qid, question, rr(at_q, CNAME, at_q), 1)
    if name == "many.test":
        if qtype != A:
            return reply(qid, question)
        body = b"".join(rr(at_q, A, bytes([127, 0, 0, i])) for i in range(1, 11))
        return reply(qid, question, body, 10)
    if name == "upper.test":
        if qtype != A:
            return reply(qid, question)
        return reply(qid, question, rr(name_wire("UPPER.TEST"), A, v4), 1)
    if name == "servfail.test":
        return reply(qid, question, rcode=2)
    if name == "tc.test":
        return reply(qid, question, flags=0x8380)
    if name == "garbage.test":
        return reply(qid, question, rr(at_q, A, v4)[:7], 1)
    if name == "ptrloop.test":
        # the answer's owner name is a pointer to its own offset
        off = 12 + len(question)
        owner = bytes([0xc0 | (off >> 8), off & 0xff])
        return reply(qid, question, rr(owner, qtype, v4 if qtype == A else v6), 1)
    return reply(qid, question, rcode=3)


def main():
    good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    good.bind(("127.0.0.1", 0))
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", 0))
    print(good.getsockname()[1], mute.getsockname()[1], flush=True)
    end = time.time() + 60
    while time.time() < end:
        ready, _, _ = select.select([good, mute], [], [], 1.0)
        for s in ready:
            msg, peer = s.recvfrom(4096)
            if s is mute or len(msg) < 17:
                continue
            try:
                out = answer(msg)
            except Exception:
                out = None
            if out is not None:
                s.sendto(out, peer)


main()
