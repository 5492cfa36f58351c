/* bench_net.c - included by bench.c: WebSocket echo through the whole
   client stack (engine + BearSSL + WebSocket) against a local echo peer,
   beside the same bytes through plain TLS (OpenSSL on both ends), and the
   heap one open connection holds.

   The peer is this program forked: an OpenSSL TLS server on 127.0.0.1 that
   answers a WebSocket upgrade and echoes every message, or echoes raw bytes
   when the first bytes are not an HTTP request. Both clients move the same
   16 KiB messages one at a time (write, then read the echo back). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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
    size_t live;
} heap_count;

static void *hc_alloc(size_t n, void *u) {
    ((heap_count *)u)->live += n;
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
