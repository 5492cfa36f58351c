/* bench_net.c - included by bench.c: WebSocket echo through the whole
   client stack (engine + BearSSL + WebSocket) against a local echo peer,
   beside the same bytes through plain TLS (OpenSSL on both ends), the
   heap one open connection holds, and the heap of one idle Session Manager
   session against build/ssmb-local, with TLS and without.

   The peer is this program forked: an OpenSSL TLS server on 127.0.0.1 that
   answers a WebSocket upgrade and echoes every message, or echoes raw bytes
   when the first bytes are not an HTTP request. Both clients move the same
   16 KiB messages one at a time (write, then read the echo back). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NET_MSG 16384
#define NET_ROUNDS 4096 /* 64 MiB each way per client */

static uint64_t mono_ms(void) { return (uint64_t)(now_ns() / 1e6); }

/* ---- the echo peer (child process) ---- */

static int ssl_write_all(SSL *ssl, const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    while (n) {
        int w = SSL_write(ssl, b, (int)n);
        if (w <= 0) return 0;
        b += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Answers the upgrade read so far in buf (head_len bytes, blank line in). */
static int peer_upgrade(SSL *ssl, const char *head) {
    char key[64] = "", accept[29], resp[256];
    const char *k = strstr(head, "Sec-WebSocket-Key: ");
    int n;
    if (!k || sscanf(k + 19, "%63[^\r]", key) != 1 || ssmb_ws_accept_key(key, strlen(key), accept) != SSMB_OK)
        return 0;
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    return ssl_write_all(ssl, resp, (size_t)n);
}

/* Echoes each piece of each message back as a fragment of the same message. */
static void peer_ws_echo(SSL *ssl, uint8_t *buf, size_t have, size_t cap) {
    ssmb_ws_reader r;
    ssmb_ws_reader_init(&r, SSMB_WS_READ_FROM_CLIENT, 0);
    for (;;) {
        size_t at = 0;
        while (at < have) {
            ssmb_ws_piece p;
            size_t used = 0;
            uint8_t hdr[SSMB_WS_MAX_HEADER_SIZE];
            size_t hn = 0;
            ssmb_result res = ssmb_ws_read(&r, buf + at, have - at, &used, &p);
            at += used;
            if (res == SSMB_AGAIN) break;
            if (res != SSMB_OK || p.opcode == SSMB_WS_CLOSE) return;
            if (p.opcode == SSMB_WS_PING || p.opcode == SSMB_WS_PONG) continue;
            ssmb_ws_frame_header_encode((p.flags & SSMB_WS_MESSAGE_START) ? p.opcode : SSMB_WS_CONTINUATION,
                                        (p.flags & SSMB_WS_MESSAGE_END) != 0, p.len, NULL, hdr, &hn);
            if (!ssl_write_all(ssl, hdr, hn) || !ssl_write_all(ssl, p.data, p.len)) return;
        }
        {
            int n = SSL_read(ssl, buf, (int)cap);
            if (n <= 0) return;
            have = (size_t)n;
        }
    }
}

static void peer_connection(SSL_CTX *ctx, int fd) {
    static uint8_t buf[1 << 17];
    SSL *ssl = SSL_new(ctx);
    int n, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1 && (n = SSL_read(ssl, buf, sizeof buf - 1)) > 0) {
        if (n >= 4 && memcmp(buf, "GET ", 4) == 0) {
            size_t have = (size_t)n;
            char *end;
            buf[have] = 0;
            while (!(end = strstr((char *)buf, "\r\n\r\n")) && have < sizeof buf - 1) {
                int m = SSL_read(ssl, buf + have, (int)(sizeof buf - 1 - have));
                if (m <= 0) break;
                have += (size_t)m;
                buf[have] = 0;
            }
            if (end && peer_upgrade(ssl, (const char *)buf)) {
                size_t head = (size_t)(end + 4 - (char *)buf);
                memmove(buf, buf + head, have - head);
                peer_ws_echo(ssl, buf, have - head, sizeof buf);
            }
        } else {
            do {
                if (!ssl_write_all(ssl, buf, (size_t)n)) break;
            } while ((n = SSL_read(ssl, buf, sizeof buf)) > 0);
        }
    }
    SSL_free(ssl);
    close(fd);
}

/* Forks the peer; *port is where it listens. */
static pid_t peer_start(const char *cert, const char *key, int *port) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    pid_t pid;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 8) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    pid = fork();
    if (pid == 0) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        alarm(120); /* never outlive a stuck bench */
        if (!ctx || SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            _exit(1);
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION); /* what both clients speak */
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) _exit(0);
            peer_connection(ctx, fd);
        }
    }
    close(lfd);
    return pid;
}

/* ---- plain TLS: OpenSSL client, raw echo ---- */

static double plain_tls_mibs(int port, const char *ca) {
    static uint8_t msg[NET_MSG], back[NET_MSG];
    struct sockaddr_in a;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, i;
    double t0, mibs = 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SSL_CTX_load_verify_locations(ctx, ca, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) == 1) {
        memset(msg, 'p', sizeof msg);
        t0 = now_ns();
        for (i = 0; i < NET_ROUNDS; i++) {
            size_t got = 0;
            if (!ssl_write_all(ssl, msg, sizeof msg)) break;
            while (got < sizeof back) {
                int n = SSL_read(ssl, back + got, (int)(sizeof back - got));
                if (n <= 0) break;
                got += (size_t)n;
            }
            if (got < sizeof back) break;
        }
        if (i == NET_ROUNDS) mibs = (double)NET_ROUNDS * NET_MSG / (1024.0 * 1024.0) / ((now_ns() - t0) / 1e9);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return mibs;
}

/* ---- the whole stack: engine + BearSSL + WebSocket ---- */

typedef struct heap_count {
    size_t live, peak;
} heap_count;

static void *hc_alloc(size_t n, void *u) {
    heap_count *hc = (heap_count *)u;
    hc->live += n;
    if (hc->live > hc->peak) hc->peak = hc->live;
    return malloc(n);
}

static void hc_free(void *p, size_t n, void *u) {
    ((heap_count *)u)->live -= n;
    free(p);
}

/* Runs events until pred holds or the engine reports a close. */
typedef struct echo_state {
    int open, closed;
    size_t got;         /* echoed bytes of the current message */
} echo_state;

static void echo_events(ssmb_engine *eng, echo_state *st) {
    ssmb_event ev;
    ssmb_engine_tick(eng, mono_ms());
    while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
        if (ev.type == SSMB_EVENT_WS_OPEN) st->open = 1;
        if (ev.type == SSMB_EVENT_WS_MESSAGE) st->got += ev.piece.len;
        if (ev.type == SSMB_EVENT_WS_CLOSED) st->closed = 1;
    }
}

static int wait_for(ssmb_engine *eng, echo_state *st, int (*pred)(const echo_state *)) {
    uint64_t deadline = mono_ms() + 20000;
    while (!pred(st) && !st->closed && mono_ms() < deadline) {
        ssmb_engine_wait(eng, 100);
        echo_events(eng, st);
    }
    return pred(st);
}

static int is_open(const echo_state *st) { return st->open; }
static int echo_done(const echo_state *st) { return st->got >= NET_MSG; }

/* MiB/s of echoed payload; *conn_heap: bytes one open connection holds. */
static double stack_mibs(int port, const char *ca, size_t *conn_heap) {
    static uint8_t msg[NET_MSG];
    heap_count hc = {0};
    ssmb_desc d;
    ssmb_conn_desc cd;
    ssmb_engine *eng = NULL;
    ssmb_trust *trust = NULL;
    ssmb_ws ws;
    echo_state st;
    char url[64];
    size_t before;
    double t0, mibs = 0;
    int i;
    memset(&d, 0, sizeof d);
    memset(&cd, 0, sizeof cd);
    memset(&st, 0, sizeof st);
    memset(msg, 's', sizeof msg);
    d.allocator.alloc_fn = hc_alloc;
    d.allocator.free_fn = hc_free;
    d.allocator.user_data = &hc;
    d.https_proxy = "";
    if (ssmb_trust_load(&d.allocator, ca, &trust) != SSMB_OK) return 0;
    d.trust = trust;
    if (ssmb_engine_create(&d, &eng) != SSMB_OK) return 0;
    snprintf(url, sizeof url, "wss://localhost:%d/echo", port);
    cd.url = url;
    before = hc.live;
    if (ssmb_engine_ws_open(eng, &cd, NULL, mono_ms(), &ws) == SSMB_OK && wait_for(eng, &st, is_open)) {
        *conn_heap = hc.live - before;
        t0 = now_ns();
        for (i = 0; i < NET_ROUNDS; i++) {
            size_t sent = 0;
            st.got = 0;
            while (sent < NET_MSG && !st.closed) {
                size_t took = 0;
                if (ssmb_engine_ws_send(eng, ws, SSMB_WS_BINARY, msg + sent, NET_MSG - sent, 1, &took) < 0) break;
                sent += took;
                if (sent < NET_MSG) {
                    ssmb_engine_wait(eng, 10);
                    echo_events(eng, &st);
                }
            }
            if (!wait_for(eng, &st, echo_done)) break;
        }
        if (i == NET_ROUNDS) mibs = (double)NET_ROUNDS * NET_MSG / (1024.0 * 1024.0) / ((now_ns() - t0) / 1e9);
        ssmb_engine_ws_close(eng, ws, 1000, NULL, mono_ms());
    }
    ssmb_engine_destroy(eng);
    ssmb_trust_destroy(trust);
    return mibs;
}

/* Prints the network rows: table lines, then bench: lines. */
static int net_bench(void) {
    const char *ca = "build/certs/ca.pem";
    int port = 0, status;
    size_t conn_heap = 0;
    double plain, ours;
    pid_t peer = peer_start("build/certs/server.pem", "build/certs/server.key", &port);
    if (peer <= 0) {
        fprintf(stderr, "bench: the echo peer did not start\n");
        return 0;
    }
    plain = plain_tls_mibs(port, ca);
    ours = stack_mibs(port, ca, &conn_heap);
    kill(peer, SIGTERM);
    waitpid(peer, &status, 0);
    if (plain <= 0 || ours <= 0) {
        fprintf(stderr, "bench: an echo run failed (plain %.1f, stack %.1f)\n", plain, ours);
        return 0;
    }
    printf("%-38s %8.2f %-5s\n", "plain TLS echo (OpenSSL both ends), 16 KiB", plain, "MiB/s");
    printf("%-38s %8.2f %-5s %9.2fx\n", "engine+BearSSL+WebSocket echo, 16 KiB", ours, "MiB/s", ours / plain);
    printf("%-38s %8.2f %-5s\n", "heap of one open connection", conn_heap / 1024.0, "KiB");
    printf("%-38s %8.2f %-5s\n\n", "  beyond BearSSL's record buffers", (conn_heap - (size_t)BR_SSL_BUFSIZE_BIDI) / 1024.0, "KiB");
    printf("bench: plain_tls_16k_mibs %.2f MiB/s\n", plain);
    printf("bench: tls_ws_echo_16k_mibs %.2f MiB/s\n", ours);
    printf("bench: tls_ws_echo_vs_plain_tls %.3f ratio\n", ours / plain);
    printf("bench: conn_heap_kib %.2f KiB\n", conn_heap / 1024.0);
    printf("bench: conn_heap_beyond_bearssl_kib %.2f KiB\n", (conn_heap - (size_t)BR_SSL_BUFSIZE_BIDI) / 1024.0);
    return 1;
}

/* ---- the heap of one idle session ----
   build/ssmb-local (the AWS side on loopback) is started with TLS or
   without; an engine with a counting allocator opens a shell session to
   it, runs until READY and a second of idle, and the bytes it holds then,
   less what the engine held before the session started, are the
   session's: channel, buffers, the WebSocket's conn and, with TLS,
   BearSSL's engine and record buffers. */

typedef struct local_proc {
    pid_t pid;
    char text[1024];
    char endpoint[128], ca[512], region[64], key[128], secret[128];
} local_proc;

/* The value after "name: " in what ssmb-local printed. */
static int local_value(const local_proc *l, const char *name, char *out, size_t cap) {
    const char *p = strstr(l->text, name), *e;
    if (!p) return 0;
    p += strlen(name);
    e = strchr(p, '\n');
    if (!e || (size_t)(e - p) >= cap) return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 1;
}

static void local_stop(local_proc *l) {
    int i;
    if (l->pid <= 0) return;
    kill(l->pid, SIGTERM);
    for (i = 0; i < 100 && waitpid(l->pid, NULL, WNOHANG) == 0; i++) (void)poll(NULL, 0, 20);
    if (i == 100) {
        kill(l->pid, SIGKILL);
        waitpid(l->pid, NULL, 0);
    }
    l->pid = 0;
}

/* Starts ssmb-local and reads its five lines (10 s at most). */
static int local_start(local_proc *l, int tls) {
    int fds[2];
    size_t len = 0;
    uint64_t end = mono_ms() + 10000;
    memset(l, 0, sizeof *l);
    if (pipe(fds) != 0) return 0;
    l->pid = fork();
    if (l->pid < 0) return 0;
    if (l->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(null, 2);
        close(fds[0]);
        if (tls)
            execl("build/ssmb-local", "ssmb-local", "--port", "0", "--cert-dir", "build/certs-local", (char *)NULL);
        else execl("build/ssmb-local", "ssmb-local", "--port", "0", "--no-tls", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (!strstr(l->text, "secret-access-key: ") || !strchr(strstr(l->text, "secret-access-key: "), '\n')) {
        struct pollfd p;
        ssize_t n;
        p.fd = fds[0];
        p.events = POLLIN;
        if (mono_ms() >= end || poll(&p, 1, 100) < 0) break;
        n = read(fds[0], l->text + len, sizeof l->text - 1 - len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
        if (n > 0) len += (size_t)n;
        l->text[len] = '\0';
    }
    close(fds[0]);
    if (!local_value(l, "endpoint: ", l->endpoint, sizeof l->endpoint) ||
        !local_value(l, "ca-bundle: ", l->ca, sizeof l->ca) ||
        !local_value(l, "region: ", l->region, sizeof l->region) ||
        !local_value(l, "access-key-id: ", l->key, sizeof l->key) ||
        !local_value(l, "secret-access-key: ", l->secret, sizeof l->secret)) {
        local_stop(l);
        return 0;
    }
    return 1;
}

static const char *bench_no_env(const char *name, void *u) {
    (void)name;
    (void)u;
    return NULL; /* everything is given: no variable, file or proxy applies */
}

/* Events until the session is READY plus idle_ms, or it closed. */
static int session_run(ssmb_engine *eng, int *ready, uint64_t idle_ms) {
    uint64_t deadline = mono_ms() + 10000;
    ssmb_event ev;
    int closed = 0;
    while (!closed && mono_ms() < deadline) {
        ssmb_engine_wait(eng, ssmb_engine_timeout_ms(eng, mono_ms(), 50));
        ssmb_engine_tick(eng, mono_ms());
        while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
            if (ev.type == SSMB_EVENT_SESSION_STATE && ev.state == SSMB_SESSION_READY && !*ready) {
                *ready = 1;
                deadline = mono_ms() + idle_ms;
            }
            if (ev.type == SSMB_EVENT_SESSION_CLOSED) closed = 1;
        }
    }
    return *ready && !closed;
}

/* Bytes one idle session holds (0 on failure); *engine_heap: the engine's
   own; *peak: the most the session held at once (while StartSession's
   HTTPS connection and the WebSocket's overlap). */
static size_t session_heap(int tls, size_t *engine_heap, size_t *peak) {
    local_proc l;
    heap_count hc = {0};
    ssmb_desc d;
    ssmb_session_desc sd;
    ssmb_engine *eng = NULL;
    ssmb_session s;
    size_t before, held = 0;
    int ready = 0;
    uint64_t end;
    if (!local_start(&l, tls)) return 0;
    memset(&d, 0, sizeof d);
    d.allocator.alloc_fn = hc_alloc;
    d.allocator.free_fn = hc_free;
    d.allocator.user_data = &hc;
    d.getenv_fn = bench_no_env;
    d.https_proxy = "";
    d.ca_file = tls ? l.ca : "build/certs/ca.pem"; /* plain: any small bundle */
    memset(&sd, 0, sizeof sd);
    sd.target = "i-0123456789abcdef0"; /* no document: the shell */
    sd.region = l.region;
    sd.endpoint_url = l.endpoint;
    sd.allow_custom_stream_host = 1;
    sd.credentials.access_key_id = ssmb_str_c(l.key);
    sd.credentials.secret_access_key = ssmb_str_c(l.secret);
    if (ssmb_engine_create(&d, &eng) == SSMB_OK) {
        before = hc.peak = hc.live;
        if (ssmb_session_start(eng, &sd, mono_ms(), &s) == SSMB_OK && session_run(eng, &ready, 1000)) {
            held = hc.live - before;
            *engine_heap = before;
            *peak = hc.peak - before;
        }
        end = mono_ms() + 5000;
        while (!ssmb_engine_shutdown(eng, mono_ms(), end)) {
            ssmb_event ev;
            ssmb_engine_wait(eng, ssmb_engine_timeout_ms(eng, mono_ms(), 50));
            ssmb_engine_tick(eng, mono_ms());
            while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {}
        }
        ssmb_engine_destroy(eng);
    }
    local_stop(&l);
    return held;
}

static int session_heap_bench(void) {
    size_t engine_heap = 0, plain_engine = 0, peak = 0, plain_peak = 0;
    size_t tls = session_heap(1, &engine_heap, &peak), plain = session_heap(0, &plain_engine, &plain_peak);
    if (!tls || !plain) {
        fprintf(stderr, "bench: the idle session against build/ssmb-local failed (tls %zu, plain %zu bytes)\n", tls,
                plain);
        return 0;
    }
    printf("%-38s %8.2f %-5s\n", "heap of the engine alone", engine_heap / 1024.0, "KiB");
    printf("%-38s %8.2f %-5s\n", "heap of one idle session, TLS", tls / 1024.0, "KiB");
    printf("%-38s %8.2f %-5s\n", "  beyond BearSSL's record buffers", (tls - (size_t)BR_SSL_BUFSIZE_BIDI) / 1024.0,
           "KiB");
    printf("%-38s %8.2f %-5s\n", "  at its peak (starting)", peak / 1024.0, "KiB");
    printf("%-38s %8.2f %-5s\n\n", "heap of one idle session, plain", plain / 1024.0, "KiB");
    printf("bench: engine_heap_kib %.2f KiB\n", engine_heap / 1024.0);
    printf("bench: session_heap_kib %.2f KiB\n", tls / 1024.0);
    printf("bench: session_heap_peak_kib %.2f KiB\n", peak / 1024.0);
    printf("bench: session_heap_plain_kib %.2f KiB\n", plain / 1024.0);
    return 1;
}
