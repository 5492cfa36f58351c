/* channel room: the Session Manager data channel, black-box. A client and
   an agent channel joined by a simulated link written here (virtual clock,
   per-direction delay, seeded loss, duplication and reordering) move 20 MB
   each way; a hand-driven peer built from the L0 codec checks every wire
   rule of PROTOCOL.md §14 that belongs to the channel, the RTO vector, the
   version gates, hostile frames, and the allocator promises. KMS session
   encryption (§6) runs over the same link with the test playing KMS, and
   by hand against the kms primitives. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
#define EPOCH_MS 1714564800000ull /* 2024-05-01T12:00:00Z, CreatedDate at start */

/* ---- deterministic hooks ---- */

static uint32_t xorshift(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static ssmb_result seeded_random(void *buf, size_t len, void *user_data) {
    uint32_t *state = (uint32_t *)user_data;
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    for (i = 0; i < len; i++) p[i] = (uint8_t)xorshift(state);
    return SSMB_OK;
}

static ssmb_result no_random(void *buf, size_t len, void *user_data) {
    (void)buf;
    (void)len;
    (void)user_data;
    return SSMB_ERR_NO_RANDOM;
}

static int64_t fixed_utc(void *user_data) {
    (void)user_data;
    return 1714564800;
}

/* Counts allocations and live bytes; fails the Nth allocation when asked. */
typedef struct counting {
    long allocs, frees, fail_at;
    size_t live, last_size;
} counting;

static void *count_alloc(size_t n, void *user_data) {
    counting *k = (counting *)user_data;
    k->allocs++;
    if (k->fail_at && k->allocs == k->fail_at) return NULL;
    k->live += n;
    k->last_size = n;
    return malloc(n);
}

static void count_free(void *p, size_t n, void *user_data) {
    counting *k = (counting *)user_data;
    k->frees++;
    k->live -= n;
    free(p);
}

static void use_counting(ssmb_channel_desc *d, counting *k) {
    d->allocator.alloc_fn = count_alloc;
    d->allocator.free_fn = count_free;
    d->allocator.user_data = k;
}

static uint32_t rng_client = 0x1234567u, rng_agent = 0x89abcdefu;

static void client_desc(ssmb_channel_desc *d) {
    memset(d, 0, sizeof *d);
    d->role = SSMB_CHANNEL_CLIENT;
    d->random_fn = seeded_random;
    d->random_user_data = &rng_client;
    d->start_epoch_ms = EPOCH_MS;
}

/* session_type NULL: no handshake (§5.1). */
static void agent_desc(ssmb_channel_desc *d, const char *session_type) {
    memset(d, 0, sizeof *d);
    d->role = SSMB_CHANNEL_AGENT;
    d->random_fn = seeded_random;
    d->random_user_data = &rng_agent;
    d->start_epoch_ms = EPOCH_MS;
    d->session_type = session_type;
}

static ssmb_channel *make(const ssmb_channel_desc *d, uint64_t now) {
    ssmb_channel *ch = NULL;
    if (!CHECK(ssmb_channel_create(d, &ch) == SSMB_OK)) return NULL;
    CHECK(ssmb_channel_start(ch, now) == SSMB_OK);
    return ch;
}

/* ---- a hand-driven peer: frames built with the L0 codec ---- */

/* MessageIds the fake peer uses: recognisable, one per sequence number. */
static ssmb_uuid peer_id(int64_t seq) {
    ssmb_uuid id;
    int i;
    for (i = 0; i < 16; i++) id.b[i] = (uint8_t)(0xA0 + i);
    id.b[15] = (uint8_t)seq;
    id.b[14] = (uint8_t)(seq >> 8);
    return id;
}

typedef struct frame {
    uint8_t bytes[20000];
    size_t len;
} frame;

static frame *frame_build(frame *f, const char *type, int64_t seq, uint32_t ptype, const void *payload, size_t n) {
    ssmb_msg m;
    memset(&m, 0, sizeof m);
    m.type = ssmb_str_c(type);
    m.schema_version = 1;
    m.created_date_ms = EPOCH_MS + 5;
    m.sequence_number = seq;
    m.message_id = peer_id(seq);
    m.payload_type = ptype;
    m.payload = (const uint8_t *)payload;
    m.payload_size = n;
    if (ssmb_msg_encode(&m, f->bytes, sizeof f->bytes, &f->len) != SSMB_OK) ssmbt_fail(__FILE__, __LINE__, "encode");
    return f;
}

static frame *out_data(frame *f, int64_t seq, uint32_t ptype, const char *text) {
    return frame_build(f, SSMB_MSG_OUTPUT_STREAM_DATA, seq, ptype, text, strlen(text));
}

static frame *in_data(frame *f, int64_t seq, uint32_t ptype, const char *text) {
    return frame_build(f, SSMB_MSG_INPUT_STREAM_DATA, seq, ptype, text, strlen(text));
}

/* The ack a peer sends for one of our sequence numbers. */
static frame *ack_for(frame *f, const char *acked_type, int64_t seq) {
    char json[256];
    size_t n = 0;
    ssmb_ack a;
    a.message_type = ssmb_str_c(acked_type);
    a.message_id = peer_id(seq);
    a.sequence_number = seq;
    a.is_sequential = 1;
    ssmb_ack_build(&a, json, sizeof json, &n);
    return frame_build(f, SSMB_MSG_ACKNOWLEDGE, 0, SSMB_PAYLOAD_NONE, json, n);
}

static ssmb_result feed(ssmb_channel *ch, const frame *f, uint64_t now) {
    return ssmb_channel_recv(ch, f->bytes, f->len, 0, now);
}

static ssmb_result feed_text(ssmb_channel *ch, const char *text, uint64_t now) {
    return ssmb_channel_recv(ch, (const uint8_t *)text, strlen(text), 1, now);
}

/* Frames a channel sent, copied and decoded. */
typedef struct wire {
    frame f[64];
    ssmb_msg m[64];
    int n;
} wire;

static wire *wire_new(void) { return (wire *)calloc(1, sizeof(wire)); }

/* Takes every frame the channel has now (sent at now). */
static int wire_take(wire *w, ssmb_channel *ch, uint64_t now) {
    const uint8_t *p;
    size_t n;
    int got = 0;
    while (w->n < (int)COUNT_OF(w->f) && ssmb_channel_next_frame(ch, &p, &n) == SSMB_OK) {
        frame *f = &w->f[w->n];
        if (!CHECK(n <= sizeof f->bytes)) break;
        memcpy(f->bytes, p, n);
        f->len = n;
        CHECK(ssmb_msg_decode(f->bytes, n, &w->m[w->n]) == SSMB_OK);
        CHECK(ssmb_msg_validate(&w->m[w->n]) == SSMB_OK);
        CHECK(ssmb_channel_frame_sent(ch, now) == SSMB_OK);
        w->n++;
        got++;
    }
    return got;
}

static void wire_clear(wire *w) { w->n = 0; }

static int payload_is(const ssmb_msg *m, const char *text) {
    return m->payload_size == strlen(text) && memcmp(m->payload, text, m->payload_size) == 0;
}

/* The acknowledged sequence number of an ack frame, or -1. */
static int64_t acked_seq(const ssmb_msg *m) {
    ssmb_ack a;
    if (!ssmb_msg_type_is(m, SSMB_MSG_ACKNOWLEDGE)) return -1;
    if (ssmb_ack_parse(m->payload, m->payload_size, &a) != SSMB_OK) return -1;
    return a.sequence_number;
}

/* Events, with DATA bytes copied out (they are valid only until the next
   poll). */
typedef struct got_event {
    ssmb_channel_event ev;
    uint8_t data[4096];
} got_event;

typedef struct events {
    got_event e[32];
    int n;
} events;

static int poll_all(ssmb_channel *ch, events *out) {
    ssmb_channel_event ev;
    int got = 0;
    while (ssmb_channel_poll(ch, &ev) == SSMB_OK) {
        if (out->n < (int)COUNT_OF(out->e)) {
            got_event *g = &out->e[out->n++];
            g->ev = ev;
            if (ev.data && ev.len <= sizeof g->data) {
                memcpy(g->data, ev.data, ev.len);
                g->ev.data = g->data;
            }
        }
        got++;
    }
    return got;
}

static const got_event *find_event(const events *e, uint32_t type) {
    int i;
    for (i = 0; i < e->n; i++)
        if (e->e[i].ev.type == type) return &e->e[i];
    return NULL;
}

static int data_is(const got_event *g, const char *text) {
    return g && g->ev.len == strlen(text) && memcmp(g->ev.data, text, g->ev.len) == 0;
}

/* A client made ready the handshake-less way: the agent's first Output
   (§5.1). The ack it owes is left queued. */
static ssmb_channel *ready_client(const ssmb_channel_desc *d, uint64_t now) {
    frame f;
    events ev;
    ssmb_channel *ch = make(d, now);
    if (!ch) return NULL;
    memset(&ev, 0, sizeof ev);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "$ "), now) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ssmb_channel_is_ready(ch));
    return ch;
}

static ssmb_channel_metrics metrics(const ssmb_channel *ch) {
    ssmb_channel_metrics m;
    ssmb_channel_get_metrics(ch, &m);
    return m;
}

/* ---- create, memory ---- */

SSMB_TEST(channel_one_allocation) {
    ssmb_channel_desc d;
    ssmb_channel *ch = NULL;
    counting k;
    size_t want;
    memset(&k, 0, sizeof k);
    client_desc(&d);
    use_counting(&d, &k);
    want = ssmb_channel_memory_size(&d);
    /* send ring, reorder store and, for KMS (§6), the buffer incoming
       payloads are decrypted into (any agent may ask a client for it) */
    CHECK(want > 16384 + 8192 + 16384 && want < 56 * 1024);
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_OK);
    CHECK_EQ_INT(k.allocs, 1);
    CHECK_EQ_INT(k.last_size, want);
    printf("channel: one allocation of %zu bytes with the default desc\n", want);
    ssmb_channel_destroy(ch);
    CHECK_EQ_INT(k.frees, 1);
    CHECK_EQ_INT(k.live, 0);
    agent_desc(&d, "Standard_Stream");
    use_counting(&d, &k);
    CHECK_EQ_INT(ssmb_channel_memory_size(&d) + 16384 + 28, want); /* no KMS asked for: no buffer */
    d.kms_key_id = "alias/k";
    CHECK_EQ_INT(ssmb_channel_memory_size(&d), want);
}

SSMB_TEST(channel_create_failures_leak_nothing) {
    ssmb_channel_desc d;
    ssmb_channel *ch = (ssmb_channel *)&d;
    counting k;
    memset(&k, 0, sizeof k);
    client_desc(&d);
    use_counting(&d, &k);
    k.fail_at = 1;
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_NOMEM);
    CHECK(ch == NULL);
    CHECK_EQ_INT(k.live, 0);
    k.fail_at = 0;
    d.random_fn = no_random;
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_NO_RANDOM);
    CHECK(ch == NULL);
    CHECK_EQ_INT(k.live, 0);
    CHECK_EQ_INT(k.allocs, k.frees + 1); /* the failed allocation was never live */
}

SSMB_TEST(channel_desc_checked) {
    ssmb_channel_desc d;
    ssmb_channel *ch = NULL;
    counting k;
    memset(&k, 0, sizeof k);
    client_desc(&d);
    use_counting(&d, &k);
    d.role = 2;
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    client_desc(&d);
    d.payload_size = SSMB_CHANNEL_MAX_PAYLOAD + 1;
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    client_desc(&d);
    d.client_version = "1.2.764.0\n";
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    agent_desc(&d, "Port");
    d.session_properties = "{\"portNumber\":";
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    d.session_properties = "[1]";
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    agent_desc(&d, NULL);
    d.customer_message = "\xff\xfe";
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    client_desc(&d);
    d.allocator.alloc_fn = count_alloc; /* one without the other */
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_create(NULL, &ch) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_memory_size(&d) == 0);
    CHECK_EQ_INT(k.allocs, 0);
    /* A send buffer too small for one frame is raised, not refused. */
    client_desc(&d);
    d.payload_size = 16384;
    d.send_buffer_bytes = 100;
    CHECK(ssmb_channel_memory_size(&d) > 16384 + 120);
}

SSMB_TEST(channel_calls_before_start) {
    ssmb_channel_desc d;
    ssmb_channel *ch = NULL;
    ssmb_channel_event ev;
    const uint8_t *p;
    size_t n, acc;
    client_desc(&d);
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_OK);
    CHECK(ssmb_channel_recv(ch, (const uint8_t *)"x", 1, 0, 0) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_poll(ch, &ev) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_next_frame(ch, &p, &n) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "x", 1, &acc) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_tick(ch, 0) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_next_deadline(ch) == SSMB_NO_DEADLINE);
    CHECK(ssmb_channel_start(ch, 5) == SSMB_OK);
    CHECK(ssmb_channel_start(ch, 5) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_frame_sent(ch, 5) == SSMB_ERR_INVALID_STATE);
    ssmb_channel_destroy(ch);
    ssmb_channel_destroy(NULL);
}

/* CreatedDate from the utc hook (seconds), read once, then advanced by
   the monotonic clock (§14 item 4). */
SSMB_TEST(channel_created_date_from_utc_hook) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    client_desc(&d);
    d.start_epoch_ms = 0;
    d.utc_fn = fixed_utc;
    ch = make(&d, 1000);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "hi"), 1234) == SSMB_OK);
    wire_take(w, ch, 1234);
    CHECK_EQ_INT(w->n, 1);
    CHECK_EQ_INT(w->m[0].created_date_ms, 1714564800000ull + 234);
    ssmb_channel_destroy(ch);
    free(w);
}

/* ---- vectors: RTO and version gates ---- */

SSMB_TEST(channel_rto_vector) {
    char path[512];
    size_t len = 0;
    char *text = ssmbt_read_file(ssmbt_vector_path("ssm/other_vectors.json", path, sizeof path), &len);
    ssmbt_json j;
    int rto, init, seq, i, n;
    long ok = 0;
    ssmb_rto r;
    if (!CHECK(text != NULL) || !CHECK(ssmbt_json_load(&j, text, len) == 0)) {
        free(text);
        return;
    }
    rto = ssmbt_json_get(&j, 0, "rto");
    init = ssmbt_json_get(&j, rto, "initial");
    seq = ssmbt_json_get(&j, rto, "sequence_applied_cumulatively");
    n = ssmbt_json_len(&j, seq);
    ssmb_rto_init(&r);
    CHECK_EQ_INT(r.rtt_ns, ssmbt_json_int(&j, ssmbt_json_get(&j, init, "rtt_ns")));
    CHECK_EQ_INT(r.rttvar_ns, ssmbt_json_int(&j, ssmbt_json_get(&j, init, "rttvar_ns")));
    CHECK_EQ_INT(r.rto_ns, ssmbt_json_int(&j, ssmbt_json_get(&j, init, "rto_ns")));
    for (i = 0; i < n; i++) {
        int step = ssmbt_json_at(&j, seq, i);
        double rtt, var;
        long long want_rto = ssmbt_json_int(&j, ssmbt_json_get(&j, step, "rto_ns"));
        char *s;
        ssmb_rto_sample(&r, ssmbt_json_int(&j, ssmbt_json_get(&j, step, "sample_ms")) * 1000000);
        s = ssmbt_json_str(&j, ssmbt_json_get(&j, step, "rtt_ns"), NULL);
        rtt = s ? strtod(s, NULL) : 0;
        free(s);
        s = ssmbt_json_str(&j, ssmbt_json_get(&j, step, "rttvar_ns"), NULL);
        var = s ? strtod(s, NULL) : 0;
        free(s);
        /* RTO exactly; RTT and RTTVAR within 2 ns of the reference's float64 */
        if (CHECK(r.rto_ns == want_rto) && CHECK((double)r.rtt_ns > rtt - 2 && (double)r.rtt_ns <= rtt) &&
            CHECK((double)r.rttvar_ns > var - 2 && (double)r.rttvar_ns <= var))
            ok++;
    }
    ssmbt_report("channel rto vector", ok, n, "steps");
    ssmbt_json_free(&j);
    free(text);
}

/* Strings of a JSON array in the vector file, each checked with fn. */
static long gate_cases(const ssmbt_json *j, int obj, const char *key, const char *threshold, int want, long *total) {
    int arr = ssmbt_json_get(j, obj, key), i, n = ssmbt_json_len(j, arr);
    long ok = 0;
    for (i = 0; i < n; i++) {
        char *v = ssmbt_json_str(j, ssmbt_json_at(j, arr, i), NULL);
        if (CHECK(v != NULL) && CHECK(ssmb_version_gt(v, threshold) == want)) ok++;
        free(v);
    }
    *total += n;
    return ok;
}

SSMB_TEST(channel_version_gate_vectors) {
    char path[512];
    size_t len = 0;
    char *text = ssmbt_read_file(ssmbt_vector_path("ssm/other_vectors.json", path, sizeof path), &len);
    char *mux, *term, *keep;
    ssmbt_json j;
    int g;
    long ok = 0, total = 0;
    if (!CHECK(text != NULL) || !CHECK(ssmbt_json_load(&j, text, len) == 0)) {
        free(text);
        return;
    }
    g = ssmbt_json_get(&j, 0, "version_gates");
    mux = ssmbt_json_str(&j, ssmbt_json_get(&j, g, "tcp_multiplexing_threshold"), NULL);
    term = ssmbt_json_str(&j, ssmbt_json_get(&j, g, "terminate_session_flag_threshold"), NULL);
    keep = ssmbt_json_str(&j, ssmbt_json_get(&j, g, "smux_keepalive_disabled_threshold"), NULL);
    CHECK_EQ_STR(mux, "3.0.196.0");
    CHECK_EQ_STR(term, "2.3.722.0");
    CHECK_EQ_STR(keep, "3.1.1511.0");
    ok += gate_cases(&j, g, "mux_true", mux, 1, &total);
    ok += gate_cases(&j, g, "mux_false", mux, 0, &total);
    ok += gate_cases(&j, g, "terminate_flag_true", term, 1, &total);
    ok += gate_cases(&j, g, "terminate_flag_false", term, 0, &total);
    ok += gate_cases(&j, g, "keepalive_disabled_true", keep, 1, &total);
    ok += gate_cases(&j, g, "keepalive_disabled_false", keep, 0, &total);
    ssmbt_report("channel version gate vectors", ok, total, "cases");
    /* The helpers make the same decisions. */
    CHECK(ssmb_agent_has("3.0.196.1", SSMB_AGENT_MUX) && !ssmb_agent_has("3.0.196.0", SSMB_AGENT_MUX));
    CHECK(ssmb_agent_has("2.3.723.0", SSMB_AGENT_TERMINATE_FLAG));
    CHECK(!ssmb_agent_has("2.3.722.0", SSMB_AGENT_TERMINATE_FLAG));
    CHECK(ssmb_agent_has("3.1.1600.0", SSMB_AGENT_NO_SMUX_KEEPALIVE));
    CHECK(!ssmb_agent_has("3.1.1476.0", SSMB_AGENT_NO_SMUX_KEEPALIVE));
    CHECK(!ssmb_agent_has(NULL, SSMB_AGENT_MUX) && !ssmb_agent_has("", SSMB_AGENT_MUX));
    CHECK(!ssmb_agent_has("9.9.9.9", 99));
    free(mux);
    free(term);
    free(keep);
    ssmbt_json_free(&j);
    free(text);
}

/* The comparison's edges, as Go's strconv.Atoi parts behave. */
SSMB_TEST(channel_version_gt_edges) {
    CHECK(ssmb_version_gt("1.10", "1.9"));
    CHECK(!ssmb_version_gt("1.9", "1.10"));
    CHECK(!ssmb_version_gt("1.2", "1.2"));
    CHECK(ssmb_version_gt("01.2", "1.1"));
    CHECK(ssmb_version_gt("+2", "1"));
    CHECK(ssmb_version_gt("1", "-1"));
    CHECK(!ssmb_version_gt("2.", "1."));
    CHECK(!ssmb_version_gt(".2", ".1"));
    CHECK(!ssmb_version_gt("2..0", "1..0"));
    CHECK(!ssmb_version_gt("2", "1.0"));
    CHECK(!ssmb_version_gt("3.0.196.1 ", "3.0.196.0"));
    CHECK(!ssmb_version_gt("-", "1"));
    CHECK(ssmb_version_gt("9223372036854775807", "1"));
    CHECK(!ssmb_version_gt("9223372036854775808", "1"));
    CHECK(ssmb_version_gt("1", "-9223372036854775808"));
    CHECK(!ssmb_version_gt("1", "-9223372036854775809"));
    CHECK(!ssmb_version_gt("2.x", "1.0"));
    CHECK(!ssmb_version_gt(NULL, "1"));
}

/* ---- the simulated link: a client and an agent channel ---- */

/* One frame on its way. */
typedef struct sim_pkt {
    uint64_t at, order;
    uint8_t *data;
    size_t len;
} sim_pkt;

/* One direction: a fixed delay plus 0..jitter ms (which reorders), loss
   and duplication in per mille. */
typedef struct sim_lane {
    sim_pkt *q;
    size_t n, cap;
    uint32_t delay, jitter, loss, dup;
    uint64_t order;
} sim_lane;

/* A stand-in for KMS (§6.2): GenerateDataKey gives 64 random bytes and a
   made-up blob, Decrypt maps the blob back, and only with the same
   aws:ssm:RandomChallenge context (§6.6), as KMS would. */
typedef struct fake_kms {
    uint32_t rng;
    uint8_t key[64];
    uint8_t blob[16];
    char context[128];          /* the RandomChallenge GenerateDataKey was given */
    int fail_generate;          /* GenerateDataKey fails */
    int wrong_decrypt;          /* Decrypt hands back a key differing in its first half */
    long generates, decrypts;
    int answer;                 /* what the last ssmb_channel_kms_key / _failed said */
} fake_kms;

/* One end: its channel and its application stream. */
typedef struct sim_side {
    ssmb_channel *ch;
    uint32_t seed;              /* the stream this end sends */
    uint64_t to_send, sent;     /* application bytes */
    uint32_t peer_seed;
    uint64_t got;               /* application bytes received and checked */
    long mismatches, data_events, ready_events, closed_events, again;
    uint64_t *last_sent;        /* per sequence number: when it last went out (0: never) */
    int64_t seq_cap;
    long resends, early_resends;
    events ev;                  /* non-DATA events, kept */
    int capture;                /* 1: DATA is recorded as "[type]bytes", not checked */
    int placed;                 /* 1: the application writes in place (send_places, send_commit) */
    char captured[512];
    size_t captured_len;
    uint8_t scratch[SSMB_CHANNEL_MAX_PAYLOAD];
    fake_kms *kms;              /* answers this end's KMS events (NULL: nobody does) */
    const uint64_t *clock;
} sim_side;

typedef struct sim {
    sim_side c, a;
    sim_lane ca, ac;            /* client to agent, agent to client */
    uint64_t now;
    uint32_t rng;
    int handshake;              /* the agent asks for a handshake */
    int client_may_send;        /* the client got what makes it ready, on the wire */
    long early_data;            /* client data frames before that */
    long challenge_answers;     /* EncChallengeResponses first sent before that */
    long late_challenge;        /* ... first sent after it */
    long steps;
    uint8_t last[2][13][2048];  /* per end (client 0) and payload type: the last payload sent */
    size_t last_len[2][13];
} sim;

/* The application streams: byte i of the stream seeded s. */
static uint8_t stream_byte(uint32_t s, uint64_t i) {
    uint32_t x = (uint32_t)i * 0x9E3779B1u ^ (uint32_t)(i >> 32) ^ s;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    x ^= x >> 12;
    return (uint8_t)x;
}

static void lane_push(sim *s, sim_lane *l, const uint8_t *f, size_t n) {
    int copies = 1, k;
    if (xorshift(&s->rng) % 1000 < l->loss) return;
    if (xorshift(&s->rng) % 1000 < l->dup) copies = 2;
    for (k = 0; k < copies; k++) {
        sim_pkt *p;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->q = (sim_pkt *)realloc(l->q, l->cap * sizeof *l->q);
        }
        p = &l->q[l->n++];
        p->at = s->now + l->delay + (l->jitter ? xorshift(&s->rng) % (l->jitter + 1) : 0);
        p->order = l->order++;
        p->len = n;
        p->data = (uint8_t *)malloc(n);
        memcpy(p->data, f, n);
    }
}

/* Index of the packet due first, or -1. */
static long lane_first(const sim_lane *l) {
    size_t i;
    long best = -1;
    for (i = 0; i < l->n; i++)
        if (best < 0 || l->q[i].at < l->q[best].at || (l->q[i].at == l->q[best].at && l->q[i].order < l->q[best].order))
            best = (long)i;
    return best;
}

static void lane_free(sim_lane *l) {
    size_t i;
    for (i = 0; i < l->n; i++) free(l->q[i].data);
    free(l->q);
    memset(l, 0, sizeof *l);
}

/* What a frame is, seen on the wire. */
static void sim_inspect(sim *s, sim_side *from, const uint8_t *f, size_t n) {
    ssmb_msg m;
    ssmb_channel_metrics mt;
    int end = from == &s->c ? 0 : 1, first;
    if (!CHECK(ssmb_msg_decode(f, n, &m) == SSMB_OK)) return;
    if (ssmb_msg_type_is(&m, SSMB_MSG_ACKNOWLEDGE)) return;
    if (m.payload_type < 13 && m.payload_size <= sizeof s->last[0][0]) {
        memcpy(s->last[end][m.payload_type], m.payload, m.payload_size);
        s->last_len[end][m.payload_type] = m.payload_size;
    }
    /* §5.1, §14 item 8: no client data before HandshakeComplete (or the
       first output without a handshake) reached the client; the KMS
       challenge answer belongs to the handshake (§6.5) */
    if (from == &s->c && m.payload_type != SSMB_PAYLOAD_HANDSHAKE_RESPONSE &&
        m.payload_type != SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE && !s->client_may_send)
        s->early_data++;
    if (m.sequence_number >= from->seq_cap) return;
    first = from->last_sent[m.sequence_number] == 0;
    if (from == &s->c && first && m.payload_type == SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE) {
        if (s->client_may_send) s->late_challenge++;
        else s->challenge_answers++;
    }
    if (from->last_sent[m.sequence_number]) {
        /* a retransmission: only once the RTO the metrics report expired */
        ssmb_channel_get_metrics(from->ch, &mt);
        from->resends++;
        if ((s->now - from->last_sent[m.sequence_number]) * 1000 <= mt.rto_us) from->early_resends++;
    }
    from->last_sent[m.sequence_number] = s->now;
}

static void sim_pump_out(sim *s, sim_side *from, sim_lane *lane) {
    const uint8_t *f;
    size_t n;
    while (ssmb_channel_next_frame(from->ch, &f, &n) == SSMB_OK) {
        sim_inspect(s, from, f, n);
        lane_push(s, lane, f, n);
        CHECK(ssmb_channel_frame_sent(from->ch, s->now) == SSMB_OK);
    }
}

/* The application writes its stream straight into the channel's places,
   filling all but the last whole (the last one short when the stream's
   position says so). */
static void sim_feed_placed(sim_side *x) {
    ssmb_send_place pl[8];
    size_t count = ssmb_channel_send_places(x->ch, SSMB_PAYLOAD_OUTPUT, pl, COUNT_OF(pl)), i, j;
    for (i = 0; i < count && x->sent < x->to_send; i++) {
        size_t n = pl[i].cap;
        if (n > x->to_send - x->sent) n = (size_t)(x->to_send - x->sent);
        if (i == count - 1 && n > 1 && x->sent % 3 == 0) n = n / 2 + 1; /* a short one now and then */
        for (j = 0; j < n; j++) pl[i].data[j] = stream_byte(x->seed, x->sent + j);
        if (!CHECK(ssmb_channel_send_commit(x->ch, n) == SSMB_OK)) return;
        x->sent += n;
    }
}

/* The application writes as much of its stream as the channel takes. */
static void sim_feed_app(sim_side *x) {
    if (x->placed) {
        uint64_t before;
        do {
            before = x->sent;
            sim_feed_placed(x);
        } while (x->sent != before && x->sent < x->to_send);
        return;
    }
    while (x->sent < x->to_send) {
        size_t n = (size_t)(x->to_send - x->sent), i, acc = 0, room = ssmb_channel_send_space(x->ch);
        ssmb_result r;
        if (room == 0) break;
        if (n > room) n = room;
        for (i = 0; i < n; i++) x->scratch[i] = stream_byte(x->seed, x->sent + i);
        r = ssmb_channel_send(x->ch, SSMB_PAYLOAD_OUTPUT, x->scratch, n, &acc);
        x->sent += acc;
        if (r != SSMB_OK || acc < n) break;
    }
}

static void sim_capture(sim_side *x, const ssmb_channel_event *ev) {
    char tag[16];
    size_t n = (size_t)snprintf(tag, sizeof tag, "[%u]", (unsigned)ev->payload_type);
    if (x->captured_len + n + ev->len >= sizeof x->captured) return;
    memcpy(x->captured + x->captured_len, tag, n);
    memcpy(x->captured + x->captured_len + n, ev->data, ev->len);
    x->captured_len += n + ev->len;
    x->captured[x->captured_len] = '\0';
}

static void sim_on_data(sim_side *x, const ssmb_channel_event *ev) {
    size_t i;
    x->data_events++;
    if (x->capture) {
        sim_capture(x, ev);
        return;
    }
    if (ev->payload_type != SSMB_PAYLOAD_OUTPUT) return;
    for (i = 0; i < ev->len; i++)
        if (ev->data[i] != stream_byte(x->peer_seed, x->got + i)) x->mismatches++;
    x->got += ev->len;
}

/* The host's KMS call for a KMS_REQUEST (client) or KMS_DECRYPT (agent). */
static void fake_kms_call(sim_side *x, const ssmb_channel_event *ev) {
    fake_kms *k = x->kms;
    uint8_t key[64];
    size_t i;
    if (ev->type == SSMB_CHANNEL_EVENT_KMS_REQUEST) {
        k->generates++;
        if (k->fail_generate) {
            k->answer = ssmb_channel_kms_failed(x->ch, "AccessDeniedException: no kms:GenerateDataKey", *x->clock);
            return;
        }
        for (i = 0; i < sizeof k->key; i++) k->key[i] = (uint8_t)xorshift(&k->rng);
        memcpy(k->blob, "FAKEBLOB", 8);
        for (i = 8; i < sizeof k->blob; i++) k->blob[i] = (uint8_t)xorshift(&k->rng);
        snprintf(k->context, sizeof k->context, "%.*s", (int)ev->kms_challenge.len, ev->kms_challenge.ptr);
        k->answer = ssmb_channel_kms_key(x->ch, k->key, sizeof k->key, k->blob, sizeof k->blob, *x->clock);
        return;
    }
    k->decrypts++;
    if (ev->len != sizeof k->blob || memcmp(ev->data, k->blob, ev->len) != 0 ||
        !ssmb_str_eq(ev->kms_challenge, k->context)) {
        k->answer = ssmb_channel_kms_failed(x->ch, "InvalidCiphertextException", *x->clock);
        return;
    }
    memcpy(key, k->key, sizeof key);
    if (k->wrong_decrypt) key[5] ^= 0x40;
    k->answer = ssmb_channel_kms_key(x->ch, key, sizeof key, ev->data, ev->len, *x->clock);
}

static void sim_on_event(sim_side *x, const ssmb_channel_event *ev) {
    if ((ev->type == SSMB_CHANNEL_EVENT_KMS_REQUEST || ev->type == SSMB_CHANNEL_EVENT_KMS_DECRYPT) && x->kms)
        fake_kms_call(x, ev);
    if (ev->type == SSMB_CHANNEL_EVENT_DATA) {
        sim_on_data(x, ev);
        return;
    }
    if (ev->type == SSMB_CHANNEL_EVENT_READY) x->ready_events++;
    if (ev->type == SSMB_CHANNEL_EVENT_CLOSED) x->closed_events++;
    if (x->ev.n < (int)COUNT_OF(x->ev.e)) x->ev.e[x->ev.n++].ev = *ev;
}

/* Everything waiting; a channel takes the next message only after this. */
static void sim_poll(sim_side *x) {
    ssmb_channel_event ev;
    while (ssmb_channel_poll(x->ch, &ev) == SSMB_OK) sim_on_event(x, &ev);
}

static void sim_deliver(sim *s, sim_side *to, const uint8_t *f, size_t n) {
    ssmb_msg m;
    ssmb_result r = ssmb_channel_recv(to->ch, f, n, 0, s->now);
    if (r == SSMB_AGAIN) to->again++;
    if (to == &s->c && ssmb_msg_decode(f, n, &m) == SSMB_OK && ssmb_msg_type_is(&m, SSMB_MSG_OUTPUT_STREAM_DATA) &&
        (s->handshake ? m.payload_type == SSMB_PAYLOAD_HANDSHAKE_COMPLETE
                      : m.payload_type == SSMB_PAYLOAD_OUTPUT && m.sequence_number == 0))
        s->client_may_send = 1;
    sim_poll(to);
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* One turn: everything goes out, time moves to the next arrival or
   deadline, what is due arrives, timers run. 0 when nothing is left. */
static int sim_step(sim *s) {
    uint64_t t = SSMB_NO_DEADLINE;
    long i;
    sim_feed_app(&s->c);
    sim_feed_app(&s->a);
    sim_pump_out(s, &s->c, &s->ca);
    sim_pump_out(s, &s->a, &s->ac);
    if ((i = lane_first(&s->ca)) >= 0) t = s->ca.q[i].at;
    if ((i = lane_first(&s->ac)) >= 0) t = min_u64(t, s->ac.q[i].at);
    t = min_u64(t, min_u64(ssmb_channel_next_deadline(s->c.ch), ssmb_channel_next_deadline(s->a.ch)));
    if (t == SSMB_NO_DEADLINE) return 0;
    if (t > s->now) s->now = t;
    for (;;) {
        long ic = lane_first(&s->ca), ia = lane_first(&s->ac);
        sim_lane *l = NULL;
        sim_pkt p;
        if (ic >= 0 && s->ca.q[ic].at <= s->now) l = &s->ca;
        else if (ia >= 0 && s->ac.q[ia].at <= s->now) l = &s->ac;
        if (!l) break;
        i = l == &s->ca ? ic : ia;
        p = l->q[i];
        l->q[i] = l->q[--l->n];
        sim_deliver(s, l == &s->ca ? &s->a : &s->c, p.data, p.len);
        free(p.data);
    }
    ssmb_channel_tick(s->c.ch, s->now);
    ssmb_channel_tick(s->a.ch, s->now);
    s->steps++;
    return 1;
}

static int sim_done(const sim *s) {
    return s->c.got >= s->a.to_send && s->a.got >= s->c.to_send && s->c.sent == s->c.to_send &&
           s->a.sent == s->a.to_send;
}

/* Runs until both streams arrived whole (or nothing moves, or max_steps). */
static void sim_run(sim *s, long max_steps) {
    while (!sim_done(s) && s->steps < max_steps && sim_step(s)) {}
    /* let the last acks land */
    while (s->steps < max_steps && (s->ca.n || s->ac.n) && sim_step(s)) {}
}

/* Runs until nothing is in flight and no timer is set. */
static void sim_settle(sim *s, long max_steps) {
    while (s->steps < max_steps && sim_step(s)) {}
}

static void sim_side_init(sim_side *x, ssmb_channel *ch, uint32_t seed, uint32_t peer_seed, uint64_t bytes,
                          uint32_t payload) {
    x->ch = ch;
    x->seed = seed;
    x->peer_seed = peer_seed;
    x->to_send = bytes;
    x->seq_cap = (int64_t)(bytes / (payload ? payload : 1024)) + 64;
    x->last_sent = (uint64_t *)calloc((size_t)x->seq_cap, sizeof *x->last_sent);
}

/* A sim over two fresh channels; bytes each way (0: none). */
static sim *sim_new(const ssmb_channel_desc *cd, const ssmb_channel_desc *ad, uint64_t bytes) {
    sim *s = (sim *)calloc(1, sizeof *s);
    s->now = 1000;
    s->rng = 0x5eed1234u;
    s->handshake = ad->session_type != NULL;
    sim_side_init(&s->c, make(cd, s->now), 0xC11E47u, 0xA6E47u, bytes, cd->payload_size);
    sim_side_init(&s->a, make(ad, s->now), 0xA6E47u, 0xC11E47u, bytes, ad->payload_size);
    s->c.clock = s->a.clock = &s->now;
    sim_poll(&s->c);
    sim_poll(&s->a);
    return s;
}

static void sim_free(sim *s) {
    ssmb_channel_destroy(s->c.ch);
    ssmb_channel_destroy(s->a.ch);
    free(s->c.last_sent);
    free(s->a.last_sent);
    lane_free(&s->ca);
    lane_free(&s->ac);
    free(s);
}

static void sim_lanes(sim *s, uint32_t delay, uint32_t jitter, uint32_t loss, uint32_t dup) {
    sim_lane *l[2];
    int i;
    l[0] = &s->ca;
    l[1] = &s->ac;
    for (i = 0; i < 2; i++) {
        l[i]->delay = delay;
        l[i]->jitter = jitter;
        l[i]->loss = loss;
        l[i]->dup = dup;
    }
}

/* MB each way for the bulk transfers: 20, or SSMB_CHANNEL_MB (about a
   second under ASan at 20, so every build runs the full size). */
static uint64_t bulk_bytes(void) {
    const char *e = getenv("SSMB_CHANNEL_MB");
    long mb = e && *e ? atol(e) : 20;
    if (mb < 1) mb = 1;
    return (uint64_t)mb << 20;
}

/* Checks a finished bulk run and reports it. */
static void sim_check_bulk(sim *s, const char *name, const counting *k, long allocs_before) {
    ssmb_channel_metrics mc = metrics(s->c.ch), ma = metrics(s->a.ch);
    CHECK_EQ_INT(s->c.got, s->a.to_send);
    CHECK_EQ_INT(s->a.got, s->c.to_send);
    CHECK_EQ_INT(s->c.mismatches + s->a.mismatches, 0);
    CHECK_EQ_INT(s->early_data, 0);
    CHECK_EQ_INT(s->c.again + s->a.again, 0);
    CHECK_EQ_INT(s->c.early_resends + s->a.early_resends, 0);
    CHECK_EQ_INT(s->c.ready_events, 1);
    CHECK_EQ_INT(s->a.ready_events, 1);
    CHECK_EQ_INT(s->c.closed_events + s->a.closed_events, 0);
    CHECK_EQ_INT(mc.dropped_invalid + ma.dropped_invalid + mc.dropped_digest + ma.dropped_digest, 0);
    CHECK_EQ_INT(k->allocs, allocs_before); /* nothing allocated after create */
    printf("%s: %llu+%llu bytes, %lld+%lld retransmissions, %lld+%lld duplicates, %lld+%lld kept early, "
           "rto %llu/%llu us, %ld steps, %llu ms virtual\n",
           name, (unsigned long long)s->a.got, (unsigned long long)s->c.got, (long long)mc.retransmissions,
           (long long)ma.retransmissions, (long long)mc.duplicates, (long long)ma.duplicates,
           (long long)mc.reordered, (long long)ma.reordered, (unsigned long long)mc.rto_us,
           (unsigned long long)ma.rto_us, s->steps, (unsigned long long)s->now);
}

/* A client and an agent (session_type as agent_desc) moving
   bulk_bytes() each way, their allocations counted by k; *before is the
   count after create. placed: both ends write in place. */
static sim *counted_sim(counting *k, const char *session_type, int placed, long *before) {
    ssmb_channel_desc cd, ad;
    sim *s;
    memset(k, 0, sizeof *k);
    client_desc(&cd);
    agent_desc(&ad, session_type);
    use_counting(&cd, k);
    use_counting(&ad, k);
    s = sim_new(&cd, &ad, bulk_bytes());
    s->c.placed = s->a.placed = placed;
    *before = k->allocs;
    return s;
}

/* 10% loss, 5% duplication, reordering by jitter, with a handshake: every
   byte arrives in order, retransmissions wait for the RTO, no client data
   goes out before HandshakeComplete, nothing is allocated. */
SSMB_TEST(channel_link_bulk_lossy_with_handshake) {
    counting k;
    long before;
    sim *s = counted_sim(&k, "Standard_Stream", 0, &before);
    sim_lanes(s, 20, 15, 100, 50);
    sim_run(s, 50000000);
    sim_check_bulk(s, "channel lossy link", &k, before);
    CHECK(metrics(s->c.ch).retransmissions > 0 && metrics(s->a.ch).retransmissions > 0);
    CHECK(metrics(s->c.ch).reordered > 0 && metrics(s->a.ch).duplicates > 0);
    CHECK(s->c.resends > 0);
    sim_free(s);
    CHECK_EQ_INT(k.live, 0);
}

/* No loss, no jitter, no handshake: not one retransmission. */
SSMB_TEST(channel_link_bulk_clean_without_handshake) {
    counting k;
    long before;
    sim *s = counted_sim(&k, NULL, 0, &before);
    sim_lanes(s, 20, 0, 0, 0);
    sim_run(s, 50000000);
    sim_check_bulk(s, "channel clean link", &k, before);
    CHECK_EQ_INT(metrics(s->c.ch).retransmissions + metrics(s->a.ch).retransmissions, 0);
    CHECK_EQ_INT(metrics(s->c.ch).handshake_us, 0);
    CHECK(s->c.ev.n >= 1 && s->c.ev.e[0].ev.type == SSMB_CHANNEL_EVENT_READY &&
          ssmb_str_eq(s->c.ev.e[0].ev.session_type, "Standard_Stream"));
    sim_free(s);
    CHECK_EQ_INT(k.live, 0);
}

/* ---- the wire, rule by rule (PROTOCOL.md §14) ---- */

/* Items 1-4 and 6: the acknowledge frame byte by byte. */
SSMB_TEST(channel_ack_wire_format) {
    static const char want_json[] =
        "{\"AcknowledgedMessageType\":\"output_stream_data\",\"AcknowledgedMessageId\":"
        "\"a0a1a2a3-a4a5-a6a7-a8a9-aaabacad0000\",\"AcknowledgedMessageSequenceNumber\":0,"
        "\"IsSequentialMessage\":true}";
    static const uint8_t hl[4] = {0, 0, 0, 116}, zero8[8] = {0}, three[8] = {0, 0, 0, 0, 0, 0, 0, 3};
    char type_field[33];
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    const uint8_t *b;
    client_desc(&d);
    ch = make(&d, 1000);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "hello"), 3000) == SSMB_OK);
    wire_take(w, ch, 3000);
    if (!CHECK(w->n == 1)) goto out;
    b = w->f[0].bytes;
    CHECK_EQ_MEM(b, hl, 4);                                     /* item 2: HeaderLength 116 */
    memcpy(type_field, b + 4, 32);
    type_field[32] = '\0';
    CHECK_EQ_STR(type_field, "acknowledge                     "); /* item 3: space padding */
    CHECK_EQ_INT(w->m[0].created_date_ms, EPOCH_MS + 2000);      /* item 4: epoch milliseconds */
    CHECK_EQ_MEM(b + 48, zero8, 8);                               /* item 6: sequence 0 */
    CHECK_EQ_MEM(b + 56, three, 8);                               /* flags SYN|FIN */
    CHECK(b[112] == 0 && b[113] == 0 && b[114] == 0 && b[115] == 0); /* payload type 0 */
    CHECK((b[64 + 8 + 6] & 0xF0) == 0x40 && (b[64] & 0xC0) == 0x80); /* item 1: v4 UUID, halves swapped */
    CHECK_EQ_INT(w->m[0].payload_size, sizeof want_json - 1);
    CHECK_EQ_MEM(w->m[0].payload, want_json, sizeof want_json - 1);
    CHECK_EQ_INT(metrics(ch).acks_out, 1);
out:
    ssmb_channel_destroy(ch);
    free(w);
}

/* Item 3 the other way: a NUL-padded MessageType is read. */
SSMB_TEST(channel_reads_nul_padded_type) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    size_t i;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "x");
    for (i = 4 + strlen(SSMB_MSG_OUTPUT_STREAM_DATA); i < 36; i++) f.bytes[i] = 0;
    CHECK(feed(ch, &f, 1) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(data_is(find_event(&ev, SSMB_CHANNEL_EVENT_DATA), "x"));
    wire_take(w, ch, 1);
    CHECK(w->n == 1 && acked_seq(&w->m[0]) == 0);
    ssmb_channel_destroy(ch);
    free(w);
}

static const char port_request[] =
    "{\"AgentVersion\":\"3.3.987.0\",\"RequestedClientActions\":[{\"ActionType\":\"SessionType\","
    "\"ActionParameters\":{\"SessionType\":\"Port\",\"Properties\":{\"localPortNumber\":\"56789\","
    "\"portNumber\":\"80\",\"type\":\"LocalPortForwarding\"}}}]}";

/* §5: the client's handshake. The ack goes out before the answer (§3.3,
   item 6); one sequence counter for the answer, Size, Flag and data (item
   7); Size keys (item 13); Flag bytes (item 14); no data before READY
   (item 8); ClientVersion (item 10). */
SSMB_TEST(channel_client_handshake_on_the_wire) {
    static const char want_response[] =
        "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":[{\"ActionType\":\"SessionType\","
        "\"ActionStatus\":1,\"ActionResult\":null,\"Error\":\"\"}],\"Errors\":null}";
    static const uint8_t flag2[4] = {0, 0, 0, 2};
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    const got_event *ready;
    size_t acc = 1;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\r", 3, &acc) == SSMB_AGAIN && acc == 0);
    CHECK(ssmb_channel_send_size(ch, 80, 24) == SSMB_AGAIN);
    CHECK(ssmb_channel_send_flag(ch, SSMB_FLAG_TERMINATE_SESSION) == SSMB_AGAIN);
    CHECK(ssmb_channel_send_space(ch) == 0);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, port_request), 100) == SSMB_OK);
    CHECK_EQ_INT(poll_all(ch, &ev), 0);
    wire_take(w, ch, 100);
    CHECK_EQ_INT(w->n, 2);
    CHECK_EQ_INT(acked_seq(&w->m[0]), 0); /* the ack first */
    CHECK(ssmb_msg_type_is(&w->m[1], SSMB_MSG_INPUT_STREAM_DATA));
    CHECK_EQ_INT(w->m[1].sequence_number, 0);
    CHECK_EQ_INT(w->m[1].flags, 0);
    CHECK_EQ_INT(w->m[1].payload_type, SSMB_PAYLOAD_HANDSHAKE_RESPONSE);
    CHECK(payload_is(&w->m[1], want_response));
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\r", 3, &acc) == SSMB_AGAIN); /* still not ready */
    wire_clear(w);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_HANDSHAKE_COMPLETE,
                            "{\"HandshakeTimeToComplete\":1500000000,\"CustomerMessage\":\"hello \\u00e9\\r\\n\"}"),
               350) == SSMB_OK);
    poll_all(ch, &ev);
    ready = find_event(&ev, SSMB_CHANNEL_EVENT_READY);
    if (CHECK(ready != NULL)) {
        CHECK(ssmb_str_eq(ready->ev.session_type, "Port"));
        CHECK(ssmb_str_eq(ready->ev.properties,
                          "{\"localPortNumber\":\"56789\",\"portNumber\":\"80\",\"type\":\"LocalPortForwarding\"}"));
        CHECK(ssmb_str_eq(ready->ev.agent_version, "3.3.987.0"));
        CHECK(ssmb_str_eq(ready->ev.message, "hello \xc3\xa9\r\n"));
        CHECK(ssmb_agent_has(ready->ev.agent_version.ptr, SSMB_AGENT_MUX));
    }
    CHECK_EQ_INT(metrics(ch).handshake_us, 250000);
    CHECK(ssmb_channel_send_size(ch, 80, 24) == SSMB_OK);
    CHECK(ssmb_channel_send_flag(ch, SSMB_FLAG_TERMINATE_SESSION) == SSMB_OK);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\r", 3, &acc) == SSMB_OK && acc == 3);
    wire_take(w, ch, 400);
    if (CHECK(w->n == 4)) {
        CHECK_EQ_INT(acked_seq(&w->m[0]), 1);
        CHECK(w->m[1].sequence_number == 1 && w->m[1].payload_type == SSMB_PAYLOAD_SIZE);
        CHECK(payload_is(&w->m[1], "{\"cols\":80,\"rows\":24}"));
        CHECK(w->m[2].sequence_number == 2 && w->m[2].payload_type == SSMB_PAYLOAD_FLAG);
        CHECK(w->m[2].payload_size == 4 && CHECK_EQ_MEM(w->m[2].payload, flag2, 4));
        CHECK(w->m[3].sequence_number == 3 && w->m[3].payload_type == SSMB_PAYLOAD_OUTPUT);
        CHECK(payload_is(&w->m[3], "ls\r"));
    }
    ssmb_channel_destroy(ch);
    free(w);
}

/* Unknown session type, KMS (the host's KMS call failed) and an unknown
   action are all refused with a reason (§5.3); the response waits for the
   host's answer to KMS_REQUEST; a HandshakeComplete then ends the
   channel. */
SSMB_TEST(channel_client_handshake_refusals) {
    static const char request[] =
        "{\"AgentVersion\":\"3.3.987.0\",\"RequestedClientActions\":["
        "{\"ActionType\":\"SessionType\",\"ActionParameters\":{\"SessionType\":\"Bogus\",\"Properties\":null}},"
        "{\"ActionType\":\"KMSEncryption\",\"ActionParameters\":{\"KMSKeyId\":\"alias/k\",\"Challenge\":\"AAAA\"}},"
        "{\"ActionType\":\"FutureThing\",\"ActionParameters\":{}}]}";
    static const char want[] =
        "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":["
        "{\"ActionType\":\"SessionType\",\"ActionStatus\":2,\"ActionResult\":null,"
        "\"Error\":\"Failed to process action SessionType: Unknown session type Bogus\"},"
        "{\"ActionType\":\"KMSEncryption\",\"ActionStatus\":2,\"ActionResult\":null,"
        "\"Error\":\"Failed to process action KMSEncryption: AccessDeniedException: not allowed\"},"
        "{\"ActionType\":\"FutureThing\",\"ActionStatus\":3,\"ActionResult\":null,"
        "\"Error\":\"Unsupported action type FutureThing\"}],\"Errors\":null}";
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    const got_event *closed, *kms;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(ssmb_channel_kms_failed(ch, "x", 5) == SSMB_ERR_INVALID_STATE); /* nothing asked yet */
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, request), 10) == SSMB_OK);
    poll_all(ch, &ev);
    kms = find_event(&ev, SSMB_CHANNEL_EVENT_KMS_REQUEST);
    CHECK(kms && ssmb_str_eq(kms->ev.kms_key_id, "alias/k") && ssmb_str_eq(kms->ev.kms_challenge, "AAAA"));
    wire_take(w, ch, 10);
    CHECK(w->n == 1 && acked_seq(&w->m[0]) == 0); /* the response waits for KMS */
    CHECK(ssmb_channel_next_deadline(ch) == SSMB_NO_DEADLINE); /* the client has no handshake timeout (§5.5) */
    CHECK(ssmb_channel_kms_failed(ch, "AccessDeniedException: not allowed", 30) == SSMB_OK);
    CHECK(ssmb_channel_kms_failed(ch, "twice", 30) == SSMB_ERR_INVALID_STATE);
    wire_take(w, ch, 30);
    CHECK(w->n == 2 && payload_is(&w->m[1], want));
    CHECK(!ssmb_channel_encrypted(ch));
    ev.n = 0;
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, "{\"HandshakeTimeToComplete\":1}"), 20) == SSMB_OK);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_ERR_SSM_PROTOCOL);
    CHECK(!find_event(&ev, SSMB_CHANNEL_EVENT_READY));
    CHECK(ssmb_channel_last_error(ch) == SSMB_ERR_SSM_PROTOCOL);
    ssmb_channel_destroy(ch);
    free(w);
}

/* §3.3: a handshake message kept in the reorder store is handled like one
   that came in order (the reference misroutes it). */
SSMB_TEST(channel_kept_handshake_messages_handled) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, "{\"HandshakeTimeToComplete\":5}"), 10) == SSMB_OK);
    CHECK_EQ_INT(poll_all(ch, &ev), 0);
    CHECK_EQ_INT(metrics(ch).reordered, 1);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, port_request), 20) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(find_event(&ev, SSMB_CHANNEL_EVENT_READY) != NULL);
    wire_take(w, ch, 30);
    CHECK_EQ_INT(w->n, 3);
    CHECK(acked_seq(&w->m[0]) == 1 && acked_seq(&w->m[1]) == 0);
    CHECK(w->m[2].payload_type == SSMB_PAYLOAD_HANDSHAKE_RESPONSE);
    ssmb_channel_destroy(ch);
    free(w);
}

/* §5.1 without a handshake: the first Output makes the client ready; other
   payload types before it do not. */
SSMB_TEST(channel_first_output_names_the_session) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    events ev;
    frame f, g;
    const got_event *ready, *data;
    size_t acc;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_STDERR, "warn"), 1) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(!ssmb_channel_is_ready(ch) && ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "a", 1, &acc) == SSMB_AGAIN);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "sh-5.2$ "), 2) == SSMB_OK);
    CHECK(feed(ch, out_data(&g, 2, SSMB_PAYLOAD_OUTPUT, "more"), 2) == SSMB_AGAIN); /* DATA points into f */
    poll_all(ch, &ev);
    ready = find_event(&ev, SSMB_CHANNEL_EVENT_READY);
    data = find_event(&ev, SSMB_CHANNEL_EVENT_DATA);
    CHECK(ready && ssmb_str_eq(ready->ev.session_type, "Standard_Stream") && ready->ev.agent_version.len == 0);
    CHECK(ready && data && ready < &ev.e[ev.n - 1]); /* READY before the output that caused it */
    CHECK(data_is(&ev.e[ev.n - 1], "sh-5.2$ ") && ev.e[0].ev.payload_type == SSMB_PAYLOAD_STDERR);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "a", 1, &acc) == SSMB_OK && acc == 1);
    ssmb_channel_destroy(ch);
}

/* Item 9: an empty send sends nothing; handshake and ack types are the
   channel's own. */
SSMB_TEST(channel_never_sends_empty_payloads) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    size_t acc = 9;
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0); /* the ack of the first output */
    wire_clear(w);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "", 0, &acc) == SSMB_OK && acc == 0);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, NULL, 0, &acc) == SSMB_OK && acc == 0);
    CHECK_EQ_INT(wire_take(w, ch, 1), 0);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_HANDSHAKE_RESPONSE, "x", 1, &acc) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_NONE, "x", 1, &acc) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, NULL, 1, &acc) == SSMB_ERR_INVALID_ARG);
    ssmb_channel_destroy(ch);
    free(w);
}

/* §4.2, item 10: the open frame; a fresh RequestId each time, one ClientId. */
SSMB_TEST(channel_open_frame) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    char a[512], b[512];
    size_t na = 0, nb = 0, need = 0;
    ssmb_json_token ta[32], tb[32];
    ssmb_json ja, jb;
    ssmb_str ra, rb, ca, cb, v, t;
    client_desc(&d);
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_OK); /* usable before start */
    CHECK(ssmb_channel_open_frame(ch, "tok==", a, sizeof a, &na) == SSMB_OK);
    CHECK(ssmb_channel_open_frame(ch, "tok2", b, sizeof b, &nb) == SSMB_OK);
    CHECK(ssmb_json_parse(&ja, a, na, ta, 32) == SSMB_OK && ssmb_json_parse(&jb, b, nb, tb, 32) == SSMB_OK);
    ssmb_json_get_str(&ja, ssmb_json_find(&ja, 0, "RequestId"), &ra);
    ssmb_json_get_str(&jb, ssmb_json_find(&jb, 0, "RequestId"), &rb);
    ssmb_json_get_str(&ja, ssmb_json_find(&ja, 0, "ClientId"), &ca);
    ssmb_json_get_str(&jb, ssmb_json_find(&jb, 0, "ClientId"), &cb);
    ssmb_json_get_str(&ja, ssmb_json_find(&ja, 0, "ClientVersion"), &v);
    ssmb_json_get_str(&ja, ssmb_json_find(&ja, 0, "TokenValue"), &t);
    CHECK(ra.len == 36 && rb.len == 36 && memcmp(ra.ptr, rb.ptr, 36) != 0);
    CHECK(ca.len == 36 && cb.len == 36 && memcmp(ca.ptr, cb.ptr, 36) == 0);
    CHECK(ssmb_str_eq(v, SSMB_CHANNEL_CLIENT_VERSION) && ssmb_str_eq(t, "tok=="));
    CHECK(strncmp(a, "{\"MessageSchemaVersion\":\"1.0\",\"RequestId\":", 42) == 0);
    CHECK(ssmb_channel_open_frame(ch, "tok", a, 10, &need) == SSMB_ERR_BUFFER_TOO_SMALL && need > 10);
    CHECK(ssmb_channel_open_frame(ch, NULL, a, sizeof a, &need) == SSMB_ERR_INVALID_ARG);
    ssmb_channel_destroy(ch);
    client_desc(&d);
    d.client_version = "1.2.800.0";
    CHECK(ssmb_channel_create(&d, &ch) == SSMB_OK);
    CHECK(ssmb_channel_open_frame(ch, "t", a, sizeof a, &na) == SSMB_OK && strstr(a, "\"ClientVersion\":\"1.2.800.0\""));
    ssmb_channel_destroy(ch);
}

/* ---- receiving: duplicates, order, hostile frames ---- */

/* §3.3 recommended: a message seen before is acknowledged again, and not
   delivered twice. */
SSMB_TEST(channel_duplicates_acknowledged_again) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = ready_client(&d, 0); /* seq 0 handled */
    wire_take(w, ch, 0);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "$ "), 5) == SSMB_OK);
    wire_take(w, ch, 5);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "one"), 6) == SSMB_OK);
    poll_all(ch, &ev);
    wire_take(w, ch, 6);
    CHECK(feed(ch, &f, 7) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(feed(ch, &f, 7) == SSMB_OK); /* while its ack waits: folded into it */
    wire_take(w, ch, 8);
    CHECK_EQ_INT(ev.n, 1);
    CHECK(data_is(&ev.e[0], "one"));
    CHECK_EQ_INT(w->n, 4);
    CHECK(acked_seq(&w->m[0]) == 0 && acked_seq(&w->m[1]) == 0 && acked_seq(&w->m[2]) == 1 &&
          acked_seq(&w->m[3]) == 1);
    CHECK_EQ_INT(metrics(ch).duplicates, 3);
    ssmb_channel_destroy(ch);
    free(w);
}

/* A send of several payloads hashes them in pairs (ssmb_sha256_pair): every
   frame still carries its own payload's digest, the odd one and a shorter
   tail included (wire_take validates each). */
SSMB_TEST(channel_send_digests_in_pairs) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    static uint8_t data[7 * 1024 + 500];
    size_t acc = 0, i, total = 0;
    int ok = 1;
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 131u + 7u);
    client_desc(&d);
    d.send_buffer_bytes = 16 * 1024;
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    wire_clear(w);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, data, sizeof data, &acc) == SSMB_OK && acc == sizeof data);
    CHECK_EQ_INT(wire_take(w, ch, 1), 8);
    for (i = 0; i < (size_t)w->n; i++) {
        ok &= w->m[i].payload_size == (i < 7 ? 1024u : 500u);
        ok &= w->m[i].payload_size <= sizeof data - total &&
              memcmp(w->m[i].payload, data + total, w->m[i].payload_size) == 0;
        total += w->m[i].payload_size;
    }
    CHECK(ok && total == sizeof data);
    ssmb_channel_destroy(ch);
    free(w);
}

/* Writing in place: places follow the send buffer's room, commits go out
   in order as whole messages with valid digests, short ones included;
   places not committed are given back by the next queuing call; bad
   commits are refused and change nothing. Plain 20 MB over a lossy link
   too. */
SSMB_TEST(channel_send_places_commit) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    ssmb_send_place pl[16];
    size_t n, i, acc = 0;
    client_desc(&d);
    d.payload_size = 1024;
    d.send_buffer_bytes = 4 * (SSMB_MSG_HEADER_SIZE + 1024) + 300; /* four whole places and a short one */
    ch = make(&d, 0);
    CHECK_EQ_INT(ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 16), 0); /* not ready yet (§5.1) */
    CHECK(ssmb_channel_send_commit(ch, 1) == SSMB_ERR_INVALID_STATE);
    ssmb_channel_destroy(ch);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0); /* the ack of the first Output */
    wire_clear(w);
    CHECK_EQ_INT(ssmb_channel_send_places(ch, SSMB_PAYLOAD_HANDSHAKE_RESPONSE, pl, 16), 0); /* the channel's own */
    CHECK_EQ_INT(ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 0), 0);
    n = ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 16);
    CHECK_EQ_INT(n, 4);
    for (i = 0; i < n; i++) {
        CHECK_EQ_INT(pl[i].cap, 1024);
        memset(pl[i].data, 'a' + (int)i, pl[i].cap);
    }
    CHECK(ssmb_channel_send_commit(ch, 0) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_send_commit(ch, 1025) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_send_commit(ch, 1024) == SSMB_OK);
    CHECK(ssmb_channel_send_commit(ch, 10) == SSMB_OK); /* a short one: the next place stays where it was */
    CHECK(ssmb_channel_send_commit(ch, 1024) == SSMB_OK);
    CHECK_EQ_INT(wire_take(w, ch, 1), 3);
    CHECK(w->m[0].payload_size == 1024 && w->m[0].payload[0] == 'a' && w->m[0].payload[1023] == 'a');
    CHECK(w->m[1].payload_size == 10 && w->m[1].payload[9] == 'b');
    CHECK(w->m[2].payload_size == 1024 && w->m[2].payload[1023] == 'c');
    CHECK(w->m[0].sequence_number == 0 && w->m[1].sequence_number == 1 && w->m[2].sequence_number == 2);
    /* the fourth place is given back by a send, which may take its room */
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "x", 1, &acc) == SSMB_OK && acc == 1);
    CHECK(ssmb_channel_send_commit(ch, 5) == SSMB_ERR_INVALID_STATE);
    CHECK_EQ_INT(wire_take(w, ch, 2), 1);
    CHECK(payload_is(&w->m[3], "x") && w->m[3].sequence_number == 3);
    /* the room left (4876 - 3 * 1144 - 121 bytes, the short commit's gap
       kept) holds one whole place, then one short one of 59 bytes */
    n = ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 16);
    CHECK(n == 1 && pl[0].cap == 1024);
    CHECK(n == 1 && ssmb_channel_send_commit(ch, 1024) == SSMB_OK);
    n = ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 16);
    CHECK(n == 1 && pl[0].cap == 4876 - 4 * 1144 - 121 - SSMB_MSG_HEADER_SIZE);
    if (n == 1) {
        memset(pl[0].data, 'z', pl[0].cap);
        CHECK(ssmb_channel_send_commit(ch, pl[0].cap) == SSMB_OK);
    }
    CHECK_EQ_INT(wire_take(w, ch, 3), 2);
    CHECK(w->m[4].payload_size == 1024 && w->m[4].sequence_number == 4);
    CHECK(w->m[5].payload_size == 59 && w->m[5].payload[58] == 'z' && w->m[5].sequence_number == 5);
    CHECK_EQ_INT(ssmb_channel_send_places(ch, SSMB_PAYLOAD_OUTPUT, pl, 16), 0); /* full until acks come */
    ssmb_channel_destroy(ch);
    free(w);
}

SSMB_TEST(channel_link_bulk_lossy_placed) {
    counting k;
    long before;
    sim *s = counted_sim(&k, NULL, 1, &before);
    sim_lanes(s, 20, 15, 100, 50);
    sim_run(s, 50000000);
    sim_check_bulk(s, "channel lossy link, written in place", &k, before);
    CHECK(metrics(s->c.ch).retransmissions > 0 && metrics(s->a.ch).retransmissions > 0);
    sim_free(s);
    CHECK_EQ_INT(k.live, 0);
}

/* While events of a message wait, acknowledgements are still taken (our
   own data would otherwise wait behind a message we cannot take yet, and
   a peer that waits for our acks before it reads would wait for us). */
SSMB_TEST(channel_acks_taken_while_events_wait) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f, g;
    size_t acc = 0;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = ready_client(&d, 0);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\n", 3, &acc) == SSMB_OK && acc == 3);
    wire_take(w, ch, 1);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "one"), 2) == SSMB_OK); /* DATA points into f */
    CHECK(ssmb_channel_borrows(ch));
    CHECK(feed(ch, ack_for(&g, SSMB_MSG_INPUT_STREAM_DATA, 0), 3) == SSMB_OK);
    CHECK_EQ_INT(metrics(ch).acks_in, 1);
    CHECK(ssmb_channel_borrows(ch)); /* the DATA still waits, untouched */
    CHECK_EQ_INT(poll_all(ch, &ev), 1);
    CHECK(data_is(&ev.e[0], "one"));
    ssmb_channel_destroy(ch);
    free(w);
}

/* A store allowed to grow keeps what comes ahead of a lost message beyond
   its first size (through the allocator, up to the maximum), hands it over
   in order, and gives the memory back once it is empty. */
SSMB_TEST(channel_reorder_store_grows) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    counting k;
    events ev;
    frame f;
    char text[32];
    int i, in_order = 1;
    size_t base;
    memset(&k, 0, sizeof k);
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    use_counting(&d, &k);
    d.reorder_buffer_messages = 4;
    d.reorder_buffer_bytes = 64;
    d.reorder_buffer_max_bytes = 2048;
    d.reorder_buffer_max_messages = 40;
    ch = ready_client(&d, 0);
    base = k.live;
    wire_take(w, ch, 0);
    for (i = 2; i <= 31; i++) { /* seq 1 is lost: 30 messages of 20 bytes come ahead of it */
        snprintf(text, sizeof text, "payload-%02d-xxxxxxxxx", i);
        CHECK(feed(ch, out_data(&f, i, SSMB_PAYLOAD_OUTPUT, text), 1) == SSMB_OK);
        wire_take(w, ch, 1);
    }
    CHECK_EQ_INT(metrics(ch).reordered, 30);
    CHECK_EQ_INT(metrics(ch).dropped_no_room, 0);
    CHECK(k.live > base); /* it grew */
    for (i = 32; i <= 45; i++) { /* past max_messages: dropped, not acknowledged */
        snprintf(text, sizeof text, "payload-%02d-xxxxxxxxx", i);
        CHECK(feed(ch, out_data(&f, i, SSMB_PAYLOAD_OUTPUT, text), 1) == SSMB_OK);
        wire_take(w, ch, 1);
    }
    CHECK_EQ_INT(metrics(ch).reordered, 40);
    CHECK_EQ_INT(metrics(ch).dropped_no_room, 4);
    CHECK(!ssmb_channel_has_events(ch));
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "payload-01-xxxxxxxxx"), 2) == SSMB_OK);
    CHECK(ssmb_channel_has_events(ch));
    CHECK_EQ_INT(poll_all(ch, &ev), 41); /* 1 and the 40 kept (ev holds the first 32) */
    CHECK(!ssmb_channel_has_events(ch));
    for (i = 0; i < ev.n; i++) {
        snprintf(text, sizeof text, "payload-%02d-xxxxxxxxx", i + 1);
        in_order &= ev.e[i].ev.sequence_number == i + 1 && data_is(&ev.e[i], text);
    }
    CHECK(in_order && ev.n == 32);
    CHECK_EQ_INT(k.live, base); /* empty again: the grown store went back */
    ssmb_channel_destroy(ch);
    CHECK_EQ_INT(k.live, 0);
    free(w);
}

/* Early messages are acknowledged and kept while there is room (messages
   and bytes), then delivered in order; no room means no ack. */
SSMB_TEST(channel_reorder_store) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f, g;
    int i;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    d.reorder_buffer_messages = 3;
    d.reorder_buffer_bytes = 12;
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    wire_clear(w);
    CHECK(feed(ch, out_data(&f, 3, SSMB_PAYLOAD_OUTPUT, "ccc"), 1) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, 2, SSMB_PAYLOAD_OUTPUT, "bb"), 1) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, 5, SSMB_PAYLOAD_OUTPUT, "eeeeeeeeeeeeeeeee"), 1) == SSMB_OK); /* bytes */
    CHECK(feed(ch, out_data(&f, 4, SSMB_PAYLOAD_OUTPUT, "dddd"), 1) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, 6, SSMB_PAYLOAD_OUTPUT, "f"), 1) == SSMB_OK); /* messages */
    CHECK(feed(ch, out_data(&f, 9000, SSMB_PAYLOAD_OUTPUT, "z"), 1) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, INT64_MAX, SSMB_PAYLOAD_OUTPUT, "z"), 1) == SSMB_OK);
    CHECK_EQ_INT(poll_all(ch, &ev), 0);
    wire_take(w, ch, 1);
    CHECK(w->n == 3 && acked_seq(&w->m[0]) == 3 && acked_seq(&w->m[1]) == 2 && acked_seq(&w->m[2]) == 4);
    CHECK_EQ_INT(metrics(ch).reordered, 3);
    CHECK_EQ_INT(metrics(ch).dropped_no_room, 4);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "a"), 2) == SSMB_OK);
    /* while kept messages are due, early ones are still taken: kept when
       there is room, else (here: three slots in use) dropped unacknowledged */
    CHECK(feed(ch, out_data(&g, 5, SSMB_PAYLOAD_OUTPUT, "e"), 2) == SSMB_OK);
    CHECK_EQ_INT(metrics(ch).dropped_no_room, 5);
    poll_all(ch, &ev); /* DATA of seq 1 points into f: kept until here */
    CHECK_EQ_INT(ev.n, 4);
    for (i = 0; i < ev.n && i < 4; i++) CHECK_EQ_INT(ev.e[i].ev.sequence_number, i + 1);
    CHECK(data_is(&ev.e[0], "a") && data_is(&ev.e[1], "bb") && data_is(&ev.e[2], "ccc") && data_is(&ev.e[3], "dddd"));
    CHECK(feed(ch, &g, 2) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ev.n == 5 && data_is(&ev.e[4], "e"));
    ssmb_channel_destroy(ch);
    free(w);
}

/* §2.4: undecodable and invalid frames are dropped, counted and never
   acknowledged; acks for unknown sequence numbers change nothing. */
SSMB_TEST(channel_bad_frames_dropped_and_counted) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    ssmb_channel_metrics m;
    size_t i;
    long prefixes;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    wire_clear(w);
    out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "digest");
    f.bytes[f.len - 1] ^= 1;
    CHECK(feed(ch, &f, 1) == SSMB_OK);                                   /* rule 4 */
    out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "date");
    memset(f.bytes + 40, 0, 8);
    CHECK(feed(ch, &f, 1) == SSMB_OK);                                   /* rule 3 */
    out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "hl");
    f.bytes[3] = 0;
    CHECK(feed(ch, &f, 1) == SSMB_OK);                                   /* HeaderLength 0 */
    prefixes = (long)f.len;
    for (i = 0; i < f.len; i++) CHECK(ssmb_channel_recv(ch, f.bytes, i, 0, 1) == SSMB_OK); /* every prefix */
    CHECK(feed(ch, out_data(&f, -1, SSMB_PAYLOAD_OUTPUT, "neg"), 1) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, INT64_MIN, SSMB_PAYLOAD_OUTPUT, "neg"), 1) == SSMB_OK);
    CHECK(feed(ch, frame_build(&f, "agent_job", 1, SSMB_PAYLOAD_OUTPUT, "x", 1), 1) == SSMB_OK); /* §2.6 */
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, 77), 1) == SSMB_OK);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, -5), 1) == SSMB_OK);
    CHECK(feed(ch, frame_build(&f, SSMB_MSG_ACKNOWLEDGE, 0, 0, "{\"x\":1}", 7), 1) == SSMB_OK);
    frame_build(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 1, SSMB_PAYLOAD_OUTPUT, NULL, 0);
    memset(f.bytes + 80, 0xEE, 32); /* empty payload: the digest is not checked */
    CHECK(feed(ch, &f, 1) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ssmb_channel_recv(ch, f.bytes, 16384 + 120 + 28 + 1, 0, 1) == SSMB_OK); /* oversize, never read */
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_DATA && ev.e[0].ev.len == 0);
    wire_take(w, ch, 2);
    CHECK(w->n == 1 && acked_seq(&w->m[0]) == 1); /* only the empty one */
    m = metrics(ch);
    CHECK_EQ_INT(m.dropped_digest, 1);
    CHECK_EQ_INT(m.dropped_invalid, 2 + prefixes + 2);
    CHECK_EQ_INT(m.dropped_oversize, 1);
    CHECK_EQ_INT(m.ignored, 3);
    CHECK_EQ_INT(m.bad_payloads, 1);
    CHECK_EQ_INT(m.acks_in, 2);
    ssmb_channel_destroy(ch);
    free(w);
}

/* ---- flow control and the end (§8) ---- */

/* §13 item 3: publication messages are never validated nor acknowledged.
   §8.1 / §16: while paused, new data and retransmissions wait; acks go. */
SSMB_TEST(channel_pause_holds_data) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    size_t acc;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    wire_clear(w);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "first", 5, &acc) == SSMB_OK);
    wire_take(w, ch, 10); /* in flight from t=10 */
    frame_build(&f, SSMB_MSG_PAUSE_PUBLICATION, 0, 0, "junk", 4);
    memset(f.bytes + 40, 0, 8);    /* no CreatedDate */
    memset(f.bytes + 80, 0, 32);   /* wrong digest */
    CHECK(feed(ch, &f, 20) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_PAUSED);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "held", 4, &acc) == SSMB_AGAIN && acc == 0);
    CHECK(ssmb_channel_send_space(ch) == 0);
    CHECK(ssmb_channel_next_deadline(ch) == SSMB_NO_DEADLINE);
    CHECK(ssmb_channel_tick(ch, 5000) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "out"), 5000) == SSMB_OK);
    poll_all(ch, &ev);
    wire_clear(w);
    wire_take(w, ch, 5000);
    CHECK(w->n == 1 && acked_seq(&w->m[0]) == 1); /* the ack, no retransmission, no publication ack */
    CHECK(feed_text(ch, "{\"MessageType\":\"pause_publication\"}", 5001) == SSMB_OK); /* already paused */
    CHECK(feed(ch, frame_build(&f, SSMB_MSG_START_PUBLICATION, 0, 0, NULL, 0), 6000) == SSMB_OK);
    ev.n = 0;
    poll_all(ch, &ev);
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_RESUMED);
    CHECK(ssmb_channel_next_deadline(ch) <= 6000);
    CHECK(ssmb_channel_tick(ch, 6000) == SSMB_OK);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "held", 4, &acc) == SSMB_OK && acc == 4);
    wire_clear(w);
    wire_take(w, ch, 6000);
    CHECK(w->n == 2 && payload_is(&w->m[0], "first") && payload_is(&w->m[1], "held"));
    CHECK(w->n == 2 && w->m[0].sequence_number == 0 && w->m[1].sequence_number == 1);
    CHECK_EQ_INT(metrics(ch).retransmissions, 1);
    CHECK_EQ_INT(metrics(ch).acks_out, 2);
    ssmb_channel_destroy(ch);
    free(w);
}

/* §13 item 2: control messages as bare JSON text frames. */
SSMB_TEST(channel_text_control_frames) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    events ev;
    frame f;
    const got_event *closed;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(feed_text(ch, "{\"MessageType\":\"pause_publication\",\"SchemaVersion\":1}", 1) == SSMB_OK);
    CHECK(feed_text(ch, "{}", 1) == SSMB_OK); /* PAUSED points into nothing: no need to wait */
    poll_all(ch, &ev);
    CHECK(feed_text(ch, "{\"messageType\":\"start_publication\"}", 2) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(feed_text(ch, "start_publication", 3) == SSMB_OK);
    CHECK(feed_text(ch, "{\"MessageType\":\"agent_job\"}", 3) == SSMB_OK);
    CHECK(feed_text(ch, "{\"MessageType\":7}", 3) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ev.n == 2 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_PAUSED && ev.e[1].ev.type == SSMB_CHANNEL_EVENT_RESUMED);
    CHECK_EQ_INT(metrics(ch).dropped_invalid, 4);
    /* a ClientMessage in a text frame is read as the reference reads it */
    out_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "t");
    CHECK(ssmb_channel_recv(ch, f.bytes, f.len, 1, 4) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(find_event(&ev, SSMB_CHANNEL_EVENT_DATA) != NULL);
    CHECK(feed_text(ch, "{\"MessageType\":\"channel_closed\",\"Output\":\"Session ended by \\\"admin\\\"\"}", 5) ==
          SSMB_OK);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_CLOSED && ssmb_str_eq(closed->ev.message, "Session ended by \"admin\""));
    CHECK(feed_text(ch, "{}", 6) == SSMB_CLOSED);
    ssmb_channel_destroy(ch);
}

static const char closed_json[] =
    "{\"MessageId\":\"dd01e56b-ff48-483e-a508-b5f073f31b16\",\"CreatedDate\":\"1503434274948\","
    "\"DestinationId\":\"i-0123456789abcdef0\",\"SessionId\":\"s-0ab1\",\"MessageType\":\"channel_closed\","
    "\"SchemaVersion\":1,\"Output\":\"Your session timed out due to inactivity \\u2013 bye\"}";

/* §8.2: channel_closed carries the reason, is not acknowledged, and ends
   everything; an unreadable one ends it too. */
SSMB_TEST(channel_closed_reason) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    ssmb_channel_event e;
    const uint8_t *p;
    size_t n, acc;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = ready_client(&d, 0);
    CHECK(feed(ch, frame_build(&f, SSMB_MSG_CHANNEL_CLOSED, 0, 0, closed_json, strlen(closed_json)), 1) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_CLOSED && ev.e[0].ev.result == SSMB_CLOSED);
    CHECK(ev.n == 1 && ssmb_str_eq(ev.e[0].ev.message, "Your session timed out due to inactivity \xe2\x80\x93 bye"));
    CHECK(ev.n == 1 && ev.e[0].ev.terminate_session == 0);
    CHECK(ssmb_channel_poll(ch, &e) == SSMB_CLOSED);
    CHECK(ssmb_channel_next_frame(ch, &p, &n) == SSMB_CLOSED); /* not even the pending ack */
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "x", 1, &acc) == SSMB_CLOSED);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "late"), 2) == SSMB_CLOSED);
    CHECK(ssmb_channel_tick(ch, 3) == SSMB_CLOSED);
    CHECK(ssmb_channel_last_error(ch) == SSMB_CLOSED);
    CHECK(ssmb_channel_next_deadline(ch) == SSMB_NO_DEADLINE);
    ssmb_channel_destroy(ch);
    ch = ready_client(&d, 0);
    CHECK(feed(ch, frame_build(&f, SSMB_MSG_CHANNEL_CLOSED, 0, 0, "{not json", 9), 1) == SSMB_OK);
    CHECK(ssmb_channel_poll(ch, &e) == SSMB_OK && e.type == SSMB_CHANNEL_EVENT_CLOSED && e.message.len == 0);
    CHECK_EQ_INT(metrics(ch).bad_payloads, 1);
    ssmb_channel_destroy(ch);
    free(w);
}

/* ---- retransmission (§3.5) ---- */

/* One Output from a ready client, taken from the wire at now; returns its
   sequence number. */
static int64_t send_one(ssmb_channel *ch, wire *w, const char *text, uint64_t now) {
    size_t acc = 0;
    wire_clear(w);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, text, strlen(text), &acc) == SSMB_OK);
    wire_take(w, ch, now);
    return w->n ? w->m[w->n - 1].sequence_number : -1;
}

/* Resend times follow the RTO the metrics report: now - sent > RTO, once
   per RTO (the send time is updated, §13 item 8); acks give RTT samples,
   except for retransmitted messages (Karn's rule). */
SSMB_TEST(channel_retransmission_follows_rto) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    int64_t seq;
    uint64_t t;
    const uint8_t *p;
    size_t n;
    int k;
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    CHECK_EQ_INT(metrics(ch).rto_us, 200000);
    seq = send_one(ch, w, "lost", 1000);
    for (k = 0, t = 1000; k < 3; k++) {
        CHECK_EQ_INT(ssmb_channel_next_deadline(ch), t + 201); /* > 200 ms */
        CHECK(ssmb_channel_tick(ch, t + 200) == SSMB_OK);
        CHECK(ssmb_channel_next_frame(ch, &p, &n) == SSMB_AGAIN);
        CHECK(ssmb_channel_tick(ch, t + 201) == SSMB_OK);
        wire_clear(w);
        wire_take(w, ch, t + 201);
        CHECK(w->n == 1 && w->m[0].sequence_number == seq && payload_is(&w->m[0], "lost"));
        t += 201;
    }
    CHECK_EQ_INT(metrics(ch).retransmissions, 3);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, seq), t + 40) == SSMB_OK);
    CHECK_EQ_INT(metrics(ch).rtt_us, 100000); /* Karn: no sample */
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), SSMB_NO_DEADLINE);
    /* two clean samples: 140 ms, then 50 ms (the PROTOCOL.md §3.5 check value) */
    t = 5000;
    seq = send_one(ch, w, "a", t);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, seq), t + 140) == SSMB_OK);
    CHECK_EQ_INT(metrics(ch).rtt_us, 105000);
    CHECK_EQ_INT(metrics(ch).rttvar_us, 10000);
    CHECK_EQ_INT(metrics(ch).rto_us, 145000);
    seq = send_one(ch, w, "b", t + 200);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, seq), t + 250) == SSMB_OK);
    CHECK_EQ_INT(metrics(ch).rto_us, 183125);
    /* now a loss is resent after 184 ms */
    seq = send_one(ch, w, "c", t + 300);
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), t + 300 + 184);
    CHECK(ssmb_channel_tick(ch, t + 300 + 184) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, t + 484);
    CHECK(w->n == 1 && w->m[0].sequence_number == seq);
    ssmb_channel_destroy(ch);
    free(w);
}

/* Every expired message is resent, not only the oldest (the reference's
   front-only resend); acks in any order retire them. */
SSMB_TEST(channel_resends_every_expired_message) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    int k;
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    send_one(ch, w, "one", 100);
    send_one(ch, w, "two", 150);
    send_one(ch, w, "three", 160);
    CHECK(ssmb_channel_tick(ch, 400) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 400);
    CHECK_EQ_INT(w->n, 3);
    for (k = 0; k < w->n; k++) CHECK_EQ_INT(w->m[k].sequence_number, k);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, 2), 410) == SSMB_OK);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, 0), 410) == SSMB_OK);
    CHECK(ssmb_channel_tick(ch, 700) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 700);
    CHECK(w->n == 1 && w->m[0].sequence_number == 1);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, 1), 710) == SSMB_OK);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, 1), 711) == SSMB_OK); /* again: a no-op */
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), SSMB_NO_DEADLINE);
    CHECK_EQ_INT(metrics(ch).ignored, 1);
    ssmb_channel_destroy(ch);
    free(w);
}

/* After max_resend_attempts the channel ends with SSMB_ERR_TIMEOUT and asks
   for TerminateSession (§3.5). */
SSMB_TEST(channel_gives_up_after_max_attempts) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    uint64_t t = 50, last = 50;
    long sends = 0, bad_gaps = 0;
    const got_event *closed;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    d.max_resend_attempts = 5;
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    send_one(ch, w, "never acked", t);
    while ((t = ssmb_channel_next_deadline(ch)) != SSMB_NO_DEADLINE && sends < 100) {
        if (ssmb_channel_tick(ch, t) != SSMB_OK) break;
        wire_clear(w);
        if (wire_take(w, ch, t) == 1) {
            sends++;
            if (t - last != 201) bad_gaps++;
            last = t;
        }
    }
    CHECK_EQ_INT(sends, 5);
    CHECK_EQ_INT(bad_gaps, 0);
    CHECK_EQ_INT(t, last + 201); /* the sixth expiry ended it */
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), SSMB_NO_DEADLINE);
    CHECK_EQ_INT(metrics(ch).retransmissions, 5);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_ERR_TIMEOUT && closed->ev.terminate_session == 1);
    CHECK(closed && strstr(closed->ev.message.ptr, "TerminateSession") != NULL);
    CHECK(ssmb_channel_last_error(ch) == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_channel_tick(ch, last + 10000) == SSMB_ERR_TIMEOUT);
    ssmb_channel_destroy(ch);
    free(w);
}

/* §4.5: after a reconnect everything unacknowledged goes again at once,
   the queued ack too; numbering carries on. */
SSMB_TEST(channel_reconnected_resends_at_once) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    const uint8_t *p;
    size_t n, acc;
    client_desc(&d);
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    send_one(ch, w, "one", 10);
    send_one(ch, w, "two", 20);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "x"), 25) == SSMB_OK);
    CHECK(ssmb_channel_next_frame(ch, &p, &n) == SSMB_OK); /* the ack, lost with the old socket */
    CHECK(ssmb_channel_reconnected(ch, 30) == SSMB_OK);
    CHECK(ssmb_channel_frame_sent(ch, 30) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "three", 5, &acc) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 30);
    CHECK_EQ_INT(w->n, 4);
    if (w->n == 4) {
        CHECK_EQ_INT(acked_seq(&w->m[0]), 1);
        CHECK(payload_is(&w->m[1], "one") && w->m[1].sequence_number == 0);
        CHECK(payload_is(&w->m[2], "two") && w->m[2].sequence_number == 1);
        CHECK(payload_is(&w->m[3], "three") && w->m[3].sequence_number == 2);
    }
    CHECK_EQ_INT(metrics(ch).retransmissions, 2);
    ssmb_channel_destroy(ch);
    free(w);
}

/* Back-pressure: a full send buffer takes nothing more (SSMB_AGAIN) and
   drops nothing; acks make room again. */
SSMB_TEST(channel_send_buffer_full_is_again) {
    static uint8_t data[64 * 1024], seen[64 * 1024];
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame f;
    size_t acc = 0, total = 0, got = 0, i;
    int k, rounds = 0;
    client_desc(&d);
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + (i >> 9));
    ch = ready_client(&d, 0);
    wire_take(w, ch, 0);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, data, sizeof data, &acc) == SSMB_OK);
    CHECK(acc > 0 && acc < 16384 && acc % 1024 == 0);
    total = acc;
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, data + total, sizeof data - total, &acc) == SSMB_AGAIN);
    CHECK_EQ_INT(acc, 0);
    while (got < sizeof data && rounds++ < 200) {
        wire_clear(w);
        wire_take(w, ch, (uint64_t)rounds * 10);
        for (k = 0; k < w->n; k++) {
            if (!CHECK(w->m[k].payload_size <= 1024)) break;
            memcpy(seen + got, w->m[k].payload, w->m[k].payload_size);
            got += w->m[k].payload_size;
            CHECK(feed(ch, ack_for(&f, SSMB_MSG_INPUT_STREAM_DATA, w->m[k].sequence_number), (uint64_t)rounds * 10) ==
                  SSMB_OK);
        }
        if (total < sizeof data && ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, data + total, sizeof data - total,
                                                     &acc) == SSMB_OK)
            total += acc;
    }
    CHECK_EQ_INT(got, sizeof data);
    CHECK_EQ_MEM(seen, data, sizeof data);
    CHECK_EQ_INT(metrics(ch).data_out, sizeof data / 1024); /* 64 messages, none lost */
    ssmb_channel_destroy(ch);
    free(w);
}

/* ---- the agent role ---- */

/* HandshakeRequest first (SYN on sequence 0, §2.8), client data before the
   handshake ends is acknowledged and dropped (§5.1), HandshakeComplete
   carries nanoseconds (item 15). */
SSMB_TEST(channel_agent_handshake_on_the_wire) {
    static const char want_request[] =
        "{\"AgentVersion\":\"3.3.987.0\",\"RequestedClientActions\":[{\"ActionType\":\"SessionType\","
        "\"ActionParameters\":{\"SessionType\":\"Port\",\"Properties\":{\"portNumber\":\"22\"}}}]}";
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    const got_event *resp;
    size_t acc;
    memset(&ev, 0, sizeof ev);
    agent_desc(&d, "Port");
    d.session_properties = "{\"portNumber\":\"22\"}";
    d.customer_message = "Welcome";
    ch = make(&d, 1000);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "x", 1, &acc) == SSMB_AGAIN);
    wire_take(w, ch, 1000);
    CHECK(w->n == 1 && ssmb_msg_type_is(&w->m[0], SSMB_MSG_OUTPUT_STREAM_DATA));
    CHECK(w->n == 1 && w->m[0].sequence_number == 0 && w->m[0].flags == SSMB_MSG_FLAG_SYN);
    CHECK(w->n == 1 && w->m[0].payload_type == SSMB_PAYLOAD_HANDSHAKE_REQUEST && payload_is(&w->m[0], want_request));
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), 1201);
    CHECK(feed(ch, in_data(&f, 0, SSMB_PAYLOAD_OUTPUT, "too early"), 1100) == SSMB_OK);
    CHECK(feed(ch, in_data(&f, 1, SSMB_PAYLOAD_HANDSHAKE_RESPONSE,
                           "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":[{\"ActionType\":\"SessionType\","
                           "\"ActionStatus\":1,\"ActionResult\":null,\"Error\":\"\"}],\"Errors\":null}"),
               1750) == SSMB_OK);
    poll_all(ch, &ev);
    resp = find_event(&ev, SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE);
    CHECK(resp && resp->ev.result == SSMB_OK && ssmb_str_eq(resp->ev.client_version, "1.2.764.0"));
    CHECK(find_event(&ev, SSMB_CHANNEL_EVENT_READY) != NULL);
    CHECK_EQ_INT(metrics(ch).discarded, 1);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_STDERR, "e", 1, &acc) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 1750);
    CHECK_EQ_INT(w->n, 4);
    if (w->n == 4) {
        CHECK(acked_seq(&w->m[0]) == 0 && acked_seq(&w->m[1]) == 1);
        CHECK(w->m[2].sequence_number == 1 && w->m[2].flags == 0);
        CHECK(w->m[2].payload_type == SSMB_PAYLOAD_HANDSHAKE_COMPLETE);
        CHECK(payload_is(&w->m[2], "{\"HandshakeTimeToComplete\":750000000,\"CustomerMessage\":\"Welcome\"}"));
        CHECK(w->m[3].sequence_number == 2 && w->m[3].payload_type == SSMB_PAYLOAD_STDERR);
    }
    ssmb_channel_destroy(ch);
    free(w);
}

/* The agent refuses a client whose actions failed, and waits 15 s at most
   for an answer (§5.5). */
SSMB_TEST(channel_agent_handshake_refused_or_late) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    events ev;
    frame f;
    const got_event *resp, *closed;
    const uint8_t *p;
    size_t n;
    memset(&ev, 0, sizeof ev);
    agent_desc(&d, "Standard_Stream");
    ch = make(&d, 0);
    CHECK(feed(ch, in_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_RESPONSE,
                           "{\"ClientVersion\":\"1.2.0.0\",\"ProcessedClientActions\":[{\"ActionType\":\"SessionType\","
                           "\"ActionStatus\":1},{\"ActionType\":\"KMSEncryption\",\"ActionStatus\":2,\"Error\":\"no "
                           "KMS\"}],\"Errors\":null}"),
               5) == SSMB_OK);
    poll_all(ch, &ev);
    resp = find_event(&ev, SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(resp && resp->ev.result == SSMB_ERR_SSM_PROTOCOL && ssmb_str_eq(resp->ev.message, "no KMS"));
    CHECK(closed && closed->ev.result == SSMB_ERR_SSM_PROTOCOL && closed->ev.terminate_session == 0);
    CHECK(!find_event(&ev, SSMB_CHANNEL_EVENT_READY));
    ssmb_channel_destroy(ch);
    ch = make(&d, 0);
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), 15000);
    CHECK(ssmb_channel_next_frame(ch, &p, &n) == SSMB_OK && ssmb_channel_frame_sent(ch, 0) == SSMB_OK);
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), 201);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 0), 10) == SSMB_OK);
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), 15000);
    CHECK(ssmb_channel_tick(ch, 14999) == SSMB_OK);
    CHECK(ssmb_channel_tick(ch, 15000) == SSMB_ERR_TIMEOUT);
    ev.n = 0;
    poll_all(ch, &ev);
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_CLOSED && ev.e[0].ev.result == SSMB_ERR_TIMEOUT);
    ssmb_channel_destroy(ch);
}

/* ---- client and agent together ---- */

/* NonInteractiveCommands: StdErr and ExitCode arrive apart from Output
   (§7.2); a Flag from the agent is an event (§2.9). */
SSMB_TEST(channel_pair_stderr_exit_code_flag) {
    ssmb_channel_desc cd, ad;
    sim *s;
    const got_event *ready = NULL, *exit_ev = NULL, *flag = NULL;
    size_t acc;
    int i;
    client_desc(&cd);
    agent_desc(&ad, "NonInteractiveCommands");
    s = sim_new(&cd, &ad, 0);
    s->c.capture = 1;
    sim_lanes(s, 5, 0, 0, 0);
    sim_settle(s, 1000);
    CHECK(ssmb_channel_is_ready(s->c.ch) && ssmb_channel_is_ready(s->a.ch));
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_OUTPUT, "out\n", 4, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_STDERR, "err\n", 4, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_EXIT_CODE, "EXIT_CODE: 3", 12, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send_flag(s->a.ch, SSMB_FLAG_CONNECT_TO_PORT_ERROR) == SSMB_OK);
    CHECK(ssmb_channel_send(s->c.ch, SSMB_PAYLOAD_OUTPUT, "\x03", 1, &acc) == SSMB_OK);
    sim_settle(s, 2000);
    CHECK_EQ_STR(s->c.captured, "[1]out\n[11]err\n");
    for (i = 0; i < s->c.ev.n; i++) {
        const got_event *g = &s->c.ev.e[i];
        if (g->ev.type == SSMB_CHANNEL_EVENT_READY) ready = g;
        if (g->ev.type == SSMB_CHANNEL_EVENT_EXIT_CODE) exit_ev = g;
        if (g->ev.type == SSMB_CHANNEL_EVENT_FLAG) flag = g;
    }
    CHECK(ready && ssmb_str_eq(ready->ev.session_type, "NonInteractiveCommands") &&
          ssmb_str_eq(ready->ev.properties, "null") && ssmb_str_eq(ready->ev.agent_version, "3.3.987.0"));
    CHECK(exit_ev && exit_ev->ev.result == SSMB_OK && exit_ev->ev.exit_code == 3);
    CHECK(flag && flag->ev.result == SSMB_OK && flag->ev.flag == SSMB_FLAG_CONNECT_TO_PORT_ERROR);
    CHECK_EQ_INT(s->a.data_events, 1); /* the client's Ctrl-C */
    CHECK(metrics(s->c.ch).handshake_us == 10000 && metrics(s->a.ch).handshake_us == 10000);
    CHECK_EQ_INT(s->early_data, 0);
    sim_free(s);
}

/* ---- KMS session encryption (§6) ---- */

/* A client and an agent with KMS on, the test playing KMS. */
static sim *kms_sim(ssmb_channel_desc *cd, ssmb_channel_desc *ad, const char *session_type, fake_kms *k,
                    uint64_t bytes) {
    sim *s;
    memset(k, 0, sizeof *k);
    k->rng = 0x6b6d7321u;
    client_desc(cd);
    agent_desc(ad, session_type);
    ad->kms_key_id = "alias/ssm-session";
    s = sim_new(cd, ad, bytes);
    s->c.kms = s->a.kms = k;
    return s;
}

/* Opens a payload seen on the wire with half of the fake data key. */
static int kms_opens_to(const fake_kms *k, int agent_to_client, const uint8_t *p, size_t n, const char *want) {
    uint8_t out[2048];
    size_t got = 0;
    const uint8_t *key = agent_to_client ? k->key : k->key + 32;
    if (ssmb_aes256_gcm_open(key, 32, p, n, out, sizeof out, &got) != SSMB_OK) return 0;
    return got == strlen(want) && memcmp(out, want, got) == 0;
}

static int contains(const uint8_t *hay, size_t n, const char *needle) {
    size_t i, m = strlen(needle);
    for (i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

/* 2 MB each way over 10% loss, 5% duplication and reordering, encrypted:
   byte-exact, the KMS calls made once each with the same §6.6 context, the
   challenge answered before HandshakeComplete and no data before it, and
   not one allocation after create. */
static void kms_bulk_lossy(int placed, const char *name) {
    ssmb_channel_desc cd, ad;
    counting cnt;
    fake_kms k;
    sim *s;
    long before;
    memset(&cnt, 0, sizeof cnt);
    client_desc(&cd);
    agent_desc(&ad, "Standard_Stream");
    use_counting(&cd, &cnt);
    use_counting(&ad, &cnt);
    memset(&k, 0, sizeof k);
    k.rng = 0x6b6d7321u;
    ad.kms_key_id = "alias/ssm-session";
    s = sim_new(&cd, &ad, (uint64_t)2 << 20);
    s->c.kms = s->a.kms = &k;
    s->c.placed = s->a.placed = placed;
    before = cnt.allocs;
    sim_lanes(s, 20, 15, 100, 50);
    sim_run(s, 50000000);
    sim_check_bulk(s, name, &cnt, before);
    CHECK(ssmb_channel_encrypted(s->c.ch) && ssmb_channel_encrypted(s->a.ch));
    CHECK(k.generates == 1 && k.decrypts == 1 && k.answer == SSMB_OK);
    CHECK_EQ_INT(strlen(k.context), 24); /* base64 of 16 bytes from a 3.3.987.0 agent (§6.6) */
    CHECK_EQ_INT(s->challenge_answers, 1);
    CHECK_EQ_INT(s->late_challenge, 0);
    CHECK(metrics(s->c.ch).retransmissions > 0 && metrics(s->a.ch).retransmissions > 0);
    /* the last Output frames each way: plaintext + 28, sealed with the right half */
    CHECK(s->last_len[0][SSMB_PAYLOAD_OUTPUT] > 28 && s->last_len[1][SSMB_PAYLOAD_OUTPUT] > 28);
    sim_free(s);
    CHECK_EQ_INT(cnt.live, 0);
}

SSMB_TEST(channel_link_kms_bulk_lossy) { kms_bulk_lossy(0, "channel lossy link with KMS"); }

/* The same with both ends writing in place (ssmb_channel_send_places and
   ssmb_channel_send_commit). */
SSMB_TEST(channel_link_kms_bulk_lossy_placed) { kms_bulk_lossy(1, "channel lossy link with KMS, written in place"); }

/* What is on the wire: Output (both ways), StdErr and ExitCode (agent)
   sealed, nonce || ciphertext || tag; Size, Flag and the handshake clear
   (§6.3, §6.4); the ActionResult of §5.3 with the §6.6 acknowledgement;
   events carry the plaintext. */
SSMB_TEST(channel_kms_wire_is_ciphertext) {
    ssmb_channel_desc cd, ad;
    fake_kms k;
    sim *s;
    size_t acc;
    int i;
    char want[256], b64[64];
    const got_event *exit_ev = NULL, *ready = NULL;
    s = kms_sim(&cd, &ad, "NonInteractiveCommands", &k, 0);
    s->c.capture = s->a.capture = 1;
    sim_lanes(s, 5, 0, 0, 0);
    sim_settle(s, 2000);
    CHECK(ssmb_channel_is_ready(s->c.ch) && ssmb_channel_is_ready(s->a.ch));
    CHECK(ssmb_channel_encrypted(s->c.ch) && ssmb_channel_encrypted(s->a.ch));
    CHECK_EQ_INT(s->challenge_answers, 1);
    CHECK_EQ_INT(s->early_data, 0);
    /* the handshake, clear */
    CHECK(contains(s->last[1][SSMB_PAYLOAD_HANDSHAKE_REQUEST], s->last_len[1][SSMB_PAYLOAD_HANDSHAKE_REQUEST],
                   "{\"ActionType\":\"KMSEncryption\",\"ActionParameters\":{\"KMSKeyId\":\"alias/ssm-session\","
                   "\"Challenge\":\""));
    ssmb_base64_encode(k.blob, sizeof k.blob, b64, sizeof b64, NULL);
    snprintf(want, sizeof want,
             "{\"ActionType\":\"KMSEncryption\",\"ActionStatus\":1,\"ActionResult\":{\"KMSCipherTextKey\":\"%s\","
             "\"KMSCipherTextHash\":null,\"ChallengeAcknowledgement\":true},\"Error\":\"\"}",
             b64);
    CHECK(contains(s->last[0][SSMB_PAYLOAD_HANDSHAKE_RESPONSE], s->last_len[0][SSMB_PAYLOAD_HANDSHAKE_RESPONSE],
                   want));
    CHECK(s->last_len[1][SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST] == 14 + 124 + 2 &&
          s->last_len[0][SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE] == 14 + 124 + 2); /* {"Challenge":"<124>"} */
    CHECK(s->last_len[1][SSMB_PAYLOAD_HANDSHAKE_COMPLETE] > 0);
    CHECK(ssmb_channel_send(s->c.ch, SSMB_PAYLOAD_OUTPUT, "secret keystrokes", 17, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send_size(s->c.ch, 80, 24) == SSMB_OK);
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_OUTPUT, "secret output", 13, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_STDERR, "secret err", 10, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send(s->a.ch, SSMB_PAYLOAD_EXIT_CODE, "EXIT_CODE: 7", 12, &acc) == SSMB_OK);
    CHECK(ssmb_channel_send_flag(s->a.ch, SSMB_FLAG_CONNECT_TO_PORT_ERROR) == SSMB_OK);
    sim_settle(s, 4000);
    CHECK_EQ_STR(s->c.captured, "[1]secret output[11]secret err");
    CHECK_EQ_STR(s->a.captured, "[1]secret keystrokes[3]{\"cols\":80,\"rows\":24}");
    for (i = 0; i < s->c.ev.n; i++) {
        if (s->c.ev.e[i].ev.type == SSMB_CHANNEL_EVENT_EXIT_CODE) exit_ev = &s->c.ev.e[i];
        if (s->c.ev.e[i].ev.type == SSMB_CHANNEL_EVENT_READY) ready = &s->c.ev.e[i];
    }
    CHECK(exit_ev && exit_ev->ev.result == SSMB_OK && exit_ev->ev.exit_code == 7);
    CHECK(ready && ssmb_str_eq(ready->ev.session_type, "NonInteractiveCommands"));
    /* sealed: 28 bytes longer, not the plaintext, opened by the right half */
    CHECK_EQ_INT(s->last_len[0][SSMB_PAYLOAD_OUTPUT], 17 + 28);
    CHECK(!contains(s->last[0][SSMB_PAYLOAD_OUTPUT], s->last_len[0][SSMB_PAYLOAD_OUTPUT], "secret"));
    CHECK(kms_opens_to(&k, 0, s->last[0][SSMB_PAYLOAD_OUTPUT], s->last_len[0][SSMB_PAYLOAD_OUTPUT],
                       "secret keystrokes"));
    CHECK(!kms_opens_to(&k, 1, s->last[0][SSMB_PAYLOAD_OUTPUT], s->last_len[0][SSMB_PAYLOAD_OUTPUT],
                        "secret keystrokes"));
    CHECK_EQ_INT(s->last_len[1][SSMB_PAYLOAD_OUTPUT], 13 + 28);
    CHECK(kms_opens_to(&k, 1, s->last[1][SSMB_PAYLOAD_OUTPUT], s->last_len[1][SSMB_PAYLOAD_OUTPUT],
                       "secret output"));
    CHECK(kms_opens_to(&k, 1, s->last[1][SSMB_PAYLOAD_STDERR], s->last_len[1][SSMB_PAYLOAD_STDERR], "secret err"));
    CHECK(kms_opens_to(&k, 1, s->last[1][SSMB_PAYLOAD_EXIT_CODE], s->last_len[1][SSMB_PAYLOAD_EXIT_CODE],
                       "EXIT_CODE: 7"));
    /* clear: Size from the client, Flag from the agent */
    CHECK(s->last_len[0][SSMB_PAYLOAD_SIZE] == 21 &&
          memcmp(s->last[0][SSMB_PAYLOAD_SIZE], "{\"cols\":80,\"rows\":24}", 21) == 0);
    CHECK(s->last_len[1][SSMB_PAYLOAD_FLAG] == 4 &&
          s->last[1][SSMB_PAYLOAD_FLAG][3] == SSMB_FLAG_CONNECT_TO_PORT_ERROR);
    sim_free(s);
}

/* The agent's Decrypt gives another key: the client cannot open the
   challenge and ends (and says to terminate the session); the agent gives
   up 15 s after its challenge (§5.5). Neither becomes ready. */
SSMB_TEST(channel_kms_wrong_key_fails_challenge) {
    ssmb_channel_desc cd, ad;
    fake_kms k;
    sim *s;
    int i;
    const ssmb_channel_event *cc = NULL, *ac = NULL;
    s = kms_sim(&cd, &ad, "Standard_Stream", &k, 0);
    k.wrong_decrypt = 1;
    sim_lanes(s, 5, 0, 0, 0);
    sim_settle(s, 100000);
    sim_poll(&s->a); /* the timeout came from a tick */
    for (i = 0; i < s->c.ev.n; i++)
        if (s->c.ev.e[i].ev.type == SSMB_CHANNEL_EVENT_CLOSED) cc = &s->c.ev.e[i].ev;
    for (i = 0; i < s->a.ev.n; i++)
        if (s->a.ev.e[i].ev.type == SSMB_CHANNEL_EVENT_CLOSED) ac = &s->a.ev.e[i].ev;
    CHECK(cc && cc->result == SSMB_ERR_AUTH && cc->terminate_session == 1 &&
          strstr(cc->message.ptr, "EncChallengeRequest does not decrypt") != NULL);
    CHECK(ac && ac->result == SSMB_ERR_TIMEOUT && strstr(ac->message.ptr, "no EncChallengeResponse") != NULL);
    CHECK(!ssmb_channel_is_ready(s->c.ch) && !ssmb_channel_is_ready(s->a.ch));
    CHECK_EQ_INT(s->challenge_answers, 0);
    CHECK_EQ_INT(s->early_data, 0);
    sim_free(s);
}

/* GenerateDataKey fails at the host: KMSEncryption Failed with the §5.3
   error text, and the agent ends the session; the client waits for the
   service's channel_closed. */
SSMB_TEST(channel_kms_host_failure_refuses) {
    ssmb_channel_desc cd, ad;
    fake_kms k;
    sim *s;
    int i, saw_response = 0, saw_closed = 0;
    s = kms_sim(&cd, &ad, "Standard_Stream", &k, 0);
    k.fail_generate = 1;
    sim_lanes(s, 5, 0, 0, 0);
    sim_settle(s, 1000);
    for (i = 0; i < s->a.ev.n; i++) {
        const ssmb_channel_event *e = &s->a.ev.e[i].ev;
        if (e->type == SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE)
            saw_response = e->result == SSMB_ERR_SSM_PROTOCOL &&
                           ssmb_str_eq(e->message, "Failed to process action KMSEncryption: AccessDeniedException: "
                                                   "no kms:GenerateDataKey");
        if (e->type == SSMB_CHANNEL_EVENT_CLOSED) saw_closed = e->result == SSMB_ERR_SSM_PROTOCOL;
    }
    CHECK(saw_response && saw_closed);
    CHECK(k.generates == 1 && k.decrypts == 0 && k.answer == SSMB_OK);
    CHECK(!ssmb_channel_is_ready(s->c.ch) && !ssmb_channel_is_ready(s->a.ch));
    CHECK(!ssmb_channel_encrypted(s->c.ch));
    CHECK(ssmb_channel_last_error(s->c.ch) == SSMB_OK); /* the client waits for channel_closed */
    sim_free(s);
}

/* An agent channel brought to its challenge by hand: HandshakeResponse
   with the ActionResult, KMS_DECRYPT, the key. The EncChallengeRequest
   payload goes to req. */
static ssmb_channel *kms_agent_at_challenge(wire *w, const uint8_t key[64], frame *req, uint64_t at) {
    static const uint8_t blob[8] = {'B', 'L', 'O', 'B', 1, 2, 3, 4};
    ssmb_channel_desc d;
    ssmb_channel *ch;
    ssmb_handshake_request hr;
    events ev;
    frame f;
    char result[128], resp[512], challenge[64] = "";
    size_t n = 0;
    const got_event *dec;
    int i;
    memset(&ev, 0, sizeof ev);
    agent_desc(&d, "Standard_Stream");
    d.kms_key_id = "alias/k";
    ch = make(&d, 0);
    wire_clear(w);
    wire_take(w, ch, 0);
    if (CHECK(w->n == 1) && CHECK(ssmb_handshake_request_parse(w->m[0].payload, w->m[0].payload_size, &hr) == SSMB_OK))
        snprintf(challenge, sizeof challenge, "%.*s", (int)hr.kms_challenge.len, hr.kms_challenge.ptr);
    CHECK_EQ_INT(strlen(challenge), 24);
    CHECK(feed(ch, ack_for(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 0), 10) == SSMB_OK);
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 1, result, sizeof result, &n) == SSMB_OK);
    snprintf(resp, sizeof resp,
             "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":[{\"ActionType\":\"SessionType\","
             "\"ActionStatus\":1,\"ActionResult\":null,\"Error\":\"\"},{\"ActionType\":\"KMSEncryption\","
             "\"ActionStatus\":1,\"ActionResult\":%s,\"Error\":\"\"}],\"Errors\":null}",
             result);
    CHECK(feed(ch, in_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_RESPONSE, resp), 1000) == SSMB_OK);
    poll_all(ch, &ev);
    dec = find_event(&ev, SSMB_CHANNEL_EVENT_KMS_DECRYPT);
    CHECK(find_event(&ev, SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE) != NULL);
    CHECK(dec && dec->ev.len == sizeof blob && memcmp(dec->ev.data, blob, sizeof blob) == 0 &&
          ssmb_str_eq(dec->ev.kms_key_id, "alias/k") && ssmb_str_eq(dec->ev.kms_challenge, challenge));
    wire_clear(w);
    wire_take(w, ch, 1000); /* the ack */
    CHECK(ssmb_channel_next_deadline(ch) == SSMB_NO_DEADLINE); /* the host's Decrypt is not timed */
    CHECK(ssmb_channel_kms_key(ch, key, 63, blob, sizeof blob, at) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_kms_key(ch, key, 64, blob, sizeof blob - 1, at) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_kms_key(ch, key, 64, blob, sizeof blob, at) == SSMB_OK);
    CHECK(ssmb_channel_kms_key(ch, key, 64, blob, sizeof blob, at) == SSMB_ERR_INVALID_STATE);
    wire_clear(w);
    wire_take(w, ch, at);
    req->len = 0;
    for (i = 0; i < w->n; i++)
        if (w->m[i].payload_type == SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST) {
            memcpy(req->bytes, w->m[i].payload, w->m[i].payload_size);
            req->len = w->m[i].payload_size;
            CHECK(feed(ch, ack_for(&f, SSMB_MSG_OUTPUT_STREAM_DATA, w->m[i].sequence_number), at) == SSMB_OK);
        }
    CHECK(req->len > 0);
    CHECK_EQ_INT(ssmb_channel_next_deadline(ch), at + 15000); /* §5.5: 15 s for the answer */
    return ch;
}

/* The agent's side of §6.5 by hand: a wrong answer ends it, a right one
   brings HandshakeComplete (and no client data counts before it), no
   answer times out, a failed Decrypt ends it; its nonces count up (§6.3). */
SSMB_TEST(channel_kms_agent_challenge) {
    uint8_t key[64], other[64], bytes[64], nonce[12];
    ssmb_kms_keys ck, wrong;
    ssmb_channel *ch;
    wire *w = wire_new();
    frame req, f;
    events ev;
    char answer[256];
    size_t n = 0, i;
    const got_event *closed;
    uint32_t seed = 99;
    for (i = 0; i < 64; i++) key[i] = (uint8_t)xorshift(&seed);
    memcpy(other, key, 64);
    other[40] ^= 1; /* the client-to-agent half differs */
    memset(bytes, 0x5a, sizeof bytes);
    memset(nonce, 7, sizeof nonce);
    CHECK(ssmb_kms_keys_init(&ck, SSMB_CHANNEL_CLIENT, key, 64) == SSMB_OK);
    CHECK(ssmb_kms_keys_init(&wrong, SSMB_CHANNEL_CLIENT, other, 64) == SSMB_OK);

    /* a wrong answer */
    memset(&ev, 0, sizeof ev);
    ch = kms_agent_at_challenge(w, key, &req, 5000);
    CHECK(ssmb_kms_challenge_answer(&wrong, req.bytes, req.len, nonce, answer, sizeof answer, &n) == SSMB_OK);
    CHECK(feed(ch, in_data(&f, 1, SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE, answer), 6000) == SSMB_OK);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_ERR_AUTH &&
          strstr(closed->ev.message.ptr, "EncChallengeResponse does not match") != NULL);
    CHECK(!find_event(&ev, SSMB_CHANNEL_EVENT_READY) && !ssmb_channel_is_ready(ch));
    ssmb_channel_destroy(ch);

    /* the right answer, after client data that is discarded (§5.1) */
    memset(&ev, 0, sizeof ev);
    ch = kms_agent_at_challenge(w, key, &req, 5000);
    CHECK(feed(ch, in_data(&f, 1, SSMB_PAYLOAD_OUTPUT, "too early"), 5500) == SSMB_OK);
    CHECK(ssmb_kms_challenge_answer(&ck, req.bytes, req.len, nonce, answer, sizeof answer, &n) == SSMB_OK);
    CHECK(feed(ch, in_data(&f, 2, SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE, answer), 6000) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(find_event(&ev, SSMB_CHANNEL_EVENT_READY) != NULL && ssmb_channel_encrypted(ch));
    CHECK_EQ_INT(metrics(ch).discarded, 1);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "hi", 2, &n) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 6000);
    CHECK_EQ_INT(w->n, 4); /* two acks, HandshakeComplete, the Output */
    if (w->n == 4) {
        uint8_t plain[8];
        size_t got = 0;
        CHECK(w->m[2].payload_type == SSMB_PAYLOAD_HANDSHAKE_COMPLETE);
        CHECK(w->m[3].payload_type == SSMB_PAYLOAD_OUTPUT && w->m[3].payload_size == 2 + 28);
        CHECK(ssmb_kms_decrypt_payload(&ck, w->m[3].payload, w->m[3].payload_size, plain, sizeof plain, &got) ==
                  SSMB_OK &&
              got == 2 && memcmp(plain, "hi", 2) == 0);
        /* the counter: this nonce is the challenge's plus one, word 0 first */
        {
            uint8_t sealed[200], want[12];
            ssmb_kms_nonce_counter c;
            size_t sn = 0;
            CHECK(ssmb_challenge_parse(req.bytes, req.len, sealed, sizeof sealed, &sn) == SSMB_OK);
            ssmb_kms_nonce_init(&c, sealed);
            ssmb_kms_nonce_next(&c, want);
            ssmb_kms_nonce_next(&c, want);
            CHECK(memcmp(w->m[3].payload, want, 12) == 0);
        }
    }
    /* an Output that does not open ends the agent's channel */
    ev.n = 0;
    memset(f.bytes, 0, sizeof f.bytes);
    CHECK(ssmb_kms_encrypt_payload(&wrong, "bad", 3, nonce, bytes, sizeof bytes, &n) == SSMB_OK);
    frame_build(&f, SSMB_MSG_INPUT_STREAM_DATA, 3, SSMB_PAYLOAD_OUTPUT, bytes, n);
    CHECK(feed(ch, &f, 6100) == SSMB_OK);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_ERR_AUTH && !find_event(&ev, SSMB_CHANNEL_EVENT_DATA));
    ssmb_channel_destroy(ch);

    /* no answer: 15 s (§5.5) */
    memset(&ev, 0, sizeof ev);
    ch = kms_agent_at_challenge(w, key, &req, 5000);
    CHECK(ssmb_channel_tick(ch, 19999) == SSMB_OK);
    CHECK(ssmb_channel_tick(ch, 20000) == SSMB_ERR_TIMEOUT);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && strstr(closed->ev.message.ptr, "no EncChallengeResponse within 15 s") != NULL);
    ssmb_channel_destroy(ch);
    ssmb_kms_keys_clear(&ck);
    ssmb_kms_keys_clear(&wrong);
    free(w);
}

/* The client's side by hand, with an agent older than 3.3.808.0 (no
   Challenge: no acknowledgement, §6.6): the exact HandshakeResponse, the
   challenge answered with the second half, Output sealed with a fresh
   random nonce, StdErr opened; a payload that does not open ends it. */
SSMB_TEST(channel_kms_client_by_hand) {
    static const char request[] =
        "{\"AgentVersion\":\"3.3.700.0\",\"RequestedClientActions\":["
        "{\"ActionType\":\"SessionType\",\"ActionParameters\":{\"SessionType\":\"Standard_Stream\","
        "\"Properties\":null}},"
        "{\"ActionType\":\"KMSEncryption\",\"ActionParameters\":{\"KMSKeyId\":\"arn:aws:kms:us-east-1:111122223333:"
        "key/1234abcd-12ab-34cd-56ef-1234567890ab\"}}]}";
    static const char want[] =
        "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":["
        "{\"ActionType\":\"SessionType\",\"ActionStatus\":1,\"ActionResult\":null,\"Error\":\"\"},"
        "{\"ActionType\":\"KMSEncryption\",\"ActionStatus\":1,\"ActionResult\":{\"KMSCipherTextKey\":\"QkxPQg==\","
        "\"KMSCipherTextHash\":null},\"Error\":\"\"}],\"Errors\":null}";
    static const uint8_t secret[64] = {1, 2, 3};
    uint8_t key[64], big[SSMB_CHANNEL_KMS_BLOB_MAX + 1], sealed[128], nonce[12];
    ssmb_kms_keys ak;
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    char json[256];
    size_t n = 0, got = 0, i;
    const got_event *kms, *data, *closed;
    uint32_t seed = 7;
    memset(&ev, 0, sizeof ev);
    memset(big, 'b', sizeof big);
    for (i = 0; i < 64; i++) key[i] = (uint8_t)xorshift(&seed);
    CHECK(ssmb_kms_keys_init(&ak, SSMB_CHANNEL_AGENT, key, 64) == SSMB_OK);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(ssmb_channel_kms_key(ch, key, 64, (const uint8_t *)"BLOB", 4, 1) == SSMB_ERR_INVALID_STATE);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, request), 10) == SSMB_OK);
    poll_all(ch, &ev);
    kms = find_event(&ev, SSMB_CHANNEL_EVENT_KMS_REQUEST);
    CHECK(kms && ssmb_str_eq(kms->ev.kms_key_id,
                             "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab") &&
          kms->ev.kms_challenge.len == 0 && ssmb_str_eq(kms->ev.agent_version, "3.3.700.0"));
    CHECK(ssmb_channel_kms_key(ch, key, 64, big, sizeof big, 20) == SSMB_ERR_LIMIT);
    CHECK(ssmb_channel_kms_key(ch, key, 32, (const uint8_t *)"BLOB", 4, 20) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_channel_kms_key(ch, key, 64, (const uint8_t *)"BLOB", 4, 20) == SSMB_OK);
    CHECK(ssmb_channel_encrypted(ch));
    wire_take(w, ch, 20);
    CHECK(w->n == 2 && payload_is(&w->m[1], want));
    /* §6.5: the agent's challenge, sealed with the first half */
    CHECK(ssmb_kms_challenge_request(&ak, secret, sizeof secret, nonce, json, sizeof json, &n) == SSMB_OK);
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST, json), 30) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 30);
    CHECK(w->n == 2 && w->m[1].payload_type == SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE);
    if (w->n == 2)
        CHECK(ssmb_kms_challenge_verify(&ak, secret, sizeof secret, w->m[1].payload, w->m[1].payload_size) ==
              SSMB_OK);
    CHECK(feed(ch, out_data(&f, 2, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, "{\"HandshakeTimeToComplete\":5}"), 40) ==
          SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ssmb_channel_is_ready(ch));
    /* Output out: a random nonce each time */
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\r", 3, &n) == SSMB_OK);
    CHECK(ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, "ls\r", 3, &n) == SSMB_OK);
    CHECK(ssmb_channel_send_size(ch, 100, 30) == SSMB_OK);
    wire_clear(w);
    wire_take(w, ch, 50);
    CHECK_EQ_INT(w->n, 4);
    if (w->n == 4) {
        uint8_t plain[8];
        CHECK(w->m[1].payload_size == 31 && w->m[2].payload_size == 31);
        CHECK(memcmp(w->m[1].payload, w->m[2].payload, 12) != 0);
        CHECK(memcmp(w->m[1].payload + 12, w->m[2].payload + 12, 19) != 0);
        CHECK(ssmb_kms_decrypt_payload(&ak, w->m[2].payload, 31, plain, sizeof plain, &got) == SSMB_OK && got == 3 &&
              memcmp(plain, "ls\r", 3) == 0);
        CHECK(payload_is(&w->m[3], "{\"cols\":100,\"rows\":30}"));
    }
    /* StdErr in, sealed with the first half */
    memset(nonce, 3, sizeof nonce);
    CHECK(ssmb_kms_encrypt_payload(&ak, "oops", 4, nonce, sealed, sizeof sealed, &n) == SSMB_OK);
    frame_build(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 3, SSMB_PAYLOAD_STDERR, sealed, n);
    ev.n = 0;
    CHECK(feed(ch, &f, 60) == SSMB_OK);
    CHECK(ssmb_channel_borrows(ch) == 0); /* opened into the channel's own buffer */
    poll_all(ch, &ev);
    data = find_event(&ev, SSMB_CHANNEL_EVENT_DATA);
    CHECK(data && data->ev.payload_type == SSMB_PAYLOAD_STDERR && data_is(data, "oops"));
    /* altered in transit (a valid digest over altered bytes): the end */
    sealed[14] ^= 1;
    frame_build(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 4, SSMB_PAYLOAD_OUTPUT, sealed, n);
    ev.n = 0;
    CHECK(feed(ch, &f, 70) == SSMB_OK);
    poll_all(ch, &ev);
    closed = find_event(&ev, SSMB_CHANNEL_EVENT_CLOSED);
    CHECK(closed && closed->ev.result == SSMB_ERR_AUTH && closed->ev.terminate_session == 1 &&
          !find_event(&ev, SSMB_CHANNEL_EVENT_DATA));
    ssmb_kms_keys_clear(&ak);
    ssmb_channel_destroy(ch);
    free(w);
}

/* A HandshakeRequest without a SessionType action: the answer lists none,
   and HandshakeComplete then ends the client (§5.4). */
SSMB_TEST(channel_handshake_without_session_type) {
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    events ev;
    frame f;
    memset(&ev, 0, sizeof ev);
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(feed(ch, out_data(&f, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST,
                            "{\"AgentVersion\":\"3.3.987.0\",\"RequestedClientActions\":null}"),
               1) == SSMB_OK);
    wire_take(w, ch, 1);
    CHECK(w->n == 2 && payload_is(&w->m[1], "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":[],"
                                             "\"Errors\":null}"));
    CHECK(feed(ch, out_data(&f, 1, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, "{\"HandshakeTimeToComplete\":1}"), 2) == SSMB_OK);
    poll_all(ch, &ev);
    CHECK(ev.n == 1 && ev.e[0].ev.type == SSMB_CHANNEL_EVENT_CLOSED && ev.e[0].ev.result == SSMB_ERR_SSM_PROTOCOL);
    ssmb_channel_destroy(ch);
    free(w);
}

/* ---- hostile input ---- */

/* Seed frames of every kind the channel reads. */
static int hostile_seeds(frame *seeds, int role_client) {
    const char *data = role_client ? SSMB_MSG_OUTPUT_STREAM_DATA : SSMB_MSG_INPUT_STREAM_DATA;
    const char *own = role_client ? SSMB_MSG_INPUT_STREAM_DATA : SSMB_MSG_OUTPUT_STREAM_DATA;
    int n = 0, i;
    for (i = 0; i < 6; i++) frame_build(&seeds[n++], data, i, SSMB_PAYLOAD_OUTPUT, "payload bytes", 13);
    frame_build(&seeds[n++], data, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, port_request, strlen(port_request));
    frame_build(&seeds[n++], data, 1, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, "{\"HandshakeTimeToComplete\":9}", 29);
    frame_build(&seeds[n++], data, 0, SSMB_PAYLOAD_HANDSHAKE_RESPONSE,
                "{\"ClientVersion\":\"1.2.764.0\",\"ProcessedClientActions\":[{\"ActionType\":\"SessionType\","
                "\"ActionStatus\":1}],\"Errors\":null}",
                97);
    frame_build(&seeds[n++], data, 2, SSMB_PAYLOAD_EXIT_CODE, "EXIT_CODE: 1", 12);
    frame_build(&seeds[n++], data, 3, SSMB_PAYLOAD_FLAG, "\0\0\0\3", 4);
    frame_build(&seeds[n++], data, 4, SSMB_PAYLOAD_SIZE, "{\"cols\":1,\"rows\":2}", 19);
    for (i = 0; i < 3; i++) ack_for(&seeds[n++], own, i);
    frame_build(&seeds[n++], SSMB_MSG_CHANNEL_CLOSED, 0, 0, closed_json, strlen(closed_json));
    frame_build(&seeds[n++], SSMB_MSG_PAUSE_PUBLICATION, 0, 0, NULL, 0);
    frame_build(&seeds[n++], SSMB_MSG_START_PUBLICATION, 0, 0, NULL, 0);
    return n;
}

/* One hostile message: random bytes, or a seed truncated, corrupted, or
   with an extreme sequence number. */
static size_t hostile_message(uint32_t *rng, const frame *seeds, int nseeds, uint8_t *out, int *is_text) {
    const frame *s = &seeds[xorshift(rng) % (uint32_t)nseeds];
    size_t n = s->len, i, k;
    uint32_t how = xorshift(rng) % 5;
    *is_text = xorshift(rng) % 8 == 0;
    if (how == 0) {
        n = xorshift(rng) % 400;
        for (i = 0; i < n; i++) out[i] = (uint8_t)xorshift(rng);
        return n;
    }
    memcpy(out, s->bytes, n);
    if (how == 1) return xorshift(rng) % (n + 1);
    if (how == 2) {
        for (k = xorshift(rng) % 4 + 1; k > 0; k--) out[xorshift(rng) % n] ^= (uint8_t)(1u << (xorshift(rng) % 8));
        return n;
    }
    if (how == 3) {
        static const uint64_t seqs[] = {0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull,
                                        4096, 4097, 1ull << 40};
        uint64_t v = seqs[xorshift(rng) % COUNT_OF(seqs)];
        for (i = 0; i < 8; i++) out[48 + i] = (uint8_t)(v >> (56 - 8 * i));
        return n;
    }
    memcpy(out, s->bytes, n); /* a valid seed, to keep the state moving */
    return n;
}

/* Takes every frame out; each must be a valid ClientMessage. */
static long drain_valid(ssmb_channel *ch, uint64_t now) {
    const uint8_t *p;
    size_t n;
    long bad = 0;
    ssmb_msg m;
    while (ssmb_channel_next_frame(ch, &p, &n) == SSMB_OK) {
        if (ssmb_msg_decode(p, n, &m) != SSMB_OK || ssmb_msg_validate(&m) != SSMB_OK || m.payload_size == 0) bad++;
        ssmb_channel_frame_sent(ch, now);
    }
    return bad;
}

/* Random bytes, truncations, bit flips, sequence numbers at the int64
   edges, for both roles: no crash, no allocation, only valid frames out,
   every frame counted. */
SSMB_TEST(channel_hostile_input) {
    static frame seeds[32];
    static uint8_t msg[20000];
    ssmb_channel_desc d;
    ssmb_channel_event ev;
    counting k;
    uint32_t rng = 0xbad5eedu;
    long creates = 0, bad_frames = 0, fed = 0, accepted = 0, iterations = 0;
    uint64_t counted = 0;
    int role;
    memset(&k, 0, sizeof k);
    for (role = 0; role < 2; role++) {
        int nseeds = hostile_seeds(seeds, role == 0);
        ssmb_channel *ch = NULL;
        uint64_t now = 0;
        long i;
        for (i = 0; i < 20000; i++, iterations++) {
            int is_text = 0;
            size_t n;
            ssmb_result r;
            if (!ch) {
                if (role == 0) client_desc(&d);
                else agent_desc(&d, xorshift(&rng) % 2 ? "Standard_Stream" : NULL);
                use_counting(&d, &k);
                d.max_resend_attempts = 4;
                ch = make(&d, now);
                creates++;
            }
            n = hostile_message(&rng, seeds, nseeds, msg, &is_text);
            now += xorshift(&rng) % 50;
            r = ssmb_channel_recv(ch, msg, n, is_text, now);
            fed++;
            accepted += r == SSMB_OK;
            while (ssmb_channel_poll(ch, &ev) == SSMB_OK) {}
            bad_frames += drain_valid(ch, now);
            if (xorshift(&rng) % 4 == 0) ssmb_channel_tick(ch, now);
            if (ssmb_channel_last_error(ch) != SSMB_OK) {
                counted += metrics(ch).frames_in;
                ssmb_channel_destroy(ch);
                ch = NULL;
            }
        }
        if (ch) counted += metrics(ch).frames_in;
        ssmb_channel_destroy(ch);
    }
    CHECK_EQ_INT(bad_frames, 0);
    CHECK_EQ_INT(k.allocs, creates);
    CHECK_EQ_INT(k.live, 0);
    CHECK_EQ_INT(accepted, fed); /* polled after each: never SSMB_AGAIN */
    CHECK_EQ_INT(counted, accepted);
    printf("channel hostile input: %ld messages, %ld channels, %ld accepted\n", iterations, creates, accepted);
}

/* A HandshakeRequest built to make the answer large: many actions with
   long, quote-filled names. The answer stays bounded and valid. */
SSMB_TEST(channel_handshake_answer_bounded) {
    char request[4096], name[80];
    ssmb_channel_desc d;
    ssmb_channel *ch;
    wire *w = wire_new();
    ssmb_json_token tok[128];
    ssmb_json doc;
    frame f;
    size_t n = 0;
    int i;
    memset(name, 0, sizeof name);
    for (i = 0; i < 70; i++) name[i] = i % 3 ? 'q' : '"';
    n += (size_t)snprintf(request + n, sizeof request - n, "{\"AgentVersion\":\"%s\",\"RequestedClientActions\":[",
                          "3.3.987.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0");
    for (i = 0; i < 10; i++) {
        int k;
        n += (size_t)snprintf(request + n, sizeof request - n, "%s{\"ActionType\":\"", i ? "," : "");
        for (k = 0; name[k]; k++) n += (size_t)snprintf(request + n, sizeof request - n, "%s", name[k] == '"' ? "\\\"" : "q");
        n += (size_t)snprintf(request + n, sizeof request - n, "\",\"ActionParameters\":{}}");
    }
    n += (size_t)snprintf(request + n, sizeof request - n, "]}");
    client_desc(&d);
    ch = make(&d, 0);
    CHECK(feed(ch, frame_build(&f, SSMB_MSG_OUTPUT_STREAM_DATA, 0, SSMB_PAYLOAD_HANDSHAKE_REQUEST, request, n), 1) ==
          SSMB_OK);
    wire_take(w, ch, 1);
    CHECK_EQ_INT(w->n, 2);
    CHECK(ssmb_channel_last_error(ch) == SSMB_OK);
    if (w->n == 2) {
        CHECK(ssmb_json_parse(&doc, (const char *)w->m[1].payload, w->m[1].payload_size, tok, 128) == SSMB_OK);
        CHECK_EQ_INT(ssmb_json_size(&doc, ssmb_json_find(&doc, 0, "ProcessedClientActions")), 4);
        CHECK(w->m[1].payload_size < 2048);
    }
    ssmb_channel_destroy(ch);
    free(w);
}
