/* ssmb-local - the AWS side of Session Manager on 127.0.0.1: the SSM JSON
   API (StartSession, ResumeSession, TerminateSession) and KMS
   GenerateDataKey with SigV4 verification, and on the same port the data
   channel WebSocket with an emulated agent behind it (a shell in a PTY,
   interactive and non-interactive commands, basic and smux port forwarding
   to local ports), over TLS with a generated certificate or plain.

   One thread, one poll() loop; every buffer is bounded and reading stops
   while the data channel has no room (back-pressure).

   On start it prints, flushed, on stdout:
       endpoint: https://127.0.0.1:PORT        (http:// with --no-tls)
       ca-bundle: PATH                          (none with --no-tls)
       region: REGION
       access-key-id: KEY
       secret-access-key: SECRET
   Everything meant for people goes to stderr. SIGTERM / SIGINT stop it
   cleanly (children killed, sockets closed, exit 0).

   usage: ssmb-local [options]       (see usage() below for the list)

   API (POST /, X-Amz-Target AmazonSSM.* signed for "ssm", TrentService.*
   for "kms"): errors are HTTP 400 with {"__type":...,"message":...}:
   InvalidSignatureException (signature mismatch, clock skew over 15 min,
   wrong region or service in the scope), UnrecognizedClientException
   (unknown access key), ExpiredTokenException (X-Amz-Security-Token
   "expired"; any other token is accepted), TargetNotConnected ("<target>
   is not connected."; known targets: i-0123456789abcdef0 and --target),
   InvalidDocument, InvalidParameters (missing command, bad port, a host
   that is not 127.0.0.1, ::1 or localhost), DoesNotExistException (Resume
   or Terminate of an unknown session), UnknownOperationException;
   MissingAuthenticationTokenException (403) without Authorization.
   GenerateDataKey returns 64 random bytes (NumberOfBytes 1..64) and keeps
   the last 64 ciphertext-to-key pairs in memory.
   Data channel: GET /v1/data-channel/<SessionId> with Upgrade: websocket;
   an Authorization header there must be a valid SigV4 for "ssmmessages"
   (else 403); the first text message must be OpenDataChannelInput with the
   session's current TokenValue (else the socket is closed).

   Sessions
     SessionId   <user>-<17 hex digits>, user "local"
     TokenValue  "AAEAA" followed by 64 base64 characters (48 random bytes);
                 ResumeSession hands out a new one and only the newest opens
                 the data channel.
     StreamUrl   wss://127.0.0.1:PORT/v1/data-channel/<SessionId>?role=publish_subscribe&cell-number=AAEAA
                 (ws:// with --no-tls)
   A session outlives its WebSocket: the agent channel keeps its sequence
   state and a new WebSocket (after ResumeSession) carries on. A session
   without a WebSocket for --idle-timeout seconds is ended.
   --refuse-resume: ResumeSession answers 200 with only the SessionId (no
   TokenValue, no StreamUrl), which is how the service reports a session
   that timed out (PROTOCOL.md §4.5); the session is ended.

   Documents
     none, SSM-SessionManagerRunShell   Standard_Stream: --shell (default
                 /bin/sh) in a PTY with only HOME, PATH, TERM=xterm-256color,
                 LANG=C.UTF-8 and PS1="$ " in its environment, no handshake
     AWS-StartInteractiveCommand        InteractiveCommands: sh -c command, PTY
     AWS-StartNonInteractiveCommand     NonInteractiveCommands: sh -c command,
                 stdin /dev/null, stdout as Output, stderr as StdErr, then
                 ExitCode "EXIT_CODE: <n>" (-1 after a signal)
     AWS-StartPortForwardingSession[ToRemoteHost], AWS-StartSSHSession
                 Port: smux when --agent-version > 3.0.196.0, the type is
                 LocalPortForwarding and the client reports >= 1.1.70; else
                 basic (one TCP connection, DisconnectToPort closes it, the
                 next Output dials again). host must be loopback.
   The session ends with channel_closed once the command or shell ended and
   everything sent was acknowledged (at most 30 s after that end, counted
   while a WebSocket is connected).

   Pacing: unpaced by default (payloads of --payload-size bytes, default
   1024, as fast as the channel takes them); --agent-pacing reference sends
   1 KiB payloads at most one every 1 ms per session.

   --log FILE appends one JSON line per ClientMessage sent or received:
   {"t":<monotonic ms>,"dir":"in"|"out","session":...,"type":...,"seq":N,
   "payload_type":N,"len":N} and "fault":"..." when one was applied.

   Fault injection (percentages, seeded with --seed): --drop applies to
   stream frames in both directions (before the agent channel sees them,
   and instead of sending); --duplicate (sent twice), --reorder (held back
   and sent after the next frame, or after 50 ms) and --corrupt-digest
   (first digest byte flipped) to the stream frames the agent sends;
   --delay MS holds every frame the agent sends for MS; --withhold-acks to
   the acknowledgements it sends;
   --cut-after N closes the WebSocket (what was written is flushed, then
   the TCP connection closes without a close frame) each time the session's
   stream messages, both ways, each counted once (retransmissions do not
   count), pass another N; --cut-every S closes each WebSocket after S
   seconds with a close frame 1000 "Bye", like the service's hourly
   recycle. */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <bearssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_SESSIONS 64
#define MAX_STREAMS 16
#define IN_CAP (256u * 1024u)
#define OUT_CAP (256u * 1024u)
#define MSG_CAP (SSMB_CHANNEL_MAX_PAYLOAD + 2048u)
#define PIN_CAP (128u * 1024u)
#define MAX_HEADERS 64
#define DELAY_SLOTS 2048
#define KMS_KEYS 64
#define DEFAULT_TARGET "i-0123456789abcdef0"
#define DEFAULT_KEY "AKIDSSMBLOCAL0EXAMPLE"
#define DEFAULT_SECRET "ssmbLocalSecretKey/0123456789EXAMPLEKEY"
#define SKEW_S 900

/* ---- options ---- */

typedef struct options {
    int port;
    const char *key, *secret, *region, *cert_dir, *shell, *agent_version, *log_path;
    const char *kms_key_id;         /* --kms-key-id: sessions ask for KMS encryption (§6) */
    char *creds_buf;
    const char *targets[32];
    int target_count;
    int no_tls;
    int idle_timeout;
    int pacing_reference;
    uint32_t payload_size;
    int drop, duplicate, reorder, delay_ms, withhold_acks, corrupt_digest, cut_after, cut_every;
    int refuse_resume;
    uint32_t seed;
} options;

static options opt;
static volatile sig_atomic_t stop_flag;
static FILE *log_file;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ssmb-local: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ssmb-local: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The fault dice: xorshift64*, seeded by --seed. */
static uint32_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static int roll(int percent) { return percent > 0 && (int)(rng_next() % 100u) < percent; }

static void random_bytes(void *buf, size_t n) {
    if (ssmb_random_system(buf, n, NULL) != SSMB_OK) die("no random source");
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int str_ieq(ssmb_str a, const char *b) {
    size_t n = strlen(b);
    return a.len == n && strncasecmp(a.ptr, b, n) == 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: ssmb-local [--port N] [--no-tls] [--cert-dir DIR] [--credentials KEY:SECRET]\n"
            "                  [--region R] [--target ID]... [--shell PATH] [--agent-version V]\n"
            "                  [--idle-timeout S] [--agent-pacing reference] [--payload-size N]\n"
            "                  [--log FILE] [--seed N] [--drop P] [--duplicate P] [--reorder P]\n"
            "                  [--delay MS] [--withhold-acks P] [--corrupt-digest P]\n"
            "                  [--cut-after N] [--cut-every S] [--refuse-resume] [--kms-key-id ID]\n");
    exit(2);
}

static int int_arg(const char *v, int lo, int hi) {
    char *end = NULL;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || !end || *end || x < lo || x > hi) die("bad number: %s", v);
    return (int)x;
}

static void parse_options(int argc, char **argv) {
    int i;
    opt.key = DEFAULT_KEY;
    opt.secret = DEFAULT_SECRET;
    opt.region = "us-east-1";
    opt.shell = "/bin/sh";
    opt.agent_version = SSMB_CHANNEL_AGENT_VERSION;
    opt.idle_timeout = 300;
    opt.payload_size = 1024;
    opt.targets[opt.target_count++] = DEFAULT_TARGET;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v || (usage(), 0)) && ++i)
        if (strcmp(a, "--no-tls") == 0) opt.no_tls = 1;
        else if (strcmp(a, "--refuse-resume") == 0) opt.refuse_resume = 1;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage();
        else if (ARG("--port")) opt.port = int_arg(v, 0, 65535);
        else if (ARG("--credentials")) {
            char *c = strchr(v, ':');
            if (!c || c == v || !c[1]) die("--credentials wants KEY:SECRET");
            opt.creds_buf = strdup(v);
            if (!opt.creds_buf) die("out of memory");
            opt.creds_buf[c - v] = '\0';
            opt.key = opt.creds_buf;
            opt.secret = opt.creds_buf + (c - v) + 1;
        } else if (ARG("--region")) opt.region = v;
        else if (ARG("--cert-dir")) opt.cert_dir = v;
        else if (ARG("--target")) {
            if (opt.target_count >= (int)(sizeof opt.targets / sizeof opt.targets[0])) die("too many targets");
            opt.targets[opt.target_count++] = v;
        } else if (ARG("--shell")) opt.shell = v;
        else if (ARG("--agent-version")) opt.agent_version = v;
        else if (ARG("--kms-key-id")) opt.kms_key_id = v;
        else if (ARG("--idle-timeout")) opt.idle_timeout = int_arg(v, 1, 86400 * 7);
        else if (ARG("--agent-pacing")) {
            if (strcmp(v, "reference") == 0) opt.pacing_reference = 1;
            else if (strcmp(v, "none") != 0) die("--agent-pacing: reference or none");
        } else if (ARG("--payload-size")) opt.payload_size = (uint32_t)int_arg(v, 1, (int)SSMB_CHANNEL_MAX_PAYLOAD);
        else if (ARG("--log")) opt.log_path = v;
        else if (ARG("--seed")) opt.seed = (uint32_t)int_arg(v, 0, 0x7fffffff);
        else if (ARG("--drop")) opt.drop = int_arg(v, 0, 100);
        else if (ARG("--duplicate")) opt.duplicate = int_arg(v, 0, 100);
        else if (ARG("--reorder")) opt.reorder = int_arg(v, 0, 100);
        else if (ARG("--delay")) opt.delay_ms = int_arg(v, 0, 60000);
        else if (ARG("--withhold-acks")) opt.withhold_acks = int_arg(v, 0, 100);
        else if (ARG("--corrupt-digest")) opt.corrupt_digest = int_arg(v, 0, 100);
        else if (ARG("--cut-after")) opt.cut_after = int_arg(v, 1, 0x7fffffff);
        else if (ARG("--cut-every")) opt.cut_every = int_arg(v, 1, 86400);
        else {
            fprintf(stderr, "ssmb-local: unknown option %s\n", a);
            usage();
        }
#undef ARG
    }
    if (opt.pacing_reference) opt.payload_size = 1024;
    rng_state ^= (uint64_t)opt.seed * 0x100000001B3ull + 1;
}

/* ---- certificates: generated with the openssl command when missing ---- */

static void run_cmd(char *const argv[]) {
    pid_t pid = fork();
    int st = 0;
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("command failed: %s %s", argv[0], argv[1]);
}

static int file_exists(const char *dir, const char *name) {
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

/* The leaf names localhost and 127.0.0.1, the address both as iPAddress
   and as dNSName: BearSSL's X.509 engine matches the server name against
   dNSName entries only, so a BearSSL client of https://127.0.0.1 needs the
   second form. */
static void make_certs(const char *dir) {
    char ca_key[1024], ca_pem[1024], key[1024], pem[1024], csr[1024], ext[1024];
    FILE *f;
    if (file_exists(dir, "ca.pem") && file_exists(dir, "ca.key") && file_exists(dir, "server.pem") &&
        file_exists(dir, "server.key"))
        return;
    mkdir(dir, 0700);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", dir);
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(pem, sizeof pem, "%s/server.pem", dir);
    snprintf(csr, sizeof csr, "%s/server.csr", dir);
    snprintf(ext, sizeof ext, "%s/server.ext", dir);
    f = fopen(ext, "w");
    if (!f) die("cannot write %s", ext);
    fprintf(f, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
               "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1\n");
    fclose(f);
    {
        char *a1[] = {"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ca_key, NULL};
        char *a2[] = {"openssl", "req", "-x509", "-new", "-key", ca_key, "-out", ca_pem, "-subj", "/CN=ssmb-local CA",
                      "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                      "keyUsage=critical,keyCertSign,cRLSign", NULL};
        char *a3[] = {"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key, NULL};
        char *a4[] = {"openssl", "req", "-new", "-key", key, "-out", csr, "-subj", "/CN=localhost", NULL};
        char *a5[] = {"openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-set_serial", "4096",
                      "-days", "3650", "-sha256", "-extfile", ext, "-out", pem, NULL};
        run_cmd(a1);
        run_cmd(a2);
        run_cmd(a3);
        run_cmd(a4);
        run_cmd(a5);
    }
}

/* ---- TLS: BearSSL server engine, driven without br_sslio ---- */

typedef struct pem_obj {
    char name[160];
    unsigned char *der;
    size_t len, cap;
} pem_obj;

static void pem_append(void *ctx, const void *src, size_t len) {
    pem_obj *o = (pem_obj *)ctx;
    if (o->len + len > o->cap) {
        size_t cap = (o->len + len) * 2;
        unsigned char *p = (unsigned char *)realloc(o->der, cap);
        if (!p) die("out of memory");
        o->der = p;
        o->cap = cap;
    }
    memcpy(o->der + o->len, src, len);
    o->len += len;
}

/* Calls back each PEM object of a file. */
static int pem_each(const char *path, void (*fn)(pem_obj *o, void *u), void *u) {
    br_pem_decoder_context pc;
    pem_obj o;
    unsigned char buf[4096];
    size_t n, off;
    int count = 0, in_obj = 0;
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    memset(&o, 0, sizeof o);
    br_pem_decoder_init(&pc);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        off = 0;
        while (off < n) {
            size_t k = br_pem_decoder_push(&pc, buf + off, n - off);
            off += k;
            switch (br_pem_decoder_event(&pc)) {
            case BR_PEM_BEGIN_OBJ:
                snprintf(o.name, sizeof o.name, "%s", br_pem_decoder_name(&pc));
                o.len = 0;
                in_obj = 1;
                br_pem_decoder_setdest(&pc, pem_append, &o);
                break;
            case BR_PEM_END_OBJ:
                if (in_obj) fn(&o, u);
                in_obj = 0;
                count++;
                break;
            case BR_PEM_ERROR: die("bad PEM in %s", path); break;
            default: break;
            }
        }
    }
    fclose(f);
    free(o.der);
    return count;
}

static br_x509_certificate tls_chain[4];
static size_t tls_chain_len;
static br_ec_private_key tls_key;
static unsigned char tls_key_x[128];

static void take_cert(pem_obj *o, void *u) {
    (void)u;
    if (strcmp(o->name, "CERTIFICATE") != 0 || tls_chain_len >= 4) return;
    tls_chain[tls_chain_len].data = (unsigned char *)malloc(o->len);
    if (!tls_chain[tls_chain_len].data) die("out of memory");
    memcpy(tls_chain[tls_chain_len].data, o->der, o->len);
    tls_chain[tls_chain_len].data_len = o->len;
    tls_chain_len++;
}

static void take_key(pem_obj *o, void *u) {
    br_skey_decoder_context sk;
    const br_ec_private_key *k;
    int *got = (int *)u;
    br_skey_decoder_init(&sk);
    br_skey_decoder_push(&sk, o->der, o->len);
    if (br_skey_decoder_last_error(&sk) != 0 || br_skey_decoder_key_type(&sk) != BR_KEYTYPE_EC) return;
    k = br_skey_decoder_get_ec(&sk);
    if (k->xlen > sizeof tls_key_x) return;
    memcpy(tls_key_x, k->x, k->xlen);
    tls_key.curve = k->curve;
    tls_key.x = tls_key_x;
    tls_key.xlen = k->xlen;
    *got = 1;
}

static void tls_load(const char *dir) {
    char p[1024];
    int got = 0;
    snprintf(p, sizeof p, "%s/server.pem", dir);
    pem_each(p, take_cert, NULL);
    if (!tls_chain_len) die("no certificate in %s", p);
    snprintf(p, sizeof p, "%s/server.key", dir);
    pem_each(p, take_key, &got);
    if (!got) die("no EC private key in %s", p);
}

/* ---- objects ---- */

enum { C_HTTP = 0, C_WS = 1 };
enum { K_SHELL = 0, K_INTERACTIVE = 1, K_NONINTERACTIVE = 2, K_PORT = 3 };

struct session;

typedef struct conn {
    int fd;
    int state;                  /* C_HTTP or C_WS */
    int closing;                /* close once out is flushed */
    int dead;
    br_ssl_server_context *sc;  /* NULL with --no-tls */
    unsigned char *iobuf;
    uint8_t in[IN_CAP];
    size_t in_len;
    size_t in_off;              /* WebSocket: bytes of in already read (in_off < in_len, or both 0) */
    int in_dry;                 /* a read found the socket empty since the last poll() */
    uint8_t out[OUT_CAP];
    size_t out_len;
    size_t out_off;             /* bytes of out already sent (out_off < out_len, or both 0) */
    ssmb_ws_reader wr;
    struct session *s;          /* the data channel's session */
    int opened;                 /* OpenDataChannelInput accepted */
    uint8_t msg[MSG_CAP];       /* the WebSocket message being gathered */
    size_t msg_len;
    uint32_t msg_op;
    int msg_ready;              /* a whole message waits for the session */
    /* While msg waits or its events do, the next message is read here: an
       acknowledgement or early stream data goes to the channel at once (it
       takes them even then), a repeat of the message in msg is dropped,
       anything else (the next in order) waits for msg to be free. Without this, a client that waits for acks
       before it reads what we send would wait for us while we wait for it. */
    uint8_t ahead[MSG_CAP];
    size_t ahead_len;
    uint32_t ahead_op;
    int ahead_ready;
    int gathering_ahead;        /* the message being gathered goes to ahead */
    int ahead_lent;             /* events of the channel point into ahead */
    /* While ahead is taken too (it holds the next message in order, or the
       channel's events point into it), reading goes on into beyond:
       acknowledgements and early stream data still reach the channel, data
       it cannot take now is dropped unacknowledged (the client sends it
       again). Acks then never wait behind data, which would close a cycle
       with a target that waits for us to read what it sends back: it waits
       for our window, our window for acks, the acks for it. */
    uint8_t beyond[MSG_CAP];
    size_t beyond_len;
    uint32_t beyond_op;
    int gathering_beyond;       /* the message being gathered goes to beyond */
    int beyond_lent;            /* events of the channel point into beyond */
    uint64_t since_ms;
    uint64_t linger_until;      /* after channel_closed: the client hangs up first, or then */
    uint64_t last_in_ms;        /* last bytes from the peer (HTTP idle, OpenDataChannelInput wait) */
} conn;

typedef struct pstream {
    int used;
    uint32_t id;
    int fd;
    int connecting;
    int peer_fin;
} pstream;

typedef struct held_frame {
    uint64_t due;
    size_t len;
    uint8_t *data;
} held_frame;

typedef struct session {
    char id[64];
    char token[96];
    char target[128];
    int kind;
    char command[4096];
    char host[64];
    int port;
    char properties[512];
    ssmb_channel *ch;
    int started;                /* channel started (first WebSocket) */
    int ready;
    int workload;               /* child or sockets started */
    conn *ws;
    uint64_t ws_gone_ms;
    char client_version[48];
    /* the child */
    pid_t pid;
    int pty, out_fd, err_fd;
    int reaped, exit_code;
    int exit_sent;
    uint8_t carry[4];           /* PTY: the start of a UTF-8 sequence, for the next message */
    size_t carry_len;
    /* port */
    int mux;
    ssmb_smux *smux;
    pstream streams[MAX_STREAMS];
    int sock;                   /* basic mode */
    int sock_connecting;
    int disconnect_pending;
    /* client bytes waiting for their destination */
    uint8_t *pin;
    size_t pin_len;
    /* the end */
    int ending;                 /* the workload is over: drain, then channel_closed */
    int terminated;             /* ended by request or error: no resume, no drain */
    int events_pending;         /* channel events not taken yet (they may point into ws->msg) */
    uint64_t end_ms;
    char reason[256];
    int dead;
    uint64_t last_send_ms;      /* --agent-pacing reference */
    uint64_t next_cut;          /* --cut-after: stream messages (each counted once) at the next cut */
    held_frame delayed[DELAY_SLOTS];
    size_t delayed_head, delayed_count;
    held_frame reordered;
} session;

static conn *conns[MAX_CONNS];
static session *sessions[MAX_SESSIONS];
static int listen_fd = -1;
static int listen_port;

typedef struct kms_key {
    uint8_t blob[48];
    uint8_t plain[64];
    int used;
} kms_key;
static kms_key kms_keys[KMS_KEYS];
static size_t kms_next;

/* ---- the message log (--log): one JSON line per ClientMessage ---- */

static void log_frame(const session *s, const char *dir, const uint8_t *f, size_t n, const char *note_text) {
    ssmb_msg m;
    if (!log_file) return;
    if (ssmb_msg_decode(f, n, &m) != SSMB_OK) {
        fprintf(log_file, "{\"t\":%llu,\"dir\":\"%s\",\"session\":\"%s\",\"type\":\"(undecodable)\",\"len\":%zu}\n",
                (unsigned long long)now_ms(), dir, s->id, n);
    } else {
        fprintf(log_file,
                "{\"t\":%llu,\"dir\":\"%s\",\"session\":\"%s\",\"type\":\"%.*s\",\"seq\":%lld,\"payload_type\":%u,"
                "\"len\":%u%s%s%s}\n",
                (unsigned long long)now_ms(), dir, s->id, (int)m.type.len, m.type.ptr, (long long)m.sequence_number,
                m.payload_type, m.payload_length, note_text ? ",\"fault\":\"" : "", note_text ? note_text : "",
                note_text ? "\"" : "");
    }
    fflush(log_file);
}

/* ---- connection output ---- */

static int conn_put(conn *c, const void *p, size_t n) {
    if (c->out_len - c->out_off + n > OUT_CAP) return 0;
    if (c->out_len + n > OUT_CAP) { /* move the unsent bytes down, once, when room runs short */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 1;
}

static size_t conn_room(const conn *c) { return OUT_CAP - (c->out_len - c->out_off); }

/* n bytes of out were sent. */
static void out_take(conn *c, size_t n) {
    c->out_off += n;
    if (c->out_off >= c->out_len) c->out_off = c->out_len = 0;
}

static int ws_put(conn *c, uint32_t opcode, const void *p, size_t n) {
    uint8_t hdr[SSMB_WS_MAX_HEADER_SIZE];
    size_t hl = 0;
    if (ssmb_ws_frame_header_encode(opcode, 1, n, NULL, hdr, &hl) != SSMB_OK) return 0;
    if (conn_room(c) < hl + n) return 0;
    conn_put(c, hdr, hl);
    conn_put(c, p, n);
    return 1;
}

static void http_respond(conn *c, int status, const char *reason, const char *body, size_t n, int close_after) {
    char head[512], rid[37];
    uint8_t r16[16];
    ssmb_uuid u;
    int hl;
    random_bytes(r16, sizeof r16);
    ssmb_uuid_v4(r16, &u);
    ssmb_uuid_format(&u, rid);
    hl = snprintf(head, sizeof head,
                  "HTTP/1.1 %d %s\r\nx-amzn-RequestId: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"
                  "Content-Length: %zu\r\n%s\r\n",
                  status, reason, rid, n, close_after ? "Connection: close\r\n" : "");
    if (!conn_put(c, head, (size_t)hl) || !conn_put(c, body, n)) c->dead = 1;
    if (close_after) c->closing = 1;
}

static void aws_error(conn *c, int status, const char *type, const char *message) {
    char body[1024];
    ssmb_json_writer w;
    size_t n = 0;
    ssmb_json_writer_init(&w, body, sizeof body);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "__type", 6);
    ssmb_json_writer_string(&w, type, strlen(type));
    ssmb_json_writer_key(&w, "message", 7);
    ssmb_json_writer_string(&w, message, strlen(message));
    ssmb_json_writer_end_object(&w);
    if (ssmb_json_writer_finish(&w, &n) != SSMB_OK) n = 0;
    http_respond(c, status, status == 400 ? "Bad Request" : status == 403 ? "Forbidden" : status == 404 ? "Not Found" : "Error",
                 body, n, 0);
}

/* ---- HTTP requests ---- */

typedef struct http_req {
    ssmb_str method, path, query;
    ssmb_http_header h[MAX_HEADERS];
    size_t nh;
    const char *body;
    size_t body_len;
    size_t total;
} http_req;

static const ssmb_http_header *req_header(const http_req *r, const char *name) {
    size_t i;
    for (i = 0; i < r->nh; i++)
        if (str_ieq(r->h[i].name, name)) return &r->h[i];
    return NULL;
}

static ssmb_str trim(const char *p, size_t n) {
    ssmb_str s;
    while (n && (*p == ' ' || *p == '\t')) p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    s.ptr = p;
    s.len = n;
    return s;
}

/* 1: a whole request is in; 0: not yet; -1: malformed or too big. */
static int http_parse(const char *in, size_t len, http_req *r) {
    const char *end = NULL, *p, *line_end, *sp1, *sp2, *q;
    size_t i, head;
    uint64_t cl = 0;
    memset(r, 0, sizeof *r);
    for (i = 0; i + 3 < len; i++)
        if (in[i] == '\r' && in[i + 1] == '\n' && in[i + 2] == '\r' && in[i + 3] == '\n') {
            end = in + i;
            break;
        }
    if (!end) return len >= IN_CAP - 1 ? -1 : 0;
    head = (size_t)(end - in) + 4;
    line_end = (const char *)memchr(in, '\r', (size_t)(end - in) + 1);
    sp1 = (const char *)memchr(in, ' ', (size_t)(line_end - in));
    if (!sp1) return -1;
    sp2 = (const char *)memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (!sp2) return -1;
    r->method.ptr = in;
    r->method.len = (size_t)(sp1 - in);
    q = (const char *)memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    r->path.ptr = sp1 + 1;
    r->path.len = (size_t)((q ? q : sp2) - (sp1 + 1));
    r->query.ptr = q ? q + 1 : sp2;
    r->query.len = q ? (size_t)(sp2 - q - 1) : 0;
    p = line_end + 2;
    while (p < end + 2) {
        const char *le = (const char *)memchr(p, '\r', (size_t)(end + 2 - p));
        const char *colon;
        if (!le) break;
        if (le == p) break;
        colon = (const char *)memchr(p, ':', (size_t)(le - p));
        if (!colon || r->nh >= MAX_HEADERS) return -1;
        r->h[r->nh].name.ptr = p;
        r->h[r->nh].name.len = (size_t)(colon - p);
        r->h[r->nh].value = trim(colon + 1, (size_t)(le - colon - 1));
        r->nh++;
        p = le + 2;
    }
    {
        const ssmb_http_header *h = req_header(r, "Content-Length");
        if (h) {
            for (i = 0; i < h->value.len; i++) {
                if (h->value.ptr[i] < '0' || h->value.ptr[i] > '9') return -1;
                cl = cl * 10 + (uint64_t)(h->value.ptr[i] - '0');
                if (cl > IN_CAP) return -1;
            }
        }
    }
    if (head + cl > IN_CAP) return -1;
    if (len < head + cl) return 0;
    r->body = in + head;
    r->body_len = (size_t)cl;
    r->total = head + (size_t)cl;
    return 1;
}

/* ---- SigV4 verification ---- */

typedef struct auth_error {
    const char *type;
    char message[512];
} auth_error;

static ssmb_str auth_field(ssmb_str auth, const char *name) {
    size_t n = strlen(name), i;
    ssmb_str v = {NULL, 0};
    for (i = 0; i + n <= auth.len; i++) {
        if ((i == 0 || auth.ptr[i - 1] == ' ' || auth.ptr[i - 1] == ',') && memcmp(auth.ptr + i, name, n) == 0) {
            size_t j = i + n;
            v.ptr = auth.ptr + j;
            while (j < auth.len && auth.ptr[j] != ',' && auth.ptr[j] != ' ') j++;
            v.len = (size_t)(auth.ptr + j - v.ptr);
            return v;
        }
    }
    return v;
}

/* 0 when the request is signed by the configured credentials. */
static int sigv4_verify(const http_req *r, const char *service, auth_error *e) {
    const ssmb_http_header *ah = req_header(r, "Authorization");
    const ssmb_http_header *dh = req_header(r, "X-Amz-Date");
    const ssmb_http_header *th = req_header(r, "X-Amz-Security-Token");
    ssmb_str auth, cred, signed_h, sig, parts[5];
    ssmb_http_header hs[MAX_HEADERS];
    size_t nhs = 0, np = 0, i, start;
    int64_t t = 0, now = (int64_t)time(NULL);
    ssmb_sigv4_request rq;
    ssmb_sigv4_params p;
    ssmb_sigv4_output out;
    char authz[1024];
    size_t alen = 0;
    e->type = "InvalidSignatureException";
    e->message[0] = '\0';
    if (!ah) {
        e->type = "MissingAuthenticationTokenException";
        snprintf(e->message, sizeof e->message, "Missing Authentication Token");
        return -1;
    }
    auth = ah->value;
    if (auth.len < 17 || memcmp(auth.ptr, "AWS4-HMAC-SHA256 ", 17) != 0) {
        e->type = "IncompleteSignatureException";
        snprintf(e->message, sizeof e->message, "Unsupported signing algorithm in the Authorization header.");
        return -1;
    }
    cred = auth_field(auth, "Credential=");
    signed_h = auth_field(auth, "SignedHeaders=");
    sig = auth_field(auth, "Signature=");
    if (!cred.len || !signed_h.len || !sig.len) {
        e->type = "IncompleteSignatureException";
        snprintf(e->message, sizeof e->message,
                 "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.");
        return -1;
    }
    for (i = 0, start = 0; i <= cred.len && np < 5; i++) {
        if (i == cred.len || cred.ptr[i] == '/') {
            parts[np].ptr = cred.ptr + start;
            parts[np].len = i - start;
            np++;
            start = i + 1;
        }
    }
    if (np != 5 || !ssmb_str_eq(parts[4], "aws4_request")) {
        e->type = "IncompleteSignatureException";
        snprintf(e->message, sizeof e->message, "Credential is not well formed.");
        return -1;
    }
    if (!ssmb_str_eq(parts[0], opt.key)) {
        e->type = "UnrecognizedClientException";
        snprintf(e->message, sizeof e->message, "The security token included in the request is invalid.");
        return -1;
    }
    if (th && ssmb_str_eq(th->value, "expired")) {
        e->type = "ExpiredTokenException";
        snprintf(e->message, sizeof e->message, "The security token included in the request is expired");
        return -1;
    }
    if (!dh || ssmb_amz_date_parse(dh->value.ptr, dh->value.len, &t) != SSMB_OK) {
        e->type = "IncompleteSignatureException";
        snprintf(e->message, sizeof e->message, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
        return -1;
    }
    if (t > now + SKEW_S || t < now - SKEW_S) {
        char a[17], b[17], c[17];
        ssmb_amz_date(t, a);
        ssmb_amz_date(t > now ? now + SKEW_S : now - SKEW_S, b);
        ssmb_amz_date(now, c);
        snprintf(e->message, sizeof e->message, "Signature %s: %s is now %s than %s (%s %s 15 min.)",
                 t > now ? "not yet current" : "expired", a, t > now ? "later" : "earlier", b, c,
                 t > now ? "+" : "-");
        return -1;
    }
    if (!ssmb_str_eq(parts[2], opt.region)) {
        snprintf(e->message, sizeof e->message, "Credential should be scoped to a valid region. ");
        return -1;
    }
    if (!ssmb_str_eq(parts[3], service)) {
        snprintf(e->message, sizeof e->message, "Credential should be scoped to correct service: '%s'. ", service);
        return -1;
    }
    for (i = 0, start = 0; i <= signed_h.len; i++) {
        if (i == signed_h.len || signed_h.ptr[i] == ';') {
            ssmb_str name;
            size_t k;
            int found = 0;
            name.ptr = signed_h.ptr + start;
            name.len = i - start;
            start = i + 1;
            for (k = 0; k < r->nh; k++)
                if (r->h[k].name.len == name.len && strncasecmp(r->h[k].name.ptr, name.ptr, name.len) == 0) {
                    if (nhs < MAX_HEADERS) hs[nhs++] = r->h[k];
                    found = 1;
                    break;
                }
            if (!found) {
                snprintf(e->message, sizeof e->message, "The request signature we calculated does not match the "
                         "signature you provided. Check your AWS Secret Access Key and signing method. Consult the "
                         "service documentation for details.");
                return -1;
            }
        }
    }
    memset(&rq, 0, sizeof rq);
    rq.method = r->method;
    rq.path = r->path;
    rq.query = r->query;
    rq.headers = hs;
    rq.header_count = nhs;
    rq.body = r->body;
    rq.body_len = r->body_len;
    memset(&p, 0, sizeof p);
    p.creds.access_key_id = ssmb_str_c(opt.key);
    p.creds.secret_access_key = ssmb_str_c(opt.secret);
    p.region = ssmb_str_c(opt.region);
    p.service = ssmb_str_c(service);
    p.time = t;
    if (ssmb_sigv4_sign(&rq, &p, authz, sizeof authz, &alen, &out) != SSMB_OK || sig.len != 64 ||
        !ssmb_equal_ct(out.signature, sig.ptr, 64)) {
        snprintf(e->message, sizeof e->message, "The request signature we calculated does not match the signature "
                 "you provided. Check your AWS Secret Access Key and signing method. Consult the service "
                 "documentation for details.");
        return -1;
    }
    return 0;
}

/* ---- JSON helpers ---- */

/* The unescaped string value of key in object obj; 1 when present. */
static int json_str(const ssmb_json *d, int32_t obj, const char *key, char *out, size_t cap) {
    int32_t t = ssmb_json_find(d, obj, key);
    ssmb_str raw;
    size_t n = 0;
    if (t < 0 || ssmb_json_get_str(d, t, &raw) != SSMB_OK) return 0;
    if (ssmb_json_unescape(raw, out, cap, &n) != SSMB_OK) return 0;
    return 1;
}

/* The first value of Parameters[name]; 1 when present. */
static int json_param(const ssmb_json *d, const char *name, char *out, size_t cap) {
    int32_t params = ssmb_json_find(d, 0, "Parameters"), arr, t;
    ssmb_str raw;
    size_t n = 0;
    if (params < 0 || ssmb_json_kind(d, params) != SSMB_JSON_OBJECT) return 0;
    arr = ssmb_json_find(d, params, name);
    if (arr < 0 || ssmb_json_kind(d, arr) != SSMB_JSON_ARRAY || ssmb_json_size(d, arr) < 1) return 0;
    t = ssmb_json_at(d, arr, 0);
    if (ssmb_json_get_str(d, t, &raw) != SSMB_OK) return 0;
    return ssmb_json_unescape(raw, out, cap, &n) == SSMB_OK;
}

/* ---- sessions ---- */

static void new_token(session *s) {
    uint8_t r[48];
    size_t n = 0;
    random_bytes(r, sizeof r);
    memcpy(s->token, "AAEAA", 5);
    ssmb_base64_encode(r, sizeof r, s->token + 5, sizeof s->token - 5, &n);
    s->token[5 + n] = '\0';
}

static session *session_find(const char *id, size_t len) {
    int i;
    for (i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i] && !sessions[i]->dead && strlen(sessions[i]->id) == len && memcmp(sessions[i]->id, id, len) == 0)
            return sessions[i];
    return NULL;
}

static void stream_url(const session *s, char *out, size_t cap) {
    snprintf(out, cap, "%s://127.0.0.1:%d/v1/data-channel/%s?role=publish_subscribe&cell-number=AAEAA",
             opt.no_tls ? "ws" : "wss", listen_port, s->id);
}

static void session_reply(conn *c, const session *s, int with_token) {
    char body[4096], url[512];
    ssmb_json_writer w;
    size_t n = 0;
    stream_url(s, url, sizeof url);
    ssmb_json_writer_init(&w, body, sizeof body);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "SessionId", 9);
    ssmb_json_writer_string(&w, s->id, strlen(s->id));
    if (with_token) {
        ssmb_json_writer_key(&w, "StreamUrl", 9);
        ssmb_json_writer_string(&w, url, strlen(url));
        ssmb_json_writer_key(&w, "TokenValue", 10);
        ssmb_json_writer_string(&w, s->token, strlen(s->token));
    }
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_finish(&w, &n);
    http_respond(c, 200, "OK", body, n, 0);
}

static int target_known(const char *t) {
    int i;
    for (i = 0; i < opt.target_count; i++)
        if (strcmp(opt.targets[i], t) == 0) return 1;
    return 0;
}

static int is_loopback_host(const char *h) {
    return strcmp(h, "127.0.0.1") == 0 || strcmp(h, "::1") == 0 || strcmp(h, "localhost") == 0;
}

static int port_ok(const char *p) {
    char *end = NULL;
    long v = strtol(p, &end, 10);
    return *p && end && !*end && v >= 1 && v <= 65535;
}

static void append_prop(char *out, size_t cap, const char *key, const char *value) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s\"%s\":\"%s\"", n > 1 ? "," : "", key, value);
}

static void api_start_session(conn *c, const ssmb_json *d) {
    char target[128] = "", docname[160] = "", port[16] = "", local_port[16] = "", host[256] = "", msg[512];
    session *s;
    int i, slot = -1;
    if (!json_str(d, 0, "Target", target, sizeof target) || !target[0]) {
        aws_error(c, 400, "ValidationException", "1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null");
        return;
    }
    json_str(d, 0, "DocumentName", docname, sizeof docname);
    if (!target_known(target)) {
        snprintf(msg, sizeof msg, "%s is not connected.", target);
        aws_error(c, 400, "TargetNotConnected", msg);
        return;
    }
    for (i = 0; i < MAX_SESSIONS; i++)
        if (!sessions[i]) {
            slot = i;
            break;
        }
    if (slot < 0) {
        aws_error(c, 400, "ThrottlingException", "Rate exceeded");
        return;
    }
    s = (session *)calloc(1, sizeof *s);
    if (!s) {
        aws_error(c, 500, "InternalServerError", "out of memory");
        return;
    }
    s->pid = -1;
    s->pty = s->out_fd = s->err_fd = s->sock = -1;
    for (i = 0; i < MAX_STREAMS; i++) s->streams[i].fd = -1;
    snprintf(s->target, sizeof s->target, "%s", target);
    snprintf(s->host, sizeof s->host, "127.0.0.1");
    json_param(d, "portNumber", port, sizeof port);
    json_param(d, "localPortNumber", local_port, sizeof local_port);
    if (!docname[0] || strcmp(docname, "SSM-SessionManagerRunShell") == 0) {
        s->kind = K_SHELL;
    } else if (strcmp(docname, "AWS-StartInteractiveCommand") == 0 ||
               strcmp(docname, "AWS-StartNonInteractiveCommand") == 0) {
        s->kind = docname[9] == 'I' ? K_INTERACTIVE : K_NONINTERACTIVE;
        if (!json_param(d, "command", s->command, sizeof s->command) || !s->command[0]) {
            free(s);
            aws_error(c, 400, "InvalidParameters", "Parameter \"command\" is required.");
            return;
        }
    } else if (strcmp(docname, "AWS-StartPortForwardingSession") == 0 ||
               strcmp(docname, "AWS-StartPortForwardingSessionToRemoteHost") == 0 ||
               strcmp(docname, "AWS-StartSSHSession") == 0) {
        int ssh = docname[10] == 'S';
        int remote = strstr(docname, "RemoteHost") != NULL;
        s->kind = K_PORT;
        if (!port[0]) snprintf(port, sizeof port, "%s", ssh ? "22" : "80");
        if (!port_ok(port)) {
            free(s);
            aws_error(c, 400, "InvalidParameters", "Parameter \"portNumber\" is not a valid port number.");
            return;
        }
        s->port = atoi(port);
        if (remote) {
            if (!json_param(d, "host", host, sizeof host) || !host[0]) {
                free(s);
                aws_error(c, 400, "InvalidParameters", "Parameter \"host\" is required.");
                return;
            }
            if (!is_loopback_host(host)) {
                free(s);
                snprintf(msg, sizeof msg, "Host %s is not allowed by this emulator: only 127.0.0.1, ::1 and localhost.",
                         host);
                aws_error(c, 400, "InvalidParameters", msg);
                return;
            }
            snprintf(s->host, sizeof s->host, "%s", strcmp(host, "::1") == 0 ? "::1" : "127.0.0.1");
        }
        /* the agent marshals the document's properties map: keys sorted */
        snprintf(s->properties, sizeof s->properties, "{");
        if (remote) append_prop(s->properties, sizeof s->properties, "host", host);
        if (!ssh && local_port[0]) append_prop(s->properties, sizeof s->properties, "localPortNumber", local_port);
        append_prop(s->properties, sizeof s->properties, "portNumber", port);
        if (!ssh) append_prop(s->properties, sizeof s->properties, "type", "LocalPortForwarding");
        strcat(s->properties, "}");
    } else {
        free(s);
        snprintf(msg, sizeof msg, "Document with name %s does not exist.", docname);
        aws_error(c, 400, "InvalidDocument", msg);
        return;
    }
    {
        uint8_t r[9];
        char hex[19];
        random_bytes(r, sizeof r);
        ssmb_hex_encode(r, sizeof r, hex, sizeof hex);
        hex[17] = '\0';
        snprintf(s->id, sizeof s->id, "local-%s", hex);
    }
    new_token(s);
    s->ws_gone_ms = now_ms();
    s->pin = (uint8_t *)malloc(PIN_CAP);
    if (!s->pin) {
        free(s);
        aws_error(c, 500, "InternalServerError", "out of memory");
        return;
    }
    sessions[slot] = s;
    note("session %s: %s on %s", s->id, docname[0] ? docname : "SSM-SessionManagerRunShell", target);
    session_reply(c, s, 1);
}

static void session_end(session *s, const char *reason);

static void api_resume_or_terminate(conn *c, const ssmb_json *d, int terminate) {
    char id[128] = "", msg[256];
    session *s;
    if (!json_str(d, 0, "SessionId", id, sizeof id) || !id[0]) {
        aws_error(c, 400, "ValidationException", "1 validation error detected: Value null at 'sessionId' failed to satisfy constraint: Member must not be null");
        return;
    }
    s = session_find(id, strlen(id));
    if (!s || s->terminated) {
        snprintf(msg, sizeof msg, "Session with id %s does not exist.", id);
        aws_error(c, 400, "DoesNotExistException", msg);
        return;
    }
    if (terminate) {
        session_reply(c, s, 0);
        session_end(s, "");
        return;
    }
    if (opt.refuse_resume) {
        session_reply(c, s, 0);
        session_end(s, "Session timed out.");
        return;
    }
    new_token(s);
    session_reply(c, s, 1);
}

static void api_generate_data_key(conn *c, const ssmb_json *d) {
    char key_id[512] = "", arn[700], body[2048], b64blob[80], b64plain[100];
    int32_t nt = ssmb_json_find(d, 0, "NumberOfBytes");
    uint32_t nbytes = 64;
    kms_key *k;
    ssmb_json_writer w;
    size_t n = 0;
    if (!json_str(d, 0, "KeyId", key_id, sizeof key_id) || !key_id[0]) {
        aws_error(c, 400, "ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null");
        return;
    }
    if (nt >= 0 && (ssmb_json_get_u32(d, nt, &nbytes) != SSMB_OK || nbytes < 1 || nbytes > 64)) {
        aws_error(c, 400, "ValidationException", "NumberOfBytes must be between 1 and 64 here");
        return;
    }
    k = &kms_keys[kms_next++ % KMS_KEYS];
    k->used = 1;
    random_bytes(k->blob, sizeof k->blob);
    random_bytes(k->plain, sizeof k->plain);
    if (strncmp(key_id, "arn:", 4) == 0) snprintf(arn, sizeof arn, "%s", key_id);
    else snprintf(arn, sizeof arn, "arn:aws:kms:%s:111122223333:key/%s", opt.region, key_id);
    ssmb_base64_encode(k->blob, sizeof k->blob, b64blob, sizeof b64blob, &n);
    ssmb_base64_encode(k->plain, nbytes, b64plain, sizeof b64plain, &n);
    ssmb_json_writer_init(&w, body, sizeof body);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "CiphertextBlob", 14);
    ssmb_json_writer_string(&w, b64blob, strlen(b64blob));
    ssmb_json_writer_key(&w, "KeyId", 5);
    ssmb_json_writer_string(&w, arn, strlen(arn));
    ssmb_json_writer_key(&w, "Plaintext", 9);
    ssmb_json_writer_string(&w, b64plain, strlen(b64plain));
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_finish(&w, &n);
    http_respond(c, 200, "OK", body, n, 0);
}

static void handle_api(conn *c, const http_req *r) {
    const ssmb_http_header *th = req_header(r, "X-Amz-Target");
    const char *service;
    auth_error e;
    ssmb_json d;
    ssmb_json_token tok[256];
    char target[128];
    if (!th || th->value.len >= sizeof target) {
        aws_error(c, 400, "UnknownOperationException", "");
        return;
    }
    memcpy(target, th->value.ptr, th->value.len);
    target[th->value.len] = '\0';
    if (strncmp(target, "AmazonSSM.", 10) == 0) service = "ssm";
    else if (strncmp(target, "TrentService.", 13) == 0) service = "kms";
    else {
        aws_error(c, 400, "UnknownOperationException", "");
        return;
    }
    if (sigv4_verify(r, service, &e) != 0) {
        aws_error(c, e.type[0] == 'M' ? 403 : 400, e.type, e.message);
        return;
    }
    if (ssmb_json_parse(&d, r->body, r->body_len, tok, 256) != SSMB_OK || ssmb_json_kind(&d, 0) != SSMB_JSON_OBJECT) {
        aws_error(c, 400, "SerializationException", "");
        return;
    }
    if (strcmp(target, "AmazonSSM.StartSession") == 0) api_start_session(c, &d);
    else if (strcmp(target, "AmazonSSM.ResumeSession") == 0) api_resume_or_terminate(c, &d, 0);
    else if (strcmp(target, "AmazonSSM.TerminateSession") == 0) api_resume_or_terminate(c, &d, 1);
    else if (strcmp(target, "TrentService.GenerateDataKey") == 0) api_generate_data_key(c, &d);
    else aws_error(c, 400, "UnknownOperationException", "");
}

/* GET /v1/data-channel/<SessionId> with Upgrade: websocket. */
static void handle_upgrade(conn *c, const http_req *r) {
    static const char prefix[] = "/v1/data-channel/";
    const ssmb_http_header *key = req_header(r, "Sec-WebSocket-Key");
    session *s;
    char accept[29], head[256];
    auth_error e;
    int hl;
    if (r->path.len <= sizeof prefix - 1 || memcmp(r->path.ptr, prefix, sizeof prefix - 1) != 0 || !key) {
        aws_error(c, 404, "NotFound", "no such data channel");
        c->closing = 1;
        return;
    }
    s = session_find(r->path.ptr + sizeof prefix - 1, r->path.len - (sizeof prefix - 1));
    if (!s || s->terminated) {
        aws_error(c, 404, "NotFound", "no such session");
        c->closing = 1;
        return;
    }
    if (req_header(r, "Authorization") && sigv4_verify(r, "ssmmessages", &e) != 0) {
        aws_error(c, 403, e.type, e.message);
        c->closing = 1;
        return;
    }
    if (ssmb_ws_accept_key(key->value.ptr, key->value.len, accept) != SSMB_OK) {
        aws_error(c, 400, "BadRequest", "bad Sec-WebSocket-Key");
        c->closing = 1;
        return;
    }
    hl = snprintf(head, sizeof head,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    conn_put(c, head, (size_t)hl);
    c->state = C_WS;
    c->s = s;
    c->since_ms = now_ms();
    ssmb_ws_reader_init(&c->wr, SSMB_WS_READ_FROM_CLIENT, MSG_CAP);
}

static void handle_http(conn *c) {
    http_req r;
    int st;
    while (c->state == C_HTTP && !c->closing && !c->dead) {
        st = http_parse((const char *)c->in, c->in_len, &r);
        if (st == 0) return;
        if (st < 0) {
            http_respond(c, 400, "Bad Request", "", 0, 1);
            return;
        }
        if (conn_room(c) < 8192) return; /* answer once the last answer went out */
        if (req_header(&r, "Upgrade") && str_ieq(r.method, "GET")) handle_upgrade(c, &r);
        else if (str_ieq(r.method, "POST")) handle_api(c, &r);
        else aws_error(c, 404, "UnknownOperationException", "");
        memmove(c->in, c->in + r.total, c->in_len - r.total);
        c->in_len -= r.total;
    }
}

/* ---- readiness from the last poll() ---- */

#define REV_MAX 16384
static short rev[REV_MAX];

static short revents_of(int fd) { return fd >= 0 && fd < REV_MAX ? rev[fd] : 0; }

/* ---- the child side: processes and destination sockets ---- */

static int dial(const char *host, int port) {
    int fd;
    if (strchr(host, ':')) {
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a6.sin6_addr);
        fd = socket(AF_INET6, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        set_nonblock(fd);
        if (connect(fd, (struct sockaddr *)&a6, sizeof a6) < 0 && errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
    } else {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        set_nonblock(fd);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* 1 connected, 0 still connecting, -1 failed. */
static int connect_done(int fd) {
    int err = 0;
    socklen_t l = sizeof err;
    short re = revents_of(fd);
    if (!(re & (POLLOUT | POLLERR | POLLHUP))) return 0;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) return -1;
    return 1;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static char *child_env[8];


/* Where no pseudo-terminal can be had (a chroot without /dev/pts, a
   container without devpts): the shell or command runs on one end of a
   socket pair instead, `sh -i` so that it still prompts. Terminal sizes are
   then ignored and Ctrl-C is only a byte. */
static pid_t spawn_without_pty(session *s) {
    static int told;
    int sv[2];
    pid_t pid;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
    pid = fork();
    if (pid == 0) {
        setsid();
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        dup2(sv[1], 2);
        close(sv[0]);
        close(sv[1]);
        signal(SIGPIPE, SIG_DFL);
        if (s->kind == K_SHELL) execle(opt.shell, opt.shell, "-i", (char *)NULL, child_env);
        else execle("/bin/sh", "sh", "-c", s->command, (char *)NULL, child_env);
        _exit(127);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    if (!told++) fprintf(stderr, "ssmb-local: no pseudo-terminal here: shells run on a socket pair\n");
    s->pty = sv[0];
    return pid;
}

static void start_child(session *s) {
    struct winsize ws;
    pid_t pid;
    static char home[512], term[] = "TERM=xterm-256color", path[] = "PATH=/usr/local/bin:/usr/bin:/bin",
                         ps1[] = "PS1=$ ", lang[] = "LANG=C.UTF-8";
    const char *h = getenv("HOME");
    snprintf(home, sizeof home, "HOME=%s", h && *h ? h : "/");
    child_env[0] = home;
    child_env[1] = path;
    child_env[2] = term;
    child_env[3] = lang;
    child_env[4] = ps1;
    child_env[5] = NULL;
    if (s->kind == K_NONINTERACTIVE) {
        int o[2], e[2];
        if (pipe(o) < 0) return;
        if (pipe(e) < 0) {
            close(o[0]);
            close(o[1]);
            return;
        }
        pid = fork();
        if (pid == 0) {
            int nul = open("/dev/null", O_RDONLY);
            setsid();
            if (nul >= 0) dup2(nul, 0);
            dup2(o[1], 1);
            dup2(e[1], 2);
            close(o[0]);
            close(e[0]);
            signal(SIGPIPE, SIG_DFL);
            execle("/bin/sh", "sh", "-c", s->command, (char *)NULL, child_env);
            _exit(127);
        }
        close(o[1]);
        close(e[1]);
        if (pid < 0) {
            close(o[0]);
            close(e[0]);
            return;
        }
        s->out_fd = o[0];
        s->err_fd = e[0];
        set_nonblock(s->out_fd);
        set_nonblock(s->err_fd);
        s->pid = pid;
        return;
    }
    memset(&ws, 0, sizeof ws);
    ws.ws_col = 80;
    ws.ws_row = 24;
    pid = forkpty(&s->pty, NULL, NULL, &ws);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (s->kind == K_SHELL) execle(opt.shell, opt.shell, (char *)NULL, child_env);
        else execle("/bin/sh", "sh", "-c", s->command, (char *)NULL, child_env);
        _exit(127);
    }
    if (pid < 0) pid = spawn_without_pty(s);
    if (pid < 0) {
        s->pty = -1;
        return;
    }
    set_nonblock(s->pty);
    s->pid = pid;
}

static void kill_child(session *s) {
    if (s->pid > 0 && !s->reaped) {
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        s->reaped = 1;
    }
}

static int version_ge(const char *a, const char *b) {
    while (*a || *b) {
        long x = strtol(a, (char **)NULL, 10), y = strtol(b, (char **)NULL, 10);
        if (x != y) return x > y;
        a = strchr(a, '.') ? strchr(a, '.') + 1 : a + strlen(a);
        b = strchr(b, '.') ? strchr(b, '.') + 1 : b + strlen(b);
    }
    return 1;
}

static void send_closed(session *s);
static void ws_process(conn *c);

static void start_workload(session *s) {
    s->workload = 1;
    if (s->kind != K_PORT) {
        start_child(s);
        if (s->pid < 0) {
            session_end(s, "Unable to start the shell or command.");
        }
        return;
    }
    s->mux = strstr(s->properties, "LocalPortForwarding") && ssmb_version_gt(opt.agent_version, "3.0.196.0") &&
             s->client_version[0] && version_ge(s->client_version, "1.1.70");
    if (s->mux) {
        ssmb_smux_desc d;
        memset(&d, 0, sizeof d);
        d.role = SSMB_SMUX_SERVER;
        d.max_streams = MAX_STREAMS;
        d.stream_buffer_bytes = 262144; /* a turn's messages (IN_CAP) into the stream in one write */
        d.keepalive = !version_ge(s->client_version, "1.2.332.0");
        if (ssmb_smux_create(&d, &s->smux) != SSMB_OK) session_end(s, "smux setup failed");
        return;
    }
    s->sock = dial(s->host, s->port);
    s->sock_connecting = 1;
    if (s->sock < 0) session_end(s, "Unable to connect to specified port.");
}

/* ---- the end of a session ---- */

static void free_held(held_frame *h) {
    free(h->data);
    h->data = NULL;
    h->len = 0;
}

static void drop_delayed(session *s) {
    while (s->delayed_count) {
        free_held(&s->delayed[s->delayed_head]);
        s->delayed_head = (s->delayed_head + 1) % DELAY_SLOTS;
        s->delayed_count--;
    }
    free_held(&s->reordered);
}

static void release_workload(session *s) {
    int i;
    kill_child(s);
    close_fd(&s->pty);
    close_fd(&s->out_fd);
    close_fd(&s->err_fd);
    close_fd(&s->sock);
    for (i = 0; i < MAX_STREAMS; i++) {
        close_fd(&s->streams[i].fd);
        s->streams[i].used = 0;
    }
}

/* Ends the session now: the workload goes, channel_closed follows at once. */
static void session_end(session *s, const char *reason) {
    if (s->ending && s->end_ms == 1) return;
    release_workload(s);
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    s->ending = 1;
    s->terminated = 1;
    s->end_ms = 1; /* long past: no wait for acknowledgements */
}

static void session_free(session *s) {
    int i;
    release_workload(s);
    if (s->ws) {
        s->ws->s = NULL;
        s->ws->linger_until = now_ms() + 2000;
    }
    drop_delayed(s);
    ssmb_channel_destroy(s->ch);
    ssmb_smux_destroy(s->smux);
    free(s->pin);
    for (i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i] == s) sessions[i] = NULL;
    free(s);
}

static void send_closed(session *s) {
    char body[1024], mid[37], created[32];
    uint8_t frame[1200], r16[16];
    ssmb_json_writer w;
    ssmb_uuid u;
    ssmb_msg m;
    size_t n = 0, fl = 0;
    uint64_t epoch = (uint64_t)time(NULL) * 1000u;
    if (!s->ws || !s->ws->opened) return;
    random_bytes(r16, sizeof r16);
    ssmb_uuid_v4(r16, &u);
    ssmb_uuid_format(&u, mid);
    snprintf(created, sizeof created, "%llu", (unsigned long long)epoch);
    ssmb_json_writer_init(&w, body, sizeof body);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "MessageId", 9);
    ssmb_json_writer_string(&w, mid, strlen(mid));
    ssmb_json_writer_key(&w, "CreatedDate", 11);
    ssmb_json_writer_string(&w, created, strlen(created));
    ssmb_json_writer_key(&w, "DestinationId", 13);
    ssmb_json_writer_string(&w, s->target, strlen(s->target));
    ssmb_json_writer_key(&w, "SessionId", 9);
    ssmb_json_writer_string(&w, s->id, strlen(s->id));
    ssmb_json_writer_key(&w, "MessageType", 11);
    ssmb_json_writer_string(&w, "channel_closed", 14);
    ssmb_json_writer_key(&w, "SchemaVersion", 13);
    ssmb_json_writer_i64(&w, 1);
    ssmb_json_writer_key(&w, "Output", 6);
    ssmb_json_writer_string(&w, s->reason, strlen(s->reason));
    ssmb_json_writer_end_object(&w);
    if (ssmb_json_writer_finish(&w, &n) != SSMB_OK) return;
    memset(&m, 0, sizeof m);
    m.type = ssmb_str_c(SSMB_MSG_CHANNEL_CLOSED);
    m.schema_version = 1;
    m.created_date_ms = epoch;
    m.sequence_number = 0;
    m.flags = SSMB_MSG_FLAG_SYN | SSMB_MSG_FLAG_FIN;
    random_bytes(r16, sizeof r16);
    ssmb_uuid_v4(r16, &m.message_id);
    m.payload_type = SSMB_PAYLOAD_NONE;
    m.payload = (const uint8_t *)body;
    m.payload_size = n;
    if (ssmb_msg_encode(&m, frame, sizeof frame, &fl) != SSMB_OK) return;
    ws_put(s->ws, SSMB_WS_BINARY, frame, fl);
    log_frame(s, "out", frame, fl, NULL);
}

/* ---- the data channel: WebSocket in, agent channel, WebSocket out ---- */

static void conn_detach(conn *c) {
    if (c->s && c->s->ws == c) {
        c->s->ws = NULL;
        c->s->ws_gone_ms = now_ms();
        drop_delayed(c->s);
    }
    c->s = NULL;
}

static int create_channel(session *s, uint64_t now) {
    ssmb_channel_desc d;
    memset(&d, 0, sizeof d);
    d.role = SSMB_CHANNEL_AGENT;
    d.agent_version = opt.agent_version;
    if (s->kind == K_NONINTERACTIVE) d.session_type = "NonInteractiveCommands";
    else if (s->kind == K_PORT) {
        d.session_type = "Port";
        d.session_properties = s->properties;
    }
    /* PROTOCOL.md §5.1: with a KMS key the shell and interactive commands
       get a handshake too; KMS is never requested for Port sessions. */
    if (opt.kms_key_id && s->kind != K_PORT) {
        d.kms_key_id = opt.kms_key_id;
        if (s->kind == K_SHELL) d.session_type = "Standard_Stream";
        if (s->kind == K_INTERACTIVE) d.session_type = "InteractiveCommands";
    }
    d.payload_size = opt.payload_size;
    d.send_buffer_bytes = 1024u * 1024u;
    d.send_buffer_messages = 512;
    d.reorder_buffer_bytes = 256u * 1024u;
    d.reorder_buffer_messages = 256; /* and acks queued between writes: this many + 32 */
    d.reorder_buffer_max_bytes = 4u * 1024u * 1024u; /* the agent keeps up to 100000 (§3.6) */
    d.max_frame = MSG_CAP;
    d.max_resend_attempts = 100000;
    if (ssmb_channel_create(&d, &s->ch) != SSMB_OK) return -1;
    if (ssmb_channel_start(s->ch, now) != SSMB_OK) return -1;
    s->started = 1;
    return 0;
}

/* The first text message: OpenDataChannelInput with the session's token. */
static void open_data_channel(conn *c, uint64_t now) {
    session *s = c->s;
    ssmb_json d;
    ssmb_json_token tok[64];
    char token[SSMB_API_TOKEN_MAX];
    if (c->msg_op != SSMB_WS_TEXT || ssmb_json_parse(&d, (const char *)c->msg, c->msg_len, tok, 64) != SSMB_OK ||
        ssmb_json_kind(&d, 0) != SSMB_JSON_OBJECT || !json_str(&d, 0, "TokenValue", token, sizeof token) ||
        strlen(token) != strlen(s->token) || !ssmb_equal_ct(token, s->token, strlen(token))) {
        note("session %s: data channel refused (bad OpenDataChannelInput or token)", s->id);
        c->s = NULL;
        c->dead = 1;
        return;
    }
    if (s->ws && s->ws != c) {
        s->ws->s = NULL;
        s->ws->dead = 1;
        drop_delayed(s);
    }
    s->ws = c;
    c->opened = 1;
    c->since_ms = now;
    if (!s->started) {
        if (create_channel(s, now) != 0) session_end(s, "channel setup failed");
        if (s->kind == K_SHELL || s->kind == K_INTERACTIVE) {
            s->ready = 1;
            start_workload(s);
        }
    } else if (s->ch) {
        ssmb_channel_reconnected(s->ch, now);
        if (s->ending && !s->terminated) s->end_ms = now;
        note("session %s: data channel reconnected", s->id);
    }
}

static int pin_put(session *s, const uint8_t *p, size_t n) {
    if (s->pin_len + n > PIN_CAP) return 0;
    memcpy(s->pin + s->pin_len, p, n);
    s->pin_len += n;
    return 1;
}

static void pin_take(session *s, size_t n) {
    memmove(s->pin, s->pin + n, s->pin_len - n);
    s->pin_len -= n;
}

static void on_size(session *s, const uint8_t *p, size_t n) {
    ssmb_json d;
    ssmb_json_token tok[16];
    uint32_t cols = 0, rows = 0;
    struct winsize ws;
    if (s->pty < 0 || ssmb_json_parse(&d, (const char *)p, n, tok, 16) != SSMB_OK) return;
    if (ssmb_json_get_u32(&d, ssmb_json_find(&d, 0, "cols"), &cols) != SSMB_OK ||
        ssmb_json_get_u32(&d, ssmb_json_find(&d, 0, "rows"), &rows) != SSMB_OK || !cols || !rows)
        return;
    memset(&ws, 0, sizeof ws);
    ws.ws_col = (unsigned short)(cols > 65535 ? 65535 : cols);
    ws.ws_row = (unsigned short)(rows > 65535 ? 65535 : rows);
    ioctl(s->pty, TIOCSWINSZ, &ws);
}

static void on_output(session *s, const uint8_t *p, size_t n) {
    size_t i;
    switch (s->kind) {
    case K_SHELL:
    case K_INTERACTIVE: pin_put(s, p, n); break;
    case K_NONINTERACTIVE:
        for (i = 0; i < n && s->pid > 0 && !s->reaped; i++) {
            if (p[i] == 0x03) kill(-s->pid, SIGINT);
            else if (p[i] == 0x1c) kill(-s->pid, SIGQUIT);
        }
        break;
    default:
        pin_put(s, p, n);
        if (!s->mux && s->sock < 0 && s->workload) {
            s->sock = dial(s->host, s->port);
            s->sock_connecting = 1;
        }
        break;
    }
}

/* Events may point into the WebSocket message they came from: while some
   wait (events_pending), the next message must not be read over it. */
/* KMS Decrypt of the client's CiphertextBlob: the key GenerateDataKey made. */
static void kms_decrypt(session *s, const uint8_t *blob, size_t len) {
    size_t i;
    for (i = 0; i < KMS_KEYS; i++) {
        kms_key *k = &kms_keys[i];
        if (k->used && len == sizeof k->blob && memcmp(k->blob, blob, len) == 0) {
            (void)ssmb_channel_kms_key(s->ch, k->plain, sizeof k->plain, blob, len, now_ms());
            return;
        }
    }
    (void)ssmb_channel_kms_failed(s->ch, "InvalidCiphertextException: the ciphertext refers to no key of this KMS",
                                  now_ms());
}

static void channel_events(session *s) {
    ssmb_channel_event ev;
    for (;;) {
        if (!s->ending && (s->disconnect_pending || s->pin_len + SSMB_CHANNEL_MAX_PAYLOAD > PIN_CAP)) {
            s->events_pending = 1;
            break;
        }
        if (ssmb_channel_poll(s->ch, &ev) != SSMB_OK) {
            s->events_pending = 0;
            break;
        }
        if (s->ending) { /* draining: acknowledgements still count, client data goes nowhere */
            if (ev.type == SSMB_CHANNEL_EVENT_CLOSED) session_end(s, ev.message.len ? ev.message.ptr : "");
            continue;
        }
        switch (ev.type) {
        case SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE:
            snprintf(s->client_version, sizeof s->client_version, "%.*s", (int)ev.client_version.len,
                     ev.client_version.ptr);
            if (ev.result != SSMB_OK) session_end(s, ev.message.len ? ev.message.ptr : "handshake refused");
            break;
        case SSMB_CHANNEL_EVENT_READY:
            if (!s->ready) {
                s->ready = 1;
                start_workload(s);
            }
            break;
        case SSMB_CHANNEL_EVENT_DATA:
            if (ev.payload_type == SSMB_PAYLOAD_SIZE) on_size(s, ev.data, ev.len);
            else if (ev.payload_type == SSMB_PAYLOAD_OUTPUT) on_output(s, ev.data, ev.len);
            break;
        case SSMB_CHANNEL_EVENT_KMS_DECRYPT: kms_decrypt(s, ev.data, ev.len); break;
        case SSMB_CHANNEL_EVENT_FLAG:
            if (ev.flag == SSMB_FLAG_TERMINATE_SESSION) session_end(s, "");
            else if (ev.flag == SSMB_FLAG_DISCONNECT_TO_PORT && s->kind == K_PORT && !s->mux) s->disconnect_pending = 1;
            break;
        case SSMB_CHANNEL_EVENT_CLOSED:
            session_end(s, ev.message.len ? ev.message.ptr : "");
            break;
        default: break;
        }
    }
}

/* The waiting WebSocket message goes to the channel. */
static void deliver(session *s, uint64_t now) {
    conn *c = s->ws;
    ssmb_msg m;
    ssmb_result r;
    if (!c || !c->msg_ready || !s->ch) return;
    if (c->msg_op == SSMB_WS_BINARY && ssmb_msg_decode(c->msg, c->msg_len, &m) == SSMB_OK &&
        ssmb_msg_type_is(&m, SSMB_MSG_INPUT_STREAM_DATA)) {
        if (roll(opt.drop)) {
            log_frame(s, "in", c->msg, c->msg_len, "dropped");
            c->msg_ready = 0;
            return;
        }
    }
    r = ssmb_channel_recv(s->ch, c->msg, c->msg_len, c->msg_op == SSMB_WS_TEXT, now);
    if (r == SSMB_AGAIN) return;
    log_frame(s, "in", c->msg, c->msg_len, NULL);
    c->msg_ready = 0;
}

/* Queues a copy for --delay. */
static int delay_frame(session *s, const uint8_t *f, size_t n, uint64_t now) {
    held_frame *h;
    if (s->delayed_count >= DELAY_SLOTS) return 0;
    h = &s->delayed[(s->delayed_head + s->delayed_count) % DELAY_SLOTS];
    h->data = (uint8_t *)malloc(n);
    if (!h->data) return 0;
    memcpy(h->data, f, n);
    h->len = n;
    h->due = now + (uint64_t)opt.delay_ms;
    s->delayed_count++;
    return 1;
}

static void write_frames(session *s, uint64_t now) {
    static uint8_t tmp[MSG_CAP];
    conn *c = s->ws;
    const uint8_t *f;
    size_t n;
    if (!c || !c->opened || c->dead || c->closing || !s->ch) return;
    while (s->delayed_count) {
        held_frame *h = &s->delayed[s->delayed_head];
        if (h->due > now || conn_room(c) < h->len + 16) break;
        ws_put(c, SSMB_WS_BINARY, h->data, h->len);
        log_frame(s, "out", h->data, h->len, "delayed");
        free_held(h);
        s->delayed_head = (s->delayed_head + 1) % DELAY_SLOTS;
        s->delayed_count--;
    }
    if (s->reordered.data && s->reordered.due + 50 <= now && conn_room(c) >= s->reordered.len + 16) {
        ws_put(c, SSMB_WS_BINARY, s->reordered.data, s->reordered.len);
        log_frame(s, "out", s->reordered.data, s->reordered.len, "reordered");
        free_held(&s->reordered);
    }
    while (ssmb_channel_next_frame(s->ch, &f, &n) == SSMB_OK) {
        ssmb_msg m;
        int is_ack = 0, is_data = 0;
        const uint8_t *send = f;
        if (conn_room(c) < 2 * n + 64 + (s->reordered.data ? s->reordered.len + 16 : 0)) break;
        if (ssmb_msg_decode(f, n, &m) == SSMB_OK) {
            is_ack = ssmb_msg_type_is(&m, SSMB_MSG_ACKNOWLEDGE);
            is_data = ssmb_msg_type_is(&m, SSMB_MSG_OUTPUT_STREAM_DATA);
        }
        if (is_ack && roll(opt.withhold_acks)) {
            log_frame(s, "out", f, n, "ack-withheld");
            ssmb_channel_frame_sent(s->ch, now);
            continue;
        }
        if (is_data && roll(opt.drop)) {
            log_frame(s, "out", f, n, "dropped");
            ssmb_channel_frame_sent(s->ch, now);
            continue;
        }
        if (is_data && m.payload_size && n <= sizeof tmp && roll(opt.corrupt_digest)) {
            memcpy(tmp, f, n);
            tmp[80] ^= 0x5a;
            send = tmp;
            log_frame(s, "out", f, n, "digest-corrupted");
        }
        if (opt.delay_ms > 0) {
            if (!delay_frame(s, send, n, now)) break;
            ssmb_channel_frame_sent(s->ch, now);
            continue;
        }
        if (is_data && !s->reordered.data && roll(opt.reorder)) {
            s->reordered.data = (uint8_t *)malloc(n);
            if (s->reordered.data) {
                memcpy(s->reordered.data, send, n);
                s->reordered.len = n;
                s->reordered.due = now;
                ssmb_channel_frame_sent(s->ch, now);
                continue;
            }
        }
        ws_put(c, SSMB_WS_BINARY, send, n);
        if (send == f) log_frame(s, "out", f, n, NULL);
        if (is_data && roll(opt.duplicate)) {
            ws_put(c, SSMB_WS_BINARY, send, n);
            log_frame(s, "out", f, n, "duplicate");
        }
        if (s->reordered.data) {
            ws_put(c, SSMB_WS_BINARY, s->reordered.data, s->reordered.len);
            log_frame(s, "out", s->reordered.data, s->reordered.len, "reordered");
            free_held(&s->reordered);
        }
        ssmb_channel_frame_sent(s->ch, now);
    }
}

/* ---- the workload's bytes: to the channel and from it ---- */

static int pacing_allows(session *s, uint64_t now) {
    return !opt.pacing_reference || now >= s->last_send_ms + 1;
}

/* Bytes at the end of p[0..n) that begin a UTF-8 sequence not complete yet (0..3). */
static size_t utf8_tail(const uint8_t *p, size_t n) {
    size_t back;
    for (back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = p[n - back];
        size_t need;
        if ((b & 0xC0) == 0x80) continue;   /* a continuation byte: look further back */
        if (b >= 0xF0) need = 4;
        else if (b >= 0xE0) need = 3;
        else if (b >= 0xC0) need = 2;
        else return 0;
        return need > back ? back : 0;
    }
    return 0;
}

/* Reads fd into one message of payload_type; 1 sent, 0 nothing now, -1 EOF
   or error. PTY output never splits a UTF-8 sequence across messages (the
   agent carries up to 3 bytes over, PROTOCOL.md §7.2). */
static int pump_fd(session *s, int fd, uint32_t payload_type, uint64_t now) {
    uint8_t buf[SSMB_CHANNEL_MAX_PAYLOAD];
    size_t space = ssmb_channel_send_space(s->ch), taken = 0, have, keep = 0;
    int is_pty = fd == s->pty;
    ssize_t n;
    if (!space || !pacing_allows(s, now)) return 0;
    if (space > sizeof buf) space = sizeof buf;
    have = is_pty ? s->carry_len : 0;
    if (space <= have) return 0;
    memcpy(buf, s->carry, have);
    n = read(fd, buf + have, space - have);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) {
        if (have) ssmb_channel_send(s->ch, payload_type, buf, have, &taken);
        if (is_pty) s->carry_len = 0;
        return -1;
    }
    have += (size_t)n;
    if (is_pty) {
        keep = utf8_tail(buf, have);
        if (keep == have) keep = 0;
        memcpy(s->carry, buf + have - keep, keep);
        s->carry_len = keep;
    }
    ssmb_channel_send(s->ch, payload_type, buf, have - keep, &taken);
    s->last_send_ms = now;
    return 1;
}

static void smux_to_channel(session *s) {
    const uint8_t *p;
    size_t n = 0, taken = 0;
    while ((p = ssmb_smux_out_buf(s->smux, &n)) != NULL && n) {
        size_t space = ssmb_channel_send_space(s->ch);
        if (!space) break;
        if (n > space) n = space;
        taken = 0;
        if (ssmb_channel_send(s->ch, SSMB_PAYLOAD_OUTPUT, p, n, &taken) != SSMB_OK || !taken) break;
        ssmb_smux_out_ack(s->smux, taken);
    }
}

static pstream *stream_find(session *s, uint32_t id) {
    int i;
    for (i = 0; i < MAX_STREAMS; i++)
        if (s->streams[i].used && s->streams[i].id == id) return &s->streams[i];
    return NULL;
}

static void stream_drop(session *s, pstream *p) {
    ssmb_smux_close(s->smux, p->id);
    close_fd(&p->fd);
    p->used = 0;
}

/* A target's bytes read straight into the channel's send buffer, each
   place one message carrying one PSH frame (ssmb_channel_send_places,
   ssmb_smux_write_header): no copies, and no frame cut across messages
   (§7.4 allows either). What readv returned, or -2 when it cannot be done
   now (the mux's own output waits, or no place); *ask what was asked. */
static ssize_t read_placed(session *s, pstream *p, size_t *ask) {
    ssmb_send_place pl[16];
    struct iovec iov[16];
    size_t count, used = 0, left, i, out_len = 0;
    ssize_t got;
    *ask = 0;
    if (ssmb_smux_out_buf(s->smux, &out_len)) return -2;
    count = ssmb_channel_send_places(s->ch, SSMB_PAYLOAD_OUTPUT, pl, opt.pacing_reference ? 1 : 16);
    for (i = 0; i < count && pl[i].cap > SSMB_SMUX_HEADER_SIZE && *ask < 65536; i++, used++) {
        iov[i].iov_base = pl[i].data + SSMB_SMUX_HEADER_SIZE;
        iov[i].iov_len = pl[i].cap - SSMB_SMUX_HEADER_SIZE; /* payloads are at most 32768 bytes, a frame's most */
        *ask += iov[i].iov_len;
    }
    if (!used) return -2;
    got = readv(p->fd, iov, (int)used);
    for (i = 0, left = got > 0 ? (size_t)got : 0; i < used && left; i++) {
        size_t m = left < iov[i].iov_len ? left : iov[i].iov_len;
        if (ssmb_smux_write_header(s->smux, p->id, m, pl[i].data) != SSMB_OK ||
            ssmb_channel_send_commit(s->ch, SSMB_SMUX_HEADER_SIZE + m) != SSMB_OK) {
            note("session %s: %zu bytes from the target not queued", s->id, left);
            break;
        }
        left -= m;
    }
    return got;
}

static void mux_pump(session *s, uint64_t now) {
    ssmb_smux_event ev;
    int i;
    if (s->pin_len) {
        size_t used = 0;
        ssmb_result r = ssmb_smux_feed(s->smux, s->pin, s->pin_len, &used, now);
        pin_take(s, used);
        if (r < 0) {
            session_end(s, "smux protocol error");
            return;
        }
    }
    while (ssmb_smux_poll(s->smux, &ev) == SSMB_OK) {
        if (ev.type == SSMB_SMUX_EVENT_OPENED) {
            pstream *p = NULL;
            for (i = 0; i < MAX_STREAMS; i++)
                if (!s->streams[i].used) {
                    p = &s->streams[i];
                    break;
                }
            if (p) {
                memset(p, 0, sizeof *p);
                p->fd = dial(s->host, s->port);
                p->id = ev.stream_id;
                p->used = 1;
                p->connecting = 1;
            }
            if (!p || p->fd < 0) {
                ssmb_channel_send_flag(s->ch, SSMB_FLAG_CONNECT_TO_PORT_ERROR);
                if (p) p->used = 0;
                ssmb_smux_close(s->smux, ev.stream_id);
            }
        } else if (ev.type == SSMB_SMUX_EVENT_CLOSED) {
            pstream *p = stream_find(s, ev.stream_id);
            if (p) p->peer_fin = 1;
            else ssmb_smux_close(s->smux, ev.stream_id);
        } else if (ev.type == SSMB_SMUX_EVENT_ERROR) {
            session_end(s, "smux session ended");
            return;
        }
    }
    for (i = 0; i < MAX_STREAMS; i++) {
        pstream *p = &s->streams[i];
        const uint8_t *d;
        size_t n;
        ssmb_result r;
        if (!p->used) continue;
        if (p->connecting) {
            int st = connect_done(p->fd);
            if (st < 0) {
                ssmb_channel_send_flag(s->ch, SSMB_FLAG_CONNECT_TO_PORT_ERROR);
                stream_drop(s, p);
                continue;
            }
            if (st == 0) continue;
            p->connecting = 0;
        }
        while ((r = ssmb_smux_peek(s->smux, p->id, &d, &n)) == SSMB_OK && n) {
            ssize_t w = write(p->fd, d, n);
            if (w <= 0) break;
            ssmb_smux_consume(s->smux, p->id, (size_t)w);
        }
        if (r == SSMB_CLOSED || (p->peer_fin && ssmb_smux_available(s->smux, p->id) == 0)) {
            stream_drop(s, p);
            continue;
        }
        if (r != SSMB_OK && r != SSMB_AGAIN) {
            stream_drop(s, p);
            continue;
        }
        /* read while poll() said so and each read got all it asked for */
        while (revents_of(p->fd) & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[16384];
            size_t space = ssmb_smux_write_space(s->smux), taken = 0, ask = 0;
            ssize_t got;
            if (space > sizeof buf) space = sizeof buf;
            if (!space || !ssmb_channel_send_space(s->ch) || !pacing_allows(s, now)) break;
            got = read_placed(s, p, &ask);
            if (got == -2) { /* through the mux's output, behind what waits there */
                ask = space;
                got = read(p->fd, buf, space);
                if (got > 0 &&
                    (ssmb_smux_write(s->smux, p->id, buf, (size_t)got, &taken) != SSMB_OK || taken != (size_t)got))
                    note("session %s: smux write took %zu of %zd", s->id, taken, got);
            }
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
            if (got <= 0) {
                stream_drop(s, p);
                break;
            }
            smux_to_channel(s);
            s->last_send_ms = now;
            if ((size_t)got < ask) break;
        }
    }
    smux_to_channel(s);
}

static void basic_pump(session *s, uint64_t now) {
    int ssh = strstr(s->properties, "LocalPortForwarding") == NULL;
    if (s->sock >= 0 && s->sock_connecting) {
        int st = connect_done(s->sock);
        if (st < 0) {
            close_fd(&s->sock);
            s->pin_len = 0;
            if (ssh) session_end(s, "Unable to connect to specified port.");
            return;
        }
        if (st == 0) return;
        s->sock_connecting = 0;
    }
    if (s->sock >= 0 && s->pin_len) {
        ssize_t w = write(s->sock, s->pin, s->pin_len);
        if (w > 0) pin_take(s, (size_t)w);
        else if (w < 0 && errno != EAGAIN && errno != EINTR) s->pin_len = 0;
    }
    if (s->disconnect_pending && (s->pin_len == 0 || s->sock < 0)) {
        close_fd(&s->sock);
        s->pin_len = 0;
        s->disconnect_pending = 0;
        return;
    }
    while (s->sock >= 0 && !s->disconnect_pending && (revents_of(s->sock) & (POLLIN | POLLHUP | POLLERR))) {
        int r = pump_fd(s, s->sock, SSMB_PAYLOAD_OUTPUT, now);
        if (r < 0) {
            close_fd(&s->sock);
            if (ssh) session_end(s, "");
        }
        if (r <= 0 || opt.pacing_reference) break;
    }
}

static void proc_pump(session *s, uint64_t now) {
    int st = 0;
    if (s->pty >= 0 && s->pin_len) {
        ssize_t w = write(s->pty, s->pin, s->pin_len);
        if (w > 0) pin_take(s, (size_t)w);
        else if (w < 0 && errno != EAGAIN && errno != EINTR) s->pin_len = 0;
    }
    for (;;) {
        int a = 0, b = 0;
        if (s->pty >= 0 && (a = pump_fd(s, s->pty, SSMB_PAYLOAD_OUTPUT, now)) < 0) close_fd(&s->pty);
        if (s->out_fd >= 0 && (a = pump_fd(s, s->out_fd, SSMB_PAYLOAD_OUTPUT, now)) < 0) close_fd(&s->out_fd);
        if (s->err_fd >= 0 && (b = pump_fd(s, s->err_fd, SSMB_PAYLOAD_STDERR, now)) < 0) close_fd(&s->err_fd);
        if (a <= 0 && b <= 0) break;
        if (opt.pacing_reference) break;
    }
    if (s->pid > 0 && !s->reaped && waitpid(s->pid, &st, WNOHANG) == s->pid) {
        s->reaped = 1;
        s->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    /* The shell is gone but something it left in the background keeps the
       PTY open: once nothing more is waiting, the session ends anyway. */
    if (s->reaped && s->pty >= 0 && ssmb_channel_send_space(s->ch) > 0 && pacing_allows(s, now)) {
        int r = pump_fd(s, s->pty, SSMB_PAYLOAD_OUTPUT, now);
        if (r <= 0) {
            kill(-s->pid, SIGHUP);
            close_fd(&s->pty);
        }
    }
    if (!s->reaped || s->pty >= 0 || s->out_fd >= 0 || s->err_fd >= 0) return;
    if (s->kind == K_NONINTERACTIVE && !s->exit_sent) {
        char text[32];
        size_t taken = 0;
        int n = snprintf(text, sizeof text, "EXIT_CODE: %d", s->exit_code);
        if (ssmb_channel_send_space(s->ch) < (size_t)n) return;
        ssmb_channel_send(s->ch, SSMB_PAYLOAD_EXIT_CODE, text, (size_t)n, &taken);
        s->exit_sent = 1;
    }
    s->ending = 1;
    s->end_ms = now;
    s->reason[0] = '\0';
}

/* Everything one session does in a turn of the loop. */
static void session_pump(session *s, uint64_t now) {
    conn *c = s->ws;
    if (c && c->opened && !c->dead && !c->closing && s->ch) {
        ssmb_channel_metrics m;
        ssmb_channel_get_metrics(s->ch, &m);
        if (!s->next_cut) s->next_cut = (uint64_t)opt.cut_after;
        if (opt.cut_after && m.data_out + m.data_in >= s->next_cut) {
            note("session %s: cutting the WebSocket after %llu stream messages", s->id,
                 (unsigned long long)(m.data_out + m.data_in));
            s->next_cut = m.data_out + m.data_in + (uint64_t)opt.cut_after;
            c->closing = 1;
        } else if (opt.cut_every && now >= c->since_ms + (uint64_t)opt.cut_every * 1000u) {
            uint8_t cp[SSMB_WS_MAX_CONTROL_PAYLOAD];
            size_t cl = 0;
            note("session %s: closing the WebSocket (every %d s)", s->id, opt.cut_every);
            /* as the service's hourly recycle does (PROTOCOL.md §16): a normal close, "Bye" */
            if (ssmb_ws_close_payload_build(SSMB_WS_CLOSE_NORMAL, "Bye", 3, cp, &cl) == SSMB_OK)
                ws_put(c, SSMB_WS_CLOSE, cp, cl);
            c->closing = 1;
        }
    }
    if (c && c->dead) {
        conn_detach(c);
        c = NULL;
    }
    if (!s->ch) {
        if (!s->ws && now >= s->ws_gone_ms + (uint64_t)opt.idle_timeout * 1000u) {
            note("session %s: never connected, ended", s->id);
            s->dead = 1;
        }
        if (s->ending) s->dead = 1;
        return;
    }
    if (!s->terminated) {
        int i;
        for (i = 0; i < 256; i++) {
            deliver(s, now);
            channel_events(s);
            if (!s->ws || s->terminated) break;
            if (!s->ws->msg_ready && s->ws->in_len) ws_process(s->ws);
            if (!s->ws || !s->ws->msg_ready) break;
        }
        if (s->ready && s->workload && !s->ending) {
            if (s->kind != K_PORT) proc_pump(s, now);
            else if (s->mux) mux_pump(s, now);
            else basic_pump(s, now);
        }
        channel_events(s);
    }
    ssmb_channel_tick(s->ch, now);
    write_frames(s, now);
    if (!s->ws && now >= s->ws_gone_ms + (uint64_t)opt.idle_timeout * 1000u) {
        note("session %s: no data channel for %d s, ended", s->id, opt.idle_timeout);
        release_workload(s);
        s->dead = 1;
        return;
    }
    if (s->ending) {
        const uint8_t *f;
        size_t n;
        int drained = ssmb_channel_next_frame(s->ch, &f, &n) != SSMB_OK &&
                      ssmb_channel_next_deadline(s->ch) == SSMB_NO_DEADLINE && !s->delayed_count &&
                      !s->reordered.data;
        if (drained || (now >= s->end_ms + 30000 && (s->ws || s->terminated))) {
            if (s->ws && conn_room(s->ws) < 2048) return;
            send_closed(s);
            note("session %s: closed%s%s", s->id, s->reason[0] ? ": " : "", s->reason);
            s->dead = 1;
        }
    }
}

/* ---- connections: accept, TLS, plain ---- */

static void conn_new(int fd) {
    int i, one = 1;
    conn *c;
    for (i = 0; i < MAX_CONNS && conns[i]; i++) {
    }
    if (i == MAX_CONNS) {
        close(fd);
        return;
    }
    c = (conn *)calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    set_nonblock(fd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    if (!opt.no_tls) {
        c->sc = (br_ssl_server_context *)malloc(sizeof *c->sc);
        c->iobuf = (unsigned char *)malloc(BR_SSL_BUFSIZE_BIDI);
        if (!c->sc || !c->iobuf) {
            free(c->sc);
            free(c->iobuf);
            free(c);
            close(fd);
            return;
        }
        br_ssl_server_init_full_ec(c->sc, tls_chain, tls_chain_len, BR_KEYTYPE_EC, &tls_key);
        br_ssl_engine_set_buffer(&c->sc->eng, c->iobuf, BR_SSL_BUFSIZE_BIDI, 1);
        br_ssl_server_reset(c->sc);
    }
    conns[i] = c;
}

static void conn_free(int i) {
    conn *c = conns[i];
    conn_detach(c);
    close(c->fd);
    free(c->sc);
    free(c->iobuf);
    free(c);
    conns[i] = NULL;
}

/* Moves the unread bytes of in down when fewer than want bytes are free. */
static void in_make_room(conn *c, size_t want) {
    if (!c->in_off || IN_CAP - c->in_len >= want) return;
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
}

static void conn_io_plain(conn *c) {
    short re = revents_of(c->fd);
    in_make_room(c, IN_CAP);
    if ((re & (POLLIN | POLLHUP | POLLERR)) && c->in_len < IN_CAP) {
        ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (n > 0) c->in_len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR)) c->dead = 1;
    }
    if (c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            out_take(c, (size_t)n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) c->dead = 1;
    }
}

static void conn_io_tls(conn *c) {
    br_ssl_engine_context *e = &c->sc->eng;
    int rounds;
    for (rounds = 0; rounds < 64; rounds++) {
        unsigned st = br_ssl_engine_current_state(e);
        int progress = 0;
        unsigned char *buf;
        size_t len;
        if (st & BR_SSL_CLOSED) {
            c->dead = 1;
            return;
        }
        if (st & BR_SSL_SENDREC) {
            ssize_t n;
            buf = br_ssl_engine_sendrec_buf(e, &len);
            n = write(c->fd, buf, len);
            if (n > 0) {
                br_ssl_engine_sendrec_ack(e, (size_t)n);
                progress = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                c->dead = 1;
                return;
            }
        }
        if (st & BR_SSL_RECVAPP) {
            buf = br_ssl_engine_recvapp_buf(e, &len);
            in_make_room(c, len);
            if (len > IN_CAP - c->in_len) len = IN_CAP - c->in_len;
            if (len) {
                memcpy(c->in + c->in_len, buf, len);
                c->in_len += len;
                br_ssl_engine_recvapp_ack(e, len);
                progress = 1;
            }
        }
        if ((st & BR_SSL_SENDAPP) && c->out_len) {
            buf = br_ssl_engine_sendapp_buf(e, &len);
            if (len > c->out_len - c->out_off) len = c->out_len - c->out_off;
            memcpy(buf, c->out + c->out_off, len);
            out_take(c, len);
            br_ssl_engine_sendapp_ack(e, len);
            br_ssl_engine_flush(e, 0);
            progress = 1;
        }
        /* Records are read while poll() said so and the socket had all that
           was asked (a short read or none: it is empty until the next poll). */
        if ((st & BR_SSL_RECVREC) && !c->in_dry && (revents_of(c->fd) & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n;
            buf = br_ssl_engine_recvrec_buf(e, &len);
            n = read(c->fd, buf, len);
            if (n > 0) {
                br_ssl_engine_recvrec_ack(e, (size_t)n);
                if ((size_t)n < len) c->in_dry = 1;
                progress = 1;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                c->dead = 1;
                return;
            } else {
                c->in_dry = 1;
            }
        }
        if (!progress) break;
    }
}

static void conn_io(conn *c) {
    if (c->sc) conn_io_tls(c);
    else conn_io_plain(c);
}

/* A piece of a data message appended to buf (a message longer than
   MSG_CAP loses its excess; the channel drops it as malformed). */
static void gather(const ssmb_ws_piece *pc, uint8_t *buf, size_t *len, uint32_t *op) {
    if (pc->flags & SSMB_WS_MESSAGE_START) {
        *len = 0;
        *op = pc->opcode;
    }
    if (*len + pc->len <= MSG_CAP) {
        memcpy(buf + *len, pc->data, pc->len);
        *len += pc->len;
    }
}

/* msg is taken or lent out (its events wait). */
static int msg_busy(const conn *c) {
    return c->opened && c->s && c->s->ch && (c->msg_ready || c->s->events_pending);
}

/* 1 when the next message is read ahead: msg is busy and our own sending
   waits for acknowledgements. Otherwise the socket is left unread and TCP
   slows the client down. */
static int read_ahead(const conn *c) {
    return msg_busy(c) && ssmb_channel_is_ready(c->s->ch) && ssmb_channel_send_space(c->s->ch) == 0;
}

/* A message read ahead is complete: see ahead. Taken in order (msg held
   an acknowledgement, say), its events may point into ahead: then ahead
   is lent out until they are polled. */
static void ahead_done(conn *c) {
    ssmb_msg m;
    int binary = c->ahead_op == SSMB_WS_BINARY && ssmb_msg_decode(c->ahead, c->ahead_len, &m) == SSMB_OK;
    int lent_before = ssmb_channel_borrows(c->s->ch);
    ssmb_msg held;
    if (binary && c->msg_ready && ssmb_msg_type_is(&m, SSMB_MSG_INPUT_STREAM_DATA) &&
        ssmb_msg_decode(c->msg, c->msg_len, &held) == SSMB_OK && held.sequence_number == m.sequence_number) {
        log_frame(c->s, "in", c->ahead, c->ahead_len, "repeat-of-waiting"); /* the one in msg goes in */
        c->ahead_len = 0;
        return;
    }
    if (binary && (ssmb_msg_type_is(&m, SSMB_MSG_ACKNOWLEDGE) || ssmb_msg_type_is(&m, SSMB_MSG_INPUT_STREAM_DATA)) &&
        ssmb_channel_recv(c->s->ch, c->ahead, c->ahead_len, 0, now_ms()) == SSMB_OK) {
        log_frame(c->s, "in", c->ahead, c->ahead_len, NULL);
        c->ahead_len = 0;
        c->ahead_lent = !lent_before && ssmb_channel_borrows(c->s->ch);
        write_frames(c->s, now_ms()); /* its ack goes out with this turn's output, not after the next poll */
    } else {
        c->ahead_ready = 1;
    }
}

/* A message read beyond the one waiting in ahead is complete. */
static void beyond_done(conn *c) {
    ssmb_msg m, a;
    int lent_before = ssmb_channel_borrows(c->s->ch);
    int ahead_data = c->ahead_op == SSMB_WS_BINARY && ssmb_msg_decode(c->ahead, c->ahead_len, &a) == SSMB_OK &&
                     ssmb_msg_type_is(&a, SSMB_MSG_INPUT_STREAM_DATA);
    int binary = c->beyond_op == SSMB_WS_BINARY && ssmb_msg_decode(c->beyond, c->beyond_len, &m) == SSMB_OK;
    /* stream data only while the channel lends its events: then it keeps
       early data and answers the next in order with AGAIN, never lending
       beyond */
    const char *fate = "dropped-busy";
    if (binary &&
        (ssmb_msg_type_is(&m, SSMB_MSG_ACKNOWLEDGE) ||
         (lent_before && ssmb_msg_type_is(&m, SSMB_MSG_INPUT_STREAM_DATA) &&
          !(ahead_data && c->ahead_ready && m.sequence_number == a.sequence_number))) &&
        ssmb_channel_recv(c->s->ch, c->beyond, c->beyond_len, 0, now_ms()) == SSMB_OK)
        fate = NULL;
    log_frame(c->s, "in", c->beyond, c->beyond_len, fate);
    c->beyond_lent = !lent_before && ssmb_channel_borrows(c->s->ch);
    c->beyond_len = 0;
    if (!fate) write_frames(c->s, now_ms());
}

static void ws_process(conn *c) {
    for (;;) {
        ssmb_ws_piece pc;
        size_t used = 0;
        ssmb_result r;
        if (c->ahead_ready && !msg_busy(c)) { /* msg is free: the message read ahead moves in */
            memcpy(c->msg, c->ahead, c->ahead_len);
            c->msg_len = c->ahead_len;
            c->msg_op = c->ahead_op;
            c->msg_ready = 1;
            c->ahead_ready = 0;
            c->ahead_len = 0;
        }
        if (c->ahead_lent && !(c->s && c->s->ch && ssmb_channel_borrows(c->s->ch))) c->ahead_lent = 0;
        if (c->beyond_lent && !(c->s && c->s->ch && ssmb_channel_borrows(c->s->ch))) c->beyond_lent = 0;
        if (c->beyond_lent ||
            ((c->ahead_ready || c->ahead_lent || c->msg_ready || (c->s && c->s->events_pending)) && !read_ahead(c)) ||
            !c->in_len || c->dead)
            break;
        r = ssmb_ws_read(&c->wr, c->in + c->in_off, c->in_len - c->in_off, &used, &pc);
        if (r == SSMB_AGAIN) {
            c->in_len = c->in_off = 0;
            break;
        }
        if (r != SSMB_OK) {
            uint8_t cp[SSMB_WS_MAX_CONTROL_PAYLOAD];
            size_t cl = 0;
            if (r != SSMB_CLOSED && ssmb_ws_close_payload_build(c->wr.close_code ? c->wr.close_code : 1002, "", 0, cp, &cl) == SSMB_OK)
                ws_put(c, SSMB_WS_CLOSE, cp, cl);
            c->closing = 1;
            c->in_len = c->in_off = 0;
            break;
        }
        if (pc.opcode == SSMB_WS_TEXT || pc.opcode == SSMB_WS_BINARY) {
            if (pc.flags & SSMB_WS_MESSAGE_START) {
                c->gathering_beyond = c->ahead_ready || c->ahead_lent;
                c->gathering_ahead = !c->gathering_beyond && msg_busy(c);
            }
            if (c->gathering_beyond) {
                gather(&pc, c->beyond, &c->beyond_len, &c->beyond_op);
                if (pc.flags & SSMB_WS_MESSAGE_END) beyond_done(c);
            } else if (c->gathering_ahead) {
                gather(&pc, c->ahead, &c->ahead_len, &c->ahead_op);
                if (pc.flags & SSMB_WS_MESSAGE_END) ahead_done(c);
            } else {
                gather(&pc, c->msg, &c->msg_len, &c->msg_op);
                if (pc.flags & SSMB_WS_MESSAGE_END) c->msg_ready = 1;
            }
        } else if (pc.opcode == SSMB_WS_PING) {
            ws_put(c, SSMB_WS_PONG, pc.data, pc.len);
        } else if (pc.opcode == SSMB_WS_CLOSE) {
            uint8_t cp[SSMB_WS_MAX_CONTROL_PAYLOAD];
            size_t cl = 0;
            uint32_t code = pc.close_code == SSMB_WS_CLOSE_NO_STATUS ? 0 : pc.close_code;
            if (ssmb_ws_close_payload_build(code, "", 0, cp, &cl) == SSMB_OK) ws_put(c, SSMB_WS_CLOSE, cp, cl);
            c->closing = 1;
        }
        /* read past, not moved: the rest moves down once, when room runs short (in_make_room) */
        c->in_off += used;
        if (c->in_off >= c->in_len) c->in_len = c->in_off = 0;
    }
    if (c->msg_ready && !c->opened && c->s) {
        c->msg_ready = 0;
        open_data_channel(c, now_ms());
    } else if (c->msg_ready && !c->s) {
        c->msg_ready = 0;
    }
}

/* ---- the loop ---- */

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void listen_start(void) {
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int one = 1;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0) die("socket: %s", strerror(errno));
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)opt.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind 127.0.0.1:%d: %s", opt.port, strerror(errno));
    if (listen(listen_fd, 64) < 0) die("listen: %s", strerror(errno));
    set_nonblock(listen_fd);
    getsockname(listen_fd, (struct sockaddr *)&a, &l);
    listen_port = ntohs(a.sin_port);
}

static void add_fd(struct pollfd *p, int *n, int fd, short events) {
    if (fd < 0 || !events || *n >= 1024) return;
    p[*n].fd = fd;
    p[*n].events = events;
    p[*n].revents = 0;
    (*n)++;
}

static int loop_timeout(uint64_t now) {
    uint64_t best = now + 1000;
    int i;
    for (i = 0; i < MAX_SESSIONS; i++) {
        session *s = sessions[i];
        uint64_t d;
        if (!s) continue;
        if (s->ch) {
            d = ssmb_channel_next_deadline(s->ch);
            if (d < best) best = d;
        }
        if (s->smux) {
            d = ssmb_smux_next_deadline(s->smux);
            if (d < best) best = d;
        }
        if (s->pid > 0 && !s->reaped && best > now + 50) best = now + 50;
        if (s->ending && best > now + 20) best = now + 20;
        if ((s->delayed_count || s->reordered.data) && best > now + 5) best = now + 5;
        if (opt.pacing_reference && s->workload && best > now + 1) best = now + 1;
        if (opt.cut_every && best > now + 100) best = now + 100;
        if (s->ws && s->ws->msg_ready && !s->disconnect_pending &&
            s->pin_len + SSMB_CHANNEL_MAX_PAYLOAD <= PIN_CAP && best > now + 1)
            best = now + 1;
        if (s->pin_len && best > now + 10) best = now + 10;
    }
    for (i = 0; i < MAX_CONNS; i++) {
        if (conns[i] && conns[i]->state == C_WS && conns[i]->in_len && !conns[i]->msg_ready &&
            !(conns[i]->s && conns[i]->s->events_pending))
            best = now;
        if (conns[i] && conns[i]->linger_until && best > conns[i]->linger_until) best = conns[i]->linger_until;
    }
    return best <= now ? 0 : (int)(best - now);
}

int main(int argc, char **argv) {
    struct sigaction sa;
    char dir_buf[512];
    int i;
    parse_options(argc, argv);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (opt.log_path) {
        log_file = fopen(opt.log_path, "a");
        if (!log_file) die("cannot open %s", opt.log_path);
    }
    if (!opt.no_tls) {
        if (!opt.cert_dir) {
            const char *tmp = getenv("TMPDIR");
            snprintf(dir_buf, sizeof dir_buf, "%s/ssmb-local-XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp(dir_buf)) die("mkdtemp: %s", strerror(errno));
            opt.cert_dir = dir_buf;
        }
        make_certs(opt.cert_dir);
        tls_load(opt.cert_dir);
    }
    listen_start();
    printf("endpoint: %s://127.0.0.1:%d\n", opt.no_tls ? "http" : "https", listen_port);
    if (opt.no_tls) printf("ca-bundle: none\n");
    else printf("ca-bundle: %s/ca.pem\n", opt.cert_dir);
    printf("region: %s\naccess-key-id: %s\nsecret-access-key: %s\n", opt.region, opt.key, opt.secret);
    fflush(stdout);
    note("listening on 127.0.0.1:%d (%s), agent %s", listen_port, opt.no_tls ? "plain" : "TLS", opt.agent_version);

    while (!stop_flag) {
        static struct pollfd pfd[1024];
        static int last_n;
        int n = 0, k;
        uint64_t now = now_ms();
        int free_slot = 0;
        for (i = 0; i < last_n; i++) /* the last poll's readiness, before pfd is refilled */
            if (pfd[i].fd >= 0 && pfd[i].fd < REV_MAX) rev[pfd[i].fd] = 0;
        for (i = 0; i < MAX_CONNS; i++)
            if (!conns[i]) free_slot = 1;
        add_fd(pfd, &n, listen_fd, free_slot ? POLLIN : 0);
        for (i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            short ev = 0;
            if (!c) continue;
            if (c->sc) {
                unsigned st = br_ssl_engine_current_state(&c->sc->eng);
                if (st & BR_SSL_RECVREC) ev |= POLLIN;
                if (st & BR_SSL_SENDREC) ev |= POLLOUT;
            } else {
                if (c->in_len < IN_CAP) ev |= POLLIN;
                if (c->out_len) ev |= POLLOUT;
            }
            add_fd(pfd, &n, c->fd, ev);
        }
        for (i = 0; i < MAX_SESSIONS; i++) {
            session *s = sessions[i];
            int space, j;
            if (!s || !s->ch) continue;
            space = ssmb_channel_send_space(s->ch) > 0;
            add_fd(pfd, &n, s->pty, (short)((space ? POLLIN : 0) | (s->pin_len ? POLLOUT : 0)));
            add_fd(pfd, &n, s->out_fd, space ? POLLIN : 0);
            add_fd(pfd, &n, s->err_fd, space ? POLLIN : 0);
            add_fd(pfd, &n, s->sock, (short)((space ? POLLIN : 0) | (s->pin_len || s->sock_connecting ? POLLOUT : 0)));
            for (j = 0; j < MAX_STREAMS; j++) {
                pstream *p = &s->streams[j];
                if (!p->used) continue;
                add_fd(pfd, &n, p->fd,
                       (short)((space && s->smux && ssmb_smux_write_space(s->smux) ? POLLIN : 0) |
                               (p->connecting || ssmb_smux_available(s->smux, p->id) ? POLLOUT : 0)));
            }
        }
        k = poll(pfd, (nfds_t)n, loop_timeout(now));
        if (k < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        /* rev: the readiness of the descriptors just polled (the others' was cleared above) */
        last_n = n;
        for (i = 0; i < n; i++)
            if (pfd[i].fd < REV_MAX) rev[pfd[i].fd] = k > 0 ? pfd[i].revents : 0;
        for (i = 0; i < MAX_CONNS; i++)
            if (conns[i]) conns[i]->in_dry = 0;
        now = now_ms();
        if (revents_of(listen_fd) & POLLIN) {
            for (;;) {
                int fd = accept(listen_fd, NULL, NULL);
                if (fd < 0) break;
                conn_new(fd);
            }
        }
        for (i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (!c) continue;
            {
                size_t before = c->in_len;
                conn_io(c);
                if (c->in_len != before || !c->last_in_ms) c->last_in_ms = now;
            }
            if (c->state == C_HTTP) handle_http(c);
            if (c->state == C_WS) ws_process(c);
        }
        for (i = 0; i < MAX_SESSIONS; i++)
            if (sessions[i]) session_pump(sessions[i], now);
        for (i = 0; i < MAX_SESSIONS; i++)
            if (sessions[i] && sessions[i]->dead) session_free(sessions[i]);
        for (i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (!c) continue;
            if (!c->dead && c->out_len) conn_io(c);
            if (c->linger_until && now >= c->linger_until) c->closing = 1;
            if (c->state == C_HTTP && now >= c->last_in_ms + 60000) c->closing = 1;
            if (c->state == C_WS && !c->opened && now >= c->last_in_ms + 30000) c->closing = 1;
            if (c->dead) conn_free(i);
            else if (c->closing && !c->out_len &&
                     (!c->sc || !(br_ssl_engine_current_state(&c->sc->eng) & BR_SSL_SENDREC)))
                conn_free(i);
        }
    }
    note("stopping");
    for (i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i]) session_free(sessions[i]);
    for (i = 0; i < MAX_CONNS; i++)
        if (conns[i]) conn_free(i);
    close(listen_fd);
    if (log_file) fclose(log_file);
    free(opt.creds_buf);
    return 0;
}
