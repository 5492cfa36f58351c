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
    if (taken) memmove(w->rest, w->rest + taken, w->rest_len - taken);
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
        p[i].events = (short)(((fds[i].events & SSMB_POLLIN) ? POLLIN : 0) |
                              ((fds[i].events & SSMB_POLLOUT) ? POLLOUT : 0));
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

/* ---- name resolution ---- */

typedef struct name_case {
    const char *host;
    ssmb_result want;       /* SSMB_OK: the WebSocket opened */
} name_case;

/* Opens ws://HOST:port/echo for every case at once on one engine and checks
   how each ended: opened (then closed by us), or the error. */
static void run_names(ssmb_desc *d, const name_case *cases, size_t n, int port, const char *what) {
    ssmb_engine *eng = NULL;
    wsrec w[32];
    size_t i, ok = 0;
    uint64_t end = now_ms() + 8000;
    char url[300];
    memset(w, 0, sizeof w);
    if (!CHECK(ssmb_engine_create(d, &eng) == SSMB_OK) || n > 32) return;
    for (i = 0; i < n; i++) {
        ssmb_result r;
        snprintf(url, sizeof url, "ws://%s:%d/echo", cases[i].host, port);
        r = open_ws(eng, &w[i], url);
        if (r != SSMB_OK) { /* refused at once */
            w[i].closed = 1;
            w[i].result = r;
        }
    }
    while (now_ms() < end) {
        size_t open = 0;
        for (i = 0; i < n; i++) {
            if (w[i].opened && !w[i].closed) ssmb_engine_ws_close(eng, w[i].ws, 1000, NULL, now_ms());
            open += !w[i].closed;
        }
        if (!open) break;
        ssmb_engine_wait(eng, 50);
        ssmb_engine_tick(eng, now_ms());
    }
    for (i = 0; i < n; i++) {
        ssmb_result got = w[i].opened ? SSMB_OK : (ssmb_result)w[i].result;
        if (w[i].closed && got == cases[i].want) ok++;
        else printf("  %s: %s ended %d (%s), wanted %d\n", what, cases[i].host, (int)got,
                    w[i].closed ? "closed" : "still open", (int)cases[i].want);
    }
    ssmb_engine_destroy(eng);
    for (i = 0; i < n; i++) rec_free(&w[i]);
    ssmbt_report(what, (long)ok, (long)n, "names");
}

/* A UDP port on 127.0.0.1 nobody listens on (ICMP port unreachable). */
static int closed_udp_port(void) {
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* 96 lookups answered with changed or cut messages: each one ends (opened,
   an error or a timeout), nothing reads out of bounds (ASan, valgrind). */
static void run_mutated_answers(ssmb_desc *d, int dns_port, int ws_port) {
    ssmb_engine *eng = NULL;
    char servers[64], url[128];
    wsrec w[32];
    int batch, i, ended = 0;
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns_port);
    d->dns_servers = servers;
    d->dns_timeout_ms = 150;
    d->connect_timeout_ms = 200; /* a changed address may lead nowhere */
    for (batch = 0; batch < 3; batch++) {
        uint64_t end = now_ms() + 5000;
        int open = 32;
        memset(w, 0, sizeof w);
        if (!CHECK(ssmb_engine_create(d, &eng) == SSMB_OK)) return;
        for (i = 0; i < 32; i++) {
            snprintf(url, sizeof url, "ws://fuzz-%d.test:%d/echo", batch * 32 + i, ws_port);
            if (open_ws(eng, &w[i], url) != SSMB_OK) w[i].closed = 1;
        }
        while (open && now_ms() < end) {
            ssmb_engine_wait(eng, 50);
            ssmb_engine_tick(eng, now_ms());
            for (open = 0, i = 0; i < 32; i++) {
                if (w[i].opened && !w[i].closed) ssmb_engine_ws_abort(eng, w[i].ws);
                if (w[i].opened) w[i].closed = 1;
                open += !w[i].closed;
            }
        }
        for (i = 0; i < 32; i++) ended += w[i].closed;
        ssmb_engine_destroy(eng);
        for (i = 0; i < 32; i++) rec_free(&w[i]);
    }
    ssmbt_report("engine dns changed answers", ended, 96, "lookups ended");
}

SSMB_TEST(engine_dns_stub) {
    static const name_case cases[] = {
        {"a.test", SSMB_OK},          {"alias.test", SSMB_OK},      {"upper.test", SSMB_OK},
        {"many.test", SSMB_OK},       {"both.test", SSMB_OK},       {"A.TEST", SSMB_OK},
        {"a.test.", SSMB_OK},         {"six.test", SSMB_ERR_CONNECT}, /* ::1: nobody listens there */
        {"nx.test", SSMB_ERR_DNS},    {"servfail.test", SSMB_ERR_DNS}, {"tc.test", SSMB_ERR_DNS},
        {"garbage.test", SSMB_ERR_DNS}, {"ptrloop.test", SSMB_ERR_DNS}, {"loop.test", SSMB_ERR_DNS},
        {"a..test", SSMB_ERR_DNS},    {"-", SSMB_ERR_DNS},
        {"junk.test", SSMB_ERR_TIMEOUT}, {"spoof.test", SSMB_ERR_TIMEOUT}, {"silent.test", SSMB_ERR_TIMEOUT},
        {"bad!name", SSMB_ERR_MALFORMED},
    };
    static const name_case fallback[] = {{"a.test", SSMB_OK}, {"nx.test", SSMB_ERR_DNS}};
    static const name_case mute[] = {{"a.test", SSMB_ERR_TIMEOUT}};
    helper dns, srv;
    ssmb_desc d;
    char servers[128];
    uint64_t t0;
    if (!CHECK(helper_start(&dns, "tests/dns_stub.py", NULL, NULL) == 0)) return;
    if (!CHECK(helper_start(&srv, "tests/ws_server.py", NULL, NULL) == 0)) {
        helper_stop(&dns);
        return;
    }
    desc_init(&d, 0);
    d.hosts_file = "/nonexistent/hosts";
    d.dns_timeout_ms = 600;
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns.port[0]);
    d.dns_servers = servers;
    run_names(&d, cases, COUNT(cases), srv.port[0], "engine dns answers");
    /* The next server is asked when one is silent or unreachable. */
    snprintf(servers, sizeof servers, "127.0.0.1:%d, 127.0.0.1:%d", dns.port[1], dns.port[0]);
    t0 = now_ms();
    run_names(&d, fallback, COUNT(fallback), srv.port[0], "engine dns after a silent server");
    CHECK(now_ms() - t0 >= 250);
    snprintf(servers, sizeof servers, "127.0.0.1:%d,127.0.0.1:%d", closed_udp_port(), dns.port[0]);
    t0 = now_ms();
    run_names(&d, fallback, COUNT(fallback), srv.port[0], "engine dns after an unreachable server");
    CHECK(now_ms() - t0 < 250);
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns.port[1]);
    run_names(&d, mute, COUNT(mute), srv.port[0], "engine dns from a mute server");
    run_mutated_answers(&d, dns.port[0], srv.port[0]);
    helper_stop(&srv);
    helper_stop(&dns);
}

/* A hosts file of our own: names, aliases, case, comments, IPv6 first. */
SSMB_TEST(engine_hosts_file) {
    static const name_case cases[] = {
        {"myhost.test", SSMB_OK},      {"alias.myhost", SSMB_OK},        {"MYHOST.test", SSMB_OK},
        {"myhost.test.", SSMB_OK},     {"twohost.test", SSMB_OK},        {"v6host.test", SSMB_ERR_CONNECT},
        {"commented.test", SSMB_ERR_DNS}, {"longline.test", SSMB_ERR_DNS}, {"localhost", SSMB_OK},
        {"sub.localhost", SSMB_OK},    {"127.0.0.1", SSMB_OK},
    };
    char path[] = "/tmp/ssmb-hosts-XXXXXX", servers[64], longline[1200];
    helper srv;
    ssmb_desc d;
    FILE *f;
    int fd = mkstemp(path);
    if (!CHECK(fd >= 0)) return;
    memset(longline, 'x', sizeof longline - 1);
    longline[sizeof longline - 1] = '\0';
    f = fdopen(fd, "w");
    fprintf(f, "# test hosts\n127.0.0.1\tmyhost.test alias.myhost  # trailing comment\n");
    fprintf(f, "::1 v6host.test\n# 127.0.0.1 commented.test\n::1 twohost.test\n127.0.0.1 twohost.test\n");
    fprintf(f, "127.0.0.1 %s longline.test\nnot-an-address something.test\n127.0.0.1", longline);
    fclose(f);
    if (CHECK(helper_start(&srv, "tests/ws_server.py", NULL, NULL) == 0)) {
        desc_init(&d, 0);
        d.hosts_file = path;
        snprintf(servers, sizeof servers, "127.0.0.1:%d", closed_udp_port());
        d.dns_servers = servers; /* a name not in the file fails at once */
        run_names(&d, cases, COUNT(cases), srv.port[0], "engine hosts file");
        helper_stop(&srv);
    }
    unlink(path);
}

/* ---- the host's resolver ---- */

typedef struct hook_state {
    uint32_t later;         /* a request to answer from the loop */
    int calls;
    char last[64];
} hook_state;

static ssmb_result resolve_hook(ssmb_engine *eng, uint32_t request, const char *host, void *user_data) {
    hook_state *hs = (hook_state *)user_data;
    ssmb_address a;
    memset(&a, 0, sizeof a);
    a.family = 4;
    a.bytes[0] = 127;
    a.bytes[3] = 1;
    hs->calls++;
    snprintf(hs->last, sizeof hs->last, "%s", host);
    if (strcmp(host, "sync.test") == 0) return ssmb_engine_resolved(eng, request, &a, 1);
    if (strcmp(host, "later.test") == 0) hs->later = request;
    if (strcmp(host, "none.test") == 0) return ssmb_engine_resolved(eng, request, NULL, 0);
    if (strcmp(host, "fails.test") == 0) return SSMB_ERR_IO;
    return SSMB_OK; /* never.test: never answered */
}

SSMB_TEST(engine_resolve_fn) {
    static const char *const names[] = {"sync.test", "later.test", "none.test", "fails.test", "never.test",
                                        "127.0.0.1"};
    static const ssmb_result want[] = {SSMB_OK, SSMB_OK, SSMB_ERR_DNS, SSMB_ERR_DNS, SSMB_ERR_TIMEOUT, SSMB_OK};
    hook_state hs;
    helper srv;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    wsrec w[6];
    size_t i;
    uint64_t end;
    char url[128];
    ssmb_address a;
    memset(&hs, 0, sizeof hs);
    memset(w, 0, sizeof w);
    if (!CHECK(helper_start(&srv, "tests/ws_server.py", NULL, NULL) == 0)) return;
    desc_init(&d, 0);
    d.resolve_fn = resolve_hook;
    d.resolve_user_data = &hs;
    d.dns_timeout_ms = 300;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    for (i = 0; eng && i < COUNT(names); i++) {
        snprintf(url, sizeof url, "ws://%s:%d/echo", names[i], srv.port[0]);
        CHECK_EQ_INT(open_ws(eng, &w[i], url), SSMB_OK);
    }
    CHECK_EQ_INT(hs.calls, 5); /* not for the IP literal */
    memset(&a, 0, sizeof a);
    a.family = 4;
    a.bytes[0] = 127;
    a.bytes[3] = 1;
    CHECK_EQ_INT(ssmb_engine_resolved(eng, hs.later, &a, 1), SSMB_OK);
    CHECK_EQ_INT(ssmb_engine_resolved(eng, hs.later, &a, 1), SSMB_ERR_INVALID_STATE); /* answered already */
    CHECK_EQ_INT(ssmb_engine_resolved(eng, 0, &a, 1), SSMB_ERR_INVALID_STATE);
    end = now_ms() + 5000;
    while (eng && now_ms() < end) {
        size_t open = 0;
        for (i = 0; i < COUNT(names); i++) {
            if (w[i].opened && !w[i].closed) ssmb_engine_ws_close(eng, w[i].ws, 1000, NULL, now_ms());
            open += !w[i].closed;
        }
        if (!open) break;
        ssmb_engine_wait(eng, 50);
        ssmb_engine_tick(eng, now_ms());
    }
    for (i = 0; i < COUNT(names); i++) {
        CHECK_EQ_INT(w[i].closed, 1);
        CHECK_EQ_INT(w[i].opened ? SSMB_OK : w[i].result, want[i]);
        rec_free(&w[i]);
    }
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
}

/* ---- connecting ---- */

/* A TCP port on 127.0.0.1 nobody listens on. */
static int closed_tcp_port(void) {
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

SSMB_TEST(engine_connect_refused) {
    ssmb_engine *eng = engine_new(0);
    wsrec w;
    char url[64];
    memset(&w, 0, sizeof w);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", closed_tcp_port());
    if (!eng) return;
    CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    CHECK(drive_one(eng, DRIVE_POLL, &w, 3000));
    CHECK_EQ_INT(w.opened, 0);
    CHECK_EQ_INT(w.result, SSMB_ERR_CONNECT);
    CHECK_EQ_INT(w.detail, ECONNREFUSED);
    /* Two addresses: ::1 refuses, 127.0.0.1 too; the last error is reported. */
    memset(&w, 0, sizeof w);
    snprintf(url, sizeof url, "ws://[::1]:%d/", closed_tcp_port());
    CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_ERR_CONNECT);
    ssmb_engine_destroy(eng);
}

/* A listener whose backlog is full: SYNs go unanswered, so the connect
   never completes and connect_timeout_ms ends it. */
SSMB_TEST(engine_connect_timeout) {
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4], i;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    wsrec w;
    char url[64];
    uint64_t t0;
    memset(&a, 0, sizeof a);
    memset(&w, 0, sizeof w);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(lfd, (struct sockaddr *)&a, sizeof a);
    listen(lfd, 0);
    getsockname(lfd, (struct sockaddr *)&a, &l);
    for (i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    poll(NULL, 0, 50);
    desc_init(&d, 1);
    d.connect_timeout_ms = 300;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", ntohs(a.sin_port));
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    t0 = now_ms();
    if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_ERR_TIMEOUT);
    CHECK(now_ms() - t0 >= 290);
    ssmb_engine_destroy(eng);
    for (i = 0; i < 4; i++) close(fill[i]);
    close(lfd);
}

/* ---- messages, pings, closes, dead peers ---- */

/* 1 MiB and 300 small messages from us, echoed back, with back-pressure
   on both sides; then our close. */
SSMB_TEST(engine_send_large) {
    helper srv;
    ssmb_engine *eng;
    wsrec w;
    uint8_t *big = (uint8_t *)malloc(1 << 20);
    char url[128];
    size_t i;
    uint64_t end;
    memset(&w, 0, sizeof w);
    for (i = 0; i < (1u << 20); i++) big[i] = (uint8_t)(i * 7 + (i >> 12));
    if (!CHECK(ws_server_start(&srv, "server") == 0)) {
        free(big);
        return;
    }
    eng = engine_new(0);
    snprintf(url, sizeof url, "%s://localhost:%d/echo", scheme(), srv.port[0]);
    w.out = big;
    w.out_len = 1 << 20;
    w.out_opcode = SSMB_WS_BINARY;
    w.out_count = 1;
    if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    end = now_ms() + 20000;
    while (eng && w.got_len < (1u << 20) && !w.closed && now_ms() < end) {
        ssmb_engine_wait(eng, 50);
        ssmb_engine_tick(eng, now_ms());
    }
    CHECK_EQ_INT(w.got_len, 1 << 20);
    CHECK(w.got_len == (1u << 20) && memcmp(w.got, big, 1 << 20) == 0);
    CHECK_EQ_INT(w.messages, 1);
    CHECK(w.writable > 0); /* 1 MiB does not fit at once */
    /* 300 small text messages, pipelined. */
    w.out = (const uint8_t *)"small message";
    w.out_len = 13;
    w.out_opcode = SSMB_WS_TEXT;
    w.out_count = 300;
    w.out_sent = 0;
    out_pump(&w);
    while (eng && w.messages < 301 && !w.closed && now_ms() < end) {
        ssmb_engine_wait(eng, 50);
        ssmb_engine_tick(eng, now_ms());
    }
    CHECK_EQ_INT(w.messages, 301);
    if (eng) CHECK_EQ_INT(ssmb_engine_ws_close(eng, w.ws, 1000, "bye", now_ms()), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_POLL, &w, 5000));
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    CHECK_EQ_INT(w.detail, 1000);
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
    rec_free(&w);
    free(big);
}

/* The server pings (the conn answers) and closes; the server closes after
   a message. */
SSMB_TEST(engine_ping_and_server_close) {
    helper srv;
    ssmb_engine *eng;
    wsrec w[2];
    wsrec *ws[2];
    char url[128];
    memset(w, 0, sizeof w);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    eng = engine_new(1);
    ws[0] = &w[0];
    ws[1] = &w[1];
    snprintf(url, sizeof url, "%s://localhost:%d/ping", scheme(), srv.port[0]);
    if (eng) CHECK_EQ_INT(open_ws(eng, &w[0], url), SSMB_OK);
    snprintf(url, sizeof url, "%s://localhost:%d/close", scheme(), srv.port[0]);
    if (eng) CHECK_EQ_INT(open_ws(eng, &w[1], url), SSMB_OK);
    if (eng) CHECK(drive_until_closed(eng, DRIVE_POLL, ws, 2, 8000));
    CHECK_EQ_INT(w[0].result, SSMB_CLOSED);
    CHECK_EQ_INT(w[0].detail, 1000); /* 4002 when no pong came */
    CHECK_EQ_INT(w[1].result, SSMB_CLOSED);
    CHECK_EQ_INT(w[1].detail, 1000);
    CHECK(w[1].got_len == 3 && memcmp(w[1].got, "bye", 3) == 0);
    CHECK_EQ_INT(w[0].order_bad + w[1].order_bad, 0);
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
    rec_free(&w[0]);
    rec_free(&w[1]);
}

/* A peer that completes the upgrade and then goes silent: idle_timeout_ms
   ends the connection with SSMB_ERR_TIMEOUT. */
SSMB_TEST(engine_dead_peer) {
    helper srv;
    ssmb_engine *eng;
    ssmb_conn_desc cd;
    wsrec w;
    char url[128];
    uint64_t t0;
    memset(&w, 0, sizeof w);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    eng = engine_new(0);
    snprintf(url, sizeof url, "%s://localhost:%d/", scheme(), srv.port[1]);
    memset(&cd, 0, sizeof cd);
    cd.url = url;
    cd.idle_timeout_ms = 400;
    cd.ping_interval_ms = 150; /* pings go out, and nothing answers them */
    w.eng = eng;
    t0 = now_ms();
    if (eng) CHECK_EQ_INT(ssmb_engine_ws_open(eng, &cd, &w, now_ms(), &w.ws), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 5000));
    CHECK_EQ_INT(w.opened, 1);
    CHECK_EQ_INT(w.result, SSMB_ERR_TIMEOUT);
    CHECK(now_ms() - t0 >= 400);
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
    rec_free(&w);
}

/* ---- HTTPS proxies ---- */

/* The secure URL the proxy tunnels to: TLS when compiled in, else the
   wss:// scheme over the plain server with TLS left to "the transport". */
static ssmb_result open_secure(ssmb_engine *eng, wsrec *w, int port, const char *path) {
    ssmb_conn_desc cd;
    char url[128];
    snprintf(url, sizeof url, "wss://localhost:%d%s", port, path);
    memset(&cd, 0, sizeof cd);
    cd.url = url;
    if (!tls_available()) cd.tls_mode = SSMB_TLS_EXTERNAL;
    w->eng = eng;
    return ssmb_engine_ws_open(eng, &cd, w, now_ms(), &w->ws);
}

/* Runs one open through a proxy in mode: its result, detail and the log. */
static void through_proxy(const char *mode, const char *userinfo, const char *no_proxy, int ws_port,
                          const char *path, wsrec *w, char *log, size_t log_cap) {
    char logpath[] = "/tmp/ssmb-proxy-XXXXXX", proxy[160];
    helper px;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    int fd = mkstemp(logpath);
    char *text;
    memset(w, 0, sizeof *w);
    w->echo = 1;
    log[0] = '\0';
    if (!CHECK(fd >= 0)) return;
    close(fd);
    if (CHECK(helper_start(&px, "tests/connect_proxy.py", mode, logpath) == 0)) {
        desc_init(&d, 0);
        snprintf(proxy, sizeof proxy, "http://%s127.0.0.1:%d/", userinfo, px.port[0]);
        d.https_proxy = proxy;
        d.no_proxy = no_proxy;
        d.connect_timeout_ms = 400;
        CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
        if (eng) CHECK_EQ_INT(open_secure(eng, w, ws_port, path), SSMB_OK);
        if (eng) CHECK(drive_one(eng, DRIVE_TICK, w, 20000));
        ssmb_engine_destroy(eng);
        helper_stop(&px);
    }
    text = ssmbt_read_file(logpath, NULL);
    snprintf(log, log_cap, "%s", text ? text : "");
    free(text);
    unlink(logpath);
}

SSMB_TEST(engine_proxy) {
    helper srv;
    wsrec w;
    char log[1024], want[128];
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    /* The whole battery through the tunnel. */
    through_proxy("open", "", "", srv.port[0], "/check", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    CHECK_EQ_INT(w.detail, 1000);
    snprintf(want, sizeof want, "CONNECT localhost:%d HTTP/1.1\nhost localhost:%d\n", srv.port[0], srv.port[0]);
    CHECK_EQ_STR(log, want);
    rec_free(&w);
    /* Basic credentials from the user information, percent-decoded. */
    through_proxy("auth:user:p@ss", "user:p%40ss@", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    CHECK(w.got_len == 3 && memcmp(w.got, "bye", 3) == 0);
    CHECK(strstr(log, "auth Basic dXNlcjpwQHNz\n") != NULL);
    rec_free(&w);
    through_proxy("auth:user:p@ss", "user:wrong@", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_ERR_PROXY);
    CHECK_EQ_INT(w.detail, 407);
    rec_free(&w);
    /* Refusals, silence and nonsense. */
    through_proxy("407", "", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_ERR_PROXY);
    CHECK_EQ_INT(w.detail, 407);
    through_proxy("403", "", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_ERR_PROXY);
    CHECK_EQ_INT(w.detail, 403);
    through_proxy("silent", "", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_ERR_TIMEOUT);
    through_proxy("garbage", "", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_ERR_PROXY);
    /* Bytes after the 2xx head: refused when they come with it; when they
       come apart, TLS (or the upgrade) chokes on them instead. */
    through_proxy("early", "", "", srv.port[0], "/close", &w, log, sizeof log);
    CHECK(w.result < 0 && !w.opened);
    if (w.result == SSMB_ERR_PROXY) CHECK_EQ_INT(w.detail, 200);
    /* NO_PROXY: straight to the server, the proxy never hears of it. */
    through_proxy("403", "", "example.com, .localhost,localhost", srv.port[0], "/close", &w, log, sizeof log);
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    CHECK_EQ_STR(log, "");
    rec_free(&w);
    helper_stop(&srv);
}

/* Proxy settings from the environment, malformed ones, an absent proxy,
   and plain ws:// (never proxied). */
SSMB_TEST(engine_proxy_settings) {
    static const char *const bad[] = {"socks5://127.0.0.1:1080", "https://127.0.0.1:3128", "http://[::1",
                                      "http://127.0.0.1:99999", "http://user:%zz@127.0.0.1:1", "http://::1:80",
                                      "http://", "http://a b:80"};
    char logpath[] = "/tmp/ssmb-proxy-XXXXXX", proxy[64];
    helper px, srv;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    wsrec w;
    size_t i;
    int fd = mkstemp(logpath);
    char url[128];
    memset(&w, 0, sizeof w);
    close(fd);
    for (i = 0; i < COUNT(bad); i++) {
        desc_init(&d, 0);
        d.https_proxy = bad[i];
        eng = NULL;
        CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
        if (eng) CHECK_EQ_INT(open_secure(eng, &w, 1, "/"), SSMB_ERR_PROXY);
        ssmb_engine_destroy(eng);
    }
    /* Nobody listens where the proxy should be. */
    desc_init(&d, 0);
    snprintf(proxy, sizeof proxy, "127.0.0.1:%d", closed_tcp_port()); /* no scheme: http */
    d.https_proxy = proxy;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    if (eng) CHECK_EQ_INT(open_secure(eng, &w, 1, "/"), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_ERR_CONNECT);
    ssmb_engine_destroy(eng);
    if (!CHECK(helper_start(&px, "tests/connect_proxy.py", "403", logpath) == 0)) return;
    if (!CHECK(helper_start(&srv, "tests/ws_server.py", NULL, NULL) == 0)) {
        helper_stop(&px);
        return;
    }
    /* HTTPS_PROXY from the environment when desc.https_proxy is NULL. */
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", px.port[0]);
    setenv("HTTPS_PROXY", proxy, 1);
    desc_init(&d, 0);
    d.https_proxy = NULL;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    CHECK_EQ_STR(ssmb_engine_desc(eng)->https_proxy, proxy);
    memset(&w, 0, sizeof w);
    if (eng) CHECK_EQ_INT(open_secure(eng, &w, srv.port[0], "/close"), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_ERR_PROXY);
    CHECK_EQ_INT(w.detail, 403);
    /* ws:// goes direct even with a proxy set. */
    memset(&w, 0, sizeof w);
    snprintf(url, sizeof url, "ws://localhost:%d/close", srv.port[0]);
    if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    rec_free(&w);
    ssmb_engine_destroy(eng);
    /* no_proxy from the environment (lower case), to a secure server. */
    helper_stop(&srv);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) {
        helper_stop(&px);
        return;
    }
    setenv("no_proxy", "localhost", 1);
    desc_init(&d, 0);
    d.https_proxy = NULL;
    d.no_proxy = NULL;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    memset(&w, 0, sizeof w);
    if (eng) CHECK_EQ_INT(open_secure(eng, &w, srv.port[0], "/close"), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
    CHECK_EQ_INT(w.result, SSMB_CLOSED);
    rec_free(&w);
    ssmb_engine_destroy(eng);
    unsetenv("HTTPS_PROXY");
    unsetenv("no_proxy");
    helper_stop(&srv);
    helper_stop(&px);
    unlink(logpath);
}

/* ---- memory ---- */

typedef struct counting {
    long allocs, frees;
    long fail_at;           /* the allocation (1-based) that fails; 0: none */
    long failed;
    size_t outstanding;
} counting;

static void *count_alloc(size_t n, void *user_data) {
    counting *c = (counting *)user_data;
    void *p;
    if (c->fail_at && c->allocs + c->failed + 1 == c->fail_at) {
        c->failed++;
        return NULL;
    }
    p = malloc(n);
    if (p) {
        c->allocs++;
        c->outstanding += n;
    }
    return p;
}

static void count_free(void *p, size_t n, void *user_data) {
    counting *c = (counting *)user_data;
    c->frees++;
    c->outstanding -= n;
    free(p);
}

/* After WS_OPEN nothing allocates: 10,000 messages each way. */
SSMB_TEST(engine_no_allocation_after_open) {
    helper srv;
    counting cnt;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    wsrec w;
    char url[128];
    long at_open = -1;
    uint64_t end = now_ms() + 30000;
    memset(&cnt, 0, sizeof cnt);
    memset(&w, 0, sizeof w);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    desc_init(&d, 1);
    d.allocator.alloc_fn = count_alloc;
    d.allocator.free_fn = count_free;
    d.allocator.user_data = &cnt;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    snprintf(url, sizeof url, "%s://localhost:%d/echo", scheme(), srv.port[0]);
    w.out = (const uint8_t *)"a message of some thirty bytes";
    w.out_len = 30;
    w.out_opcode = SSMB_WS_BINARY;
    w.out_count = 10000;
    if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
    while (eng && w.messages < 10000 && !w.closed && now_ms() < end) {
        ssmb_engine_wait(eng, 50);
        ssmb_engine_tick(eng, now_ms());
        drain_events(eng);
        if (w.opened && at_open < 0) at_open = cnt.allocs;
    }
    CHECK_EQ_INT(w.messages, 10000);
    CHECK_EQ_INT(w.got_len, 300000);
    CHECK_EQ_INT(cnt.allocs, at_open);
    CHECK(at_open > 0);
    ssmb_engine_destroy(eng);
    CHECK_EQ_INT(cnt.allocs, cnt.frees);
    CHECK_EQ_INT(cnt.outstanding, 0);
    helper_stop(&srv);
    rec_free(&w);
}

/* Each allocation in turn fails: SSMB_ERR_NOMEM from create or open, and
   every byte comes back. The CA file is loaded through the allocator too. */
SSMB_TEST(engine_allocation_failures) {
    helper srv;
    long k, points = 0;
    char url[128], ca[256];
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    snprintf(url, sizeof url, "%s://localhost:%d/echo", scheme(), srv.port[0]);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs_dir() ? certs_dir() : ".");
    for (k = 1; k < 64; k++) {
        counting cnt;
        ssmb_desc d;
        ssmb_engine *eng = NULL;
        wsrec w;
        ssmb_result r;
        memset(&cnt, 0, sizeof cnt);
        memset(&w, 0, sizeof w);
        cnt.fail_at = k;
        desc_init(&d, 0);
        d.trust = NULL;
        d.ca_file = tls_available() ? ca : NULL;
        d.allocator.alloc_fn = count_alloc;
        d.allocator.free_fn = count_free;
        d.allocator.user_data = &cnt;
        r = ssmb_engine_create(&d, &eng);
        if (r == SSMB_OK) r = open_ws(eng, &w, url);
        if (r == SSMB_OK) {
            uint64_t end = now_ms() + 3000;
            while (!w.opened && !w.closed && now_ms() < end) {
                ssmb_engine_wait(eng, 50);
                ssmb_engine_tick(eng, now_ms());
            }
            CHECK(w.opened);
            CHECK_EQ_INT(ssmb_engine_ws_close(eng, w.ws, 1000, NULL, now_ms()), SSMB_OK);
            CHECK(drive_one(eng, DRIVE_TICK, &w, 3000));
            CHECK_EQ_INT(w.result, SSMB_CLOSED);
        } else {
            CHECK_EQ_INT(r, SSMB_ERR_NOMEM);
            points++;
        }
        ssmb_engine_destroy(eng);
        CHECK_EQ_INT(cnt.outstanding, 0);
        CHECK_EQ_INT(cnt.allocs, cnt.frees);
        rec_free(&w);
        if (cnt.failed == 0) break; /* past the last allocation: it ran whole */
    }
    CHECK(points >= 3); /* at least the engine, the setup block and the conn */
    CHECK(k < 64);
    helper_stop(&srv);
}

/* ---- the host's side of the contract ---- */

typedef struct fd_log {
    int fd[64];
    uint32_t events[64];        /* the last interest told for fd[i] */
    int n, calls, saw_in, saw_out;
} fd_log;

static void on_fd_change(int32_t fd, uint32_t events, void *user_data) {
    fd_log *l = (fd_log *)user_data;
    int i;
    l->calls++;
    l->saw_in |= (events & SSMB_POLLIN) != 0;
    l->saw_out |= (events & SSMB_POLLOUT) != 0;
    for (i = 0; i < l->n && l->fd[i] != fd; i++) {}
    if (i == l->n && l->n < 64) l->fd[l->n++] = fd;
    if (i < 64) l->events[i] = events;
}

typedef struct reenter {
    wsrec w;
    ssmb_result process, tick, wait, next;
    int destroy_tried;
} reenter;

static void on_event_reenter(ssmb_engine *eng, const ssmb_event *ev, void *user_data) {
    reenter *re = (reenter *)user_data;
    ssmb_event other;
    re->process = ssmb_engine_process(eng, NULL, 0, now_ms());
    re->tick = ssmb_engine_tick(eng, now_ms());
    re->wait = ssmb_engine_wait(eng, 0);
    re->next = ssmb_engine_next_event(eng, &other);
    ssmb_engine_destroy(eng); /* refused: the engine lives on */
    re->destroy_tried++;
    on_event(eng, ev, NULL);
}

/* Inside event_fn: process, tick, wait and destroy are refused; fd_change_fn
   hears of every descriptor and of its end. */
SSMB_TEST(engine_reentrancy_and_fd_changes) {
    helper srv;
    reenter re;
    fd_log fl;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    char url[128];
    int i;
    memset(&re, 0, sizeof re);
    memset(&fl, 0, sizeof fl);
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    desc_init(&d, 0);
    d.event_fn = on_event_reenter;
    d.event_user_data = &re;
    d.fd_change_fn = on_fd_change;
    d.fd_change_user_data = &fl;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    snprintf(url, sizeof url, "%s://localhost:%d/close", scheme(), srv.port[0]);
    if (eng) CHECK_EQ_INT(open_ws(eng, &re.w, url), SSMB_OK);
    if (eng) CHECK(drive_one(eng, DRIVE_TICK, &re.w, 5000));
    CHECK_EQ_INT(re.w.result, SSMB_CLOSED);
    CHECK(re.destroy_tried >= 3); /* open, message, closed */
    CHECK_EQ_INT(re.process, SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(re.tick, SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(re.wait, SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(re.next, SSMB_ERR_INVALID_STATE);
    CHECK(fl.calls >= 2);
    CHECK(fl.saw_in); /* POLLOUT may come and go inside one process call */
    for (i = 0; i < fl.n; i++) CHECK_EQ_INT(fl.events[i], 0); /* every descriptor ended as "gone" */
    ssmb_engine_destroy(eng);
    helper_stop(&srv);
    rec_free(&re.w);
}

/* Handles: {0}, stale after WS_CLOSED or abort, reused slots get new ones;
   max_connections; a send before the upgrade gets SSMB_AGAIN, then
   WS_OPEN and WS_WRITABLE. */
SSMB_TEST(engine_handles_and_limits) {
    helper srv;
    ssmb_desc d;
    ssmb_engine *eng = NULL;
    wsrec w[3];
    ssmb_ws zero, old;
    char url[128];
    size_t taken = 99;
    uint64_t end;
    memset(w, 0, sizeof w);
    zero.id = 0;
    if (!CHECK(ws_server_start(&srv, "server") == 0)) return;
    desc_init(&d, 1);
    d.max_connections = 2;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    if (!eng) return;
    snprintf(url, sizeof url, "%s://localhost:%d/echo", scheme(), srv.port[0]);
    CHECK_EQ_INT(open_ws(eng, &w[0], url), SSMB_OK);
    CHECK_EQ_INT(open_ws(eng, &w[1], url), SSMB_OK);
    CHECK_EQ_INT(open_ws(eng, &w[2], url), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(w[2].ws.id, 0);
    CHECK(w[0].ws.id != 0 && w[1].ws.id != 0 && w[0].ws.id != w[1].ws.id);
    CHECK_EQ_INT(ssmb_engine_ws_send(eng, w[1].ws, SSMB_WS_TEXT, "early", 5, 1, &taken), SSMB_AGAIN);
    CHECK_EQ_INT(taken, 0);
    CHECK(ssmb_engine_ws_conn(eng, w[0].ws) != NULL);
    /* Aborted: gone at once, no event, the handle is stale. */
    old = w[0].ws;
    ssmb_engine_ws_abort(eng, old);
    CHECK(ssmb_engine_ws_conn(eng, old) == NULL);
    CHECK_EQ_INT(ssmb_engine_ws_send(eng, old, SSMB_WS_TEXT, "x", 1, 1, NULL), SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(ssmb_engine_ws_close(eng, old, 1000, NULL, now_ms()), SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(ssmb_engine_ws_send_space(eng, old), 0);
    CHECK_EQ_INT(ssmb_engine_ws_send(eng, zero, SSMB_WS_TEXT, "x", 1, 1, NULL), SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_engine_ws_conn(eng, zero) == NULL);
    ssmb_engine_ws_abort(eng, zero);
    ssmb_engine_ws_abort(eng, old);
    /* The slot is free again, under a new handle. */
    memset(&w[0], 0, sizeof w[0]);
    CHECK_EQ_INT(open_ws(eng, &w[0], url), SSMB_OK);
    CHECK(w[0].ws.id != old.id);
    CHECK_EQ_INT(ssmb_engine_ws_close(eng, w[0].ws, 1000, NULL, now_ms()), SSMB_OK); /* before the upgrade */
    /* The early sender: WS_OPEN, then WS_WRITABLE. */
    end = now_ms() + 5000;
    while ((!w[0].closed || !w[1].writable) && now_ms() < end) {
        poll_turn(eng);
        drain_events(eng);
    }
    CHECK_EQ_INT(w[0].result, SSMB_CLOSED);
    CHECK_EQ_INT(w[0].opened, 0);
    CHECK_EQ_INT(w[1].opened, 1);
    CHECK_EQ_INT(w[1].writable, 1);
    old = w[0].ws;
    CHECK_EQ_INT(ssmb_engine_ws_send(eng, old, SSMB_WS_TEXT, "x", 1, 1, NULL), SSMB_ERR_INVALID_STATE);
    ssmb_engine_destroy(eng); /* with w[1] still open */
    helper_stop(&srv);
    rec_free(&w[0]);
    rec_free(&w[1]);
}

/* ---- creation, defaults, arguments ---- */

static void *only_alloc(size_t n, void *user_data) {
    (void)user_data;
    return malloc(n);
}

SSMB_TEST(engine_create_and_arguments) {
    static const char *const bad_servers[] = {"bogus", "1.2.3.4:99999", "1.2.3.4:0", "[::1", "::1:53x",
                                              "1.2.3.4,5.6.7.8,9.9.9.9,8.8.8.8", "1.2.3.4:", ","};
    ssmb_desc d;
    ssmb_engine *eng = (ssmb_engine *)&d;
    const ssmb_desc *got;
    ssmb_event ev;
    ssmb_conn_desc cd;
    ssmb_ws ws;
    size_t i, count = 7;
    char servers[] = "[::1]:5353, 127.0.0.1";
    CHECK_EQ_INT(ssmb_engine_create(NULL, &eng), SSMB_ERR_INVALID_ARG);
    CHECK(eng == NULL);
    desc_init(&d, 1);
    CHECK_EQ_INT(ssmb_engine_create(&d, NULL), SSMB_ERR_INVALID_ARG);
    d.allocator.alloc_fn = only_alloc; /* half an allocator */
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_ERR_INVALID_ARG);
    for (i = 0; i < COUNT(bad_servers); i++) {
        desc_init(&d, 1);
        d.dns_servers = bad_servers[i];
        CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_ERR_INVALID_ARG);
    }
    desc_init(&d, 1);
    d.trust = NULL;
    d.ca_file = "/nonexistent/ca.pem"; /* named explicitly: its absence is an error */
    CHECK(ssmb_engine_create(&d, &eng) < 0);
    /* Defaults, and strings copied. */
    memset(&d, 0, sizeof d);
    d.https_proxy = "";
    d.no_proxy = "";
    d.dns_servers = servers;
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    if (!eng) return;
    servers[0] = 'X';
    got = ssmb_engine_desc(eng);
    CHECK_EQ_INT(got->max_connections, 16);
    CHECK_EQ_INT(got->connect_timeout_ms, 10000);
    CHECK_EQ_INT(got->dns_timeout_ms, 5000);
    CHECK_EQ_STR(got->resolv_conf, "/etc/resolv.conf");
    CHECK_EQ_STR(got->hosts_file, "/etc/hosts");
    CHECK_EQ_STR(got->ca_file, SSMB_SYSTEM_CA_BUNDLE);
    CHECK_EQ_STR(got->dns_servers, "[::1]:5353, 127.0.0.1");
    CHECK(got->random_fn == ssmb_random_system);
    CHECK(got->utc_fn == ssmb_utc_system);
    /* Nothing open: no descriptors, no timer. */
    CHECK_EQ_INT(ssmb_engine_fds(eng, NULL, 0, &count), SSMB_OK);
    CHECK_EQ_INT(count, 0);
    CHECK_EQ_INT(ssmb_engine_timeout_ms(eng, 5, -1), -1);
    CHECK_EQ_INT(ssmb_engine_timeout_ms(eng, 5, 70), 70);
    CHECK_EQ_INT(ssmb_engine_wait(eng, -1), SSMB_OK); /* returns at once: nothing could wake it */
    CHECK_EQ_INT(ssmb_engine_tick(eng, 1), SSMB_OK);
    CHECK_EQ_INT(ssmb_engine_process(eng, NULL, 1, 1), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_engine_next_event(eng, &ev), SSMB_AGAIN);
    CHECK_EQ_INT(ev.type, SSMB_EVENT_NONE);
    /* Opens refused before they take a slot. */
    memset(&cd, 0, sizeof cd);
    CHECK_EQ_INT(ssmb_engine_ws_open(eng, &cd, NULL, 1, &ws), SSMB_ERR_INVALID_ARG);
    cd.url = "ws://";
    CHECK_EQ_INT(ssmb_engine_ws_open(eng, &cd, NULL, 1, &ws), SSMB_ERR_MALFORMED);
    cd.url = "http://example.com/"; /* not a WebSocket URL: the conn refuses it */
    CHECK_EQ_INT(ssmb_engine_ws_open(eng, &cd, NULL, 1, &ws), SSMB_ERR_INVALID_ARG);
    cd.url = "ws://localhost:1/";
    CHECK_EQ_INT(ssmb_engine_ws_open(eng, &cd, NULL, 1, NULL), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_engine_ws_open(NULL, &cd, NULL, 1, &ws), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ws.id, 0);
    CHECK_EQ_INT(ssmb_engine_resolved(eng, 12345, NULL, 0), SSMB_ERR_INVALID_STATE);
    ssmb_engine_destroy(eng);
    /* With event_fn, events are not pulled. */
    desc_init(&d, 0);
    CHECK_EQ_INT(ssmb_engine_create(&d, &eng), SSMB_OK);
    CHECK_EQ_INT(ssmb_engine_next_event(eng, &ev), SSMB_ERR_INVALID_STATE);
    ssmb_engine_destroy(eng);
    ssmb_engine_destroy(NULL);
    CHECK_EQ_INT(ssmb_engine_tick(NULL, 1), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_engine_wait(NULL, 1), SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_engine_desc(NULL) == NULL);
}

/* ---- certificates ---- */

/* A server certificate for another name, from a CA nobody trusts, or out
   of date: refused with SSMB_ERR_TLS_CERT. */
SSMB_TEST(engine_certificates_refused) {
    static const char *const certs[] = {"wrong", "rogue", "expired"};
    size_t i;
    if (!tls_available()) {
        printf("engine certificates: no TLS backend compiled in\n");
        return;
    }
    for (i = 0; i < COUNT(certs); i++) {
        helper srv;
        ssmb_engine *eng;
        wsrec w;
        char url[128];
        memset(&w, 0, sizeof w);
        if (!CHECK(ws_server_start(&srv, certs[i]) == 0)) continue;
        eng = engine_new(0);
        snprintf(url, sizeof url, "wss://localhost:%d/echo", srv.port[0]);
        if (eng) CHECK_EQ_INT(open_ws(eng, &w, url), SSMB_OK);
        if (eng) CHECK(drive_one(eng, DRIVE_POLL, &w, 5000));
        CHECK_EQ_INT(w.opened, 0);
        if (w.result != SSMB_ERR_TLS_CERT) printf("  certificate %s: result %d\n", certs[i], (int)w.result);
        CHECK_EQ_INT(w.result, SSMB_ERR_TLS_CERT);
        ssmb_engine_destroy(eng);
        helper_stop(&srv);
    }
}
