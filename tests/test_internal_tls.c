/* White-box tests of the TLS backend compiled in: BearSSL by default,
   mbedTLS under SSMB_USE_MBEDTLS (ssmb_tls_backend() says which). The
   contract of the >>tls room is driven over a real socket against an
   independent peer, Python's ssl module (tests/tls_echo_server.py), with
   the certificates of tests/certs.sh; then the trust anchors.

   The implementation is compiled static into this file, so the contract's
   private functions can be called. */
#define SSMBRIDGE_STATIC
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CERTS "build/certs"

#if defined(SSMB_NO_TLS)
/* Without a TLS library everything says so, and nothing is allocated. */
SSMB_TEST(tls_none_unsupported) {
    ssmb__tls t;
    ssmb__tls_config cfg;
    ssmb_trust *trust = NULL;
    size_t n = 1;
    memset(&cfg, 0, sizeof cfg);
    CHECK_EQ_STR(ssmb_tls_backend(), "none");
    CHECK_EQ_INT(ssmb__tls_init(&t, &cfg), SSMB_ERR_UNSUPPORTED);
    CHECK(ssmb__tls_net_out_buf(&t, &n) == NULL && n == 0);
    CHECK_EQ_INT(ssmb__tls_error(&t, NULL), SSMB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(ssmb_trust_create(NULL, "x", 1, &trust), SSMB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(ssmb_trust_load(NULL, NULL, &trust), SSMB_ERR_UNSUPPORTED);
    CHECK(trust == NULL);
}
#else

/* ---- helpers: certificates, clock, the peer process ---- */

static int certs_ready(void) {
    static int state; /* 0 not tried, 1 ready, -1 failed */
    if (state == 0) state = system("sh tests/certs.sh " CERTS) == 0 ? 1 : -1;
    if (state < 0) ssmbt_fail(__FILE__, __LINE__, "tests/certs.sh failed (is openssl installed?)");
    return state > 0;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t utc_now(void) { return (int64_t)time(NULL); }

typedef struct peer {
    pid_t pid;
    int port;
} peer;

/* The address the peer listens on unless a test says otherwise. */
#define LOOPBACK "127.0.0.1"

/* The port the peer prints once listening (0 when none comes in 5 s). */
static int read_port(int fd) {
    char line[32];
    size_t len = 0;
    int64_t deadline = mono_ms() + 5000;
    while (len + 1 < sizeof line && mono_ms() < deadline) {
        struct pollfd pfd;
        ssize_t n;
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 100) <= 0) continue;
        n = read(fd, line + len, 1);
        if (n <= 0) break;
        if (line[len] == '\n') break;
        len++;
    }
    line[len] = '\0';
    return atoi(line);
}

/* Starts tests/tls_echo_server.py on `addr` serving CERTS/<name>.pem;
   close_after < 0 leaves the closing to the client. */
static int peer_start(peer *p, const char *addr, const char *name, long close_after) {
    char cert[128], key[128], after[32];
    int fds[2];
    snprintf(cert, sizeof cert, CERTS "/%s.pem", name);
    snprintf(key, sizeof key, CERTS "/%s.key", name);
    snprintf(after, sizeof after, "%ld", close_after);
    p->pid = -1;
    p->port = 0;
    if (!certs_ready() || pipe(fds) != 0) return 0;
    p->pid = fork();
    if (p->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", "tests/tls_echo_server.py", cert, key, after, addr, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (p->pid > 0) p->port = read_port(fds[0]);
    close(fds[0]);
    return CHECK(p->port > 0);
}

/* Waits up to 3 s for the peer to end on its own, then kills it (by PID). */
static void peer_stop(peer *p) {
    int i, status;
    if (p->pid <= 0) return;
    for (i = 0; i < 300; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) return;
        poll(NULL, 0, 10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
}

/* A socket address for IPv4 or IPv6 text and a port; its length, 0 when
   the text is neither. */
static socklen_t sockaddr_of(const char *addr, int port, struct sockaddr_storage *ss) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return (socklen_t)sizeof *a4;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return (socklen_t)sizeof *a6;
    }
    return 0;
}

/* A TCP connection to addr:port, made blocking, then non-blocking. */
static int connect_local(const char *addr, int port) {
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(addr, port, &ss);
    int fd = len ? socket(ss.ss_family, SOCK_STREAM, 0) : -1;
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- driving the contract over the socket ----
   Bytes pass through a staging buffer each way, so that with step == 1
   every contract call moves one byte while the socket still moves
   kilobytes. */
typedef struct tls_run {
    ssmb__tls *t;
    int fd;
    size_t step;                  /* most bytes per contract call */
    const uint8_t *send;          /* plaintext to send */
    size_t send_len, sent;
    uint8_t *recv;                /* plaintext received */
    size_t recv_cap, received;
    int overflow;                 /* more plaintext came than recv_cap */
    int eof;                      /* the socket reached its end or failed */
    uint8_t wire_in[4096], wire_out[4096];
    size_t wi_off, wi_len, wo_off, wo_len;
} tls_run;

static size_t run_step(const tls_run *r, size_t n) { return n < r->step ? n : r->step; }

static int move_app_out(tls_run *r) {
    size_t moved = 0, cap, n;
    uint8_t *p;
    while (r->sent < r->send_len && (p = ssmb__tls_app_out_buf(r->t, &cap)) != NULL && cap > 0) {
        n = run_step(r, SSMB__MIN(cap, r->send_len - r->sent));
        memcpy(p, r->send + r->sent, n);
        ssmb__tls_app_out_ack(r->t, n);
        r->sent += n;
        moved += n;
    }
    if (moved) ssmb__tls_flush(r->t);
    return moved > 0;
}

static int move_net_out(tls_run *r) {
    int moved = 0;
    size_t len, n;
    const uint8_t *p;
    while (r->wo_len < sizeof r->wire_out && (p = ssmb__tls_net_out_buf(r->t, &len)) != NULL && len > 0) {
        n = run_step(r, SSMB__MIN(len, sizeof r->wire_out - r->wo_len));
        memcpy(r->wire_out + r->wo_len, p, n);
        ssmb__tls_net_out_ack(r->t, n);
        r->wo_len += n;
        moved = 1;
    }
    if (r->wo_off < r->wo_len) {
        ssize_t w = send(r->fd, r->wire_out + r->wo_off, r->wo_len - r->wo_off, MSG_NOSIGNAL);
        if (w > 0) {
            r->wo_off += (size_t)w;
            moved = 1;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            r->eof = 1;
        }
        if (r->wo_off == r->wo_len) r->wo_off = r->wo_len = 0;
    }
    return moved;
}

static int move_net_in(tls_run *r) {
    int moved = 0;
    size_t cap, n;
    uint8_t *p;
    if (r->wi_off == r->wi_len && !r->eof) {
        ssize_t got = recv(r->fd, r->wire_in, sizeof r->wire_in, 0);
        r->wi_off = r->wi_len = 0;
        if (got > 0) {
            r->wi_len = (size_t)got;
            moved = 1;
        } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            r->eof = 1;
        }
    }
    while (r->wi_off < r->wi_len && (p = ssmb__tls_net_in_buf(r->t, &cap)) != NULL && cap > 0) {
        n = run_step(r, SSMB__MIN(cap, r->wi_len - r->wi_off));
        memcpy(p, r->wire_in + r->wi_off, n);
        ssmb__tls_net_in_ack(r->t, n);
        r->wi_off += n;
        moved = 1;
    }
    return moved;
}

static int move_app_in(tls_run *r) {
    int moved = 0;
    size_t len, n;
    uint8_t *p;
    while ((p = ssmb__tls_app_in_buf(r->t, &len)) != NULL && len > 0) {
        n = run_step(r, len);
        if (n > r->recv_cap - r->received) {
            r->overflow = 1;
            n = r->recv_cap - r->received;
            if (n == 0) break;
        }
        memcpy(r->recv + r->received, p, n);
        ssmb__tls_app_in_ack(r->t, n);
        r->received += n;
        moved = 1;
    }
    return moved;
}

static int move_all(tls_run *r) {
    int moved = move_app_out(r);
    moved |= move_net_out(r);
    moved |= move_net_in(r);
    moved |= move_app_in(r);
    return moved;
}

enum { UNTIL_ECHOED, UNTIL_END };

/* Runs until the handshake is done and every byte sent came back
   (UNTIL_ECHOED), or until the engine closed or failed (UNTIL_END).
   Returns the engine's state then, SSMB_ERR_IO when the peer went away
   first, SSMB_ERR_TIMEOUT after timeout_ms. */
static ssmb_result tls_drive(tls_run *r, int until, int timeout_ms) {
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        ssmb_result e = ssmb__tls_error(r->t, NULL);
        int moved;
        if (e != SSMB_OK) {
            while (r->wo_len > 0 && !r->eof && mono_ms() < deadline) move_net_out(r); /* our last alert */
            return e;
        }
        if (until == UNTIL_ECHOED && ssmb__tls_handshake_done(r->t) && r->received >= r->send_len) return SSMB_OK;
        moved = move_all(r);
        if (r->eof && !moved) return SSMB_ERR_IO;
        if (mono_ms() > deadline) return SSMB_ERR_TIMEOUT;
        if (!moved) {
            struct pollfd pfd;
            pfd.fd = r->fd;
            pfd.events = (short)(POLLIN | (r->wo_len > r->wo_off ? POLLOUT : 0));
            poll(&pfd, 1, 20);
        }
    }
}

/* ---- one TLS connection to a fresh peer ---- */

typedef struct tls_conn {
    peer peer;
    ssmb_trust *trust;
    ssmb__tls *t;
    tls_run run;
    int inited;                   /* ssmb__tls_init was called on t */
} tls_conn;

/* Peer on `addr` serving `cert`; our side trusts ca.pem, expects `host`,
   judges validity at `now`. 0 when the setup itself failed (checked). */
static int conn_open_at(tls_conn *c, const char *addr, const char *cert, long close_after, const char *host,
                        int64_t now, size_t step) {
    ssmb__tls_config cfg;
    ssmb_result r;
    memset(c, 0, sizeof *c);
    c->run.fd = -1;
    if (!peer_start(&c->peer, addr, cert, close_after)) return 0;
    if (!CHECK(ssmb_trust_load(NULL, CERTS "/ca.pem", &c->trust) == SSMB_OK)) return 0;
    c->t = (ssmb__tls *)malloc(ssmb__tls_size("0.0.0.0"));
    c->run.t = c->t;
    c->run.step = step;
    c->run.fd = connect_local(addr, c->peer.port);
    if (!CHECK(c->t != NULL) || !CHECK(c->run.fd >= 0)) return 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.trust = c->trust;
    cfg.server_name = host;
    cfg.now_utc = now;
    r = ssmb__tls_init(c->t, &cfg);
    c->inited = 1;
    return CHECK(r == SSMB_OK);
}

static int conn_open(tls_conn *c, const char *cert, long close_after, const char *host, int64_t now, size_t step) {
    return conn_open_at(c, LOOPBACK, cert, close_after, host, now, step);
}

static void conn_close(tls_conn *c) {
    if (c->run.fd >= 0) close(c->run.fd);
    if (c->inited) ssmb__tls_free(c->t);
    free(c->t);
    ssmb_trust_destroy(c->trust);
    peer_stop(&c->peer);
}

/* Deterministic test bytes (a 32-bit LCG, so every offset differs). */
static uint8_t *pattern(size_t n, uint32_t seed) {
    uint8_t *p = (uint8_t *)malloc(n ? n : 1);
    size_t i;
    for (i = 0; p && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
    return p;
}

/* Sends n bytes and checks they come back intact; 1 when they did. */
static int echo_once(tls_conn *c, size_t n, uint32_t seed) {
    uint8_t *out = pattern(n, seed), *in = (uint8_t *)malloc(n + 64);
    ssmb_result r;
    int ok = 0;
    c->run.send = out;
    c->run.send_len = n;
    c->run.sent = 0;
    c->run.recv = in;
    c->run.recv_cap = n + 64;
    c->run.received = 0;
    r = tls_drive(&c->run, UNTIL_ECHOED, 20000);
    CHECK_EQ_INT(r, SSMB_OK);
    CHECK_EQ_INT(c->run.received, n);
    CHECK(!c->run.overflow);
    if (r == SSMB_OK && c->run.received == n && CHECK_EQ_MEM(in, out, n)) ok = 1;
    free(out);
    free(in);
    return ok;
}

/* Handshake, then 5 bytes, 16 KiB and 1 MiB through the peer and back. */
static void echo_sizes(const char *suite, size_t step) {
    static const size_t sizes[] = {5, 16384, 1u << 20};
    tls_conn c;
    long ok = 0;
    size_t i;
    if (conn_open(&c, "server", -1, "localhost", utc_now(), step)) {
        CHECK(!ssmb__tls_handshake_done(c.t));
        for (i = 0; i < SSMB__COUNT_OF(sizes); i++) ok += echo_once(&c, sizes[i], (uint32_t)i + 1);
        CHECK(ssmb__tls_handshake_done(c.t));
    }
    conn_close(&c);
    ssmbt_report(suite, ok, (long)SSMB__COUNT_OF(sizes), "sizes echoed");
}

SSMB_TEST(tls_backend_and_size) {
    const char *b = ssmb_tls_backend();
#if defined(SSMB_USE_MBEDTLS)
    CHECK_EQ_STR(b, "mbedtls");
#else
    CHECK_EQ_STR(b, "bearssl");
#endif
    CHECK(ssmb__tls_size("0.0.0.0") >= sizeof(ssmb__tls));
    printf("tls backend %s: ssmb__tls_size = %zu bytes (a DNS name), %zu (an address)\n", b, ssmb__tls_size("example.com"), ssmb__tls_size("0.0.0.0"));
}

SSMB_TEST(tls_echo_whole) { echo_sizes("tls echo, whole buffers", (size_t)-1); }

SSMB_TEST(tls_echo_byte_by_byte) { echo_sizes("tls echo, one byte per contract call", 1); }

/* ---- certificates refused ---- */

/* What the backend reports for each refusal. */
enum { REFUSED_NAME, REFUSED_UNTRUSTED, REFUSED_EXPIRED, REFUSED_NOT_YET };

static void check_refusal_detail(const ssmb__tls *t, int32_t detail, int why) {
#if defined(SSMB_USE_MBEDTLS)
    static const uint32_t flag[] = {MBEDTLS_X509_BADCERT_CN_MISMATCH, MBEDTLS_X509_BADCERT_NOT_TRUSTED,
                                    MBEDTLS_X509_BADCERT_EXPIRED, MBEDTLS_X509_BADCERT_FUTURE};
    CHECK_EQ_INT(detail, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    CHECK(mbedtls_ssl_get_verify_result(&t->ssl) & flag[why]);
#else
    /* A certificate not yet valid is also "expired" to BearSSL. */
    static const int code[] = {BR_ERR_X509_BAD_SERVER_NAME, BR_ERR_X509_NOT_TRUSTED, BR_ERR_X509_EXPIRED,
                               BR_ERR_X509_EXPIRED};
    (void)t;
    CHECK_EQ_INT(detail, code[why]);
#endif
}

/* The handshake with a peer on `addr` serving `cert`, for `host` at `now`,
   must end in SSMB_ERR_TLS_CERT for the reason `why`; 1 when it did. */
static int refused_at(const char *addr, const char *cert, const char *host, int64_t now, int why) {
    tls_conn c;
    int ok = 0;
    if (conn_open_at(&c, addr, cert, -1, host, now, (size_t)-1)) {
        int32_t detail = 0;
        ssmb_result r = tls_drive(&c.run, UNTIL_END, 10000);
        CHECK_EQ_INT(r, SSMB_ERR_TLS_CERT);
        CHECK_EQ_INT(ssmb__tls_error(c.t, &detail), SSMB_ERR_TLS_CERT);
        check_refusal_detail(c.t, detail, why);
        CHECK(!ssmb__tls_handshake_done(c.t));
        ok = r == SSMB_ERR_TLS_CERT;
    }
    conn_close(&c);
    return ok;
}

static int refused(const char *cert, const char *host, int64_t now, int why) {
    return refused_at(LOOPBACK, cert, host, now, why);
}

SSMB_TEST(tls_certificate_refused) {
    const int64_t y2000 = 946684800, in_20_years = utc_now() + 20 * 366 * 86400LL;
    long ok = 0;
    ok += refused("wrong", "localhost", utc_now(), REFUSED_NAME);      /* carries wrong.example only */
    ok += refused("server", "other.example", utc_now(), REFUSED_NAME); /* right certificate, other name */
    ok += refused("rogue", "localhost", utc_now(), REFUSED_UNTRUSTED); /* from a CA nobody trusts */
    ok += refused("expired", "localhost", utc_now(), REFUSED_EXPIRED); /* ended in 2021 */
    ok += refused("server", "localhost", y2000, REFUSED_NOT_YET);     /* now_utc before notBefore */
    /* After the end of the validity: the system clock would accept it,
       so this shows now_utc is what counts. */
    ok += refused("server", "localhost", in_20_years, REFUSED_EXPIRED);
    ssmbt_report("tls certificates refused", ok, 6, "cases");
}

/* ---- close_notify (RFC 5246 §7.2.1) ---- */

SSMB_TEST(tls_close_by_us) {
    tls_conn c;
    if (conn_open(&c, "server", -1, "localhost", utc_now(), (size_t)-1)) {
        size_t cap;
        int32_t detail = -1;
        echo_once(&c, 100, 7);
        ssmb__tls_close(c.t);
        CHECK(ssmb__tls_app_out_buf(c.t, &cap) == NULL);
        CHECK_EQ_INT(tls_drive(&c.run, UNTIL_END, 10000), SSMB_CLOSED);
        CHECK_EQ_INT(ssmb__tls_error(c.t, &detail), SSMB_CLOSED);
        CHECK_EQ_INT(detail, 0);
        CHECK(ssmb__tls_handshake_done(c.t));
        CHECK(ssmb__tls_app_out_buf(c.t, &cap) == NULL);
    }
    conn_close(&c);
}

SSMB_TEST(tls_close_by_peer) {
    tls_conn c;
    if (conn_open(&c, "server", 1000, "localhost", utc_now(), 1)) {
        int32_t detail = -1;
        echo_once(&c, 1000, 9); /* the peer closes after echoing these */
        CHECK_EQ_INT(tls_drive(&c.run, UNTIL_END, 10000), SSMB_CLOSED);
        CHECK_EQ_INT(ssmb__tls_error(c.t, &detail), SSMB_CLOSED);
        CHECK_EQ_INT(detail, 0);
    }
    conn_close(&c);
}

/* ---- without a peer ---- */

static ssmb_result no_random(void *buf, size_t len, void *user_data) {
    (void)buf;
    (void)len;
    (void)user_data;
    return SSMB_ERR_NO_RANDOM;
}

static ssmb_result counted_random(void *buf, size_t len, void *user_data) {
    *(size_t *)user_data += len;
    return ssmb_random_system(buf, len, NULL);
}

/* A trust from ca.pem and a fresh engine block (both checked). */
static int setup_offline(ssmb_trust **trust, ssmb__tls **t) {
    *trust = NULL;
    *t = (ssmb__tls *)malloc(ssmb__tls_size("0.0.0.0"));
    return certs_ready() && CHECK(ssmb_trust_load(NULL, CERTS "/ca.pem", trust) == SSMB_OK) && CHECK(*t != NULL);
}

SSMB_TEST(tls_init_refuses_bad_config) {
    static const char long_name[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example";
    ssmb_trust *trust;
    ssmb__tls *t;
    ssmb__tls_config cfg;
    if (setup_offline(&trust, &t)) {
        memset(&cfg, 0, sizeof cfg);
        cfg.trust = trust;
        cfg.now_utc = utc_now();
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_ERR_INVALID_ARG); /* no name: no name check */
        cfg.server_name = "";
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_ERR_INVALID_ARG);
        cfg.server_name = long_name;
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_ERR_INVALID_ARG);
        cfg.server_name = "localhost";
        cfg.trust = NULL;
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_ERR_INVALID_ARG); /* no anchors */
        CHECK_EQ_INT(ssmb__tls_init(t, NULL), SSMB_ERR_INVALID_ARG);
        cfg.trust = trust;
        cfg.random_fn = no_random;
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_ERR_NO_RANDOM);
        ssmb__tls_free(t); /* harmless after a failed init */
    }
    free(t);
    ssmb_trust_destroy(trust);
}

/* Before any byte from the server: a ClientHello is waiting (a handshake
   record, content type 22, RFC 5246 §6.2.1) and nothing else moves. */
SSMB_TEST(tls_client_hello_first) {
    ssmb_trust *trust;
    ssmb__tls *t;
    ssmb__tls_config cfg;
    size_t n, drawn = 0;
    if (setup_offline(&trust, &t)) {
        const uint8_t *hello;
        memset(&cfg, 0, sizeof cfg);
        cfg.trust = trust;
        cfg.server_name = "localhost";
        cfg.now_utc = utc_now();
        cfg.random_fn = counted_random;
        cfg.random_user_data = &drawn;
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_OK);
        CHECK(drawn > 0); /* the randomness came from random_fn */
        hello = ssmb__tls_net_out_buf(t, &n);
        CHECK(hello != NULL && n > 5 && hello[0] == 22 && hello[1] == 3);
        CHECK(ssmb__tls_app_out_buf(t, &n) == NULL && n == 0);
        CHECK(ssmb__tls_app_in_buf(t, &n) == NULL && n == 0);
        CHECK(!ssmb__tls_handshake_done(t));
        CHECK_EQ_INT(ssmb__tls_error(t, NULL), SSMB_OK);
        ssmb__tls_free(t);
    }
    free(t);
    ssmb_trust_destroy(trust);
}

/* An HTTP answer where the ServerHello should be: a TLS failure that is
   not about certificates. */
SSMB_TEST(tls_garbage_from_server) {
    static const char junk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    ssmb_trust *trust;
    ssmb__tls *t;
    ssmb__tls_config cfg;
    if (setup_offline(&trust, &t)) {
        size_t cap, done = 0;
        int32_t detail = 0;
        memset(&cfg, 0, sizeof cfg);
        cfg.trust = trust;
        cfg.server_name = "localhost";
        cfg.now_utc = utc_now();
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_OK);
        while (done < sizeof junk - 1 && ssmb__tls_error(t, NULL) == SSMB_OK) {
            const uint8_t *out = ssmb__tls_net_out_buf(t, &cap);
            uint8_t *in;
            if (out) ssmb__tls_net_out_ack(t, cap);
            in = ssmb__tls_net_in_buf(t, &cap);
            if (!in) break;
            cap = SSMB__MIN(cap, sizeof junk - 1 - done);
            memcpy(in, junk + done, cap);
            ssmb__tls_net_in_ack(t, cap);
            done += cap;
        }
        CHECK_EQ_INT(ssmb__tls_error(t, &detail), SSMB_ERR_TLS);
        CHECK(detail != 0);
        CHECK(ssmb__tls_app_out_buf(t, &cap) == NULL);
        ssmb__tls_free(t);
    }
    free(t);
    ssmb_trust_destroy(trust);
}

/* ---- trust anchors ---- */

/* An allocator that counts, checks the size given back to free_fn, and
   fails the fail_at-th allocation (1-based; 0: none). */
typedef struct test_alloc {
    long calls, fail_at, live;
    size_t live_bytes;
    int bad_free;
} test_alloc;

#define TA_HEADER 16

static void *ta_alloc(size_t size, void *user_data) {
    test_alloc *a = (test_alloc *)user_data;
    uint8_t *p;
    if (++a->calls == a->fail_at) return NULL;
    p = (uint8_t *)malloc(size + TA_HEADER);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    a->live++;
    a->live_bytes += size;
    return p + TA_HEADER;
}

static void ta_free(void *ptr, size_t size, void *user_data) {
    test_alloc *a = (test_alloc *)user_data;
    uint8_t *p = (uint8_t *)ptr - TA_HEADER;
    size_t asked;
    memcpy(&asked, p, sizeof asked);
    if (asked != size) a->bad_free = 1;
    a->live--;
    a->live_bytes -= asked;
    free(p);
}

static ssmb_allocator test_allocator(test_alloc *a, long fail_at) {
    ssmb_allocator al;
    memset(a, 0, sizeof *a);
    a->fail_at = fail_at;
    al.alloc_fn = ta_alloc;
    al.free_fn = ta_free;
    al.user_data = a;
    return al;
}

/* The PEM text of a file under CERTS (malloc'ed, NUL-terminated). */
static char *cert_text(const char *name, size_t *len) {
    char path[128];
    snprintf(path, sizeof path, CERTS "/%s", name);
    return certs_ready() ? ssmbt_read_file(path, len) : NULL;
}

/* ssmb_trust_create over text; the count, or -1 with *r set on failure. */
static long trust_count_of(const char *text, size_t len, ssmb_result *r) {
    ssmb_trust *t = NULL;
    long n;
    *r = ssmb_trust_create(NULL, text, len, &t);
    n = *r == SSMB_OK ? (long)ssmb_trust_count(t) : -1;
    if (*r != SSMB_OK) CHECK(t == NULL);
    ssmb_trust_destroy(t);
    return n;
}

SSMB_TEST(trust_system_bundle) {
    ssmb_trust *t = NULL;
    FILE *f = fopen(SSMB_SYSTEM_CA_BUNDLE, "rb");
    if (!f) {
        printf("trust: %s missing, system bundle test skipped\n", SSMB_SYSTEM_CA_BUNDLE);
        return;
    }
    fclose(f);
    CHECK_EQ_INT(ssmb_trust_load(NULL, NULL, &t), SSMB_OK);
    CHECK(ssmb_trust_count(t) > 50);
    printf("trust: %zu anchors from %s (%s)\n", ssmb_trust_count(t), SSMB_SYSTEM_CA_BUNDLE, ssmb_tls_backend());
    ssmb_trust_destroy(t);
}

/* Two CAs in various wrappings; a broken block costs only itself. */
SSMB_TEST(trust_pem_variants) {
    size_t ca_len = 0, rogue_len = 0, key_len = 0;
    char *ca = cert_text("ca.pem", &ca_len), *rogue = cert_text("rogue-ca.pem", &rogue_len);
    char *key = cert_text("ca.key", &key_len);
    char *buf = (char *)malloc(3 * (ca_len + rogue_len + key_len) + 64);
    ssmb_result r;
    size_t n = 0, i, j;
    if (!CHECK(ca && rogue && key && buf)) goto done;
    CHECK_EQ_INT(trust_count_of(ca, ca_len, &r), 1);
    CHECK_EQ_INT(trust_count_of(ca, ca_len - 1, &r), 1); /* no final newline */
    /* A key, text and both CAs: the key and the text are passed over. */
    n = (size_t)sprintf(buf, "%sfree text between blocks\n%s%s", key, ca, rogue);
    CHECK_EQ_INT(trust_count_of(buf, n, &r), 2);
    /* CRLF line ends. */
    for (i = j = 0; i < ca_len; i++) {
        if (ca[i] == '\n') buf[j++] = '\r';
        buf[j++] = ca[i];
    }
    CHECK_EQ_INT(trust_count_of(buf, j, &r), 1);
    /* One block's base64 broken: the other still counts. */
    n = (size_t)sprintf(buf, "%s%s", ca, rogue);
    buf[ca_len / 2] = '*';
    CHECK_EQ_INT(trust_count_of(buf, n, &r), 1);
    /* The second certificate cut off before its END line. */
    n = (size_t)sprintf(buf, "%s%s", ca, rogue);
    CHECK_EQ_INT(trust_count_of(buf, ca_len + rogue_len / 2, &r), 1);
done:
    free(ca);
    free(rogue);
    free(key);
    free(buf);
}

SSMB_TEST(trust_refuses_bad_input) {
    static const char garbage[] = "this is not a certificate\n";
    static const char empty_block[] = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    static const uint8_t der_start[] = {0x30, 0x82, 0x01, 0x0a, 0x30, 0x81, 0xb2};
    size_t key_len = 0;
    char *key = cert_text("ca.key", &key_len);
    static int not_a_trust;
    ssmb_trust *t = (ssmb_trust *)(void *)&not_a_trust; /* must come back NULL */
    ssmb_allocator half;
    ssmb_result r;
    CHECK_EQ_INT(trust_count_of(garbage, sizeof garbage - 1, &r), -1);
    CHECK_EQ_INT(r, SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(trust_count_of(empty_block, sizeof empty_block - 1, &r), -1);
    CHECK_EQ_INT(r, SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(trust_count_of((const char *)der_start, sizeof der_start, &r), -1);
    CHECK_EQ_INT(r, SSMB_ERR_MALFORMED);
    if (CHECK(key != NULL)) {
        CHECK_EQ_INT(trust_count_of(key, key_len, &r), -1); /* a key alone */
        CHECK_EQ_INT(r, SSMB_ERR_MALFORMED);
    }
    CHECK_EQ_INT(ssmb_trust_create(NULL, "", 0, &t), SSMB_ERR_MALFORMED);
    CHECK(t == NULL);
    CHECK_EQ_INT(ssmb_trust_create(NULL, NULL, 0, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_trust_create(NULL, NULL, 5, &t), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_trust_create(NULL, garbage, 5, NULL), SSMB_ERR_INVALID_ARG);
    memset(&half, 0, sizeof half);
    half.alloc_fn = ta_alloc; /* without its free_fn */
    CHECK_EQ_INT(ssmb_trust_create(&half, garbage, 5, &t), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_trust_load(&half, NULL, &t), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_trust_load(NULL, NULL, NULL), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_trust_count(NULL), 0);
    ssmb_trust_destroy(NULL);
    free(key);
}

SSMB_TEST(trust_load_files) {
    ssmb_trust *t = NULL;
    char empty[64], huge[64];
    FILE *f;
    CHECK_EQ_INT(ssmb_trust_load(NULL, CERTS "/no-such-file.pem", &t), SSMB_ERR_IO);
    CHECK(t == NULL);
    if (!certs_ready()) return;
    CHECK_EQ_INT(ssmb_trust_load(NULL, CERTS, &t), SSMB_ERR_IO); /* a directory */
    /* Scratch files named by PID: binaries may run side by side. */
    snprintf(empty, sizeof empty, CERTS "/empty-%ld.pem", (long)getpid());
    snprintf(huge, sizeof huge, CERTS "/huge-%ld.pem", (long)getpid());
    f = fopen(empty, "wb");
    if (CHECK(f != NULL)) fclose(f);
    CHECK_EQ_INT(ssmb_trust_load(NULL, empty, &t), SSMB_ERR_MALFORMED);
    /* 17 MiB (sparse): over the 16 MiB limit, refused before reading. */
    f = fopen(huge, "wb");
    if (CHECK(f != NULL)) fclose(f);
    CHECK(truncate(huge, 17L << 20) == 0);
    CHECK_EQ_INT(ssmb_trust_load(NULL, huge, &t), SSMB_ERR_LIMIT);
    unlink(empty);
    unlink(huge);
    CHECK_EQ_INT(ssmb_trust_load(NULL, CERTS "/rogue-ca.pem", &t), SSMB_OK);
    CHECK_EQ_INT(ssmb_trust_count(t), 1);
    ssmb_trust_destroy(t);
}

/* Every byte the allocator gave is given back, with the size asked for. */
SSMB_TEST(trust_allocator_balanced) {
    test_alloc a;
    ssmb_allocator al = test_allocator(&a, 0);
    ssmb_trust *t = NULL;
    const char *bundle = CERTS "/ca.pem";
    FILE *f = fopen(SSMB_SYSTEM_CA_BUNDLE, "rb");
    if (f) {
        fclose(f);
        bundle = SSMB_SYSTEM_CA_BUNDLE;
    }
    if (!certs_ready()) return;
    CHECK_EQ_INT(ssmb_trust_load(&al, bundle, &t), SSMB_OK);
    CHECK(a.calls >= 1 && a.live >= 1); /* the trust itself is held */
    ssmb_trust_destroy(t);
    CHECK_EQ_INT(a.live, 0);
    CHECK_EQ_INT(a.live_bytes, 0);
    CHECK(!a.bad_free);
    CHECK_EQ_INT(ssmb_trust_load(&al, CERTS "/no-such-file.pem", &t), SSMB_ERR_IO);
    CHECK_EQ_INT(ssmb_trust_load(&al, CERTS "/ca.key", &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(a.live, 0);
    CHECK_EQ_INT(a.live_bytes, 0);
}

/* Failing the Nth allocation, for every N until none fails: NOMEM and no
   leak each time, then success. */
SSMB_TEST(trust_allocator_failures) {
    long n, ok = 0, total = 0;
    int succeeded = 0;
    for (n = 1; n <= 10 && !succeeded; n++) {
        test_alloc a;
        ssmb_allocator al = test_allocator(&a, n);
        ssmb_trust *t = NULL;
        ssmb_result r;
        if (!certs_ready()) return;
        r = ssmb_trust_load(&al, CERTS "/ca.pem", &t);
        succeeded = r == SSMB_OK;
        CHECK(r == SSMB_OK || r == SSMB_ERR_NOMEM);
        CHECK(succeeded == (a.calls < n)); /* it fails exactly when an allocation failed */
        CHECK(succeeded || t == NULL);
        ssmb_trust_destroy(t);
        total++;
        if (a.live == 0 && a.live_bytes == 0 && !a.bad_free) ok++;
    }
    CHECK(succeeded && total >= 2);
    ssmbt_report("trust with the Nth allocation failing", ok, total, "runs without a leak");
}
/* ---- servers named by IP address ----
   The certificate must carry the address as an iPAddress subjectAltName;
   the chain is checked as for any name. */

/* Handshake with `cert` on `addr` for the name `host`, then 5 bytes and
   16 KiB echoed; 1 when both came back. */
static int ip_echo(const char *addr, const char *cert, const char *host) {
    tls_conn c;
    int ok = 0;
    if (conn_open_at(&c, addr, cert, -1, host, utc_now(), (size_t)-1))
        ok = echo_once(&c, 5, 11) && echo_once(&c, 16384, 12) && CHECK(ssmb__tls_handshake_done(c.t));
    conn_close(&c);
    return ok;
}

SSMB_TEST(tls_ip_accepted) {
    long ok = 0;
    ok += ip_echo(LOOPBACK, "server", "127.0.0.1"); /* DNS:localhost, IP:127.0.0.1 */
    ok += ip_echo(LOOPBACK, "ip6", "127.0.0.1");    /* IP:127.0.0.1, IP:::1 and no DNS name */
    ssmbt_report("tls server named by IPv4", ok, 2, "certificates accepted");
}

SSMB_TEST(tls_ip_refused) {
    const int64_t now = utc_now();
    long ok = 0;
    ok += refused("dnsonly", "127.0.0.1", now, REFUSED_NAME); /* DNS:localhost only */
    ok += refused("otherip", "127.0.0.1", now, REFUSED_NAME); /* IP:127.0.0.2 only */
    ok += refused("dnsip", "127.0.0.1", now, REFUSED_NAME);   /* the address as a DNS name */
    /* 127.0.0.1 mapped into IPv6 is 16 other bytes, not the 4 carried. */
    ok += refused("server", "::ffff:127.0.0.1", now, REFUSED_NAME);
    /* The chain is still judged in full. */
    ok += refused("rogue", "127.0.0.1", now, REFUSED_UNTRUSTED);
    ok += refused("expired", "127.0.0.1", now, REFUSED_EXPIRED);
    ok += refused("server", "127.0.0.1", 946684800, REFUSED_NOT_YET);
    ssmbt_report("tls server named by IPv4", ok, 7, "certificates refused");
}

/* Whether this host can listen on ::1 (IPv6 may be off in containers). */
static int ipv6_loopback(void) {
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of("::1", 0, &ss);
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    if (fd < 0) return 0;
    ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

SSMB_TEST(tls_ip6) {
    long ok = 0;
    if (!ipv6_loopback()) {
        printf("tls: no IPv6 loopback, ::1 test skipped\n");
        return;
    }
    ok += ip_echo("::1", "ip6", "::1");                             /* the second IP entry */
    ok += ip_echo("::1", "ip6", "0:0:0:0:0:0:0:1");                 /* the same bytes, spelt out */
    ok += refused_at("::1", "server", "::1", utc_now(), REFUSED_NAME); /* 127.0.0.1 only */
    ssmbt_report("tls server named by IPv6", ok, 3, "cases");
}

/* The first record our side sends for `name` (a ClientHello), copied. */
static size_t client_hello_for(const char *name, uint8_t *out, size_t cap) {
    ssmb_trust *trust;
    ssmb__tls *t;
    ssmb__tls_config cfg;
    size_t n = 0;
    if (setup_offline(&trust, &t)) {
        const uint8_t *hello;
        memset(&cfg, 0, sizeof cfg);
        cfg.trust = trust;
        cfg.server_name = name;
        cfg.now_utc = utc_now();
        CHECK_EQ_INT(ssmb__tls_init(t, &cfg), SSMB_OK);
        hello = ssmb__tls_net_out_buf(t, &n);
        n = hello ? SSMB__MIN(n, cap) : 0;
        if (n) memcpy(out, hello, n);
        ssmb__tls_free(t);
    }
    free(t);
    ssmb_trust_destroy(trust);
    return n;
}

static int contains(const uint8_t *p, size_t n, const char *text) {
    size_t k = strlen(text), i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(p + i, text, k) == 0) return 1;
    return 0;
}

/* SNI carries DNS names only (RFC 6066 §3): none for an address. */
SSMB_TEST(tls_ip_no_sni) {
    uint8_t hello[2048];
    size_t n = client_hello_for("localhost", hello, sizeof hello);
    CHECK(n > 0 && contains(hello, n, "localhost")); /* the test can see a name */
    n = client_hello_for("127.0.0.1", hello, sizeof hello);
    CHECK(n > 0 && !contains(hello, n, "127.0.0.1"));
    n = client_hello_for("::1", hello, sizeof hello);
    CHECK(n > 0 && !contains(hello, n, "::1"));
}

/* Which names are taken as addresses, against the C library's inet_pton. */
SSMB_TEST(tls_ip_literal_parse) {
    static const char *const v4[] = {"127.0.0.1", "0.0.0.0", "255.255.255.255", "10.20.30.40"};
    static const char *const v6[] = {"::1", "::", "1::", "fe80::1:2", "2001:db8::ff00:42:8329",
                                     "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::ffff:127.0.0.1", "FFFF::aBcD",
                                     "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4"};
    static const char *const names[] = {"localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4.",
                                        ".1.2.3.4", "1..2.3", "1.2.3.4a", "1234.1.1.1", ":", ":::", "1:::2",
                                        "1::2::3", ":1::", "1:", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::",
                                        "::1.2.3", "1.2.3.4::", "::1.2.3.4:5", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0",
                                        "g::1", "[::1]", "example.com", "1::2:", "::ffff:1.2.3.04"};
    uint8_t got[16], want[16];
    size_t i;
    for (i = 0; i < SSMB__COUNT_OF(v4); i++) {
        CHECK_EQ_INT(ssmb__tls_ip_literal(v4[i], got), 4);
        CHECK(inet_pton(AF_INET, v4[i], want) == 1 && CHECK_EQ_MEM(got, want, 4));
    }
    for (i = 0; i < SSMB__COUNT_OF(v6); i++) {
        CHECK_EQ_INT(ssmb__tls_ip_literal(v6[i], got), 16);
        CHECK(inet_pton(AF_INET6, v6[i], want) == 1 && CHECK_EQ_MEM(got, want, 16));
    }
    for (i = 0; i < SSMB__COUNT_OF(names); i++) {
        if (ssmb__tls_ip_literal(names[i], got) != 0) ssmbt_fail(__FILE__, __LINE__, names[i]);
    }
}

#if !defined(SSMB_USE_MBEDTLS)
/* The DER of CERTS/<name>.pem (malloc'ed; NULL when it cannot be had). */
static uint8_t *cert_der(const char *name, size_t *len) {
    size_t text_len = 0, i, n = 0;
    char *text = cert_text(name, &text_len), *b64 = (char *)malloc(text_len + 1), *p;
    uint8_t *der = (uint8_t *)malloc(text_len);
    *len = 0;
    p = text ? strstr(text, "-----\n") : NULL; /* past the BEGIN line */
    for (i = p ? (size_t)(p - text) + 6 : text_len; i < text_len && text[i] != '-'; i++)
        if (text[i] != '\n' && text[i] != '\r') b64[n++] = text[i];
    if (!p || !b64 || !der || ssmb_base64_decode(b64, n, der, text_len, len) != SSMB_OK) {
        free(der);
        der = NULL;
    }
    free(text);
    free(b64);
    return der;
}

/* The walker over a malloc'ed copy of exactly n bytes, so ASan sees any
   read past them. */
static int walk_copy(const uint8_t *src, size_t n, const uint8_t *ip, size_t ip_len) {
    uint8_t *copy = (uint8_t *)calloc(n ? n : 1, 1);
    int r;
    if (n) memcpy(copy, src, n);
    r = ssmb__der_cert_has_ip(copy, n, ip, ip_len);
    free(copy);
    return r;
}

/* Every prefix of the certificate, with the outer length rewritten to
   match so the walk goes deep before it runs out, and as they are. The
   count of those that name the address: the walker needs only the whole
   tbsCertificate, not the signature after it. The certificate is
   256..65535 bytes (0x30 0x82). */
static long walk_prefixes(const uint8_t *der, size_t len, const uint8_t *ip) {
    uint8_t *buf = (uint8_t *)malloc(len);
    long found = 0;
    size_t n;
    memcpy(buf, der, len);
    for (n = 0; n <= len; n++) {
        if (n >= 4) {
            buf[2] = (uint8_t)((n - 4) >> 8);
            buf[3] = (uint8_t)(n - 4);
        }
        found += walk_copy(buf, n, ip, 4);
        found += walk_copy(der, n, ip, 4); /* untouched header: the outer length is too long */
    }
    free(buf);
    return found;
}

/* Each byte replaced by values that break tags and lengths. */
static void walk_mutations(const uint8_t *der, size_t len, const uint8_t *ip) {
    static const uint8_t values[] = {0x00, 0x01, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF, 0x1F, 0x30, 0xA3, 0x87};
    uint8_t *buf = (uint8_t *)malloc(len);
    size_t i, v;
    memcpy(buf, der, len);
    for (i = 0; i < len; i++) {
        for (v = 0; v < SSMB__COUNT_OF(values); v++) {
            buf[i] = values[v];
            (void)walk_copy(buf, len, ip, 4);
        }
        buf[i] = der[i];
    }
    free(buf);
}

SSMB_TEST(tls_der_walker) {
    static const uint8_t ip4[4] = {127, 0, 0, 1}, other[4] = {127, 0, 0, 2};
    static const uint8_t ip6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t huge_len[] = {0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xF0, 0x30, 0x00};
    size_t len = 0, dns_len = 0, i, tbs_end;
    uint8_t *der = cert_der("server.pem", &len), *dns = cert_der("dnsip.pem", &dns_len), *junk;
    uint32_t seed = 1;
    if (!CHECK(der && dns && len > 256 && len < 65536 && der[1] == 0x82 && der[5] == 0x82)) goto done;
    tbs_end = 8 + ((size_t)der[6] << 8 | der[7]);
    CHECK(walk_copy(der, len, ip4, 4));
    CHECK(!walk_copy(der, len, other, 4));
    CHECK(!walk_copy(der, len, ip6, 16));
    CHECK(!walk_copy(dns, dns_len, ip4, 4)); /* "127.0.0.1" as a DNS name */
    /* Rewritten: each from the end of the tbsCertificate on; untouched:
       the whole only. */
    CHECK_EQ_INT(walk_prefixes(der, len, ip4), len - tbs_end + 1 + 1);
    walk_mutations(der, len, ip4);
    CHECK(!walk_copy(huge_len, sizeof huge_len, ip4, 4));
    /* Random bytes, some starting like a certificate. */
    junk = (uint8_t *)malloc(512);
    for (i = 0; i < 20000 && junk; i++) {
        size_t n = i % 512, k;
        for (k = 0; k < n; k++) {
            seed = seed * 1664525u + 1013904223u;
            junk[k] = (uint8_t)(seed >> 24);
        }
        if (n > 4 && i % 2) memcpy(junk, der, 4);
        (void)walk_copy(junk, n, ip4, 4);
    }
    free(junk);
done:
    free(der);
    free(dns);
}
#endif

#endif /* !SSMB_NO_TLS */
