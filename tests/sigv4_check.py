#!/usr/bin/env python3
"""Verifies the SigV4 Authorization header of an HTTP request read from
stdin, with its own implementation of the algorithm (hashlib and hmac only),
independent of the library under test.
Usage: sigv4_check.py ACCESS_KEY SECRET REGION SERVICE < request
Exit status 0 when the signature verifies, 1 otherwise (with the reason)."""
import hashlib
import hmac
import sys
from urllib.parse import quote, unquote


def fail(why):
    print("sigv4_check: " + why)
    sys.exit(1)


def parse(raw):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return method, target, headers


def canonical_query(query):
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def main():
    akid, secret, region, service = sys.argv[1:5]
    method, target, headers = parse(sys.stdin.buffer.read())
    authz = headers.get("authorization", [""])[0]
    if not authz.startswith("AWS4-HMAC-SHA256 "):
        fail("no SigV4 Authorization header")
    fields = dict(f.strip().split("=", 1) for f in authz[len("AWS4-HMAC-SHA256 "):].split(","))
    amz_date = headers.get("x-amz-date", [""])[0]
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    if fields.get("Credential") != f"{akid}/{scope}":
        fail("credential scope " + fields.get("Credential", "") + " != " + f"{akid}/{scope}")
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        fail("host and x-amz-date must be signed")
    path, _, query = target.partition("?")
    canonical_path = "/".join(quote(quote(seg, safe="-_.~"), safe="-_.~") for seg in path.split("/"))
    creq = "\n".join([method, canonical_path, canonical_query(query),
                      "".join(f"{h}:{','.join(headers[h])}\n" for h in signed),
                      ";".join(signed), hashlib.sha256(b"").hexdigest()])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, fields.get("Signature", "")):
        fail("signature mismatch")
    sys.exit(0)


main()
