#!/usr/bin/python3
# End-to-end benchmark rows: build/ssmb against build/ssmb-local on loopback.
#   usage: bench_e2e.py BUILD_DIR [--mb N] [--rounds N] [--keys N] [--cap SECONDS]
# Throughput rows are medians of --rounds runs (default 3): N MB with 1 KiB
# payloads, 4 x N MB with 16 KiB payloads and through the plain TLS pipe,
# the last two taken in turns.
# A transfer not done in --cap seconds (default 20) is reported as the rate
# of what arrived by then, marked INCOMPLETE on its human line.
# Prints human lines and `bench: NAME VALUE UNIT` lines:
#   pf_upload_1k_mbs, pf_download_1k_mbs      port-forward, 1 KiB payloads
#   pf_upload_16k_mbs, pf_download_16k_mbs    16 KiB payloads both ways (ssmb and ssmb-local --payload-size)
#   tls_pipe_mbs, pf_upload_16k_vs_tls_pipe   Python ssl on both ends, baseline
#   (and pf_download_16k_vs_tls_pipe)
#   keystroke_rtt_p50_us, keystroke_rtt_p99_us  shell through start-session in a PTY
#   ssmb_rss_shell_kib, ssmb_rss_pf10_kib     VmHWM of ssmb
#   ssmb_stripped_kib                         strip -o of build/ssmb
# The remote ends (sink, source, echo) are threads of this script on
# 127.0.0.1; every process it starts is stopped by its PID; every wait is
# bounded.
import os
import pty
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

TARGET = "i-0123456789abcdef0"
CHUNK = 256 * 1024
STEP_TIMEOUT = 60.0


class BenchError(Exception):
    pass


def row(name, value, unit):
    if isinstance(value, float):
        value = "%.3g" % value if value < 0.1 else "%.3f" % value if value < 10 else "%.1f" % value
    print("bench: %s %s %s" % (name, value, unit), flush=True)


def note(msg):
    print(msg, flush=True)


# ---- processes ---------------------------------------------------------------------

class Procs:
    """Every child started, stopped by its PID at the end."""

    def __init__(self):
        self.list = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.list.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        if p in self.list:
            self.list.remove(p)

    def stop_all(self):
        for p in list(self.list):
            self.stop(p)


def read_lines_until(stream, pred, timeout, what):
    """Reads lines of a pipe until pred(lines) is true; returns the lines."""
    deadline = time.monotonic() + timeout
    lines = []
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        d = os.read(fd, 4096)
        if not d:
            break
        buf += d
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(line.decode(errors="replace"))
            if pred(lines):
                return lines
    raise BenchError("%s: gave up after %.0f s (%s)" % (what, timeout, " | ".join(lines[-3:])))


def drain(stream):
    """Keeps reading a pipe in the background so the child never blocks on it."""
    def run():
        try:
            while stream.read(65536):
                pass
        except (OSError, ValueError):
            pass
    threading.Thread(target=run, daemon=True).start()


def start_local(procs, build, cert_dir, payload):
    argv = [os.path.join(build, "ssmb-local"), "--port", "0", "--cert-dir", cert_dir,
            "--payload-size", str(payload), "--agent-pacing", "none"]
    p = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = read_lines_until(p.stdout, lambda ls: ls[-1].startswith("secret-access-key: "), 30, "ssmb-local start")
    drain(p.stdout)
    f = {}
    for ln in lines:
        if ": " in ln:
            k, v = ln.split(": ", 1)
            f[k] = v
    env = dict(os.environ)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE",
              "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        env.pop(k, None)
    env.update(AWS_REGION=f["region"], AWS_ACCESS_KEY_ID=f["access-key-id"],
               AWS_SECRET_ACCESS_KEY=f["secret-access-key"], AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_EC2_METADATA_DISABLED="true")
    common = ["--target", TARGET, "--endpoint-url", f["endpoint"], "--ca-bundle", f["ca-bundle"],
              "--payload-size", str(payload)]
    return p, env, common


def start_pf(procs, build, env, common, remote_port):
    argv = [os.path.join(build, "ssmb"), "port-forward", "--remote-port", str(remote_port),
            "--local", "127.0.0.1:0"] + common
    p = procs.start(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = read_lines_until(p.stderr, lambda ls: ls[-1].startswith("listening on 127.0.0.1:"), 30,
                             "ssmb port-forward start")
    drain(p.stderr)
    return p, int(lines[-1].rsplit(":", 1)[1])


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    raise BenchError("no VmHWM for %d" % pid)


# ---- the remote ends ---------------------------------------------------------------

def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    s.settimeout(1.0)
    return s


class Server:
    """A TCP server on 127.0.0.1 with one thread per connection.
    mode: "sink" counts what arrives (reports per connection), "source"
    sends self.size bytes then closes, "echo" sends everything back."""

    def __init__(self, mode):
        self.mode = mode
        self.size = 0
        self.sock = listener()
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.received = 0          # sink: bytes over all connections
        self.done_at = None        # sink: when received reached self.size
        self.t = threading.Thread(target=self.accept_loop, daemon=True)
        self.t.start()

    def reset(self, size):
        with self.lock:
            self.size = size
            self.received = 0
            self.done_at = None

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(STEP_TIMEOUT)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            if self.mode == "sink":
                buf = bytearray(CHUNK)
                while True:
                    n = c.recv_into(buf)
                    if n == 0:
                        break
                    with self.lock:
                        self.received += n
                        if self.done_at is None and self.size and self.received >= self.size:
                            self.done_at = time.perf_counter()
                            self.cond.notify_all()
            elif self.mode == "source":
                block = b"\x5a" * CHUNK
                left = self.size
                while left > 0:
                    n = c.send(block[:min(left, CHUNK)])
                    left -= n
                c.shutdown(socket.SHUT_WR)
                while c.recv(65536):
                    pass
            else:
                while True:
                    d = c.recv(CHUNK)
                    if not d:
                        break
                    c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def wait_total(self, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.done_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError("sink: %d of %d bytes after %.0f s" % (self.received, self.size, timeout))
                self.cond.wait(left)
            return self.done_at

    def close(self):
        self.stop = True
        self.sock.close()


# ---- the measurements --------------------------------------------------------------

def upload(lport, sink, nbytes, cap):
    """MB/s and whether it finished within cap seconds (else the rate of
    what arrived by then)."""
    sink.reset(nbytes)
    block = b"\xa5" * CHUNK
    done = []

    def writer():
        try:
            left = nbytes
            while left > 0:
                c.sendall(block[:min(left, CHUNK)])
                left -= min(left, CHUNK)
        except OSError:
            pass
        done.append(1)
    t0 = time.perf_counter()
    c = socket.create_connection(("127.0.0.1", lport), timeout=cap + 5)
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    try:
        t1 = sink.wait_total(cap)
        got, full = nbytes, True
    except BenchError:
        t1 = time.perf_counter()
        got, full = sink.received, False
    c.close()
    w.join(10)
    return got / (t1 - t0) / 1e6, full, got


def download(lport, source, nbytes, cap):
    source.reset(nbytes)
    buf = bytearray(CHUNK)
    t0 = time.perf_counter()
    deadline = t0 + cap
    c = socket.create_connection(("127.0.0.1", lport), timeout=cap + 5)
    got = 0
    while got < nbytes:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        c.settimeout(left)
        try:
            n = c.recv_into(buf)
        except socket.timeout:
            break
        if n == 0:
            raise BenchError("download: connection closed after %d of %d bytes" % (got, nbytes))
        got += n
    t1 = time.perf_counter()
    c.close()
    return got / (t1 - t0) / 1e6, got == nbytes, got


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


class Forwards:
    """One ssmb-local with two `ssmb port-forward`s on it, one to the sink
    (uploads) and one to the source (downloads), both warmed up."""

    def __init__(self, procs, build, cert_dir, payload, sink, source, label, cap):
        self.procs, self.sink, self.source, self.label, self.cap = procs, sink, source, label, cap
        self.local, env, common = start_local(procs, build, cert_dir, payload)
        self.pfs = []
        self.ports = {}
        for name, srv, fn in (("upload", sink, upload), ("download", source, download)):
            pf, lport = start_pf(procs, build, env, common, srv.port)
            self.pfs.append(pf)
            self.ports[name] = lport
            fn(lport, srv, 1 << 20, cap)    # warm-up: session, TLS, smux stream

    def run(self, name, nbytes):
        srv, fn = (self.sink, upload) if name == "upload" else (self.source, download)
        mbs, full, got = fn(self.ports[name], srv, nbytes, self.cap)
        if full:
            note("port-forward %s, %s: %.1f MB in %.2f s, %.1f MB/s" %
                 (name, self.label, nbytes / 1e6, nbytes / 1e6 / mbs, mbs))
        else:
            note("port-forward %s, %s: INCOMPLETE, %.1f of %.1f MB in the %.0f s allowed, %.3f MB/s" %
                 (name, self.label, got / 1e6, nbytes / 1e6, self.cap, mbs))
        return mbs

    def stop(self):
        for p in self.pfs:
            self.procs.stop(p)
        self.procs.stop(self.local)


def pf_rounds(fw, nbytes, rounds, baseline=None):
    """Medians of `rounds` uploads and downloads (and of the baseline, run
    between them, so that all three see the same moments of a shared
    machine)."""
    res = {"upload": [], "download": [], "baseline": []}
    for _ in range(rounds):
        res["upload"].append(fw.run("upload", nbytes))
        res["download"].append(fw.run("download", nbytes))
        if baseline:
            res["baseline"].append(baseline())
    return dict((k, median(v)) for k, v in res.items() if v)


def pf10_rss(procs, build, cert_dir, echo, per_conn):
    local, env, common = start_local(procs, build, cert_dir, 1024)
    try:
        pf, lport = start_pf(procs, build, env, common, echo.port)
        try:
            errors = []

            def one():
                try:
                    c = socket.create_connection(("127.0.0.1", lport), timeout=STEP_TIMEOUT)
                    got = [0]

                    def reader():
                        try:
                            while got[0] < per_conn:
                                d = c.recv(CHUNK)
                                if not d:
                                    return
                                got[0] += len(d)
                        except OSError:
                            pass
                    t = threading.Thread(target=reader, daemon=True)
                    t.start()
                    block = b"\x3c" * 65536
                    left = per_conn
                    while left > 0:
                        c.sendall(block[:min(left, 65536)])
                        left -= min(left, 65536)
                    t.join(STEP_TIMEOUT)
                    if got[0] != per_conn:
                        errors.append("echo %d of %d bytes" % (got[0], per_conn))
                    c.close()
                except OSError as e:
                    errors.append(str(e))
            t0 = time.perf_counter()
            ts = [threading.Thread(target=one, daemon=True) for _ in range(10)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(STEP_TIMEOUT + 10)
            dt = time.perf_counter() - t0
            hwm = vm_hwm_kib(pf.pid)
            if errors:
                raise BenchError("10-connection port forward: %s" % "; ".join(errors[:3]))
            note("port-forward, 10 connections echoing %.1f MB each: %.2f s, ssmb VmHWM %d KiB" %
                 (per_conn / 1e6, dt, hwm))
            return hwm
        finally:
            procs.stop(pf)
    finally:
        procs.stop(local)


def tls_pipe(procs, cert_dir, nbytes):
    """Python ssl (OpenSSL) on both ends, the server a separate process, with
    the certificate ssmb-local generated (EC P-256). The client announces the
    size, sends it, and the server's one-byte answer after the last byte
    stops the clock."""
    server_code = r"""
import socket, ssl, struct, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
t = ctx.wrap_socket(c, server_side=True)
hdr = b""
while len(hdr) < 8:
    hdr += t.recv(8 - len(hdr))
want = struct.unpack(">Q", hdr)[0]
buf = bytearray(262144)
n = 0
while n < want:
    k = t.recv_into(buf)
    if not k:
        break
    n += k
t.sendall(b"k" if n == want else b"x")
t.close()
"""
    p = procs.start([sys.executable, "-c", server_code, os.path.join(cert_dir, "server.pem"),
                     os.path.join(cert_dir, "server.key")],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        port = int(read_lines_until(p.stdout, lambda ls: True, 20, "TLS pipe server")[0])
        ctx = ssl.create_default_context(cafile=os.path.join(cert_dir, "ca.pem"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        version, cipher = t.version(), t.cipher()[0]
        block = b"\xa5" * CHUNK
        t0 = time.perf_counter()
        t.sendall(struct.pack(">Q", nbytes))
        left = nbytes
        while left > 0:
            t.sendall(block[:min(left, CHUNK)])
            left -= min(left, CHUNK)
        ans = t.recv(1)
        t1 = time.perf_counter()
        t.close()
        if ans != b"k":
            raise BenchError("TLS pipe: server answered %r" % ans)
        mbs = nbytes / (t1 - t0) / 1e6
        note("TLS pipe (Python ssl on both ends, %s %s, EC P-256 certificate): %.1f MB in %.2f s, %.1f MB/s" %
             (version, cipher, nbytes / 1e6, t1 - t0, mbs))
        return mbs
    finally:
        procs.stop(p)


def keystrokes(procs, build, cert_dir, count):
    """A shell through `ssmb start-session` in a pseudo-terminal: one character
    at a time, timed until its echo comes back. Returns (rtts_us, vmhwm_kib)."""
    import fcntl
    import termios
    import struct as st
    local, env, common = start_local(procs, build, cert_dir, 1024)
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, st.pack("HHHH", 50, 200, 0, 0))
        env = dict(env, TERM="xterm")
        p = procs.start([os.path.join(build, "ssmb"), "start-session"] + common,
                        env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        try:
            out = bytearray()

            def read_until(pred, timeout, what):
                deadline = time.monotonic() + timeout
                while not pred():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BenchError("shell: no %s after %.0f s (got %r)" % (what, timeout, bytes(out[-200:])))
                    r, _, _ = select.select([master], [], [], left)
                    if r:
                        try:
                            d = os.read(master, 65536)
                        except OSError:
                            d = b""
                        if not d:
                            raise BenchError("shell: ssmb ended before the %s (%r)" % (what, bytes(out[-200:])))
                        out.extend(d)

            read_until(lambda: out.endswith(b"$ "), 30, "prompt")
            # ssmb puts the terminal in raw mode once the session is ready.
            deadline = time.monotonic() + 10
            while termios.tcgetattr(slave)[3] & termios.ECHO:
                if time.monotonic() > deadline:
                    raise BenchError("shell: the terminal never went raw")
                time.sleep(0.01)
            rtts = []
            letters = b"abcdefghijklmnopqrstuvwxyz"
            warm = 20
            line = 0
            for i in range(count + warm):
                if line == 0:
                    os.write(master, b"#")   # a comment line: Enter runs nothing
                    mark = len(out)
                    read_until(lambda: b"#" in out[mark:], 10, "echo of #")
                ch = letters[i % 26:i % 26 + 1]
                mark = len(out)
                t0 = time.perf_counter()
                os.write(master, ch)
                read_until(lambda: ch in out[mark:], 10, "echo of %r" % ch)
                t1 = time.perf_counter()
                if i >= warm:
                    rtts.append((t1 - t0) * 1e6)
                line += 1
                if line == 60:
                    mark = len(out)
                    os.write(master, b"\r")
                    read_until(lambda: out[mark:].endswith(b"$ "), 10, "prompt after a line")
                    line = 0
            hwm = vm_hwm_kib(p.pid)
            os.write(master, b"\x15exit\r")
            try:
                deadline = time.monotonic() + 15
                while p.poll() is None and time.monotonic() < deadline:
                    r, _, _ = select.select([master], [], [], 0.1)
                    if r:
                        try:
                            os.read(master, 65536)
                        except OSError:
                            pass
                if p.poll() is None:
                    note("shell: ssmb still running 15 s after exit, stopped")
                elif p.returncode != 0:
                    note("shell: ssmb exited %d" % p.returncode)
            finally:
                procs.stop(p)
            return rtts, hwm
        finally:
            procs.stop(p)
    finally:
        os.close(master)
        os.close(slave)
        procs.stop(local)


def percentile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def stripped_kib(build):
    fd, tmp = tempfile.mkstemp(prefix="ssmb-stripped-")
    os.close(fd)
    try:
        subprocess.run(["strip", "-o", tmp, os.path.join(build, "ssmb")], check=True, timeout=30)
        return os.path.getsize(tmp) / 1024.0, os.path.getsize(os.path.join(build, "ssmb")) / 1024.0
    finally:
        os.unlink(tmp)


def main():
    args = sys.argv[1:]
    build = "build"
    mb, keys, cap, rounds = 64, 300, 20.0, 3
    i = 0
    while i < len(args):
        if args[i] == "--mb":
            mb = int(args[i + 1]); i += 2
        elif args[i] == "--cap":
            cap = float(args[i + 1]); i += 2
        elif args[i] == "--rounds":
            rounds = max(1, int(args[i + 1])); i += 2
        elif args[i] == "--keys":
            keys = int(args[i + 1]); i += 2
        else:
            build = args[i]; i += 1
    for t in ("ssmb", "ssmb-local"):
        if not os.access(os.path.join(build, t), os.X_OK):
            print("bench_e2e: no %s/%s" % (build, t), file=sys.stderr)
            return 1
    nbytes = mb * 1000 * 1000
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="ssmb-bench-")
    cert_dir = os.path.join(tmp, "certs")
    servers = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    failed = 0
    try:
        sink, source, echo = Server("sink"), Server("source"), Server("echo")
        servers = [sink, source, echo]
        note("end to end: ssmb <-> TLS <-> ssmb-local on 127.0.0.1, %d CPUs, medians of %d rounds" %
             (os.cpu_count() or 0, rounds))
        fw = Forwards(procs, build, cert_dir, 1024, sink, source, "1 KiB payloads", cap)
        try:
            r1 = pf_rounds(fw, nbytes, rounds)
        finally:
            fw.stop()
        row("pf_upload_1k_mbs", r1["upload"], "MB/s")
        row("pf_download_1k_mbs", r1["download"], "MB/s")
        # The 16 KiB rows and the plain TLS pipe move the same bytes, in
        # turns; each row is the median of its rounds.
        fw = Forwards(procs, build, cert_dir, 16384, sink, source, "16 KiB payloads", cap)
        try:
            r16 = pf_rounds(fw, nbytes * 4, rounds, lambda: tls_pipe(procs, cert_dir, nbytes * 4))
        finally:
            fw.stop()
        row("pf_upload_16k_mbs", r16["upload"], "MB/s")
        row("pf_download_16k_mbs", r16["download"], "MB/s")
        tls = r16["baseline"]
        row("tls_pipe_mbs", tls, "MB/s")
        row("pf_upload_16k_vs_tls_pipe", r16["upload"] / tls, "ratio")
        row("pf_download_16k_vs_tls_pipe", r16["download"] / tls, "ratio")
        rtts, hwm_shell = keystrokes(procs, build, cert_dir, keys)
        note("keystrokes: %d echoed, min %.0f us, median %.0f us, p99 %.0f us, max %.0f us" %
             (len(rtts), min(rtts), percentile(rtts, 0.5), percentile(rtts, 0.99), max(rtts)))
        row("keystroke_rtt_p50_us", percentile(rtts, 0.5), "us")
        row("keystroke_rtt_p99_us", percentile(rtts, 0.99), "us")
        row("ssmb_rss_shell_kib", hwm_shell, "KiB")
        row("ssmb_rss_pf10_kib", pf10_rss(procs, build, cert_dir, echo, 4 * 1000 * 1000), "KiB")
        s, full = stripped_kib(build)
        note("ssmb: %.0f KiB as built, %.0f KiB stripped" % (full, s))
        row("ssmb_stripped_kib", s, "KiB")
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        print("bench_e2e: FAILED: %s" % e, flush=True)
        failed = 1
    finally:
        procs.stop_all()
        for s in servers:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
