#!/usr/bin/python3
"""Smoke test of ssmb-local, the AWS side on loopback, with an independent
client written here: SigV4 (hashlib/hmac), the SSM JSON API over HTTP(S), the
data channel over WebSocket (python3-websockets) and a minimal ClientMessage
client (acks, reorder, handshake), plus smux v1 frames for port forwarding.

usage: local_smoke.py BUILD_DIR
Every wait is bounded; every process started is stopped by its PID."""
import asyncio
import datetime
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import websockets

REGION = "us-east-1"
TARGET = "i-0123456789abcdef0"
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)), flush=True)


# ---- SigV4 ----

def _h(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4(method, path, query, headers, body, service, key, secret, amz_date, region=REGION):
    names = sorted(h.lower() for h in headers)
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    canon_headers = "".join(f"{n}:{lower[n]}\n" for n in names)
    signed = ";".join(names)
    q = "&".join(sorted(query.split("&"))) if query else ""
    creq = "\n".join([method, path, q, canon_headers, signed, hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = _h(("AWS4" + secret).encode(), amz_date[:8])
    k = _h(k, region)
    k = _h(k, service)
    k = _h(k, "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"


def amz_now(offset=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return t.strftime("%Y%m%dT%H%M%SZ")


# ---- the emulator ----

class Local:
    def __init__(self, build, *args):
        self.proc = subprocess.Popen([os.path.join(build, "ssmb-local"), *args], stdout=subprocess.PIPE,
                                     stderr=sys.stderr, text=True)
        self.info = {}
        deadline = time.time() + 30
        while len(self.info) < 5 and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            k, _, v = line.strip().partition(": ")
            self.info[k] = v
        if len(self.info) < 5:
            self.stop()
            raise RuntimeError("ssmb-local did not start")
        self.endpoint = self.info["endpoint"]
        self.tls = self.endpoint.startswith("https")
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.key = self.info["access-key-id"]
        self.secret = self.info["secret-access-key"]
        self.ctx = None
        if self.tls:
            self.ctx = ssl.create_default_context(cafile=self.info["ca-bundle"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def call(self, target, body, secret=None, key=None, token=None, date_offset=0):
        data = json.dumps(body).encode()
        host = f"127.0.0.1:{self.port}"
        amz_date = amz_now(date_offset)
        headers = {"Host": host, "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
                   "X-Amz-Date": amz_date}
        if token:
            headers["X-Amz-Security-Token"] = token
        service = "kms" if target.startswith("TrentService.") else "ssm"
        headers["Authorization"] = sigv4("POST", "/", "", {k: v for k, v in headers.items()}, data, service,
                                         key or self.key, secret or self.secret, amz_date)
        if self.tls:
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/", body=data, headers=headers)
        r = c.getresponse()
        out = r.status, json.loads(r.read() or b"{}")
        c.close()
        return out


# ---- ClientMessage ----

def msg_encode(mtype, seq, ptype, payload, flags=0):
    u = uuid.uuid4().bytes
    head = struct.pack(">I", 116) + mtype.encode().ljust(32, b" ") + struct.pack(">IQqQ", 1, int(time.time() * 1000),
                                                                                 seq, flags)
    head += u[8:] + u[:8] + hashlib.sha256(payload).digest() + struct.pack(">II", ptype, len(payload))
    return head + payload


def msg_decode(b):
    mtype = b[4:36].strip(b" \0").decode()
    seq, = struct.unpack(">q", b[48:56])
    mid = b[72:80] + b[64:72]
    ptype, plen = struct.unpack(">II", b[112:120])
    return mtype, seq, str(uuid.UUID(bytes=mid)), ptype, b[120:120 + plen]


class Client:
    """The client end of one data channel."""

    def __init__(self, ws):
        self.ws = ws
        self.expected = 0
        self.seq = 0
        self.held = {}
        self.out = b""
        self.err = b""
        self.exit_code = None
        self.closed = None
        self.ready = False
        self.session_type = None
        self.properties = None
        self.agent_version = None
        self.unacked = {}
        self.local = None
        self.sess = None
        self.reconnects = 0
        self.corrupt_seen = 0
        self.chunks = []
        self.flags = []

    async def send(self, ptype, payload):
        frame = msg_encode("input_stream_data", self.seq, ptype, payload)
        self.unacked[self.seq] = frame
        self.seq += 1
        try:
            await self.ws.send(frame)
        except websockets.ConnectionClosed:
            pass

    async def resend(self):
        for seq in sorted(self.unacked)[:4]:
            await self.ws.send(self.unacked[seq])

    async def reconnect(self):
        """ResumeSession, a new WebSocket, and everything unacknowledged again (§4.5)."""
        st, res = self.local.call("AmazonSSM.ResumeSession", {"SessionId": self.sess["SessionId"]})
        if st != 200 or not res.get("TokenValue"):
            raise RuntimeError(f"resume refused: {st} {res}")
        self.sess = dict(self.sess, TokenValue=res["TokenValue"])
        fresh = await open_channel(self.local, self.sess)
        self.ws = fresh.ws
        self.reconnects += 1
        await self.resend()

    async def ack(self, mtype, seq, mid):
        body = json.dumps({"AcknowledgedMessageType": mtype, "AcknowledgedMessageId": mid,
                           "AcknowledgedMessageSequenceNumber": seq, "IsSequentialMessage": True},
                          separators=(",", ":")).encode()
        await self.ws.send(msg_encode("acknowledge", 0, 0, body, 3))

    async def handle(self, ptype, payload):
        if ptype == 5:
            req = json.loads(payload)
            self.agent_version = req["AgentVersion"]
            for a in req["RequestedClientActions"]:
                if a["ActionType"] == "SessionType":
                    self.session_type = a["ActionParameters"]["SessionType"]
                    self.properties = a["ActionParameters"].get("Properties")
            resp = {"ClientVersion": "1.2.764.0", "ProcessedClientActions": [
                {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""}], "Errors": None}
            await self.send(6, json.dumps(resp, separators=(",", ":")).encode())
        elif ptype == 7:
            self.ready = True
        elif ptype == 1:
            self.ready = True
            self.out += payload
            self.chunks.append(payload)
        elif ptype == 11:
            self.err += payload
        elif ptype == 12:
            self.exit_code = payload.decode()
        elif ptype == 10:
            self.flags.append(struct.unpack(">I", payload)[0])

    async def step(self, timeout):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), min(timeout, 0.2))
        except asyncio.TimeoutError:
            await self.resend()
            return
        except websockets.ConnectionClosed:
            if self.closed is not None or self.local is None:
                raise
            await self.reconnect()
            return
        if isinstance(raw, str):
            raw = raw.encode()
        mtype, seq, mid, ptype, payload = msg_decode(raw)
        if len(payload) and hashlib.sha256(payload).digest() != raw[80:112]:
            self.corrupt_seen += 1
            return
        if mtype == "acknowledge":
            self.unacked.pop(json.loads(payload)["AcknowledgedMessageSequenceNumber"], None)
        elif mtype == "channel_closed":
            self.closed = json.loads(payload)
        elif mtype == "output_stream_data":
            try:
                await self.ack(mtype, seq, mid)
            except websockets.ConnectionClosed:
                pass
            if seq == self.expected:
                await self.handle(ptype, payload)
                self.expected += 1
                while self.expected in self.held:
                    await self.handle(*self.held.pop(self.expected))
                    self.expected += 1
            elif seq > self.expected:
                self.held[seq] = (ptype, payload)

    async def until(self, cond, timeout=10):
        end = time.time() + timeout
        while not cond() and self.closed is None:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("condition not met")
            try:
                await self.step(left)
            except websockets.ConnectionClosed:
                if self.closed is None:
                    raise
        return cond()


async def test_channel_auth(local):
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET})
    real = local.secret
    local.secret = "wrong-secret"
    try:
        await open_channel(local, sess)
        refused = False
    except websockets.InvalidStatusCode as e:
        refused = e.status_code == 403
    finally:
        local.secret = real
    check("data channel: a bad upgrade signature gets 403", refused)
    c = await open_channel(local, dict(sess, TokenValue="AAEAAnot-the-token"))
    try:
        await c.until(lambda: False, 5)
        closed = False
    except websockets.ConnectionClosed:
        closed = True
    except TimeoutError:
        closed = False
    check("data channel: a wrong TokenValue closes the socket", closed)
    c = await open_channel(local, sess, sign=False)
    await c.send(1, b"echo unsigned-ok; exit" + (b"\r" if have_pty() else b"\n"))
    try:
        await c.until(lambda: False, 10)
    except TimeoutError:
        pass
    check("data channel: an unsigned upgrade with the right token works", b"unsigned-ok" in c.out, c.out)
    await c.ws.close()


async def open_channel(local, sess, sign=True):
    url = sess["StreamUrl"]
    rest = url.split("://", 1)[1]
    path_q = rest[rest.index("/"):]
    path, _, query = path_q.partition("?")
    headers = {}
    if sign:
        amz_date = amz_now()
        host = f"127.0.0.1:{local.port}"
        headers = {"X-Amz-Date": amz_date}
        headers["Authorization"] = sigv4("GET", path, query, {"Host": host, "X-Amz-Date": amz_date}, b"",
                                         "ssmmessages", local.key, local.secret, amz_date)
    ws = await asyncio.wait_for(websockets.connect(url, extra_headers=headers, ssl=local.ctx, max_size=None,
                                                   ping_interval=None), 10)
    await ws.send(json.dumps({"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4()),
                              "TokenValue": sess["TokenValue"], "ClientId": str(uuid.uuid4()),
                              "ClientVersion": "1.2.764.0"}))
    return Client(ws)


# ---- a TCP echo server for port forwarding ----

def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(30)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def one(conn):
                conn.settimeout(30)
                try:
                    while True:
                        d = conn.recv(65536)
                        if not d:
                            break
                        conn.sendall(d)
                except OSError:
                    pass
                conn.close()
            threading.Thread(target=one, args=(c,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def smux(cmd, sid, data=b""):
    return struct.pack("<BBHI", 1, cmd, len(data), sid) + data


# ---- the tests ----

def test_api(local):
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET})
    check("StartSession with a good signature", st == 200 and body.get("SessionId", "").startswith("local-"), body)
    url = body.get("StreamUrl", "")
    scheme = "wss" if local.tls else "ws"
    check("StreamUrl form", url == f"{scheme}://127.0.0.1:{local.port}/v1/data-channel/{body.get('SessionId')}"
          "?role=publish_subscribe&cell-number=AAEAA", url)
    check("TokenValue present", len(body.get("TokenValue", "")) > 20, body)
    st, body2 = local.call("AmazonSSM.TerminateSession", {"SessionId": body.get("SessionId", "")})
    check("TerminateSession", st == 200 and body2.get("SessionId") == body.get("SessionId"), body2)
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET}, secret="wrong-secret")
    check("bad secret: InvalidSignatureException", st == 400 and body.get("__type") == "InvalidSignatureException"
          and body.get("message", "").startswith("The request signature we calculated does not match"), body)
    st, body = local.call("AmazonSSM.StartSession", {"Target": "i-00000000000000bad"})
    check("unknown target: TargetNotConnected", st == 400 and body.get("__type") == "TargetNotConnected"
          and body.get("message") == "i-00000000000000bad is not connected.", body)
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET}, key="AKIDUNKNOWN")
    check("unknown key: UnrecognizedClientException", st == 400 and body.get("__type") == "UnrecognizedClientException",
          body)
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET}, token="expired")
    check("expired token: ExpiredTokenException", st == 400 and body.get("__type") == "ExpiredTokenException", body)
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET}, date_offset=-1800)
    check("clock skew refused", st == 400 and body.get("__type") == "InvalidSignatureException"
          and "Signature expired" in body.get("message", ""), body)
    st, body = local.call("AmazonSSM.DescribeNothing", {})
    check("unknown operation", st == 400 and body.get("__type") == "UnknownOperationException", body)
    st, body = local.call("AmazonSSM.ResumeSession", {"SessionId": "local-0000"})
    check("resume of an unknown session", st == 400 and body.get("__type") == "DoesNotExistException", body)
    st, body = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName":
                          "AWS-StartPortForwardingSessionToRemoteHost",
                          "Parameters": {"host": ["10.1.2.3"], "portNumber": ["80"]}})
    check("non-loopback remote host refused", st == 400, body)
    st, body = local.call("TrentService.GenerateDataKey", {"KeyId": "alias/test", "NumberOfBytes": 64,
                                                           "EncryptionContext": {"aws:ssm:SessionId": "x"}})
    import base64
    check("GenerateDataKey", st == 200 and len(base64.b64decode(body.get("Plaintext", ""))) == 64
          and body.get("CiphertextBlob"), body)


async def test_command(local):
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartNonInteractiveCommand",
                                                      "Parameters": {"command": ["echo hi; echo err >&2; exit 3"]}})
    if st != 200:
        check("non-interactive session started", False, sess)
        return
    c = await open_channel(local, sess)
    t0 = time.time()
    try:
        await c.until(lambda: False, 15)
    except TimeoutError:
        pass
    took = time.time() - t0
    await c.ws.close()
    check("non-interactive: closed as soon as everything was acknowledged", took < 3, took)
    check("non-interactive: handshake NonInteractiveCommands", c.session_type == "NonInteractiveCommands",
          c.session_type)
    check("non-interactive: stdout", c.out == b"hi\n", c.out)
    check("non-interactive: stderr", c.err == b"err\n", c.err)
    check("non-interactive: exit code", c.exit_code == "EXIT_CODE: 3", c.exit_code)
    check("non-interactive: channel_closed", c.closed is not None and c.closed.get("SessionId") == sess["SessionId"],
          c.closed)


def have_pty():
    """Pseudo-terminals can be had here (a chroot may lack /dev/pts: ssmb-local
    then runs shells on a socket pair, with no terminal size and no CR mapping)."""
    try:
        m, s = os.openpty()
        os.close(m)
        os.close(s)
        return True
    except OSError:
        return False


async def test_shell(local):
    pty = have_pty()
    eol = b"\r" if pty else b"\n"
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET})
    c = await open_channel(local, sess)
    await c.send(3, b'{"cols":100,"rows":30}')
    await c.send(1, b"echo $((6*7)); stty size" + eol)
    ok = await c.until(lambda: b"42" in c.out and (b"30 100" in c.out or not pty), 10)
    check("shell: output and resize" if pty else "shell: output (no pseudo-terminals here: size not checked)",
          ok, c.out)
    # a lost WebSocket: resume and carry on with the same channel
    await c.ws.close()
    st, res = local.call("AmazonSSM.ResumeSession", {"SessionId": sess["SessionId"]})
    check("ResumeSession gives a new token", st == 200 and res.get("TokenValue") not in (None, sess["TokenValue"]),
          res)
    sess2 = dict(sess, TokenValue=res.get("TokenValue", ""))
    c2 = await open_channel(local, sess2)
    c2.expected, c2.seq = c.expected, c.seq
    await c2.send(1, b"echo re$((1+1))sumed; exit" + eol)
    try:
        await c2.until(lambda: False, 10)
    except TimeoutError:
        pass
    check("shell: resumed and ended", b"re2sumed" in c2.out and c2.closed is not None, (c2.out, c2.closed))
    await c2.ws.close()


async def test_port(local, mode, echo_port):
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartPortForwardingSession",
                                                      "Parameters": {"portNumber": [str(echo_port)],
                                                                     "localPortNumber": ["0"]}})
    c = await open_channel(local, sess)
    await c.until(lambda: c.ready, 10)
    check(f"port {mode}: handshake Port", c.session_type == "Port" and c.properties.get("type") ==
          "LocalPortForwarding" and c.properties.get("portNumber") == str(echo_port), (c.session_type, c.properties))
    payload = os.urandom(50000)
    if mode == "smux":
        await c.send(1, smux(0, 3))
        for i in range(0, len(payload), 1024):
            await c.send(1, smux(2, 3, payload[i:i + 1024]))
        got = bytearray()

        def parsed():
            buf = c.out
            out = bytearray()
            while len(buf) >= 8:
                ver, cmd, ln, sid = struct.unpack("<BBHI", buf[:8])
                if len(buf) < 8 + ln:
                    break
                if cmd == 2 and sid == 3:
                    out += buf[8:8 + ln]
                buf = buf[8 + ln:]
            got[:] = out
            return len(out) >= len(payload)
        ok = await c.until(parsed, 15)
        check("port smux: echo through a stream", ok and bytes(got) == payload, len(got))
        await c.send(1, smux(1, 3))
    else:
        for i in range(0, len(payload), 1024):
            await c.send(1, payload[i:i + 1024])
        ok = await c.until(lambda: len(c.out) >= len(payload), 15)
        check("port basic: echo", ok and c.out == payload, len(c.out))
        await c.send(10, struct.pack(">I", 1))  # DisconnectToPort
        c.out = b""
        await c.send(1, b"again")
        ok = await c.until(lambda: c.out == b"again", 10)
        check("port basic: a new connection after DisconnectToPort", ok, c.out)
    await c.send(10, struct.pack(">I", 2))  # TerminateSession
    try:
        await c.until(lambda: False, 5)
    except TimeoutError:
        pass
    check(f"port {mode}: TerminateSession flag closes", c.closed is not None, c.closed)
    await c.ws.close()


async def test_faults(local, name, command, expect, resume=False):
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartNonInteractiveCommand",
                                                      "Parameters": {"command": [command]}})
    c = await open_channel(local, sess)
    if resume:
        c.local, c.sess = local, sess
    try:
        await c.until(lambda: False, 60)
    except TimeoutError:
        pass
    await c.ws.close()
    check(f"faults {name}: output complete and in order", c.out == expect, (len(c.out), len(expect)))
    check(f"faults {name}: exit code and close", c.exit_code == "EXIT_CODE: 0" and c.closed is not None,
          (c.exit_code, c.closed))
    return c


async def test_ssh_and_interactive(local, echo_port):
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartSSHSession",
                                                      "Parameters": {"portNumber": [str(echo_port)]}})
    c = await open_channel(local, sess)
    await c.until(lambda: c.ready, 10)
    check("ssh: Port without a type", c.session_type == "Port" and c.properties == {"portNumber": str(echo_port)},
          c.properties)
    await c.send(1, b"SSH-2.0-test\r\n")
    ok = await c.until(lambda: c.out == b"SSH-2.0-test\r\n", 10)
    check("ssh: bytes through stdio forwarding", ok, c.out)
    await c.ws.close()
    local.call("AmazonSSM.TerminateSession", {"SessionId": sess["SessionId"]})
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartInteractiveCommand",
                                                      "Parameters": {"command": ["echo hello-$((2+3))"]}})
    c = await open_channel(local, sess)
    try:
        await c.until(lambda: False, 10)
    except TimeoutError:
        pass
    nl = b"\r\n" if have_pty() else b"\n"  # a terminal maps LF to CRLF; a socket pair does not
    check("interactive command: output and close", b"hello-5" + nl in c.out and c.closed is not None,
          (c.out, c.closed))
    await c.ws.close()
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartInteractiveCommand",
                                                      "Parameters": {"command": ["sleep 30 & echo bg-left"]}})
    c = await open_channel(local, sess)
    try:
        await c.until(lambda: False, 10)
    except TimeoutError:
        pass
    check("interactive command: ends although a background child keeps the PTY", b"bg-left" in c.out and
          c.closed is not None, (c.out, c.closed))
    await c.ws.close()
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartInteractiveCommand",
                                                      "Parameters": {"command": [
                                                          "i=0; while [ $i -lt 3000 ]; do printf 'a\\303\\251'; "
                                                          "i=$((i+1)); done"]}})
    c = await open_channel(local, sess)
    try:
        await c.until(lambda: False, 15)
    except TimeoutError:
        pass

    def utf8(b):
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    check("PTY output: every message is whole UTF-8", c.out == "aé".encode() * 3000 and
          all(utf8(x) for x in c.chunks) and len(c.chunks) > 5, (len(c.out), len(c.chunks)))
    await c.ws.close()


def test_resume_rules(build):
    refuse = Local(build, "--no-tls", "--refuse-resume")
    try:
        st, sess = refuse.call("AmazonSSM.StartSession", {"Target": TARGET})
        st, res = refuse.call("AmazonSSM.ResumeSession", {"SessionId": sess["SessionId"]})
        check("--refuse-resume: no TokenValue", st == 200 and "TokenValue" not in res and
              res.get("SessionId") == sess["SessionId"], res)
    finally:
        refuse.stop()
    idle = Local(build, "--no-tls", "--idle-timeout", "1")
    try:
        st, sess = idle.call("AmazonSSM.StartSession", {"Target": TARGET})
        time.sleep(2.5)
        st, res = idle.call("AmazonSSM.ResumeSession", {"SessionId": sess["SessionId"]})
        check("--idle-timeout ends a session without a data channel", st == 400, res)
    finally:
        idle.stop()


def test_log_and_pacing(build):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "log.jsonl")
        paced = Local(build, "--no-tls", "--agent-pacing", "reference", "--payload-size", "4096", "--log", path)
        try:
            expect = "".join(f"{i}\n" for i in range(1, 3001)).encode()
            t0 = time.time()
            asyncio.run(asyncio.wait_for(test_faults(paced, "none (paced)", "seq 1 3000", expect), 30))
            took = time.time() - t0
        finally:
            paced.stop()
        lines = [json.loads(line) for line in open(path)]
        data = [x for x in lines if x["type"] == "output_stream_data" and x["payload_type"] == 1]
        check("--log: JSON lines with direction, session, type, seq, payload type, length",
              lines and all({"dir", "session", "type", "seq", "payload_type", "len"} <= set(x) for x in lines)
              and any(x["dir"] == "in" for x in lines), lines[:2])
        check("--agent-pacing reference: 1 KiB messages", data and max(x["len"] for x in data) == 1024
              and len(data) >= len(expect) // 1024, [x["len"] for x in data][:5])
        check("--agent-pacing reference: about 1 ms apart", took >= len(data) * 0.001, took)


async def test_port_refused(local):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    st, sess = local.call("AmazonSSM.StartSession", {"Target": TARGET, "DocumentName": "AWS-StartPortForwardingSession",
                                                      "Parameters": {"portNumber": [str(closed_port)]}})
    c = await open_channel(local, sess)
    await c.until(lambda: c.ready, 10)
    await c.send(1, smux(0, 3))
    ok = await c.until(lambda: 3 in c.flags and smux(1, 3) in c.out, 10)
    check("port smux: a refused destination gives ConnectToPortError and FIN", ok, (c.flags, c.out))
    await c.send(10, struct.pack(">I", 2))
    await c.ws.close()


def test_library_client(build, local, echo_port):
    """The library's own client pieces (tests/local_client.c), when built as BUILD/local-client."""
    exe = os.path.join(build, "local-client")
    if not os.path.exists(exe):
        print("skip library client: " + exe + " is not built", flush=True)
        return
    base = [exe, local.endpoint, local.key, local.secret, REGION]
    r = subprocess.run(base + ["run", "echo hi; echo err >&2; exit 3"], capture_output=True, timeout=60)
    check("library client: run", r.returncode == 3 and r.stdout == b"hi\n" and r.stderr == b"err\n",
          (r.returncode, r.stdout, r.stderr))
    r = subprocess.run(base + ["forward", str(echo_port), "5000000"], capture_output=True, timeout=60)
    check("library client: smux forward of 5 MB", r.returncode == 0, (r.returncode, r.stderr))
    faulty = Local(build, "--no-tls", "--seed", "9", "--drop", "5", "--duplicate", "5", "--reorder", "5",
                   "--withhold-acks", "5", "--corrupt-digest", "2", "--delay", "3")
    try:
        base = [exe, faulty.endpoint, faulty.key, faulty.secret, REGION]
        r = subprocess.run(base + ["forward", str(echo_port), "2000000"], capture_output=True, timeout=60)
        check("library client: smux forward of 2 MB through every fault", r.returncode == 0,
              (r.returncode, r.stderr))
        r = subprocess.run(base + ["run", "seq 1 50000; seq 1 50000 >&2"], capture_output=True, timeout=60)
        expect = "".join(f"{i}\n" for i in range(1, 50001)).encode()
        check("library client: command output through every fault", r.returncode == 0 and r.stdout == expect
              and r.stderr == expect, (r.returncode, len(r.stdout), len(r.stderr)))
    finally:
        faulty.stop()


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    echo = echo_server()
    echo_port = echo.getsockname()[1]
    locals_ = []
    try:
        plain = Local(build, "--no-tls", "--seed", "1")
        locals_.append(plain)
        check("no-tls banner", plain.info.get("ca-bundle") == "none" and plain.endpoint.startswith("http://"),
              plain.info)
        test_api(plain)
        asyncio.run(asyncio.wait_for(test_command(plain), 30))
        asyncio.run(asyncio.wait_for(test_shell(plain), 40))
        asyncio.run(asyncio.wait_for(test_port(plain, "smux", echo_port), 40))
        basic = Local(build, "--no-tls", "--agent-version", "3.0.196.0")
        locals_.append(basic)
        asyncio.run(asyncio.wait_for(test_port(basic, "basic", echo_port), 40))
        asyncio.run(asyncio.wait_for(test_ssh_and_interactive(plain, echo_port), 40))
        asyncio.run(asyncio.wait_for(test_port_refused(plain), 30))
        test_library_client(build, plain, echo_port)
        asyncio.run(asyncio.wait_for(test_channel_auth(plain), 40))
        test_resume_rules(build)
        test_log_and_pacing(build)
        expect = "".join(f"{i}\n" for i in range(1, 20001)).encode()
        faulty = Local(build, "--no-tls", "--seed", "7", "--drop", "10", "--duplicate", "10", "--reorder", "10",
                       "--withhold-acks", "10", "--corrupt-digest", "5", "--delay", "5")
        locals_.append(faulty)
        c = asyncio.run(asyncio.wait_for(test_faults(faulty, "drop/dup/reorder/corrupt/delay", "seq 1 20000", expect),
                                         90))
        check("faults: corrupted digests were sent", c.corrupt_seen > 0, c.corrupt_seen)
        cutter = Local(build, "--no-tls", "--seed", "3", "--cut-after", "40", "--payload-size", "512")
        locals_.append(cutter)
        c = asyncio.run(asyncio.wait_for(test_faults(cutter, "cut-after", "seq 1 20000", expect, resume=True), 90))
        check("faults: the WebSocket was cut and resumed", c.reconnects > 0, c.reconnects)
        recycler = Local(build, "--no-tls", "--cut-every", "1", "--agent-pacing", "reference")
        locals_.append(recycler)
        expect = "".join(f"{i}\n" for i in range(1, 6001)).encode()
        c = asyncio.run(asyncio.wait_for(test_faults(recycler, "cut-every", "seq 1 6000; sleep 2", expect,
                                                     resume=True), 90))
        check("faults: --cut-every closed and the client resumed", c.reconnects > 0, c.reconnects)
        with tempfile.TemporaryDirectory() as d:
            tls = Local(build, "--cert-dir", d)
            locals_.append(tls)
            check("tls banner", tls.endpoint.startswith("https://") and tls.info["ca-bundle"] == d + "/ca.pem",
                  tls.info)
            test_api(tls)
            ws_echo = os.path.join(build, "ws-echo")
            if os.path.exists(ws_echo):  # the library's BearSSL client accepts the certificate for 127.0.0.1
                r = subprocess.run([ws_echo, "--ca", tls.info["ca-bundle"],
                                    f"wss://127.0.0.1:{tls.port}/v1/data-channel/none"], capture_output=True, timeout=20)
                check("tls: the library's TLS client accepts https://127.0.0.1", b"detail 404" in r.stderr, r.stderr)
            asyncio.run(asyncio.wait_for(test_command(tls), 30))
            check("tls: exits 0 on SIGTERM", tls.stop() == 0)
    except Exception as e:  # a crash of the test itself is a failure too
        check("test ran to the end", False, repr(e))
    finally:
        for l in locals_:
            rc = l.stop()
            if rc not in (0, None):
                check("ssmb-local exit status", False, rc)
        echo.close()
    failed = sum(1 for _, ok in RESULTS if not ok)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
