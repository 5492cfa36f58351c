/* bench.c - ssmbridge benchmarks against OpenSSL (the baseline) and BearSSL.

   Prints a table (MiB/s or ns per operation, and the ratio to the OpenSSL
   row doing the same work, higher is better) and, for every figure, one
   machine-readable line "bench: NAME VALUE UNIT".

   Each row times a callback: the best of BENCH_RUNS runs of about
   BENCH_RUN_MS milliseconds each, so a noisy neighbour rarely spoils a
   figure. To add a row, write a callback that does one operation on its
   argument and add an entry to rows[] in main().

   Build: make bench (gcc -O2 tools/bench.c -lbearssl -lcrypto). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <bearssl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_RUNS 5
#define BENCH_RUN_MS 100

/* ---- timing ------------------------------------------------------------ */

typedef void (*bench_fn)(void *arg);

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Calls per clock read: doubled until one batch takes about a millisecond,
   so reading the clock costs nothing measurable. */
static long bench_batch(bench_fn fn, void *arg) {
    long batch = 1, i;
    for (;;) {
        double t0 = now_ns();
        for (i = 0; i < batch; i++) fn(arg);
        if (now_ns() - t0 >= 1e6 || batch >= (1L << 30)) return batch;
        batch *= 2;
    }
}

/* Nanoseconds per call of fn(arg): the best of BENCH_RUNS timed runs. */
static double bench_ns_per_call(bench_fn fn, void *arg) {
    long batch = bench_batch(fn, arg), calls, i;
    double best = 0, t0, elapsed;
    int run;
    for (run = 0; run < BENCH_RUNS; run++) {
        calls = 0;
        t0 = now_ns();
        do {
            for (i = 0; i < batch; i++) fn(arg);
            calls += batch;
            elapsed = now_ns() - t0;
        } while (elapsed < BENCH_RUN_MS * 1e6);
        if (run == 0 || elapsed / (double)calls < best) best = elapsed / (double)calls;
    }
    return best;
}

/* ---- the work: SHA-256 and HMAC ---------------------------------------- */

/* One hash job: a message, and where its digest or tag goes. */
typedef struct hash_job {
    const uint8_t *msg;
    size_t len;
    uint8_t out[32];
} hash_job;

/* The HMAC key: 32 bytes, the size of a SigV4 signing key. */
static const uint8_t hmac_key[32] = "0123456789abcdef0123456789abcdef";

/* OpenSSL objects fetched once, so the rows time hashing, not look-ups. */
static EVP_MD *openssl_sha256;
static EVP_MD_CTX *openssl_md_ctx;
static EVP_MAC_CTX *openssl_mac_ctx;

static void run_ssmb_sha256(void *arg) {
    hash_job *j = (hash_job *)arg;
    ssmb_sha256(j->msg, j->len, j->out);
}

/* Two 16 KiB digests at once (ssmb_sha256_pair): bytes counted are both. */
static void run_ssmb_sha256_pair(void *arg) {
    hash_job *j = (hash_job *)arg;
    uint8_t other[32];
    ssmb_sha256_pair(j->msg, j->len, j->msg, j->len, j->out, other); /* the same bytes twice: the time is the same */
}

static void run_ssmb_sha256_portable(void *arg) {
    hash_job *j = (hash_job *)arg;
    ssmb_sha256_ctx ctx;
    ssmb_sha256_init_impl(&ctx, SSMB_SHA256_PORTABLE);
    ssmb_sha256_update(&ctx, j->msg, j->len);
    ssmb_sha256_final(&ctx, j->out);
}

static void run_openssl_sha256(void *arg) {
    hash_job *j = (hash_job *)arg;
    EVP_DigestInit_ex(openssl_md_ctx, openssl_sha256, NULL);
    EVP_DigestUpdate(openssl_md_ctx, j->msg, j->len);
    EVP_DigestFinal_ex(openssl_md_ctx, j->out, NULL);
}

static void run_bearssl_sha256(void *arg) {
    hash_job *j = (hash_job *)arg;
    br_sha256_context ctx;
    br_sha256_init(&ctx);
    br_sha256_update(&ctx, j->msg, j->len);
    br_sha256_out(&ctx, j->out);
}

static void run_ssmb_hmac(void *arg) {
    hash_job *j = (hash_job *)arg;
    ssmb_hmac_sha256(hmac_key, sizeof hmac_key, j->msg, j->len, j->out);
}

/* OpenSSL's fastest HMAC path: one EVP_MAC context, re-keyed per message. */
static void run_openssl_hmac(void *arg) {
    hash_job *j = (hash_job *)arg;
    size_t n = 0;
    EVP_MAC_init(openssl_mac_ctx, hmac_key, sizeof hmac_key, NULL);
    EVP_MAC_update(openssl_mac_ctx, j->msg, j->len);
    EVP_MAC_final(openssl_mac_ctx, j->out, &n, sizeof j->out);
}

static int openssl_setup(void) {
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    openssl_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    openssl_md_ctx = EVP_MD_CTX_new();
    openssl_mac_ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    if (!openssl_sha256 || !openssl_md_ctx || !openssl_mac_ctx) return 0;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(openssl_mac_ctx, params) == 1;
}

static void openssl_teardown(void) {
    EVP_MAC_CTX_free(openssl_mac_ctx);
    EVP_MD_CTX_free(openssl_md_ctx);
    EVP_MD_free(openssl_sha256);
}

/* A figure for a wrong answer is worthless: fn must write what reference
   writes for the same job. */
static int same_output(bench_fn fn, bench_fn reference, hash_job *job) {
    uint8_t want[32];
    reference(job);
    memcpy(want, job->out, sizeof want);
    memset(job->out, 0, sizeof job->out);
    fn(job);
    return memcmp(job->out, want, sizeof want) == 0;
}

/* ---- the work: ClientMessage codec and SigV4 ---------------------------- */

/* One ClientMessage job: the message to encode, its frame, a decode target. */
typedef struct msg_job {
    ssmb_msg msg;
    uint8_t frame[SSMB_MSG_HEADER_SIZE + 16384];
    size_t frame_len;
} msg_job;

static void msg_job_init(msg_job *j, const uint8_t *payload, size_t len) {
    memset(&j->msg, 0, sizeof j->msg);
    j->msg.type = ssmb_str_c(SSMB_MSG_OUTPUT_STREAM_DATA);
    j->msg.schema_version = 1;
    j->msg.created_date_ms = 1503434274948ull;
    j->msg.sequence_number = 7;
    j->msg.payload_type = SSMB_PAYLOAD_OUTPUT;
    j->msg.payload = payload;
    j->msg.payload_size = len;
    ssmb_msg_encode(&j->msg, j->frame, sizeof j->frame, &j->frame_len);
}

/* Encode with the digest: header, payload copy, SHA-256 of the payload. */
static void run_msg_encode(void *arg) {
    msg_job *j = (msg_job *)arg;
    size_t n;
    ssmb_msg_encode(&j->msg, j->frame, sizeof j->frame, &n);
}

/* Decode and verify (the digest check of the reference rules). */
static void run_msg_decode(void *arg) {
    msg_job *j = (msg_job *)arg;
    ssmb_msg m;
    if (ssmb_msg_decode(j->frame, j->frame_len, &m) != SSMB_OK || ssmb_msg_validate(&m) != SSMB_OK) {
        fprintf(stderr, "bench: a frame failed to decode\n");
        exit(1);
    }
}

/* The first SSM vector of tests/vectors/sigv4-ssm: StartSession, no token. */
typedef struct sigv4_job {
    ssmb_http_header headers[3];
    ssmb_sigv4_request req;
    ssmb_sigv4_params params;
    char authorization[512];
    ssmb_sigv4_output out;
} sigv4_job;

static void sigv4_job_init(sigv4_job *j) {
    static const char body[] = "{\"Target\": \"i-0123456789abcdef0\"}";
    memset(j, 0, sizeof *j);
    j->headers[0].name = ssmb_str_c("Content-Type");
    j->headers[0].value = ssmb_str_c("application/x-amz-json-1.1");
    j->headers[1].name = ssmb_str_c("Host");
    j->headers[1].value = ssmb_str_c("ssm.us-east-1.amazonaws.com");
    j->headers[2].name = ssmb_str_c("X-Amz-Target");
    j->headers[2].value = ssmb_str_c("AmazonSSM.StartSession");
    j->req.method = ssmb_str_c("POST");
    j->req.path = ssmb_str_c("/");
    j->req.headers = j->headers;
    j->req.header_count = 3;
    j->req.body = body;
    j->req.body_len = sizeof body - 1;
    j->params.creds.access_key_id = ssmb_str_c("AKIDEXAMPLE");
    j->params.creds.secret_access_key = ssmb_str_c("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    j->params.region = ssmb_str_c("us-east-1");
    j->params.service = ssmb_str_c("ssm");
    ssmb_amz_date_parse("20240501T120000Z", 16, &j->params.time);
}

static void run_sigv4(void *arg) {
    sigv4_job *j = (sigv4_job *)arg;
    size_t n;
    ssmb_sigv4_sign(&j->req, &j->params, j->authorization, sizeof j->authorization, &n, &j->out);
}

/* ---- the work: WebSocket framing ------------------------------------------ */

/* A 16 KiB binary frame: encoded and masked as a client sends it, and the
   same frame decoded and unmasked as a server reads it. */
typedef struct ws_job {
    const uint8_t *payload;
    size_t len;
    uint8_t frame[16384 + SSMB_WS_MAX_HEADER_SIZE];
    size_t frame_len;
} ws_job;

static const uint8_t ws_key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void run_ws_mask(void *arg) {
    ws_job *j = (ws_job *)arg;
    ssmb_ws_frame_write(SSMB_WS_BINARY, 1, j->payload, j->len, ws_key, j->frame, sizeof j->frame, &j->frame_len);
}

/* Unmasking happens in place, so every call flips the payload between its
   two forms: the same work each time. */
static void run_ws_unmask(void *arg) {
    ws_job *j = (ws_job *)arg;
    ssmb_ws_reader r;
    ssmb_ws_piece p;
    size_t used = 0;
    ssmb_ws_reader_init(&r, SSMB_WS_READ_FROM_CLIENT, 0);
    if (ssmb_ws_read(&r, j->frame, j->frame_len, &used, &p) != SSMB_OK || p.len != j->len) {
        fprintf(stderr, "bench: the frame failed to decode\n");
        exit(1);
    }
}

/* ---- the work: the data channel, client and agent ------------------------ */

/* A client and an agent channel joined in memory: each frame one side
   hands out is read by the other straight from the sender's memory, with
   no loss, so every call moves 16 KiB each way and the acks back. */
typedef struct channel_job {
    ssmb_channel *client, *agent;
    const uint8_t *payload;
    size_t len;
    uint64_t delivered;     /* application bytes that arrived, both ways */
} channel_job;

static ssmb_result bench_random(void *buf, size_t len, void *user_data) {
    uint32_t *s = (uint32_t *)user_data;
    size_t i;
    for (i = 0; i < len; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        ((uint8_t *)buf)[i] = (uint8_t)*s;
    }
    return SSMB_OK;
}

/* Frames from one side into the other; 1 when any moved. */
static int channel_move(channel_job *j, ssmb_channel *from, ssmb_channel *to) {
    const uint8_t *f;
    size_t n;
    int moved = 0;
    ssmb_channel_event ev;
    while (ssmb_channel_next_frame(from, &f, &n) == SSMB_OK) {
        if (ssmb_channel_recv(to, f, n, 0, 1000) != SSMB_OK) break;
        while (ssmb_channel_poll(to, &ev) == SSMB_OK)
            if (ev.type == SSMB_CHANNEL_EVENT_DATA) j->delivered += ev.len;
        ssmb_channel_frame_sent(from, 1000);
        moved = 1;
    }
    return moved;
}

static void channel_pump(channel_job *j) {
    while (channel_move(j, j->client, j->agent) | channel_move(j, j->agent, j->client)) {}
}

static void run_channel(void *arg) {
    channel_job *j = (channel_job *)arg;
    size_t acc = 0;
    ssmb_channel_send(j->client, SSMB_PAYLOAD_OUTPUT, j->payload, j->len, &acc);
    ssmb_channel_send(j->agent, SSMB_PAYLOAD_OUTPUT, j->payload, j->len, &acc);
    channel_pump(j);
}

/* Both ends with 16 KiB payloads; the agent starts without a handshake and
   its first output makes the client ready. With the default digest_check
   the client verifies every payload (as the reference does) and the agent
   does not: three SHA-256 passes per two payloads, so two thirds of the
   encode figure is the ceiling. 0 on failure. */
static int channel_job_init(channel_job *j, const uint8_t *payload, size_t len, uint32_t digest_check) {
    static uint32_t rng_c = 1, rng_a = 2;
    ssmb_channel_desc d;
    size_t acc = 0;
    memset(j, 0, sizeof *j);
    memset(&d, 0, sizeof d);
    d.random_fn = bench_random;
    d.random_user_data = &rng_c;
    d.start_epoch_ms = 1714564800000ull;
    d.payload_size = (uint32_t)len;
    d.send_buffer_bytes = 4 * (uint32_t)(len + SSMB_MSG_HEADER_SIZE);
    d.digest_check = digest_check;
    if (ssmb_channel_create(&d, &j->client) != SSMB_OK || ssmb_channel_start(j->client, 1000) != SSMB_OK) return 0;
    d.role = SSMB_CHANNEL_AGENT;
    d.random_user_data = &rng_a;
    if (ssmb_channel_create(&d, &j->agent) != SSMB_OK || ssmb_channel_start(j->agent, 1000) != SSMB_OK) return 0;
    j->payload = payload;
    j->len = len;
    ssmb_channel_send(j->agent, SSMB_PAYLOAD_OUTPUT, "$ ", 2, &acc);
    channel_pump(j);
    j->delivered = 0;
    run_channel(j);
    return ssmb_channel_is_ready(j->client) && j->delivered == 2 * len;
}

static void channel_job_free(channel_job *j) {
    ssmb_channel_destroy(j->client);
    ssmb_channel_destroy(j->agent);
}

/* ---- rows and report --------------------------------------------------- */

typedef enum bench_unit { BENCH_MIBS, BENCH_NS, BENCH_US, BENCH_GIBS } bench_unit;

typedef struct bench_row {
    const char *name;   /* machine name without its unit, e.g. "sha256_16k" */
    const char *label;  /* table label */
    bench_fn fn;
    void *arg;
    size_t bytes;       /* bytes processed per call (for MiB/s) */
    bench_unit unit;    /* throughput (MiB/s) or latency (ns per op) */
    int baseline;       /* index of the OpenSSL row doing the same work; -1 none */
    int same_digest;    /* 1: a hash row whose output must equal its baseline's */
} bench_row;

static const char *unit_label(bench_unit u) {
    return u == BENCH_MIBS ? "MiB/s" : u == BENCH_GIBS ? "GiB/s" : u == BENCH_NS ? "ns/op" : "us/op";
}
static const char *unit_suffix(bench_unit u) {
    return u == BENCH_MIBS ? "mibs" : u == BENCH_GIBS ? "gibs" : u == BENCH_NS ? "ns" : "us";
}
static const char *unit_name(bench_unit u) {
    return u == BENCH_MIBS ? "MiB/s" : u == BENCH_GIBS ? "GiB/s" : u == BENCH_NS ? "ns" : "us";
}

static double row_value(const bench_row *r, double ns) {
    if (r->unit == BENCH_MIBS) return (double)r->bytes / ns * 1e9 / (1024.0 * 1024.0);
    if (r->unit == BENCH_GIBS) return (double)r->bytes / ns * 1e9 / (1024.0 * 1024.0 * 1024.0);
    return r->unit == BENCH_US ? ns / 1000.0 : ns;
}

static void print_report(const bench_row *rows, const double *ns, int n) {
    int i;
    printf("%-38s %14s %10s\n", "benchmark", "figure", "vs OpenSSL");
    for (i = 0; i < n; i++) {
        char ratio[32] = "";
        if (rows[i].baseline >= 0) snprintf(ratio, sizeof ratio, "%.2fx", ns[rows[i].baseline] / ns[i]);
        printf("%-38s %8.2f %-5s %10s\n", rows[i].label, row_value(&rows[i], ns[i]), unit_label(rows[i].unit),
               ratio);
    }
    printf("\n");
    for (i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        printf("bench: %s_%s %.2f %s\n", r->name, unit_suffix(r->unit), row_value(r, ns[i]), unit_name(r->unit));
        if (r->baseline >= 0 && r->baseline != i)
            printf("bench: %s_vs_openssl %.3f ratio\n", r->name, ns[r->baseline] / ns[i]);
    }
}

/* "bench: NAME VALUE ratio": row a's figure over row b's. */
static void print_ratio(const char *name, const bench_row *rows, const double *ns, int n, const char *a,
                        const char *b) {
    int i, ia = -1, ib = -1;
    for (i = 0; i < n; i++) {
        if (strcmp(rows[i].name, a) == 0) ia = i;
        if (strcmp(rows[i].name, b) == 0) ib = i;
    }
    if (ia >= 0 && ib >= 0) printf("bench: %s %.3f ratio\n", name, row_value(&rows[ia], ns[ia]) / row_value(&rows[ib], ns[ib]));
}

#define BENCH_MAX_ROWS 64

#include "bench_net.c"

int main(void) {
    static uint8_t payload[16384];
    static hash_job job_1k, job_16k, job_short;
    static msg_job msg_1k, msg_16k;
    static sigv4_job sigv4;
    static ws_job ws16k;
    static channel_job chan16k, chan16k_unchecked;
    char auto_1k[64], auto_16k[64];
    const char *best = ssmb_sha256_impl_name(ssmb_sha256_best_impl());
    /* Row indices of the OpenSSL baselines. */
    enum { OSSL_1K = 0, OSSL_16K = 4, OSSL_HMAC = 8 };
    const bench_row rows[] = {
        {"openssl_sha256_1k", "OpenSSL EVP SHA-256, 1 KiB", run_openssl_sha256, &job_1k, 1024, BENCH_MIBS, OSSL_1K, 1},
        {"sha256_1k", auto_1k, run_ssmb_sha256, &job_1k, 1024, BENCH_MIBS, OSSL_1K, 1},
        {"sha256_portable_1k", "ssmbridge SHA-256 portable, 1 KiB", run_ssmb_sha256_portable, &job_1k, 1024,
         BENCH_MIBS, OSSL_1K, 1},
        {"bearssl_sha256_1k", "BearSSL br_sha256, 1 KiB", run_bearssl_sha256, &job_1k, 1024, BENCH_MIBS, OSSL_1K, 1},
        {"openssl_sha256_16k", "OpenSSL EVP SHA-256, 16 KiB", run_openssl_sha256, &job_16k, 16384, BENCH_MIBS,
         OSSL_16K, 1},
        {"sha256_16k", auto_16k, run_ssmb_sha256, &job_16k, 16384, BENCH_MIBS, OSSL_16K, 1},
        {"sha256_portable_16k", "ssmbridge SHA-256 portable, 16 KiB", run_ssmb_sha256_portable, &job_16k, 16384,
         BENCH_MIBS, OSSL_16K, 1},
        {"bearssl_sha256_16k", "BearSSL br_sha256, 16 KiB", run_bearssl_sha256, &job_16k, 16384, BENCH_MIBS,
         OSSL_16K, 1},
        {"openssl_hmac_short", "OpenSSL EVP_MAC HMAC-SHA256, 64 B", run_openssl_hmac, &job_short, 64, BENCH_NS,
         OSSL_HMAC, 1},
        {"hmac_short", "ssmbridge HMAC-SHA256, 64 B", run_ssmb_hmac, &job_short, 64, BENCH_NS, OSSL_HMAC, 1},
        {"sha256_pair_16k", "ssmbridge SHA-256, two 16 KiB at once", run_ssmb_sha256_pair, &job_16k, 2 * 16384,
         BENCH_MIBS, -1, 0},
        /* The codec against OpenSSL hashing the same payload bytes: the
           digest should be nearly all of the cost. */
        {"msg_encode_1k", "ClientMessage encode, 1 KiB payload", run_msg_encode, &msg_1k, 1024, BENCH_MIBS, OSSL_1K, 0},
        {"msg_decode_1k", "ClientMessage decode+verify, 1 KiB", run_msg_decode, &msg_1k, 1024, BENCH_MIBS, OSSL_1K, 0},
        {"msg_encode_16k", "ClientMessage encode, 16 KiB payload", run_msg_encode, &msg_16k, 16384, BENCH_MIBS,
         OSSL_16K, 0},
        {"msg_decode_16k", "ClientMessage decode+verify, 16 KiB", run_msg_decode, &msg_16k, 16384, BENCH_MIBS,
         OSSL_16K, 0},
        {"sigv4_ssm", "SigV4 sign, SSM StartSession", run_sigv4, &sigv4, 0, BENCH_US, -1, 0},
        {"ws_mask_16k", "WebSocket frame encode+mask, 16 KiB", run_ws_mask, &ws16k, 16384, BENCH_GIBS, -1, 0},
        {"ws_unmask_16k", "WebSocket frame decode+unmask, 16 KiB", run_ws_unmask, &ws16k, 16384, BENCH_GIBS, -1, 0},
        /* Application bytes through client and agent channels, both ways:
           encode, digest check on the client side, acks. */
        {"channel_16k", "Data channel client<->agent, 16 KiB", run_channel, &chan16k, 2 * 16384, BENCH_MIBS, -1, 0},
        /* The same with no digest verified on receipt: the channel's own
           cost next to the two hashes the senders must do. */
        {"channel_16k_unchecked", "Data channel, 16 KiB, digests unchecked", run_channel, &chan16k_unchecked,
         2 * 16384, BENCH_MIBS, -1, 0},
    };
    int n = (int)(sizeof rows / sizeof rows[0]), i;
    double ns[BENCH_MAX_ROWS];
    size_t k;

    for (k = 0; k < sizeof payload; k++) payload[k] = (uint8_t)(k * 131 + (k >> 8));
    job_1k.msg = job_16k.msg = job_short.msg = payload;
    job_1k.len = 1024;
    job_16k.len = 16384;
    job_short.len = 64;
    msg_job_init(&msg_1k, payload, 1024);
    msg_job_init(&msg_16k, payload, 16384);
    sigv4_job_init(&sigv4);
    ws16k.payload = payload;
    ws16k.len = sizeof payload;
    run_ws_mask(&ws16k);
    if (!channel_job_init(&chan16k, payload, 16384, SSMB_DIGEST_CHECK_DEFAULT) ||
        !channel_job_init(&chan16k_unchecked, payload, 16384, SSMB_DIGEST_CHECK_OFF)) {
        fprintf(stderr, "bench: the channel pair does not move data\n");
        return 1;
    }
    snprintf(auto_1k, sizeof auto_1k, "ssmbridge SHA-256 %s, 1 KiB", best);
    snprintf(auto_16k, sizeof auto_16k, "ssmbridge SHA-256 %s, 16 KiB", best);
    if (!openssl_setup()) {
        fprintf(stderr, "bench: OpenSSL SHA-256 or HMAC is unavailable\n");
        return 1;
    }
    /* Every hash row must agree with its OpenSSL row before it is timed, and
       the signature must be the vector's. */
    for (i = 0; i < n; i++) {
        if (rows[i].same_digest && !same_output(rows[i].fn, rows[rows[i].baseline].fn, (hash_job *)rows[i].arg)) {
            fprintf(stderr, "bench: %s disagrees with OpenSSL\n", rows[i].name);
            return 1;
        }
    }
    run_sigv4(&sigv4);
    if (strcmp(sigv4.out.signature, "2904117cdc5e8ead4a64adf7924459e337daa1570212429cd763dda2a22aea8a") != 0) {
        fprintf(stderr, "bench: the SigV4 signature is not the vector's\n");
        return 1;
    }
    for (i = 0; i < n && i < BENCH_MAX_ROWS; i++) ns[i] = bench_ns_per_call(rows[i].fn, rows[i].arg);
    print_report(rows, ns, n);
    print_ratio("channel_16k_vs_encode", rows, ns, n, "channel_16k", "msg_encode_16k");
    print_ratio("channel_16k_unchecked_vs_encode", rows, ns, n, "channel_16k_unchecked", "msg_encode_16k");
    channel_job_free(&chan16k);
    channel_job_free(&chan16k_unchecked);
    openssl_teardown();
    return net_bench() && session_heap_bench() ? 0 : 1;
}
