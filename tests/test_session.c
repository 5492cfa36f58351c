/* Sessions end to end: the engine's public session and forward API against
   build/ssmb-local (the AWS side: SSM API with SigV4, the agent's data
   channel, commands, port forwarding, fault injection), with Python peers
   for the TCP side (tests/tcp_echo.py, tests/pf_client.py). Plain
   http/ws on loopback keeps these fast; the TLS path is tested in
   test_engine.c and by the tools' end-to-end tests. Every process started
   here is stopped by its PID. */
#define _XOPEN_SOURCE 700 /* posix_openpt, for have_pty */
#include "ssmb_test.h"
#include "../ssmbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PY "/usr/bin/python3"
#define LOCAL "build/ssmb-local"
#define TARGET "i-0123456789abcdef0"

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- child processes: argv run with stdout to a pipe we read lines of ---- */

typedef struct child {
    pid_t pid;
    int out;            /* its stdout, non-blocking; -1 when closed */
    char text[4096];    /* what it printed so far */
    size_t len;
} child;

static int child_start(child *c, char *const argv[]) {
    int fds[2];
    memset(c, 0, sizeof *c);
    c->out = -1;
    if (pipe(fds) != 0) return -1;
    c->pid = fork();
    if (c->pid < 0) return -1;
    if (c->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(null, 2);
        close(fds[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    c->out = fds[0];
    fcntl(c->out, F_SETFL, fcntl(c->out, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* Reads what is there; 1 when the child closed its stdout. */
static int child_read(child *c) {
    for (;;) {
        ssize_t n;
        if (c->out < 0) return 1;
        n = read(c->out, c->text + c->len, sizeof c->text - 1 - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            c->text[c->len] = '\0';
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
        close(c->out);
        c->out = -1;
        return 1;
    }
}

/* Waits for `lines` complete lines of output (at most ms). */
static int child_lines(child *c, int lines, int ms) {
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end) {
        int have = 0;
        size_t i;
        struct pollfd p;
        for (i = 0; i < c->len; i++) have += c->text[i] == '\n';
        if (have >= lines) return 0;
        if (child_read(c)) return -1;
        p.fd = c->out;
        p.events = POLLIN;
        (void)poll(&p, 1, 50);
    }
    return -1;
}

static void child_stop(child *c) {
    int i;
    if (c->pid <= 0) return;
    kill(c->pid, SIGTERM);
    for (i = 0; i < 40 && waitpid(c->pid, NULL, WNOHANG) == 0; i++) (void)poll(NULL, 0, 50);
    if (i == 40) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    if (c->out >= 0) close(c->out);
    c->out = -1;
    c->pid = 0;
}

/* The value after "name: " in the child's output. */
static int child_value(const child *c, const char *name, char *out, size_t cap) {
    const char *p = strstr(c->text, name), *e;
    if (!p) return -1;
    p += strlen(name);
    e = strchr(p, '\n');
    if (!e || (size_t)(e - p) >= cap) return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

/* ---- the emulator ---- */

typedef struct local {
    child proc;
    char endpoint[128], key[128], secret[128], region[64];
} local;

/* build/ssmb-local --port 0 --no-tls plus extra options (NULL-terminated). */
static int local_start(local *l, const char *const *extra) {
    static char base[4][32] = {LOCAL, "--port", "0", "--no-tls"};
    char store[28][64], *argv[32];
    int n = 0, k = 0;
    for (n = 0; n < 4; n++) argv[n] = base[n];
    while (extra && *extra && k < 28) {
        snprintf(store[k], sizeof store[k], "%s", *extra++);
        argv[n++] = store[k++];
    }
    argv[n] = NULL;
    memset(l, 0, sizeof *l);
    if (access(LOCAL, X_OK) != 0) return -1;
    if (child_start(&l->proc, argv) != 0 || child_lines(&l->proc, 5, 10000) != 0 ||
        child_value(&l->proc, "endpoint: ", l->endpoint, sizeof l->endpoint) ||
        child_value(&l->proc, "access-key-id: ", l->key, sizeof l->key) ||
        child_value(&l->proc, "secret-access-key: ", l->secret, sizeof l->secret) ||
        child_value(&l->proc, "region: ", l->region, sizeof l->region)) {
        child_stop(&l->proc);
        return -1;
    }
    return 0;
}

static void local_stop(local *l) { child_stop(&l->proc); }

/* ---- counting allocator ---- */

typedef struct counting {
    long allocs, frees;
    size_t live, peak;
} counting;

static void *count_alloc(size_t n, void *u) {
    counting *c = (counting *)u;
    void *p = malloc(n);
    if (p) {
        c->allocs++;
        c->live += n;
        if (c->live > c->peak) c->peak = c->live;
    }
    return p;
}

static void count_free(void *p, size_t n, void *u) {
    counting *c = (counting *)u;
    if (!p) return;
    c->frees++;
    c->live -= n;
    free(p);
}

/* ---- a session driven to its end ---- */

typedef struct run {
    ssmb_engine *eng;
    ssmb_session s;
    counting mem;
    char out[1 << 16], err[4096];
    size_t out_len, err_len;
    int exit_code, have_exit, closed, ready, reconnecting;
    int32_t result;
    char message[512];
    uint32_t opened, closed_conns;
} run;

static const char *no_env(const char *name, void *u) {
    (void)name;
    (void)u;
    return NULL; /* the tests give everything explicitly */
}

typedef struct test_env test_env;
static int run_engine_env(run *r, test_env *e);

static int run_engine(run *r) { return run_engine_env(r, NULL); }

static void session_desc(ssmb_session_desc *sd, const local *l, const char *secret) {
    memset(sd, 0, sizeof *sd);
    sd->target = TARGET;
    sd->region = l->region;
    sd->endpoint_url = l->endpoint;
    sd->allow_custom_stream_host = 1;
    sd->credentials.access_key_id = ssmb_str_c(l->key);
    sd->credentials.secret_access_key = ssmb_str_c(secret ? secret : l->secret);
}

static void take_event(run *r, const ssmb_event *ev) {
    size_t n;
    switch (ev->type) {
    case SSMB_EVENT_SESSION_STATE:
        if (ev->state == SSMB_SESSION_READY) r->ready = 1;
        if (ev->state == SSMB_SESSION_RECONNECTING) r->reconnecting++;
        break;
    case SSMB_EVENT_SESSION_OUTPUT:
        if (ev->len > sizeof r->out - 1 - r->out_len && r->out_len > sizeof r->out / 2) { /* keep the newest half */
            memmove(r->out, r->out + r->out_len - sizeof r->out / 2, sizeof r->out / 2);
            r->out_len = sizeof r->out / 2;
        }
        n = ev->len < sizeof r->out - 1 - r->out_len ? ev->len : sizeof r->out - 1 - r->out_len;
        memcpy(r->out + r->out_len, ev->data, n);
        r->out_len += n;
        r->out[r->out_len] = '\0';
        break;
    case SSMB_EVENT_SESSION_STDERR:
        n = ev->len < sizeof r->err - 1 - r->err_len ? ev->len : sizeof r->err - 1 - r->err_len;
        memcpy(r->err + r->err_len, ev->data, n);
        r->err_len += n;
        r->err[r->err_len] = '\0';
        break;
    case SSMB_EVENT_SESSION_EXIT:
        r->exit_code = ev->exit_code;
        r->have_exit = 1;
        break;
    case SSMB_EVENT_SESSION_CLOSED:
        r->closed = 1;
        r->result = ev->result;
        n = ev->message.len < sizeof r->message - 1 ? ev->message.len : sizeof r->message - 1;
        memcpy(r->message, ev->message.ptr, n);
        r->message[n] = '\0';
        break;
    case SSMB_EVENT_FORWARD_OPEN: r->opened++; break;
    case SSMB_EVENT_FORWARD_CLOSE: r->closed_conns++; break;
    default: break;
    }
}

/* One turn: the engine's descriptors (and an extra one) polled for at
   most wait_ms, then process and every event. */
static void turn(run *r, int extra_fd, int wait_ms) {
    ssmb_pollfd fds[160];
    struct pollfd p[161];
    size_t n = 0, i;
    uint64_t t = now_ms();
    int timeout = ssmb_engine_timeout_ms(r->eng, t, wait_ms);
    ssmb_event ev;
    if (ssmb_engine_fds(r->eng, fds, 160, &n) != SSMB_OK) n = 0;
    for (i = 0; i < n; i++) {
        p[i].fd = fds[i].fd;
        p[i].events = (short)(((fds[i].events & SSMB_POLLIN) ? POLLIN : 0) | ((fds[i].events & SSMB_POLLOUT) ? POLLOUT : 0));
        p[i].revents = 0;
    }
    if (extra_fd >= 0) {
        p[n].fd = extra_fd;
        p[n].events = POLLIN;
        p[n].revents = 0;
    }
    (void)poll(p, (nfds_t)(n + (extra_fd >= 0)), timeout);
    for (i = 0; i < n; i++) {
        fds[i].revents = (uint16_t)(((p[i].revents & POLLIN) ? SSMB_POLLIN : 0) |
                                    ((p[i].revents & POLLOUT) ? SSMB_POLLOUT : 0) |
                                    ((p[i].revents & POLLERR) ? SSMB_POLLERR : 0) |
                                    ((p[i].revents & POLLHUP) ? SSMB_POLLHUP : 0));
    }
    (void)ssmb_engine_process(r->eng, fds, n, now_ms());
    while (ssmb_engine_next_event(r->eng, &ev) == SSMB_OK) take_event(r, &ev);
}

/* Turns until cond (or closed, or ms passed). */
#define RUN_UNTIL(r, cond, ms)                                                    \
    do {                                                                          \
        uint64_t run_end_ = now_ms() + (uint64_t)(ms);                            \
        while (!(cond) && !(r)->closed && now_ms() < run_end_) turn((r), -1, 50); \
    } while (0)

static void run_end(run *r) {
    uint64_t end = now_ms() + 3000;
    ssmb_event ev;
    while (!ssmb_engine_shutdown(r->eng, now_ms(), end)) {
        turn(r, -1, 20);
        while (ssmb_engine_next_event(r->eng, &ev) == SSMB_OK) take_event(r, &ev);
    }
    ssmb_engine_destroy(r->eng);
    r->eng = NULL;
}

/* 1 when this machine can give pseudo-terminals (a chroot may have no /dev/pts). */
static int have_pty(void) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY), ok = 0;
    if (fd < 0) return 0;
    if (grantpt(fd) == 0 && unlockpt(fd) == 0 && ptsname(fd)) {
        int slave = open(ptsname(fd), O_RDWR | O_NOCTTY);
        ok = slave >= 0;
        if (slave >= 0) close(slave);
    }
    close(fd);
    return ok;
}

static int have_local(void) {
    if (access(LOCAL, X_OK) == 0) return 1;
    printf("  session tests: %s is not built (make all)\n", LOCAL);
    return 0;
}

/* ---- commands: output, stderr and exit code ---- */

static void command_case(const local *l, const char *cmd, const char *want_out, const char *want_err, int want_code) {
    run r;
    ssmb_session_desc sd;
    ssmb_document doc;
    if (!CHECK(run_engine(&r) == 0)) return;
    session_desc(&sd, l, NULL);
    ssmb_document_command(&sd, &doc, cmd);
    CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
    RUN_UNTIL(&r, 0, 15000);
    CHECK(r.closed);
    CHECK_EQ_INT(r.result, SSMB_CLOSED);
    CHECK(r.have_exit);
    CHECK_EQ_INT(r.exit_code, want_code);
    if (want_out) CHECK_EQ_STR(r.out, want_out);
    if (want_err) CHECK_EQ_STR(r.err, want_err);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
}

SSMB_TEST(session_command_exit_codes) {
    local l;
    if (!have_local() || !CHECK(local_start(&l, NULL) == 0)) return;
    command_case(&l, "echo hi; echo err >&2; exit 3", "hi\n", "err\n", 3);
    command_case(&l, "true", "", "", 0);
    command_case(&l, "no_such_command_anywhere_xyz", "", NULL, 127);
    local_stop(&l);
}

/* ---- errors from the API: one clear reason each ---- */

static void api_error_case(const local *l, const char *target, const char *secret, const char *want_prefix) {
    run r;
    ssmb_session_desc sd;
    if (!CHECK(run_engine(&r) == 0)) return;
    session_desc(&sd, l, secret);
    if (target) sd.target = target;
    CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
    RUN_UNTIL(&r, 0, 10000);
    CHECK(r.closed);
    CHECK_EQ_INT(r.result, SSMB_ERR_AWS_API);
    if (!CHECK(strncmp(r.message, want_prefix, strlen(want_prefix)) == 0)) printf("  message: %s\n", r.message);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
}

SSMB_TEST(session_api_errors) {
    local l;
    run r;
    ssmb_session_desc sd;
    ssmb_session s;
    if (!have_local() || !CHECK(local_start(&l, NULL) == 0)) return;
    api_error_case(&l, NULL, "not-the-secret", "InvalidSignatureException: ");
    api_error_case(&l, "i-00000000000000000", NULL, "TargetNotConnected: ");
    /* Attaching to a StreamUrl on a host that is not AWS's is refused at once. */
    if (CHECK(run_engine(&r) == 0)) {
        memset(&sd, 0, sizeof sd);
        sd.region = "us-east-1";
        sd.credentials.access_key_id = ssmb_str_c(l.key);
        sd.credentials.secret_access_key = ssmb_str_c(l.secret);
        sd.session_id = "s-1";
        sd.token_value = "token";
        sd.stream_url = "wss://ssmmessages.us-east-1.amazonaws.com.evil.example/v1/data-channel/s-1";
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &s), SSMB_ERR_SSM_PROTOCOL);
        sd.stream_url = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1";
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &s), SSMB_OK); /* accepted: it would connect */
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    local_stop(&l);
}

/* ---- port forwarding ---- */

/* The forward's bytes both ways through tcp_echo.py, by pf_client.py. */
/* expect: 'r' at least one reconnect, 't' at least one retransmission, 0 no reconnect. */
static void forward_case(const char *const *local_args, const char *listen, int conns, int size, int expect_mux,
                         char expect) {
    local l;
    child echo, client;
    run r;
    ssmb_session_desc sd;
    ssmb_document doc;
    ssmb_forward_desc fd;
    ssmb_forward f;
    ssmb_session_info info;
    char addr[160], n_text[16], size_text[16], want[32];
    char *echo_argv[] = {(char *)PY, (char *)"tests/tcp_echo.py", NULL};
    char *client_argv[] = {(char *)PY, (char *)"tests/pf_client.py", addr, n_text, size_text, NULL};
    int port;
    uint64_t end;
    if (!have_local() || !CHECK(local_start(&l, local_args) == 0)) return;
    if (!CHECK(child_start(&echo, echo_argv) == 0 && child_lines(&echo, 1, 5000) == 0)) {
        local_stop(&l);
        return;
    }
    port = atoi(echo.text);
    if (!CHECK(run_engine(&r) == 0)) goto out;
    session_desc(&sd, &l, NULL);
    ssmb_document_port_forward(&sd, &doc, (uint16_t)port, 0);
    CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
    memset(&fd, 0, sizeof fd);
    fd.listen = listen;
    fd.events = 1;
    CHECK_EQ_INT(ssmb_forward_open(r.eng, r.s, &fd, &f), SSMB_OK);
    CHECK_EQ_INT(ssmb_forward_address(r.eng, f, addr, sizeof addr), SSMB_OK);
    RUN_UNTIL(&r, r.ready, 10000);
    CHECK(r.ready);
    snprintf(n_text, sizeof n_text, "%d", conns);
    snprintf(size_text, sizeof size_text, "%d", size);
    if (CHECK(child_start(&client, client_argv) == 0)) {
        end = now_ms() + 120000;
        while (!child_read(&client) && now_ms() < end && !r.closed) turn(&r, client.out, 50);
        snprintf(want, sizeof want, "ok %d\n", conns);
        if (!CHECK_EQ_STR(client.text, want)) printf("  session: %s\n", r.message);
        child_stop(&client);
    }
    RUN_UNTIL(&r, r.closed_conns >= (uint32_t)conns, 5000);
    CHECK_EQ_INT(r.opened, conns);
    CHECK_EQ_INT(r.closed_conns, conns);
    if (CHECK(ssmb_session_get_info(r.eng, r.s, &info) == SSMB_OK)) {
        CHECK_EQ_INT(info.port_mux, expect_mux);
        CHECK(ssmb_str_eq(info.session_type, "Port"));
        CHECK(info.metrics.bytes_out >= (uint64_t)conns * (uint64_t)size);
        CHECK(info.metrics.bytes_in >= (uint64_t)conns * (uint64_t)size);
        if (expect == 'r') CHECK(info.metrics.reconnects >= 1 && r.reconnecting >= 1);
        if (expect == 't') CHECK(info.metrics.retransmissions >= 1);
        if (expect == 0) CHECK_EQ_INT(info.metrics.reconnects, 0);
    }
    CHECK(!r.closed);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
out:
    child_stop(&echo);
    local_stop(&l);
}

SSMB_TEST(session_forward_mux) {
    forward_case(NULL, "127.0.0.1:0", 10, 1 << 20, 1, 0);
}

SSMB_TEST(session_forward_basic) {
    static const char *const args[] = {"--agent-version", "3.0.196.0", NULL};
    forward_case(args, "127.0.0.1:0", 1, 1 << 20, 0, 0);
}

SSMB_TEST(session_forward_unix) {
    char path[64];
    snprintf(path, sizeof path, "unix:build/ssmb-test-%d.sock", (int)getpid());
    forward_case(NULL, path, 3, 100000, 1, 0);
    CHECK(access(path + 5, F_OK) != 0); /* removed at close */
}

/* The WebSocket cut mid-transfer, again and again: ResumeSession each time,
   and the bytes arrive whole. */
SSMB_TEST(session_reconnect_mid_transfer) {
    static const char *const args[] = {"--cut-after", "300", NULL};
    forward_case(args, "127.0.0.1:0", 2, 1 << 20, 1, 'r');
}

/* Faults of the link: loss, duplicates, reordering, delay, corrupted
   digests (the channel's retransmission and reorder buffer carry the
   bytes through). */
SSMB_TEST(session_forward_faults) {
    static const char *const drop[] = {"--drop", "5", "--seed", "7", NULL};
    static const char *const dup[] = {"--duplicate", "10", "--seed", "8", NULL};
    static const char *const reorder[] = {"--reorder", "10", "--seed", "9", NULL};
    static const char *const delay[] = {"--delay", "20", "--seed", "10", NULL};
    static const char *const corrupt[] = {"--corrupt-digest", "5", "--seed", "11", NULL};
    forward_case(drop, "127.0.0.1:0", 2, 200000, 1, 't');
    forward_case(dup, "127.0.0.1:0", 2, 200000, 1, 0);
    forward_case(reorder, "127.0.0.1:0", 2, 200000, 1, 0);
    forward_case(delay, "127.0.0.1:0", 2, 200000, 1, 0);
    forward_case(corrupt, "127.0.0.1:0", 2, 200000, 1, 0); /* bad digests dropped unacknowledged, sent again */
}

/* A refused ResumeSession ends the session with a clear reason. */
SSMB_TEST(session_resume_refused) {
    static const char *const args[] = {"--cut-after", "5", "--refuse-resume", NULL};
    local l;
    run r;
    ssmb_session_desc sd;
    ssmb_document doc;
    if (!have_local() || !CHECK(local_start(&l, args) == 0)) return;
    if (CHECK(run_engine(&r) == 0)) {
        session_desc(&sd, &l, NULL);
        ssmb_document_command(&sd, &doc, "seq 1 20000");
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
        RUN_UNTIL(&r, 0, 20000);
        CHECK(r.closed);
        CHECK(r.reconnecting >= 1);
        CHECK(r.result < 0);
        CHECK(strstr(r.message, "ResumeSession") != NULL);
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    local_stop(&l);
}

/* ---- a shell, and the steady state's allocations ---- */

SSMB_TEST(session_shell_and_zero_allocations) {
    local l;
    run r;
    ssmb_session_desc sd;
    size_t taken = 0;
    long before;
    int i;
    ssmb_session_info info;
    if (!have_local() || !CHECK(local_start(&l, NULL) == 0)) return;
    if (!CHECK(run_engine(&r) == 0)) {
        local_stop(&l);
        return;
    }
    session_desc(&sd, &l, NULL);
    sd.cols = 100;
    sd.rows = 30;
    CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
    RUN_UNTIL(&r, r.ready, 10000);
    CHECK(r.ready);
    CHECK_EQ_INT(ssmb_session_resize(r.eng, r.s, 120, 40), SSMB_OK);
    CHECK_EQ_INT(ssmb_session_send(r.eng, r.s, "stty size; echo $((6*7))x\n", 26, &taken), SSMB_OK);
    CHECK_EQ_INT(taken, 26);
    RUN_UNTIL(&r, strstr(r.out, "42x") != NULL, 10000);
    CHECK(strstr(r.out, "42x") != NULL);
    if (have_pty()) CHECK(strstr(r.out, "40 120") != NULL); /* the remote terminal took the new size */
    else printf("  no pseudo-terminals here: ssmb-local's shell runs without one, its size is not checked\n");
    /* Steady state: keystrokes and their echoes allocate nothing. */
    before = r.mem.allocs;
    for (i = 0; i < 200; i++) {
        size_t len = r.out_len;
        CHECK_EQ_INT(ssmb_session_send(r.eng, r.s, "echo zzzzzzz\n", 13, &taken), SSMB_OK);
        RUN_UNTIL(&r, r.out_len >= len + 8, 5000); /* its output, with or without a terminal's echo */
        if (r.out_len > 60000) r.out_len = 0;
    }
    CHECK_EQ_INT(r.mem.allocs - before, 0);
    CHECK_EQ_INT(ssmb_session_get_info(r.eng, r.s, &info), SSMB_OK);
    CHECK(ssmb_str_eq(info.session_type, "Standard_Stream"));
    CHECK(info.metrics.messages_in > 200);
    CHECK(info.metrics.bytes_out >= 200 * 13);
    /* exit ends the session: the agent closes the channel. */
    CHECK_EQ_INT(ssmb_session_send(r.eng, r.s, "exit\n", 5, &taken), SSMB_OK);
    RUN_UNTIL(&r, 0, 10000);
    CHECK(r.closed);
    CHECK_EQ_INT(r.result, SSMB_CLOSED);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
    local_stop(&l);
}

/* terminate: the session ends within its deadline, with the host's reason. */
SSMB_TEST(session_terminate) {
    local l;
    run r;
    ssmb_session_desc sd;
    uint64_t t0;
    if (!have_local() || !CHECK(local_start(&l, NULL) == 0)) return;
    if (CHECK(run_engine(&r) == 0)) {
        session_desc(&sd, &l, NULL);
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
        RUN_UNTIL(&r, r.ready, 10000);
        t0 = now_ms();
        CHECK_EQ_INT(ssmb_session_terminate(r.eng, r.s, t0), SSMB_OK);
        RUN_UNTIL(&r, 0, 8000);
        CHECK(r.closed);
        CHECK(now_ms() - t0 < 6000);
        CHECK_EQ_INT(r.result, SSMB_CLOSED);
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    local_stop(&l);
}

/* ---- the credential chain's remote steps, through stubs on 127.0.0.1 ---- */

struct test_env {
    const char *names[8];
    const char *values[8];
    int64_t utc_offset;         /* added to the real clock (expiry and refresh) */
    char log[4096];             /* the library's log lines */
};

static test_env g_env;

static const char *env_lookup(const char *name, void *u) {
    test_env *e = (test_env *)u;
    int i;
    for (i = 0; i < 8 && e->names[i]; i++)
        if (strcmp(e->names[i], name) == 0) return e->values[i];
    return NULL;
}

static int64_t env_utc(void *u) { return (int64_t)time(NULL) + ((test_env *)u)->utc_offset; }

static void env_log(const char *tag, uint32_t level, uint32_t item, const char *msg, uint32_t line, void *u) {
    test_env *e = (test_env *)u;
    size_t have = strlen(e->log);
    (void)tag;
    (void)level;
    (void)item;
    (void)line;
    snprintf(e->log + have, sizeof e->log - have, "%s\n", msg);
}

/* An engine counting its memory; with e, its environment, clock offset
   and log (else no environment at all: the tests give everything). */
static int run_engine_env(run *r, test_env *e) {
    ssmb_desc d;
    memset(r, 0, sizeof *r);
    memset(&d, 0, sizeof d);
    d.allocator.alloc_fn = count_alloc;
    d.allocator.free_fn = count_free;
    d.allocator.user_data = &r->mem;
    d.getenv_fn = e ? env_lookup : no_env;
    d.getenv_user_data = e;
    if (e) {
        d.utc_fn = env_utc;
        d.utc_user_data = e;
        d.logger.log_fn = env_log;
        d.logger.user_data = e;
    }
    d.https_proxy = "";
    return ssmb_engine_create(&d, &r->eng) == SSMB_OK ? 0 : -1;
}

static void env_set(test_env *e, const char *name, const char *value) {
    int i;
    for (i = 0; i < 7 && e->names[i]; i++) {}
    e->names[i] = name;
    e->values[i] = value;
}

/* A command run with credentials from the chain only; 1 when it worked. */
static int chain_case(const local *l, test_env *e, const char *profile, const char *cmd, const char *want_last) {
    run r;
    ssmb_session_desc sd;
    ssmb_document doc;
    int ok;
    if (run_engine_env(&r, e) != 0) return 0;
    session_desc(&sd, l, NULL);
    memset(&sd.credentials, 0, sizeof sd.credentials);
    sd.profile = profile;
    ssmb_document_command(&sd, &doc, cmd);
    if (!CHECK(ssmb_session_start(r.eng, &sd, now_ms(), &r.s) == SSMB_OK)) printf("  log: %s\n", e->log);
    RUN_UNTIL(&r, r.ready, 15000);
    if (r.ready) e->utc_offset += 200; /* now the credentials expire within their refresh window */
    RUN_UNTIL(&r, 0, 30000);
    ok = r.closed && r.have_exit && r.exit_code == 0 && (!want_last || strstr(r.out, want_last) != NULL);
    if (!ok) printf("  chain case: closed %d exit %d result %d message \"%s\" log:\n%s", r.closed, r.exit_code,
                    (int)r.result, r.message, e->log);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
    return ok;
}

static int hits(child *stub, const char *name) {
    char needle[64];
    const char *p;
    int n = 0;
    (void)child_read(stub);
    snprintf(needle, sizeof needle, "hit %s\n", name);
    for (p = stub->text; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

SSMB_TEST(session_credentials_remote_steps) {
    static const char *const cut[] = {"--cut-after", "40", NULL};
    local l;
    child stub;
    char keys[300], url[64], ecs_url[128], imds_url[128], config[1024];
    char *argv[] = {(char *)PY, (char *)"tests/creds_stub.py", keys, (char *)"400", NULL};
    if (!have_local() || !CHECK(local_start(&l, cut) == 0)) return;
    snprintf(keys, sizeof keys, "%s:%s", l.key, l.secret);
    if (!CHECK(child_start(&stub, argv) == 0 && child_lines(&stub, 1, 5000) == 0)) {
        local_stop(&l);
        return;
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d", atoi(stub.text));
    snprintf(imds_url, sizeof imds_url, "%s/", url);
    snprintf(ecs_url, sizeof ecs_url, "%s/ecs/creds", url);

    /* IMDSv2: token, role, credentials; and again when they near expiry
       (the WebSocket is cut after 40 messages: ResumeSession refreshes). */
    memset(&g_env, 0, sizeof g_env);
    env_set(&g_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url);
    env_set(&g_env, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    env_set(&g_env, "AWS_CONFIG_FILE", "/nonexistent/config");
    CHECK(chain_case(&l, &g_env, NULL, "seq 1 40000", "\n40000\n"));
    CHECK(hits(&stub, "imds-token") >= 2);
    CHECK(hits(&stub, "imds-role") >= 2);
    CHECK(hits(&stub, "imds-creds") >= 2);

    /* ECS container credentials with the authorization token. */
    memset(&g_env, 0, sizeof g_env);
    env_set(&g_env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs_url);
    env_set(&g_env, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token");
    env_set(&g_env, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    env_set(&g_env, "AWS_CONFIG_FILE", "/nonexistent/config");
    CHECK(chain_case(&l, &g_env, NULL, "echo ecs", "ecs"));
    CHECK(hits(&stub, "ecs-creds") >= 1);

    /* Web identity: the token file, STS AssumeRoleWithWebIdentity. */
    CHECK(write_file("build/test-web-identity-token", "web-identity-token\n") == 0);
    memset(&g_env, 0, sizeof g_env);
    env_set(&g_env, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/stub");
    env_set(&g_env, "AWS_WEB_IDENTITY_TOKEN_FILE", "build/test-web-identity-token");
    env_set(&g_env, "AWS_ENDPOINT_URL_STS", url);
    env_set(&g_env, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    env_set(&g_env, "AWS_CONFIG_FILE", "/nonexistent/config");
    CHECK(chain_case(&l, &g_env, NULL, "echo web", "web"));
    CHECK(hits(&stub, "sts-web-identity") >= 1);

    /* A profile's role_arn with source_profile: STS AssumeRole signed with
       the source profile's keys; and credential_process. */
    snprintf(config, sizeof config,
             "[profile base]\naws_access_key_id = AKIDBASEPROFILE0000\naws_secret_access_key = base-secret\n"
             "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/app\nsource_profile = base\n"
             "[profile proc]\ncredential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"%s\", "
             "\"SecretAccessKey\": \"%s\"}'\n",
             l.key, l.secret);
    CHECK(write_file("build/test-aws-config", config) == 0);
    memset(&g_env, 0, sizeof g_env);
    env_set(&g_env, "AWS_CONFIG_FILE", "build/test-aws-config");
    env_set(&g_env, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    env_set(&g_env, "AWS_ENDPOINT_URL_STS", url);
    env_set(&g_env, "AWS_EC2_METADATA_DISABLED", "true");
    CHECK(chain_case(&l, &g_env, "app", "echo role", "role"));
    CHECK(hits(&stub, "sts-assume-role") >= 1);
    CHECK(chain_case(&l, &g_env, "proc", "echo process", "process"));
    child_stop(&stub);
    local_stop(&l);
}

/* A malformed credentials file: refused at start, the log names the file and line. */
SSMB_TEST(session_credentials_malformed_file) {
    run r;
    ssmb_session_desc sd;
    ssmb_session s;
    memset(&g_env, 0, sizeof g_env);
    CHECK(write_file("build/test-bad-credentials", "[default]\naws_access_key_id = AKID\nthis line is wrong\n") == 0);
    env_set(&g_env, "AWS_SHARED_CREDENTIALS_FILE", "build/test-bad-credentials");
    env_set(&g_env, "AWS_CONFIG_FILE", "/nonexistent/config");
    if (!CHECK(run_engine_env(&r, &g_env) == 0)) return;
    memset(&sd, 0, sizeof sd);
    sd.target = TARGET;
    sd.region = "us-east-1";
    CHECK(ssmb_session_start(r.eng, &sd, now_ms(), &s) < 0);
    CHECK(strstr(g_env.log, "build/test-bad-credentials") != NULL);
    CHECK(strstr(g_env.log, "line 3") != NULL);
    run_end(&r);
    CHECK_EQ_INT((long long)r.mem.live, 0);
}

/* ---- several sessions in one engine, with the metrics callback ---- */

typedef struct metrics_seen {
    int calls;
    uint64_t max_messages_in, max_bytes_in;
} metrics_seen;

static void on_metrics(ssmb_engine *eng, ssmb_session s, const ssmb_session_metrics *m, void *u) {
    metrics_seen *seen = (metrics_seen *)u;
    (void)eng;
    (void)s;
    seen->calls++;
    if (m->messages_in > seen->max_messages_in) seen->max_messages_in = m->messages_in;
    if (m->bytes_in > seen->max_bytes_in) seen->max_bytes_in = m->bytes_in;
}

typedef struct multi {
    int exit_code[3], closed[3];
    char out[3][64];
} multi;

static void on_event(ssmb_engine *eng, const ssmb_event *ev, void *u) {
    multi *m = (multi *)u;
    int i = (int)(intptr_t)ev->user_data;
    (void)eng;
    if (ev->type == SSMB_EVENT_SESSION_EXIT) m->exit_code[i] = ev->exit_code;
    if (ev->type == SSMB_EVENT_SESSION_CLOSED) m->closed[i] = 1;
    if (ev->type == SSMB_EVENT_SESSION_OUTPUT) {
        size_t have = strlen(m->out[i]), n = ev->len < 63 - have ? ev->len : 63 - have;
        memcpy(m->out[i] + have, ev->data, n);
        m->out[i][have + n] = '\0';
    }
}

SSMB_TEST(session_several_with_metrics) {
    local l;
    ssmb_engine *eng = NULL;
    ssmb_desc d;
    metrics_seen seen;
    multi m;
    counting mem;
    ssmb_session s[3];
    ssmb_session_metrics total;
    ssmb_document doc[3];
    char cmd[3][64];
    int i;
    uint64_t end;
    if (!have_local() || !CHECK(local_start(&l, NULL) == 0)) return;
    memset(&seen, 0, sizeof seen);
    memset(&m, 0, sizeof m);
    memset(&mem, 0, sizeof mem);
    memset(&d, 0, sizeof d);
    d.allocator.alloc_fn = count_alloc;
    d.allocator.free_fn = count_free;
    d.allocator.user_data = &mem;
    d.getenv_fn = no_env;
    d.https_proxy = "";
    d.event_fn = on_event;
    d.event_user_data = &m;
    d.metrics_fn = on_metrics;
    d.metrics_user_data = &seen;
    d.metrics_interval_ms = 100;
    if (!CHECK(ssmb_engine_create(&d, &eng) == SSMB_OK)) {
        local_stop(&l);
        return;
    }
    for (i = 0; i < 3; i++) {
        ssmb_session_desc sd;
        session_desc(&sd, &l, NULL);
        sd.user_data = (void *)(intptr_t)i;
        snprintf(cmd[i], sizeof cmd[i], "sleep 0.3; echo session %d; exit %d", i, 10 + i);
        ssmb_document_command(&sd, &doc[i], cmd[i]);
        CHECK_EQ_INT(ssmb_session_start(eng, &sd, now_ms(), &s[i]), SSMB_OK);
    }
    end = now_ms() + 15000;
    while (!(m.closed[0] && m.closed[1] && m.closed[2]) && now_ms() < end) {
        (void)ssmb_engine_process(eng, NULL, 0, now_ms());
        (void)ssmb_engine_wait(eng, 20);
        (void)ssmb_engine_tick(eng, now_ms());
    }
    for (i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "session %d\n", i);
        CHECK(m.closed[i]);
        CHECK_EQ_INT(m.exit_code[i], 10 + i);
        CHECK_EQ_STR(m.out[i], want);
    }
    CHECK(seen.calls >= 3);     /* at least the final call of each */
    CHECK(seen.max_messages_in > 0);
    CHECK(seen.max_bytes_in >= 10);
    ssmb_engine_metrics(eng, &total);
    CHECK_EQ_INT(total.sessions_started, 3);
    CHECK_EQ_INT(total.sessions_open, 0);
    CHECK(ssmb_engine_shutdown(eng, now_ms(), now_ms() + 1000));
    ssmb_engine_destroy(eng);
    CHECK_EQ_INT((long long)mem.live, 0);
    local_stop(&l);
}

/* The service's periodic close (1000 "Bye", every hour in AWS; every second
   here): the shell goes on through ResumeSession, nothing lost. */
SSMB_TEST(session_survives_periodic_close) {
    static const char *const args[] = {"--cut-every", "1", NULL};
    local l;
    run r;
    ssmb_session_desc sd;
    size_t taken = 0;
    ssmb_session_info info;
    if (!have_local() || !CHECK(local_start(&l, args) == 0)) return;
    if (CHECK(run_engine(&r) == 0)) {
        session_desc(&sd, &l, NULL);
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
        RUN_UNTIL(&r, r.ready, 10000);
        /* what the shell prints differs from what a terminal echoes of the line */
        CHECK_EQ_INT(ssmb_session_send(r.eng, r.s, "sleep 2.5; echo $((1500*2))x; echo af''ter\n", 43, &taken),
                     SSMB_OK);
        RUN_UNTIL(&r, strstr(r.out, "after") != NULL && strstr(r.out, "3000x") != NULL, 15000);
        CHECK(strstr(r.out, "3000x") != NULL && strstr(r.out, "after") != NULL);
        CHECK(r.reconnecting >= 2);
        CHECK(ssmb_session_get_info(r.eng, r.s, &info) == SSMB_OK && info.metrics.reconnects >= 2);
        CHECK(!r.closed);
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    local_stop(&l);
}

/* KMS session encryption (PROTOCOL.md §6): GenerateDataKey through the
   API (ssmb-local is the KMS too), the challenge, then a shell and a
   command whose payloads travel encrypted. */
SSMB_TEST(session_kms_encrypted) {
    static const char *const args[] = {"--kms-key-id", "alias/ssmb-test", NULL};
    local l;
    run r;
    ssmb_session_desc sd;
    ssmb_document doc;
    ssmb_session_info info;
    size_t taken = 0;
    if (!ssmb_kms_supported()) return;
    if (!have_local() || !CHECK(local_start(&l, args) == 0)) return;
    if (CHECK(run_engine(&r) == 0)) { /* a shell: encryption on once ready */
        session_desc(&sd, &l, NULL);
        sd.kms_endpoint_url = l.endpoint;
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
        RUN_UNTIL(&r, r.ready, 10000);
        CHECK(ssmb_session_get_info(r.eng, r.s, &info) == SSMB_OK && info.encrypted == 1);
        CHECK_EQ_INT(ssmb_session_send(r.eng, r.s, "echo $((40+2))k\n", 16, &taken), SSMB_OK);
        RUN_UNTIL(&r, strstr(r.out, "42k") != NULL, 10000);
        CHECK(strstr(r.out, "42k") != NULL);
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    if (CHECK(run_engine(&r) == 0)) {
        session_desc(&sd, &l, NULL);
        sd.kms_endpoint_url = l.endpoint;
        ssmb_document_command(&sd, &doc, "seq 1 5000 | tail -n 2; echo secret-out >&2; exit 6");
        CHECK_EQ_INT(ssmb_session_start(r.eng, &sd, now_ms(), &r.s), SSMB_OK);
        RUN_UNTIL(&r, 0, 15000);
        CHECK(r.closed);
        CHECK_EQ_INT(r.exit_code, 6);
        CHECK_EQ_STR(r.out, "4999\n5000\n");
        CHECK_EQ_STR(r.err, "secret-out\n");
        run_end(&r);
        CHECK_EQ_INT((long long)r.mem.live, 0);
    }
    local_stop(&l);
}
