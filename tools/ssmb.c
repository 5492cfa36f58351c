/* ssmb - the command-line client of ssmbridge, on the library's public API.

   usage:
     ssmb start-session --target ID [--document-name D] [--parameters JSON]
                        [--reason R] [COMMON]
     ssmb run --target ID [COMMON] [--] COMMAND...
     ssmb port-forward --target ID --remote-port N [--remote-host H]
                       [--local ADDR] [COMMON]
     ssmb ssh-proxy --target ID [--port N] [COMMON]
   COMMON: [--region R] [--profile P] [--endpoint-url URL] [--ca-bundle FILE] [--payload-size N]
           [-q] [-v | -vv]

   Region, profile and CA bundle also come from AWS_REGION /
   AWS_DEFAULT_REGION, AWS_PROFILE and AWS_CA_BUNDLE. Status lines go to
   stderr (never stdout); -q silences them, -v and -vv add the library's log
   lines. `run` and `ssh-proxy` are quiet unless -v: their stderr belongs to
   the remote command and to ssh. Errors are one line on stderr and a
   non-zero exit status (1; 255 for `run`, whose other statuses are the
   remote command's; 2 for a usage error).

   With a terminal on stdin, start-session puts it in raw mode once the
   session is ready (restored on every way out), sends window size changes,
   passes Ctrl-C, Ctrl-Z and Ctrl-\ to the remote as bytes, and `~.` typed at
   the start of a line disconnects (`~~` sends one `~`). Without a terminal,
   stdin and stdout are streamed as bytes and stdin's end terminates the
   session once what was read has been taken by the remote.

   Port documents (AWS-StartPortForwardingSession[ToRemoteHost], or any
   with a localPortNumber parameter) listen on 127.0.0.1:localPortNumber;
   the bound address is printed as `listening on ADDR`, even with -q (port
   0 picks a free one). --parameters takes the JSON form or the AWS CLI's
   shorthand name=value,name=[v1,v2].

   Plugin mode: invoked as `session-manager-plugin` (a symlink), or with the
   plugin's argument shape (`--version` alone, or seven arguments with
   StartSession third), ssmb behaves like the Session Manager plugin that
   `aws ssm start-session` runs (PROTOCOL.md §10): it attaches to the
   session the AWS CLI started and exits 0 when it ends normally. */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_RUN_FAILED 255
#define IO_CHUNK 4096
#define SHUTDOWN_MS 3000
#define EOF_DRAIN_MS 10000

#define DOC_PORT "AWS-StartPortForwardingSession"
#define DOC_PORT_REMOTE "AWS-StartPortForwardingSessionToRemoteHost"
#define DOC_SSH "AWS-StartSSHSession"
#define DOC_COMMAND "AWS-StartNonInteractiveCommand"
#define PLUGIN_NAME "session-manager-plugin"
#define PLUGIN_ENV "AWS_SSM_START_SESSION_RESPONSE"

/* ---- small helpers -------------------------------------------------------- */

static const char *g_prog = "ssmb";

static void err_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *nonempty(const char *s) {
    return s && *s ? s : NULL;
}

static const char *env_nonempty(const char *name) {
    return nonempty(getenv(name));
}

static char *copy_str(ssmb_str s) {
    char *p = (char *)malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}

/* A decimal port number 0-65535 (min_port and up); -1 when malformed. */
static long parse_port(const char *s, long min_port) {
    char *end;
    long v;
    if (!s || !*s || *s < '0' || *s > '9') return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min_port || v > 65535) return -1;
    return v;
}

/* Writes everything, waiting when the descriptor is non-blocking. -1 on
   an error (EPIPE: the reader is gone). */
static int write_all(int fd, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf;
            pf.fd = fd;
            pf.events = POLLOUT;
            pf.revents = 0;
            (void)poll(&pf, 1, 1000);
        } else {
            return -1;
        }
    }
    return 0;
}

/* ---- JSON input: the --parameters form and the plugin's arguments --------- */

typedef struct json_in {
    ssmb_json doc;
    ssmb_json_token *tokens;
} json_in;

static ssmb_result json_load(json_in *j, const char *text) {
    size_t len = strlen(text);
    size_t max = len + 2; /* every token takes at least one character */
    j->tokens = (ssmb_json_token *)calloc(max, sizeof *j->tokens);
    if (!j->tokens) return SSMB_ERR_NOMEM;
    return ssmb_json_parse(&j->doc, text, len, j->tokens, max);
}

static void json_free(json_in *j) {
    free(j->tokens);
    j->tokens = NULL;
}

/* A string value, unescaped into a fresh C string; NULL when tok is not a
   string or its escapes are bad. */
static char *json_string(const json_in *j, int32_t tok) {
    ssmb_str raw;
    char *out;
    size_t n = 0;
    if (tok < 0 || ssmb_json_get_str(&j->doc, tok, &raw) != SSMB_OK) return NULL;
    out = (char *)malloc(raw.len + 1);
    if (!out) return NULL;
    if (ssmb_json_unescape(raw, out, raw.len + 1, &n) != SSMB_OK || memchr(out, '\0', n)) {
        free(out);
        return NULL;
    }
    return out;
}

/* The token after tok's whole subtree. The header offers no iteration of an
   object's members, so it is done here from the tokens' text positions:
   a token's descendants are the following tokens that start before it ends. */
static int32_t json_next(const json_in *j, int32_t tok) {
    ssmb_str t = ssmb_json_raw(&j->doc, tok);
    int32_t k = tok + 1;
    while (k < j->doc.count && ssmb_json_raw(&j->doc, k).ptr < t.ptr + t.len) k++;
    return k;
}

#define MAX_PARAMS 16
#define MAX_VALUES 64

/* StartSession Parameters: name -> list of strings. */
typedef struct params {
    ssmb_api_parameter p[MAX_PARAMS];
    const char *values[MAX_VALUES];
    uint32_t count;
    uint32_t nvalues;
} params;

static const char *params_first(const params *ps, const char *name) {
    uint32_t i;
    for (i = 0; i < ps->count; i++)
        if (strcmp(ps->p[i].name, name) == 0) return ps->p[i].value_count ? ps->p[i].values[0] : "";
    return NULL;
}

/* Reads the object at tok: {"name": ["v", ...] or "v", ...}. A message for
   the user in why on failure. */
static int params_from_json(params *ps, const json_in *j, int32_t obj, const char **why) {
    int32_t members, m, k;
    if (ssmb_json_kind(&j->doc, obj) != SSMB_JSON_OBJECT) {
        *why = "parameters must be a JSON object";
        return -1;
    }
    members = ssmb_json_size(&j->doc, obj);
    for (m = 0, k = obj + 1; m < members; m++) {
        int32_t v = k + 1, n, i;
        char *name = json_string(j, k);
        if (!name || !*name) {
            *why = "a parameter name is not a valid string";
            return -1;
        }
        if (params_first(ps, name) || ps->count == MAX_PARAMS) {
            *why = ps->count == MAX_PARAMS ? "too many parameters" : "a parameter is given twice";
            return -1;
        }
        ps->p[ps->count].name = name;
        ps->p[ps->count].values = ps->values + ps->nvalues;
        if (ssmb_json_kind(&j->doc, v) == SSMB_JSON_STRING) {
            n = 1;
        } else if (ssmb_json_kind(&j->doc, v) == SSMB_JSON_ARRAY) {
            n = ssmb_json_size(&j->doc, v);
        } else {
            *why = "a parameter's value must be a list of strings";
            return -1;
        }
        if ((uint32_t)n > MAX_VALUES - ps->nvalues) {
            *why = "too many parameter values";
            return -1;
        }
        for (i = 0; i < n; i++) {
            int32_t e = ssmb_json_kind(&j->doc, v) == SSMB_JSON_STRING ? v : ssmb_json_at(&j->doc, v, i);
            char *s = json_string(j, e);
            if (!s) {
                *why = "a parameter's value must be a list of strings";
                return -1;
            }
            ps->values[ps->nvalues++] = s;
        }
        ps->p[ps->count].value_count = (size_t)n;
        ps->count++;
        k = json_next(j, v);
    }
    return 0;
}

/* One word of the AWS CLI's shorthand: "quoted" or up to a character of
   stop; a fresh C string, or NULL. */
static char *shorthand_word(const char **p, const char *stop) {
    const char *s = *p, *e;
    char *w;
    if (*s == '"') {
        e = strchr(s + 1, '"');
        if (!e) return NULL;
        *p = e + 1;
        s++;
    } else {
        e = s + strcspn(s, stop);
        *p = e;
    }
    w = (char *)malloc((size_t)(e - s) + 1);
    if (!w) return NULL;
    memcpy(w, s, (size_t)(e - s));
    w[e - s] = '\0';
    return w;
}

/* The AWS CLI's shorthand: name=value,name=[v1,v2] (names and values may be
   "quoted"). */
static int params_shorthand(params *ps, const char *text, const char **why) {
    const char *p = text;
    *why = "--parameters is neither JSON ({\"name\":[\"value\"]}) nor name=value,name=[v1,v2]";
    while (*p) {
        char *name = shorthand_word(&p, "=");
        size_t n = 0;
        if (!name || !*name || *p++ != '=' || ps->count == MAX_PARAMS) return -1;
        if (params_first(ps, name)) {
            *why = "a parameter is given twice";
            return -1;
        }
        ps->p[ps->count].name = name;
        ps->p[ps->count].values = ps->values + ps->nvalues;
        if (*p == '[') {
            p++;
            while (*p != ']') {
                char *v = shorthand_word(&p, ",]");
                if (!v || ps->nvalues == MAX_VALUES || (*p != ',' && *p != ']')) return -1;
                ps->values[ps->nvalues++] = v;
                n++;
                if (*p == ',') p++;
            }
            p++;
        } else {
            char *v = shorthand_word(&p, ",");
            if (!v || ps->nvalues == MAX_VALUES) return -1;
            ps->values[ps->nvalues++] = v;
            n = 1;
        }
        ps->p[ps->count++].value_count = n;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return 0;
}

static int params_parse(params *ps, const char *text, const char **why) {
    json_in j;
    int rc;
    const char *t = text;
    while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r') t++;
    if (*t && *t != '{' && *t != '[') return params_shorthand(ps, text, why);
    memset(&j, 0, sizeof j);
    if (json_load(&j, text) != SSMB_OK) {
        json_free(&j);
        *why = "--parameters is not valid JSON (expected {\"name\":[\"value\"],...})";
        return -1;
    }
    rc = params_from_json(ps, &j, 0, why);
    json_free(&j);
    return rc;
}

/* ---- the terminal ----------------------------------------------------------- */

static struct termios g_saved_tty;
static volatile sig_atomic_t g_tty_raw;
static int g_sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t g_interrupts;

/* Async-signal-safe: tcsetattr is. */
static void tty_restore(void) {
    if (g_tty_raw) {
        tcsetattr(STDIN_FILENO, TCSADRAIN, &g_saved_tty);
        g_tty_raw = 0;
    }
}

static int tty_raw(void) {
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &g_saved_tty) != 0) return -1;
    t = g_saved_tty;
    t.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_oflag &= (tcflag_t)~OPOST;
    t.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= (tcflag_t) ~(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) != 0) return -1; /* typeahead kept */
    g_tty_raw = 1;
    return 0;
}

static int tty_size(uint32_t *cols, uint32_t *rows) {
    struct winsize ws;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) return -1;
    *cols = ws.ws_col;
    *rows = ws.ws_row;
    return 0;
}

static void on_signal(int sig) {
    int saved = errno;
    char c = sig == SIGWINCH ? 'W' : sig == SIGINT ? 'I' : 'T';
    if (sig == SIGTERM || sig == SIGHUP) {
        tty_restore(); /* at once: the end may take a few seconds (terminate, shutdown) */
    } else if (sig == SIGINT && ++g_interrupts > 2) {
        tty_restore();
        _exit(130); /* the third Ctrl-C does not wait for the session's end */
    }
    if (g_sig_pipe[1] >= 0) (void)!write(g_sig_pipe[1], &c, 1);
    errno = saved;
}

static int signals_install(void) {
    struct sigaction sa;
    int i;
    if (pipe(g_sig_pipe) != 0) return -1;
    for (i = 0; i < 2; i++) {
        fcntl(g_sig_pipe[i], F_SETFL, fcntl(g_sig_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(g_sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    atexit(tty_restore);
    return 0;
}

/* ---- a session and its loop -------------------------------------------------- */

enum { MODE_AUTO = 0, MODE_TERMINAL, MODE_STDIO, MODE_FORWARD, MODE_RUN };

typedef struct config {
    ssmb_session_desc sd;
    ssmb_document doc;
    params ps;
    const char *ca_file;
    const char *listen;         /* MODE_FORWARD */
    int mode;
    int verbose;                /* 0, 1 (-v), 2 (-vv) */
    int quiet;
    int quiet_default;          /* status lines only with -v */
    int is_run;                 /* exit status semantics of `run` */
    int plugin;                 /* plugin mode: a normal end is 0, whatever the remote's exit code
                                   (the AWS CLI turns any other status into its own error) */
} config;

typedef struct app {
    const config *cfg;
    ssmb_engine *eng;
    ssmb_session s;
    ssmb_forward fwd;
    int mode;
    uint64_t now;
    uint32_t last_state;
    uint32_t max_state;
    int started_line;           /* "Starting session" printed */
    int closed;                 /* SESSION_CLOSED seen */
    int32_t close_result;
    int have_exit;
    int32_t exit_code;
    int failed;                 /* an error line was printed */
    int ending;                 /* terminate asked */
    uint64_t end_at;
    int stdin_eof;
    uint64_t eof_at;
    int stdout_gone;
    size_t max_space;           /* the session's largest send space seen (empty buffer) */
    int line_start, tilde;      /* the ~. escape */
    uint8_t pend[IO_CHUNK + 8];
    size_t pend_len;
    int interrupts;             /* run: SIGINT count */
    char last_log[256];         /* the last error the library logged */
} app;

static int status_on(const app *a) {
    if (a->cfg->quiet) return 0;
    return !a->cfg->quiet_default || a->cfg->verbose > 0;
}

static void status_line(const app *a, const char *fmt, ...) {
    va_list ap;
    if (!status_on(a)) return;
    va_start(ap, fmt);
    if (g_tty_raw) fputc('\r', stderr);
    vfprintf(stderr, fmt, ap);
    fputs(g_tty_raw ? "\r\n" : "\n", stderr);
    va_end(ap);
}

static void on_log(const char *tag, uint32_t level, uint32_t item, const char *msg, uint32_t line, void *user) {
    app *a = (app *)user;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    (void)item;
    if (level == SSMB_LOG_ERROR && msg) snprintf(a->last_log, sizeof a->last_log, "%s", msg);
    if (a->cfg->verbose <= 0 || level > (uint32_t)(a->cfg->verbose >= 2 ? SSMB_LOG_DEBUG : SSMB_LOG_INFO)) return;
    fprintf(stderr, "%s%s: [%s] %s: %s (line %u)%s", g_tty_raw ? "\r" : "", g_prog, tag ? tag : "-",
            names[level < 4 ? level : 3], msg ? msg : "", (unsigned)line, g_tty_raw ? "\r\n" : "\n");
}

/* The SSM endpoint as the user will know it, for "cannot connect to". */
static void endpoint_text(const app *a, char *out, size_t cap) {
    ssmb_api_endpoint_desc d;
    ssmb_session_info info;
    size_t n = 0;
    memset(&d, 0, sizeof d);
    d.service = "ssm";
    d.region = a->cfg->sd.region;
    d.endpoint_url = a->cfg->sd.endpoint_url;
    d.getenv_fn = ssmb_getenv_system;
    if (!d.region && ssmb_session_get_info(a->eng, a->s, &info) == SSMB_OK && info.region.len)
        d.region = copy_str(info.region); /* a few bytes, once, on the way out */
    if (!d.region) d.region = env_nonempty("AWS_REGION") ? env_nonempty("AWS_REGION") : env_nonempty("AWS_DEFAULT_REGION");
    if (ssmb_api_endpoint_resolve(&d, out, cap, &n, NULL) != SSMB_OK) snprintf(out, cap, "the SSM endpoint");
}

/* One line naming the cause of a failure. */
static void report_failure(app *a, int32_t result, ssmb_str msg) {
    char ep[512];
    const char *m = msg.len ? NULL : (a->last_log[0] ? a->last_log : NULL);
    int ml = msg.len ? (int)msg.len : m ? (int)strlen(m) : 0;
    const char *mp = msg.len ? msg.ptr : m ? m : "";
    const char *sep = ml ? ": " : "";
    tty_restore();
    a->failed = 1;
    switch (result) {
    case SSMB_ERR_CREDENTIALS:
        err_line("no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile "
                 "with --profile / AWS_PROFILE)%s%.*s", sep, ml, mp);
        break;
    case SSMB_ERR_TLS_CERT:
        err_line("TLS certificate refused (give the CA with --ca-bundle or AWS_CA_BUNDLE)%s%.*s", sep, ml, mp);
        break;
    case SSMB_ERR_CONNECT:
    case SSMB_ERR_DNS:
    case SSMB_ERR_TIMEOUT:
        if (a->max_state <= SSMB_SESSION_STARTING) endpoint_text(a, ep, sizeof ep);
        else snprintf(ep, sizeof ep, "the session's stream URL");
        if (ml) err_line("cannot connect to %s: %.*s", ep, ml, mp);
        else err_line("cannot connect to %s: %s", ep, ssmb_result_str((ssmb_result)result));
        break;
    case SSMB_ERR_AWS_API:
        if (ml) err_line("%.*s", ml, mp);
        else err_line("the AWS API refused the request (%s)", ssmb_result_str((ssmb_result)result));
        break;
    default:
        if (!a->cfg->sd.region && ml && strstr(mp, "region") && result == SSMB_ERR_INVALID_ARG)
            err_line("no AWS region: give --region, or set AWS_REGION or a profile's region");
        else if (ml) err_line("%.*s (%s)", ml, mp, ssmb_result_str((ssmb_result)result));
        else err_line("%s", ssmb_result_str((ssmb_result)result));
        break;
    }
}

static void request_end(app *a) {
    if (a->ending || a->closed) return;
    a->ending = 1;
    a->end_at = a->now;
    (void)ssmb_session_terminate(a->eng, a->s, a->now);
}

static void on_state(app *a, uint32_t st) {
    ssmb_session_info info;
    if (st > a->max_state && st < SSMB_SESSION_CLOSING) a->max_state = st;
    if (!a->started_line && st >= SSMB_SESSION_CONNECTING && st <= SSMB_SESSION_READY &&
        ssmb_session_get_info(a->eng, a->s, &info) == SSMB_OK && info.session_id.len) {
        a->started_line = 1;
        status_line(a, "Starting session with SessionId: %.*s", (int)info.session_id.len, info.session_id.ptr);
    }
    if (st == SSMB_SESSION_RECONNECTING) status_line(a, "reconnecting");
    if (st == SSMB_SESSION_READY && a->last_state == SSMB_SESSION_RECONNECTING) status_line(a, "reconnected");
    if (st == SSMB_SESSION_READY && a->mode == MODE_TERMINAL && !g_tty_raw && !a->ending) {
        uint32_t cols, rows;
        if (tty_raw() != 0) err_line("cannot put the terminal in raw mode: %s", strerror(errno));
        if (tty_size(&cols, &rows) == 0) (void)ssmb_session_resize(a->eng, a->s, cols, rows);
    }
    a->last_state = st;
}

static void on_output(app *a, int fd, const uint8_t *data, size_t len) {
    if (a->stdout_gone && fd == STDOUT_FILENO) return;
    if (write_all(fd, data, len) != 0 && fd == STDOUT_FILENO) {
        a->stdout_gone = 1;
        request_end(a);
    }
}

static void on_closed(app *a, const ssmb_event *ev) {
    a->closed = 1;
    a->close_result = ev->result;
    tty_restore();
    if (ev->result < 0 && a->have_exit && a->mode == MODE_RUN) {
        /* The command ran to its end; a failure after that only matters with -v. */
        if (a->cfg->verbose > 0) report_failure(a, ev->result, ev->message);
    } else if (ev->result < 0) {
        report_failure(a, ev->result, ev->message);
    } else if (a->cfg->is_run && !a->have_exit) {
        a->failed = 1;
        if (!a->stdout_gone) /* a reader that went away (| head) needs no explanation */
            err_line("the session closed without the command's exit code%s%.*s", ev->message.len ? ": " : "",
                     (int)ev->message.len, ev->message.ptr);
    } else if (ev->message.len) {
        status_line(a, "session closed: %.*s", (int)ev->message.len, ev->message.ptr);
    } else {
        status_line(a, "session closed");
    }
}

static void on_event(ssmb_engine *eng, const ssmb_event *ev, void *user) {
    app *a = (app *)user;
    (void)eng;
    switch (ev->type) {
    case SSMB_EVENT_SESSION_STATE: on_state(a, ev->state); break;
    case SSMB_EVENT_SESSION_OUTPUT: on_output(a, STDOUT_FILENO, ev->data, ev->len); break;
    case SSMB_EVENT_SESSION_STDERR: on_output(a, STDERR_FILENO, ev->data, ev->len); break;
    case SSMB_EVENT_SESSION_EXIT:
        a->have_exit = 1;
        a->exit_code = ev->exit_code;
        break;
    case SSMB_EVENT_SESSION_CLOSED: on_closed(a, ev); break;
    case SSMB_EVENT_FORWARD_OPEN:
        if (a->cfg->verbose > 0 && !a->cfg->quiet) status_line(a, "connection %d opened", (int)ev->detail);
        break;
    case SSMB_EVENT_FORWARD_CLOSE:
        if (a->cfg->verbose > 0 && !a->cfg->quiet) status_line(a, "connection %d closed", (int)ev->detail);
        break;
    default: break;
    }
}

/* Sends what waits; keeps the rest for SESSION_WRITABLE. */
static void flush_input(app *a) {
    size_t took = 0;
    ssmb_result r;
    if (!a->pend_len || a->closed) return;
    r = ssmb_session_send(a->eng, a->s, a->pend, a->pend_len, &took);
    if (r == SSMB_AGAIN) return;
    if (r != SSMB_OK) {
        err_line("cannot send to the session: %s", ssmb_result_str(r));
        a->failed = 1;
        a->pend_len = 0;
        request_end(a);
        return;
    }
    if (took > a->pend_len) took = a->pend_len;
    memmove(a->pend, a->pend + took, a->pend_len - took);
    a->pend_len -= took;
}

/* Keystrokes through the ~. escape: '~' right after a newline (or at the
   start) is held; '.' then disconnects, '~' sends one '~', anything else
   sends both. Returns 1 to disconnect. */
static int escape_filter(app *a, const uint8_t *in, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (a->tilde) {
            a->tilde = 0;
            if (c == '.') return 1;
            a->pend[a->pend_len++] = '~';
            if (c == '~') {
                a->line_start = 0;
                continue;
            }
        } else if (a->line_start && c == '~') {
            a->tilde = 1;
            continue;
        }
        a->pend[a->pend_len++] = c;
        a->line_start = c == '\r' || c == '\n';
    }
    return 0;
}

static int wants_stdin(app *a) {
    size_t space;
    if (a->mode != MODE_TERMINAL && a->mode != MODE_STDIO) return 0;
    if (a->stdin_eof || a->ending || a->closed || a->pend_len) return 0;
    if (a->mode == MODE_TERMINAL && !g_tty_raw) return 0;
    space = ssmb_session_send_space(a->eng, a->s);
    if (space > a->max_space) a->max_space = space;
    return space > 0;
}

static void read_stdin(app *a) {
    uint8_t buf[IO_CHUNK];
    size_t space = ssmb_session_send_space(a->eng, a->s);
    ssize_t n;
    if (space > sizeof buf) space = sizeof buf;
    if (space == 0) return;
    n = read(STDIN_FILENO, buf, space);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        a->stdin_eof = 1;
        a->eof_at = a->now;
        return;
    }
    if (a->mode == MODE_TERMINAL) {
        if (escape_filter(a, buf, (size_t)n)) {
            flush_input(a); /* what was typed before the escape */
            tty_restore();
            status_line(a, "\ndisconnecting");
            request_end(a);
            return;
        }
    } else {
        memcpy(a->pend, buf, (size_t)n);
        a->pend_len = (size_t)n;
    }
    flush_input(a);
}

static void handle_signals(app *a) {
    char c[16];
    ssize_t n, i;
    while ((n = read(g_sig_pipe[0], c, sizeof c)) > 0) {
        for (i = 0; i < n; i++) {
            if (c[i] == 'W' && a->mode == MODE_TERMINAL && g_tty_raw) {
                uint32_t cols, rows;
                if (tty_size(&cols, &rows) == 0) (void)ssmb_session_resize(a->eng, a->s, cols, rows);
            } else if (c[i] == 'I' && a->mode == MODE_RUN && !a->interrupts++) {
                /* The agent sends SIGINT to the command for a payload with 0x03 (§7.2). */
                size_t took = 0;
                if (ssmb_session_send(a->eng, a->s, "\x03", 1, &took) != SSMB_OK || took != 1) request_end(a);
            } else if (c[i] == 'I' || c[i] == 'T') {
                request_end(a);
            }
        }
    }
}

/* One turn: poll the engine's descriptors (and stdin, and the signal pipe)
   for at most max_ms, then let the engine work. */
static int turn(app *a, int with_stdin, int max_ms) {
    static struct pollfd *pfd;
    static ssmb_pollfd *efd;
    static size_t cap;
    size_t count = 0, n, i, ready = 0;
    int timeout, extra_stdin = -1, extra_sig;
    if (ssmb_engine_fds(a->eng, NULL, 0, &count) < 0) return -1;
    if (count + 2 > cap) {
        size_t nc = count + 16;
        struct pollfd *np = (struct pollfd *)realloc(pfd, nc * sizeof *np);
        ssmb_pollfd *ne;
        if (!np) return -1;
        pfd = np;
        ne = (ssmb_pollfd *)realloc(efd, nc * sizeof *ne);
        if (!ne) return -1;
        efd = ne;
        cap = nc;
    }
    if (ssmb_engine_fds(a->eng, efd, cap - 2, &count) < 0) return -1;
    if (count > cap - 2) count = cap - 2;
    for (i = 0; i < count; i++) {
        pfd[i].fd = efd[i].fd;
        pfd[i].events = (short)(((efd[i].events & SSMB_POLLIN) ? POLLIN : 0) |
                                ((efd[i].events & SSMB_POLLOUT) ? POLLOUT : 0));
        pfd[i].revents = 0;
    }
    n = count;
    if (with_stdin && wants_stdin(a)) {
        extra_stdin = (int)n;
        pfd[n].fd = STDIN_FILENO;
        pfd[n].events = POLLIN;
        pfd[n++].revents = 0;
    }
    extra_sig = (int)n;
    pfd[n].fd = g_sig_pipe[0];
    pfd[n].events = POLLIN;
    pfd[n++].revents = 0;
    timeout = ssmb_engine_timeout_ms(a->eng, monotonic_ms(), max_ms);
    if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) return -1;
    for (i = 0; i < count; i++) {
        uint16_t re = 0;
        if (!pfd[i].revents) continue;
        if (pfd[i].revents & POLLIN) re |= SSMB_POLLIN;
        if (pfd[i].revents & POLLOUT) re |= SSMB_POLLOUT;
        if (pfd[i].revents & (POLLERR | POLLNVAL)) re |= SSMB_POLLERR;
        if (pfd[i].revents & POLLHUP) re |= SSMB_POLLHUP;
        efd[ready] = efd[i];
        efd[ready++].revents = re;
    }
    a->now = monotonic_ms();
    (void)ssmb_engine_process(a->eng, efd, ready, a->now);
    if (pfd[extra_sig].revents) handle_signals(a);
    if (extra_stdin >= 0 && pfd[extra_stdin].revents && !a->closed) read_stdin(a);
    return 0;
}

/* Listening address of a forward, printed for the user (always: with port
   0 it is the only way to learn the port). */
static int open_forward(app *a) {
    ssmb_forward_desc fd;
    char addr[256];
    ssmb_result r;
    memset(&fd, 0, sizeof fd);
    fd.listen = a->cfg->listen ? a->cfg->listen : "127.0.0.1:0";
    fd.events = a->cfg->verbose > 0 ? 1u : 0u;
    r = ssmb_forward_open(a->eng, a->s, &fd, &a->fwd);
    if (r != SSMB_OK) {
        err_line("cannot listen on %s: %s%s%s", fd.listen, ssmb_result_str(r), a->last_log[0] ? ": " : "",
                 a->last_log);
        return -1;
    }
    if (ssmb_forward_address(a->eng, a->fwd, addr, sizeof addr) != SSMB_OK) snprintf(addr, sizeof addr, "%s", fd.listen);
    fprintf(stderr, "listening on %s\n", addr);
    return 0;
}

/* What the document asks of the client: a listener for the port documents
   (and any document with a localPortNumber), stdio for SSH, the exit code of
   a non-interactive command, else a terminal or stdio. */
static int decide_mode(config *c, const char *doc, const char **why) {
    static char listen[64];
    const char *lp = params_first(&c->ps, "localPortNumber");
    if ((doc && (strcmp(doc, DOC_PORT) == 0 || strcmp(doc, DOC_PORT_REMOTE) == 0)) || lp) {
        long port = lp && *lp ? parse_port(lp, 0) : 0;
        if (port < 0) {
            *why = "localPortNumber is not a port number (0-65535)";
            return -1;
        }
        snprintf(listen, sizeof listen, "127.0.0.1:%ld", port);
        c->listen = listen;
        c->mode = MODE_FORWARD;
    } else if (doc && strcmp(doc, DOC_SSH) == 0) {
        c->mode = MODE_STDIO;
    } else if (doc && strcmp(doc, DOC_COMMAND) == 0) {
        c->mode = MODE_RUN;
    } else {
        c->mode = MODE_AUTO;
    }
    return 0;
}

static int exit_status(const app *a) {
    if (a->have_exit && !a->cfg->plugin) return a->exit_code < 0 || a->exit_code > 255 ? 255 : (int)a->exit_code;
    if (a->failed || a->close_result < 0 || !a->closed) return a->cfg->is_run ? EXIT_RUN_FAILED : 1;
    return 0;
}

static int run_session(config *c) {
    static app a; /* large (buffers); one per process */
    ssmb_desc d;
    ssmb_result r;
    uint64_t deadline;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.mode = c->mode;
    a.line_start = 1;
    if (a.mode == MODE_AUTO) a.mode = isatty(STDIN_FILENO) ? MODE_TERMINAL : MODE_STDIO;
    if (a.mode == MODE_TERMINAL && !c->sd.cols) (void)tty_size(&c->sd.cols, &c->sd.rows);
    /* Bulk sessions keep more in flight than the library's small default:
       the window is what carries throughput over a long round trip. */
    if ((a.mode == MODE_FORWARD || a.mode == MODE_STDIO) && !c->sd.send_buffer_bytes)
        c->sd.send_buffer_bytes = 512u * 1024u;
    if (signals_install() != 0) {
        err_line("cannot set up signal handling: %s", strerror(errno));
        return 1;
    }
    memset(&d, 0, sizeof d);
    d.ca_file = c->ca_file;
    d.logger.log_fn = on_log;
    d.logger.user_data = &a;
    d.event_fn = on_event;
    d.event_user_data = &a;
    d.max_sessions = 1;
    r = ssmb_engine_create(&d, &a.eng);
    if (r != SSMB_OK) {
        if (c->ca_file) err_line("cannot load the CA bundle %s: %s", c->ca_file, ssmb_result_str(r));
        else err_line("cannot start: %s%s%s", ssmb_result_str(r), a.last_log[0] ? ": " : "", a.last_log);
        return c->is_run ? EXIT_RUN_FAILED : 1;
    }
    a.now = monotonic_ms();
    r = ssmb_session_start(a.eng, &c->sd, a.now, &a.s);
    if (r != SSMB_OK) {
        ssmb_str none = {"", 0};
        report_failure(&a, r, none);
        ssmb_engine_destroy(a.eng);
        return c->is_run ? EXIT_RUN_FAILED : 1;
    }
    if (a.mode == MODE_FORWARD && open_forward(&a) != 0) {
        a.failed = 1;
        request_end(&a);
    }
    while (!a.closed) {
        if (turn(&a, 1, 1000) != 0) {
            err_line("poll failed: %s", strerror(errno));
            a.failed = 1;
            break;
        }
        flush_input(&a);
        if (a.stdin_eof && !a.ending && !a.closed) {
            /* Ends once what was read has been taken and acknowledged (the
               send space is back to its largest), or after EOF_DRAIN_MS. */
            size_t space = ssmb_session_send_space(a.eng, a.s);
            if (!a.pend_len && (space >= a.max_space || a.now - a.eof_at > EOF_DRAIN_MS)) request_end(&a);
        }
        if (a.ending && a.now - a.end_at > 10000) break; /* terminate_timeout_ms promises less */
    }
    tty_restore();
    deadline = a.now + SHUTDOWN_MS;
    while (!ssmb_engine_shutdown(a.eng, a.now, deadline) && a.now < deadline)
        if (turn(&a, 0, 100) != 0) break;
    ssmb_engine_destroy(a.eng);
    return exit_status(&a);
}

/* ---- plugin mode -------------------------------------------------------------- */

static int plugin_fail(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", g_prog);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

static int is_aws_host(ssmb_str host) {
    static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn"};
    size_t i, k;
    for (i = 0; i < 2; i++) {
        size_t n = strlen(suffixes[i]);
        int same = host.len > n;
        for (k = 0; same && k < n; k++) {
            char h = host.ptr[host.len - n + k];
            if (h >= 'A' && h <= 'Z') h = (char)(h - 'A' + 'a');
            same = h == suffixes[i][k];
        }
        if (same) return 1;
    }
    return 0;
}

static int plugin_main(int argc, char **argv) {
    static config c;
    json_in resp, req;
    const char *response;
    char *doc_name = NULL;
    const char *why = NULL;
    memset(&c, 0, sizeof c);
    memset(&resp, 0, sizeof resp);
    memset(&req, 0, sizeof req);
    if (argc == 1) {
        printf("\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s\n", SSMB_CHANNEL_CLIENT_VERSION);
        return 0;
    }
    if (argc < 4 || argc > 7) return plugin_fail("Unknown operation %s (the AWS CLI runs this plugin)", argv[1]);
    if (strcmp(argv[3], "StartSession") != 0) return plugin_fail("Invalid Operation %s", argv[3]);
    /* argv[1]: the StartSession response, or the name of the variable holding it. */
    response = argv[1];
    if (strncmp(response, PLUGIN_ENV, strlen(PLUGIN_ENV)) == 0) {
        const char *v = getenv(PLUGIN_ENV);
        if (!v || !*v) return plugin_fail("the environment variable %s is not set", PLUGIN_ENV);
        response = strdup(v);
        unsetenv(PLUGIN_ENV);
        if (!response) return plugin_fail("%s", "out of memory");
    }
    if (json_load(&resp, response) != SSMB_OK || ssmb_json_kind(&resp.doc, 0) != SSMB_JSON_OBJECT)
        return plugin_fail("%s", "the StartSession response (argument 1) is not a JSON object");
    c.sd.session_id = json_string(&resp, ssmb_json_find(&resp.doc, 0, "SessionId"));
    c.sd.token_value = json_string(&resp, ssmb_json_find(&resp.doc, 0, "TokenValue"));
    c.sd.stream_url = json_string(&resp, ssmb_json_find(&resp.doc, 0, "StreamUrl"));
    if (!nonempty(c.sd.session_id)) return plugin_fail("%s", "the StartSession response has no SessionId");
    if (!nonempty(c.sd.token_value)) return plugin_fail("%s", "the StartSession response has no TokenValue");
    if (!nonempty(c.sd.stream_url)) return plugin_fail("%s", "the StartSession response has no StreamUrl");
    c.sd.region = nonempty(argv[2]);
    c.sd.profile = argc > 4 ? nonempty(argv[4]) : NULL;
    /* argv[5]: the request's parameters: Target, DocumentName, Parameters. */
    if (argc > 5 && nonempty(argv[5])) {
        int32_t t;
        if (json_load(&req, argv[5]) != SSMB_OK || ssmb_json_kind(&req.doc, 0) != SSMB_JSON_OBJECT)
            return plugin_fail("%s", "the request parameters (argument 5) are not a JSON object");
        t = ssmb_json_find(&req.doc, 0, "Target");
        if (t >= 0 && !(c.sd.target = json_string(&req, t))) return plugin_fail("%s", "Target is not a string");
        t = ssmb_json_find(&req.doc, 0, "DocumentName");
        if (t >= 0 && !(doc_name = json_string(&req, t))) return plugin_fail("%s", "DocumentName is not a string");
        t = ssmb_json_find(&req.doc, 0, "Parameters");
        if (t >= 0 && params_from_json(&c.ps, &req, t, &why) != 0) return plugin_fail("Parameters: %s", why);
    }
    /* argv[6]: the SSM endpoint; one outside AWS is an emulator's. */
    if (argc > 6 && nonempty(argv[6])) {
        ssmb_url u;
        if (ssmb_url_parse(argv[6], strlen(argv[6]), &u) != SSMB_OK)
            return plugin_fail("the endpoint (argument 6) is not a URL: %s", argv[6]);
        c.sd.endpoint_url = argv[6];
        if (!is_aws_host(u.host)) c.sd.allow_custom_stream_host = 1;
    }
    if (decide_mode(&c, doc_name, &why) != 0) return plugin_fail("%s", why);
    c.ca_file = env_nonempty("AWS_CA_BUNDLE");
    c.plugin = 1;
    json_free(&resp);
    json_free(&req);
    return run_session(&c);
}

/* ---- the command line ----------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: ssmb start-session --target ID [--document-name D] [--parameters JSON] [--reason R] [COMMON]\n"
            "       ssmb run --target ID [COMMON] [--] COMMAND...\n"
            "       ssmb port-forward --target ID --remote-port N [--remote-host H] [--local ADDR] [COMMON]\n"
            "       ssmb ssh-proxy --target ID [--port N] [COMMON]\n"
            "       ssmb --version\n"
            "COMMON: [--region R] [--profile P] [--endpoint-url URL] [--ca-bundle FILE] [--payload-size N] [-q] [-v|-vv]\n"
            "ADDR: host:port (port 0: any free one) or unix:/path; default 127.0.0.1:0\n"
            "In a terminal, ~. at the start of a line disconnects.\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", g_prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see %s --help)\n", g_prog);
    return EXIT_USAGE;
}

enum { CMD_START = 1, CMD_RUN, CMD_PORT, CMD_SSH };

typedef struct cli {
    int cmd;
    const char *target, *document, *parameters, *reason, *region, *profile, *endpoint, *ca_bundle;
    const char *remote_port, *remote_host, *local, *port;
    const char *payload_size;
    int verbose, quiet;
    char **words;
    int nwords;
} cli;

/* Which option takes a value, and which commands it belongs to (bit 1 << cmd). */
typedef struct option {
    const char *name;
    size_t offset;
    unsigned cmds;
} option;

#define ALL_CMDS ((1u << CMD_START) | (1u << CMD_RUN) | (1u << CMD_PORT) | (1u << CMD_SSH))
static const option g_options[] = {
    {"--target", offsetof(cli, target), ALL_CMDS},
    {"--region", offsetof(cli, region), ALL_CMDS},
    {"--profile", offsetof(cli, profile), ALL_CMDS},
    {"--endpoint-url", offsetof(cli, endpoint), ALL_CMDS},
    {"--ca-bundle", offsetof(cli, ca_bundle), ALL_CMDS},
    {"--document-name", offsetof(cli, document), 1u << CMD_START},
    {"--parameters", offsetof(cli, parameters), 1u << CMD_START},
    {"--reason", offsetof(cli, reason), (1u << CMD_START) | (1u << CMD_RUN) | (1u << CMD_PORT) | (1u << CMD_SSH)},
    {"--remote-port", offsetof(cli, remote_port), 1u << CMD_PORT},
    {"--remote-host", offsetof(cli, remote_host), 1u << CMD_PORT},
    {"--local", offsetof(cli, local), 1u << CMD_PORT},
    {"--port", offsetof(cli, port), 1u << CMD_SSH},
    {"--payload-size", offsetof(cli, payload_size), ALL_CMDS},
};

static int parse_cli(int argc, char **argv, cli *o) {
    int i;
    const char *cmd = argv[1];
    if (strcmp(cmd, "start-session") == 0) o->cmd = CMD_START;
    else if (strcmp(cmd, "run") == 0) o->cmd = CMD_RUN;
    else if (strcmp(cmd, "port-forward") == 0) o->cmd = CMD_PORT;
    else if (strcmp(cmd, "ssh-proxy") == 0) o->cmd = CMD_SSH;
    else return usage_error("unknown command '%s'", cmd);
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *eq;
        size_t k, nlen;
        if (strcmp(a, "--") == 0) {
            if (o->cmd != CMD_RUN) return usage_error("unexpected '--' for %s", cmd);
            o->words = argv + i + 1;
            o->nwords = argc - i - 1;
            break;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose++;
            continue;
        }
        if (strcmp(a, "-vv") == 0) {
            o->verbose += 2;
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o->cmd != CMD_RUN) return usage_error("unexpected argument '%s'", a);
            o->words = argv + i; /* the command starts here */
            o->nwords = argc - i;
            break;
        }
        eq = strchr(a, '=');
        nlen = eq ? (size_t)(eq - a) : strlen(a);
        for (k = 0; k < sizeof g_options / sizeof g_options[0]; k++)
            if (strlen(g_options[k].name) == nlen && strncmp(g_options[k].name, a, nlen) == 0) break;
        if (k == sizeof g_options / sizeof g_options[0]) return usage_error("unknown option '%s'", a);
        if (!(g_options[k].cmds & (1u << o->cmd))) return usage_error("option '%s' is not for this command", g_options[k].name);
        if (!eq && i + 1 >= argc) return usage_error("option '%s' needs a value", a);
        *(const char **)(void *)((char *)o + g_options[k].offset) = eq ? eq + 1 : argv[++i];
    }
    if (!nonempty(o->target)) return usage_error("%s needs --target ID", cmd);
    if (o->cmd == CMD_RUN && o->nwords == 0) return usage_error("%s", "run needs a COMMAND");
    if (o->cmd == CMD_PORT && !o->remote_port) return usage_error("%s", "port-forward needs --remote-port N");
    if (o->remote_port && parse_port(o->remote_port, 1) < 0)
        return usage_error("--remote-port '%s' is not a port number (1-65535)", o->remote_port);
    if (o->port && parse_port(o->port, 1) < 0) return usage_error("--port '%s' is not a port number (1-65535)", o->port);
    return 0;
}

/* The local port of a host:port address (0 for unix: and port 0); -1 when
   malformed. */
static long local_port(const char *addr) {
    const char *colon;
    if (strncmp(addr, "unix:", 5) == 0) return addr[5] ? 0 : -1;
    colon = strrchr(addr, ':');
    if (!colon || colon == addr) return -1;
    return parse_port(colon + 1, 0);
}

/* The command's words joined with spaces (the agent splits them again). */
static char *join_words(char **w, int n) {
    size_t len = 1;
    int i;
    char *s;
    for (i = 0; i < n; i++) len += strlen(w[i]) + 1;
    s = (char *)malloc(len);
    if (!s) return NULL;
    s[0] = '\0';
    for (i = 0; i < n; i++) {
        if (i) strcat(s, " ");
        strcat(s, w[i]);
    }
    return s;
}

static int cli_main(int argc, char **argv) {
    static config c;
    cli o;
    int rc;
    memset(&o, 0, sizeof o);
    memset(&c, 0, sizeof c);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if ((rc = parse_cli(argc, argv, &o)) != 0) return rc;
    c.verbose = o.verbose;
    c.quiet = o.quiet;
    c.sd.target = o.target;
    c.sd.reason = nonempty(o.reason);
    c.sd.region = nonempty(o.region);
    if (!c.sd.region) c.sd.region = env_nonempty("AWS_REGION");
    if (!c.sd.region) c.sd.region = env_nonempty("AWS_DEFAULT_REGION");
    c.sd.profile = nonempty(o.profile) ? o.profile : env_nonempty("AWS_PROFILE");
    c.ca_file = nonempty(o.ca_bundle) ? o.ca_bundle : env_nonempty("AWS_CA_BUNDLE");
    if (o.payload_size) {
        char *end;
        unsigned long n = strtoul(o.payload_size, &end, 10);
        if (*end || n < 1 || n > SSMB_CHANNEL_MAX_PAYLOAD)
            return usage_error("--payload-size '%s' is not a number of bytes from 1 to 32768", o.payload_size);
        c.sd.payload_size = (uint32_t)n;
    }
    if (nonempty(o.endpoint)) {
        ssmb_url u;
        if (ssmb_url_parse(o.endpoint, strlen(o.endpoint), &u) != SSMB_OK)
            return usage_error("--endpoint-url '%s' is not an http(s) URL", o.endpoint);
        c.sd.endpoint_url = o.endpoint;
        c.sd.allow_custom_stream_host = 1; /* a local emulator's StreamUrl names its own host */
    }
    switch (o.cmd) {
    case CMD_START: {
        const char *why = NULL;
        c.sd.document_name = nonempty(o.document);
        if (o.parameters && params_parse(&c.ps, o.parameters, &why) != 0) return usage_error("%s", why);
        c.sd.parameters = c.ps.p;
        c.sd.parameter_count = c.ps.count;
        if (decide_mode(&c, c.sd.document_name, &why) != 0) return usage_error("%s", why);
        break;
    }
    case CMD_RUN: {
        char *cmdline = join_words(o.words, o.nwords);
        if (!cmdline) return usage_error("%s", "out of memory");
        ssmb_document_command(&c.sd, &c.doc, cmdline);
        c.mode = MODE_RUN;
        c.is_run = 1;
        c.quiet_default = 1;
        break;
    }
    case CMD_PORT: {
        long lp = 0;
        long rp = parse_port(o.remote_port, 1);
        if (o.local && (lp = local_port(o.local)) < 0)
            return usage_error("--local '%s' is not host:port or unix:/path", o.local);
        if (nonempty(o.remote_host))
            ssmb_document_port_forward_remote(&c.sd, &c.doc, o.remote_host, (uint16_t)rp, (uint16_t)lp);
        else
            ssmb_document_port_forward(&c.sd, &c.doc, (uint16_t)rp, (uint16_t)lp);
        c.listen = o.local;
        c.mode = MODE_FORWARD;
        break;
    }
    case CMD_SSH:
        ssmb_document_ssh(&c.sd, &c.doc, (uint16_t)(o.port ? parse_port(o.port, 1) : 22));
        c.mode = MODE_STDIO;
        c.quiet_default = 1;
        break;
    default: break;
    }
    return run_session(&c);
}

int main(int argc, char **argv) {
    const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    base = base ? base + 1 : (argc > 0 && argv[0] ? argv[0] : "ssmb");
    if (strcmp(base, PLUGIN_NAME) == 0) {
        g_prog = PLUGIN_NAME;
        return plugin_main(argc, argv);
    }
    if ((argc == 2 && strcmp(argv[1], "--version") == 0) ||
        (argc == 7 && (strcmp(argv[3], "StartSession") == 0 || argv[1][0] == '{' ||
                       strncmp(argv[1], PLUGIN_ENV, strlen(PLUGIN_ENV)) == 0)))
        return plugin_main(argc, argv);
    return cli_main(argc, argv);
}
