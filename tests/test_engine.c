/* The L3 engine, black-box: the NO_PROXY rules, name resolution against a
   stub DNS server and temporary hosts files, then whole connections to
   Debian's python3-websockets (over TLS with the test CA when a TLS backend
   is compiled in), directly and through a CONNECT proxy, driven both with
   tick/wait and with fds/poll/process, with callbacks and with pulled
   events; allocation counts and allocation failures. Every helper server
   listens on 127.0.0.1 only, picks a free port and prints it, stops itself
   within 60 s, and is stopped by PID by the test that started it. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PY "/usr/bin/python3"
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- helper processes ---- */

typedef struct helper {
    pid_t pid;
    int port[2];
} helper;

/* Starts /usr/bin/python3 with args; reads the ports it prints. 0 on success. */
static int helper_start(helper *h, const char *script, const char *a1, const char *a2) {
    char *argv[5], store[4][512];
    char line[64] = {0};
    size_t have = 0;
    int fds[2];
    uint64_t end = now_ms() + 5000;
    memset(h, 0, sizeof *h);
    if (pipe(fds) != 0) return -1;
    h->pid = fork();
    if (h->pid < 0) return -1;
    if (h->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(null, 2);
        close(fds[0]);
        const char *args[4];
        int i;
        args[0] = PY;
        args[1] = script;
        args[2] = a1;
        args[3] = a1 ? a2 : NULL;
        for (i = 0; i < 4 && args[i]; i++) argv[i] = strcpy(store[i], args[i]); /* execv wants char * */
        argv[i] = NULL;
        execv(PY, argv);
        _exit(127);
    }
    close(fds[1]);
    while (have < sizeof line - 1 && !memchr(line, '\n', have) && now_ms() < end) {
        struct pollfd p;
        ssize_t n;
        p.fd = fds[0];
        p.events = POLLIN;
        if (poll(&p, 1, 100) <= 0) continue;
        n = read(fds[0], line + have, sizeof line - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
    }
    close(fds[0]);
    if (sscanf(line, "%d %d", &h->port[0], &h->port[1]) < 1) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
        return -1;
    }
    return 0;
}

static void helper_stop(helper *h) {
    if (h->pid <= 0) return;
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
}

static int tls_available(void) { return strcmp(ssmb_tls_backend(), "none") != 0; }

/* The test certificates (tests/certs.sh), made once. */
static const char *certs_dir(void) {
    static int made;
    if (!made) made = system("sh tests/certs.sh build/certs >/dev/null 2>&1") == 0 ? 1 : -1;
    return made > 0 ? "build/certs" : NULL;
}

/* ---- NO_PROXY ---- */

SSMB_TEST(engine_no_proxy_table) {
    static const struct {
        const char *list, *host;
        int match;
    } cases[] = {
        {"", "example.com", 0},
        {"*", "example.com", 1},
        {" * ", "anything.at.all", 1},
        {"example.com", "example.com", 1},
        {"example.com", "EXAMPLE.com", 1},
        {"Example.COM", "example.com", 1},
        {"example.com", "www.example.com", 1},
        {".example.com", "www.example.com", 1},
        {".example.com", "example.com", 1},
        {"*.example.com", "a.b.example.com", 1},
        {"example.com", "badexample.com", 0},
        {"example.com", "example.com.evil", 0},
        {"example.com", "example.co", 0},
        {"foo.com,example.com", "x.example.com", 1},
        {"foo.com, example.com ,bar", "example.com", 1},
        {"foo.com,,bar.com", "example.com", 0},
        {"example.com.", "example.com", 1},
        {"example.com", "example.com.", 1},
        {"example.com:443", "example.com", 1},
        {"127.0.0.1", "127.0.0.1", 1},
        {"127.0.0.1", "127.0.0.10", 0},
        {"[::1]", "::1", 1},
        {"::1", "[::1]", 1},
        {"localhost", "localhost", 1},
        {"com", "example.com", 1},
        {".", "example.com", 0},
        {"example.com", "", 0},
        {"ssmmessages.eu-west-1.amazonaws.com", "ssmmessages.eu-west-1.amazonaws.com", 1},
        {"amazonaws.com", "ssm.us-east-1.amazonaws.com", 1},
    };
    size_t i, ok = 0;
    for (i = 0; i < COUNT(cases); i++) {
        int got = ssmb_no_proxy_match(cases[i].list, cases[i].host);
        if (got == cases[i].match) ok++;
        else printf("  no_proxy \"%s\" host \"%s\": %d\n", cases[i].list, cases[i].host, got);
    }
    CHECK_EQ_INT(ssmb_no_proxy_match(NULL, "example.com"), 0);
    CHECK_EQ_INT(ssmb_no_proxy_match("*", NULL), 0);
    ssmbt_report("engine no_proxy", (long)ok, (long)COUNT(cases), "cases");
}

/* ---- a WebSocket under test: what happened to it, and an echo ---- */

typedef struct wsrec {
    ssmb_engine *eng;
    ssmb_ws ws;
    int opened, closed, writable;
    int32_t result, detail;
    int order_bad;              /* an event came out of order */
    /* echo: every piece goes back as it came (stream pieces as fragments) */
    int echo;
    uint8_t *rest;              /* what a short send left over */
    size_t rest_len, rest_cap;
    uint32_t rest_opcode;
    int rest_final;
    int held_bad;               /* a piece came while a rest was waiting */
    /* received messages, concatenated */
    uint8_t *got;
    size_t got_len, got_cap;
    long messages;
    /* an outgoing message sent with back-pressure */
    const uint8_t *out;
    size_t out_len, out_pos;
    uint32_t out_opcode;
    long out_count, out_sent;   /* send out out_count times */
} wsrec;

static void rec_append(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 64;
        *buf = (uint8_t *)realloc(*buf, *cap);
    }
    if (n) memcpy(*buf + *len, p, n);
    *len += n;
}

static void rec_free(wsrec *w) {
    free(w->rest);
    free(w->got);
    w->rest = w->got = NULL;
}

/* Sends the rest of an echoed piece; keeps what does not fit. */
static void echo_flush(wsrec *w) {
    size_t taken = 0;
    ssmb_result r;
    if (!w->rest_len && !w->rest_final) return;
    r = ssmb_engine_ws_send(w->eng, w->ws, w->rest_opcode, w->rest, w->rest_len, w->rest_final, &taken);
    if (r < 0) return;
    memmove(w->rest, w->rest + taken, w->rest_len - taken);
    w->rest_len -= taken;
    if (w->rest_len == 0 && r == SSMB_OK) w->rest_final = 0;
}

static void echo_piece(wsrec *w, const ssmb_ws_piece *p) {
    int final = (p->flags & SSMB_WS_MESSAGE_END) != 0;
    if (w->rest_len || w->rest_final) w->held_bad++;
    if (p->len == 0 && !final) return;
    w->rest_len = 0;
    rec_append(&w->rest, &w->rest_len, &w->rest_cap, p->data, p->len);
    w->rest_opcode = p->opcode;
    w->rest_final = final;
    echo_flush(w);
}

/* Sends the outgoing message (out_count times) as far as space allows. */
static void out_pump(wsrec *w) {
    while (w->out_sent < w->out_count) {
        size_t taken = 0;
        ssmb_result r = ssmb_engine_ws_send(w->eng, w->ws, w->out_opcode, w->out + w->out_pos,
                                            w->out_len - w->out_pos, 1, &taken);
        if (r != SSMB_OK) return;
        w->out_pos += taken;
        if (w->out_pos < w->out_len) return; /* short: WS_WRITABLE follows */
        w->out_pos = 0;
        w->out_sent++;
    }
}

static void on_event(ssmb_engine *eng, const ssmb_event *ev, void *user_data) {
    wsrec *w = (wsrec *)ev->user_data;
    (void)eng;
    (void)user_data;
    if (!w) return;
    if (w->closed) w->order_bad++;
    switch (ev->type) {
    case SSMB_EVENT_WS_OPEN:
        w->opened++;
        out_pump(w);
        break;
    case SSMB_EVENT_WS_WRITABLE:
        w->writable++;
        if (w->echo) echo_flush(w);
        out_pump(w);
        break;
    case SSMB_EVENT_WS_MESSAGE:
        if (!w->opened) w->order_bad++;
        rec_append(&w->got, &w->got_len, &w->got_cap, ev->piece.data, ev->piece.len);
        if (ev->piece.flags & SSMB_WS_MESSAGE_END) w->messages++;
        if (w->echo) echo_piece(w, &ev->piece);
        break;
    case SSMB_EVENT_WS_CLOSED:
        w->closed++;
        w->result = ev->result;
        w->detail = ev->detail;
        break;
    default: w->order_bad++; break;
    }
}

/* ---- driving the engine ---- */

enum { DRIVE_TICK = 0, DRIVE_POLL = 1 };

static void drain_events(ssmb_engine *eng) {
    ssmb_event ev;
    while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) on_event(eng, &ev, NULL);
}

/* One turn with the host's own poll(2) over ssmb_engine_fds. */
static void poll_turn(ssmb_engine *eng) {
    ssmb_pollfd fds[64];
    struct pollfd p[64];
    size_t n = 0, i;
    int t;
    if (ssmb_engine_fds(eng, fds, COUNT(fds), &n) != SSMB_OK) n = 0;
    for (i = 0; i < n; i++) {
        p[i].fd = fds[i].fd;
        p[i].events = (short)(((fds[i].events & SSMB_POLLIN) ? POLLIN : 0) | ((fds[i].events & SSMB_POLLOUT) ? POLLOUT : 0));
        p[i].revents = 0;
    }
    t = ssmb_engine_timeout_ms(eng, now_ms(), 50);
    if (poll(p, (nfds_t)n, t) < 0) n = 0;
    for (i = 0; i < n; i++)
        fds[i].revents = (uint16_t)(((p[i].revents & POLLIN) ? SSMB_POLLIN : 0) |
                                    ((p[i].revents & POLLOUT) ? SSMB_POLLOUT : 0) |
                                    ((p[i].revents & POLLERR) ? SSMB_POLLERR : 0) |
                                    ((p[i].revents & POLLHUP) ? SSMB_POLLHUP : 0));
    ssmb_engine_process(eng, fds, n, now_ms());
}

/* Runs the engine until every rec in ws[0..n) is closed, or ms pass. */
static int drive_until_closed(ssmb_engine *eng, int how, wsrec **ws, size_t n, int ms) {
    uint64_t end = now_ms() + (uint64_t)ms;
    int pull = ssmb_engine_desc(eng)->event_fn == NULL;
    for (;;) {
        size_t i, open = 0;
        for (i = 0; i < n; i++) open += ws[i]->closed == 0;
        if (open == 0) return 1;
        if (now_ms() > end) return 0;
        if (how == DRIVE_TICK) {
            ssmb_engine_wait(eng, 50);
            ssmb_engine_tick(eng, now_ms());
        } else {
            poll_turn(eng);
        }
        if (pull) drain_events(eng);
    }
}

static int drive_one(ssmb_engine *eng, int how, wsrec *w, int ms) { return drive_until_closed(eng, how, &w, 1, ms); }

/* An engine for tests: no proxy from the environment, callbacks or pulled
   events, the test CA when there is TLS. */
static ssmb_trust *test_trust(void) {
    static ssmb_trust *t;
    char path[256];
    if (!t && tls_available() && certs_dir()) {
        snprintf(path, sizeof path, "%s/ca.pem", certs_dir());
        if (ssmb_trust_load(NULL, path, &t) != SSMB_OK) t = NULL;
    }
    return t;
}

static void desc_init(ssmb_desc *d, int pull) {
    memset(d, 0, sizeof *d);
    d->https_proxy = "";
    d->no_proxy = "";
    d->trust = test_trust();
    d->max_connections = 32;
    if (!pull) d->event_fn = on_event;
}

static ssmb_engine *engine_new(int pull) {
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    desc_init(&d, pull);
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    return eng;
}

/* Opens url on eng for w (idle and ping timeouts stay at their defaults). */
static ssmb_result open_ws(ssmb_engine *eng, wsrec *w, const char *url) {
    ssmb_conn_desc cd;
    memset(&cd, 0, sizeof cd);
    cd.url = url;
    w->eng = eng;
    return ssmb_engine_ws_open(eng, &cd, w, now_ms(), &w->ws);
}

/* The scheme the servers speak: wss with a TLS backend, else ws. */
static const char *scheme(void) { return tls_available() ? "wss" : "ws"; }

/* Starts ws_server.py, with the named certificate when there is TLS. */
static int ws_server_start(helper *h, const char *cert) {
    char crt[256], key[256];
    if (!tls_available()) return helper_start(h, "tests/ws_server.py", NULL, NULL);
    if (!certs_dir()) return -1;
    snprintf(crt, sizeof crt, "%s/%s.pem", certs_dir(), cert);
    snprintf(key, sizeof key, "%s/%s.key", certs_dir(), cert);
    return helper_start(h, "tests/ws_server.py", crt, key);
}

/* ---- whole connections ---- */

/* The server's battery (empty, UTF-8, 125/126/65535/65536 bytes, 1 MiB,
   70000 characters of text, a message in fragments) echoed back exactly:
   the server closes with 1000 only when every echo matched. */
static void battery(int how, int pull) {
    helper srv;
    ssmb_engine *eng;
    wsrec w;
    char url[128];
    memset(&w, 0, sizeof w);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    eng = engine_new(pull);
    w.echo = 1;
    snprintf(url, sizeof url, "%s://localhost:%d/check", scheme(), srv.port[0]);
    if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    if (eng) CHECK(drive_one(eng, how, &w, 20000));
    CHECK_EQ_INT(w.opened, 1);
    CHECK_EQ_INT(w.closed, 1);
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    CHECK_EQ_INT(w.detail, 1000);
    CHECK_EQ_INT(w.messages, 11);
    CHECK_EQ_INT(w.order_bad, 0);
    CHECK_EQ_INT(w.held_bad, 0);
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
    rec_free(&w);
}

SSMB_TEST(engine_battery_tick_callbacks) { battery(DRIVE_TICK, 0); }
SSMB_TEST(engine_battery_poll_pulled) { battery(DRIVE_POLL, 1); }
