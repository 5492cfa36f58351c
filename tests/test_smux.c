/* smux room: protocol version 1 (PROTOCOL.md §7.4, §16), black-box. The
   frame vectors byte-exact; a client and a server-role mux joined back to
   back with the byte stream cut at random sizes, ten streams moving 1 MiB
   each way checked with SHA-256; FIN from either side; back-pressure;
   keep-alive on a virtual clock; hostile input; the allocator promises. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>

/* ---- helpers ---- */

static uint32_t smux_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Counts allocations and live bytes; fails the Nth allocation when asked. */
typedef struct smux_counting {
    long allocs, frees, fail_at;
    size_t live;
} smux_counting;

static void *smux_count_alloc(size_t n, void *user_data) {
    smux_counting *k = (smux_counting *)user_data;
    k->allocs++;
    if (k->fail_at && k->allocs == k->fail_at) return NULL;
    k->live += n;
    return malloc(n);
}

static void smux_count_free(void *p, size_t n, void *user_data) {
    smux_counting *k = (smux_counting *)user_data;
    k->frees++;
    k->live -= n;
    free(p);
}

static void smux_desc_init(ssmb_smux_desc *d, uint32_t role, smux_counting *k) {
    memset(d, 0, sizeof *d);
    d->role = role;
    if (k) {
        d->allocator.alloc_fn = smux_count_alloc;
        d->allocator.free_fn = smux_count_free;
        d->allocator.user_data = k;
    }
}

static ssmb_smux *smux_make(const ssmb_smux_desc *d) {
    ssmb_smux *mux = NULL;
    CHECK(ssmb_smux_create(d, &mux) == SSMB_OK);
    return mux;
}

/* Everything waiting in the output, copied out and acknowledged. */
static size_t smux_drain(ssmb_smux *mux, uint8_t *out, size_t cap) {
    size_t n = 0;
    const uint8_t *p = ssmb_smux_out_buf(mux, &n);
    if (n > cap) n = cap;
    if (n) memcpy(out, p, n);
    CHECK(ssmb_smux_out_ack(mux, n) == SSMB_OK);
    return n;
}

/* Feeds bytes that must all be taken. */
static void smux_feed_all(ssmb_smux *mux, const uint8_t *p, size_t n, uint64_t now) {
    size_t used = 99;
    CHECK_EQ_INT(ssmb_smux_feed(mux, p, n, &used, now), SSMB_OK);
    CHECK_EQ_INT(used, n);
}

/* One frame built by the codec and fed whole. */
static void smux_feed_frame(ssmb_smux *mux, uint32_t cmd, uint32_t id, const void *data, size_t len) {
    uint8_t frame[SSMB_SMUX_HEADER_SIZE + SSMB_SMUX_MAX_DATA];
    size_t n = 0;
    CHECK(ssmb_smux_frame_encode(cmd, id, data, len, frame, sizeof frame, &n) == SSMB_OK);
    smux_feed_all(mux, frame, n, 0);
}

/* Moves the output of a into b: each piece cut at a random size (1 byte
   now and then), only what b takes is acknowledged (the rest waits). */
static void smux_pump(ssmb_smux *a, ssmb_smux *b, uint32_t *rng, uint64_t now, long *stalls) {
    size_t n = 0, used = 0;
    const uint8_t *p = ssmb_smux_out_buf(a, &n);
    int pieces = 0;
    while (n && pieces++ < 8) {
        uint32_t r = smux_rand(rng);
        size_t cut = r % 4 == 0 ? 1 : r % 4 == 1 ? 1 + r % 100 : r % 4 == 2 ? 1 + r % 1024 : 1 + r % 40000;
        ssmb_result res;
        if (cut > n) cut = n;
        res = ssmb_smux_feed(b, p, cut, &used, now);
        CHECK(res == SSMB_OK || res == SSMB_AGAIN);
        CHECK(ssmb_smux_out_ack(a, used) == SSMB_OK);
        if (res != SSMB_OK) {
            if (stalls) ++*stalls;
            break;
        }
        p = ssmb_smux_out_buf(a, &n);
    }
}

/* ---- the frame codec ---- */

SSMB_TEST(smux_frame_vectors) {
    char path[512];
    size_t len = 0;
    char *text = ssmbt_read_file(ssmbt_vector_path("ssm/other_vectors.json", path, sizeof path), &len);
    static const uint32_t cmds[5] = {SSMB_SMUX_SYN, SSMB_SMUX_PSH, SSMB_SMUX_FIN, SSMB_SMUX_NOP, SSMB_SMUX_SYN};
    static const uint32_t ids[5] = {3, 3, 3, 0, 5};
    ssmbt_json j;
    int frames, i, n;
    long ok = 0;
    if (!CHECK(text != NULL) || !CHECK(ssmbt_json_load(&j, text, len) == 0)) {
        free(text);
        return;
    }
    frames = ssmbt_json_get(&j, ssmbt_json_get(&j, 0, "smux_v1"), "frames");
    n = ssmbt_json_len(&j, frames);
    CHECK_EQ_INT(n, 5);
    for (i = 0; i < n && i < 5; i++) {
        size_t hex_len = 0, want_len = 0, got_len = 0;
        char *hex = ssmbt_json_str(&j, ssmbt_json_get(&j, ssmbt_json_at(&j, frames, i), "hex"), &hex_len);
        uint8_t *want = hex ? ssmbt_unhex(hex, hex_len, &want_len) : NULL;
        uint8_t got[64];
        ssmb_smux_header h;
        const char *data = cmds[i] == SSMB_SMUX_PSH ? "hello" : NULL;
        size_t data_len = data ? 5 : 0;
        if (CHECK(want != NULL) &&
            CHECK(ssmb_smux_frame_encode(cmds[i], ids[i], data, data_len, got, sizeof got, &got_len) == SSMB_OK) &&
            CHECK(got_len == want_len) && CHECK_EQ_MEM(got, want, want_len) &&
            CHECK(ssmb_smux_header_parse(want, want_len, &h) == SSMB_OK) && CHECK(h.cmd == cmds[i]) &&
            CHECK(h.stream_id == ids[i]) && CHECK(h.length == data_len) && CHECK(h.version == 1))
            ok++;
        free(hex);
        free(want);
    }
    ssmbt_report("smux v1 frame vectors", ok, n, "frames");
    ssmbt_json_free(&j);
    free(text);
}

/* The client mux itself emits the vector bytes: SYN 3, PSH "hello" on 3,
   FIN 3, SYN 5, and a keep-alive NOP 10 s after its clock started. */
SSMB_TEST(smux_client_wire_bytes) {
    static const uint8_t want[] = {1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 5, 0, 3, 0, 0, 0, 'h', 'e', 'l', 'l', 'o',
                                   1, 1, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0};
    uint8_t out[128];
    ssmb_smux_desc d;
    ssmb_smux *mux;
    uint32_t id = 0, id2 = 0;
    size_t took = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.keepalive = 1;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_tick(mux, 1000) == SSMB_OK);
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK);
    CHECK_EQ_INT(id, 3);
    CHECK(ssmb_smux_write(mux, id, "hello", 5, &took) == SSMB_OK);
    CHECK_EQ_INT(took, 5);
    CHECK(ssmb_smux_close(mux, id) == SSMB_OK);
    CHECK(ssmb_smux_open(mux, &id2) == SSMB_OK);
    CHECK_EQ_INT(id2, 5);
    CHECK(ssmb_smux_next_deadline(mux) == 11000);
    CHECK(ssmb_smux_tick(mux, 11000) == SSMB_OK);
    if (CHECK(smux_drain(mux, out, sizeof out) == sizeof want)) CHECK_EQ_MEM(out, want, sizeof want);
    CHECK(ssmb_smux_out_buf(mux, &took) == NULL && took == 0);
    CHECK(ssmb_smux_write(mux, id, "x", 1, &took) == SSMB_ERR_INVALID_STATE); /* closed here */
    ssmb_smux_destroy(mux);
}

SSMB_TEST(smux_header_errors) {
    uint8_t f[8] = {1, 2, 5, 0, 3, 0, 0, 0};
    uint8_t buf[SSMB_SMUX_HEADER_SIZE + SSMB_SMUX_MAX_DATA + 1];
    static uint8_t big[SSMB_SMUX_MAX_DATA + 1];
    ssmb_smux_header h;
    size_t n = 0, i;
    for (i = 0; i < 8; i++) CHECK(ssmb_smux_header_parse(f, i, &h) == SSMB_AGAIN); /* truncated */
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_OK && h.length == 5 && h.stream_id == 3);
    f[0] = 2; /* version 2 is not what the agent speaks (§7.4) */
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_MALFORMED);
    f[0] = 0;
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_MALFORMED);
    f[0] = 1;
    f[1] = 4; /* UPD exists only in version 2 */
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_MALFORMED);
    f[1] = 0xff;
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_MALFORMED);
    f[1] = SSMB_SMUX_PSH;
    f[2] = 0x01;
    f[3] = 0x80; /* 32769 */
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_LIMIT);
    f[2] = 0x00; /* exactly 32768 */
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_OK && h.length == 32768);
    f[2] = f[3] = 0xff;
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_LIMIT);
    f[1] = SSMB_SMUX_NOP; /* data on a control frame */
    f[2] = 1;
    f[3] = 0;
    CHECK(ssmb_smux_header_parse(f, 8, &h) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_smux_header_parse(NULL, 8, &h) == SSMB_ERR_INVALID_ARG);
    /* the encoder's checks */
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, 3, big, sizeof big, buf, sizeof buf, &n) == SSMB_ERR_LIMIT);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, 3, big, SSMB_SMUX_MAX_DATA, buf, sizeof buf, &n) == SSMB_OK);
    CHECK_EQ_INT(n, SSMB_SMUX_HEADER_SIZE + SSMB_SMUX_MAX_DATA);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, 3, "hello", 5, buf, 12, &n) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(n, 13);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, 3, "hello", 5, NULL, 0, &n) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_FIN, 3, "hello", 5, buf, sizeof buf, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_frame_encode(4, 3, NULL, 0, buf, sizeof buf, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, 0x04030201u, "", 0, buf, sizeof buf, &n) == SSMB_OK);
    CHECK(n == 8 && buf[4] == 1 && buf[5] == 2 && buf[6] == 3 && buf[7] == 4); /* little-endian */
}

/* ---- two muxes back to back ---- */

#define SMUX_STREAMS 10
#define SMUX_BYTES (1u << 20)

typedef struct smux_dir {
    uint8_t *data;          /* what one side sends */
    uint8_t *got;           /* what the other side received */
    size_t sent, received;
} smux_dir;

typedef struct smux_flow {
    uint32_t id;
    int opened_at_server, client_done, server_done, closed_by_client;
    smux_dir up, down;      /* up: client to server */
} smux_flow;

typedef struct smux_pair {
    ssmb_smux *c, *s;
    smux_flow f[SMUX_STREAMS];
    int opened;
    long stalls;            /* feeds that stopped on a full stream buffer */
    uint32_t rng;
    uint64_t now;
} smux_pair;

static smux_flow *smux_flow_of(smux_pair *p, uint32_t id) {
    int i;
    for (i = 0; i < p->opened; i++)
        if (p->f[i].id == id) return &p->f[i];
    return NULL;
}

static void smux_write_some(smux_pair *p, ssmb_smux *mux, uint32_t id, smux_dir *d) {
    size_t want = 1 + smux_rand(&p->rng) % 70000, took = 0;
    ssmb_result r;
    if (d->sent == SMUX_BYTES) return;
    if (want > SMUX_BYTES - d->sent) want = SMUX_BYTES - d->sent;
    r = ssmb_smux_write(mux, id, d->data + d->sent, want, &took);
    CHECK(r == SSMB_OK || r == SSMB_AGAIN);
    d->sent += took;
}

static void smux_read_some(smux_pair *p, ssmb_smux *mux, uint32_t id, smux_dir *d) {
    size_t cap = 1 + smux_rand(&p->rng) % 20000, n = 0;
    ssmb_result r;
    if (cap > SMUX_BYTES - d->received) cap = SMUX_BYTES - d->received;
    if (smux_rand(&p->rng) % 2) {
        const uint8_t *view = NULL;
        r = ssmb_smux_peek(mux, id, &view, &n);
        if (r == SSMB_OK) {
            if (n > cap) n = cap;
            memcpy(d->got + d->received, view, n);
            CHECK(ssmb_smux_consume(mux, id, n) == SSMB_OK);
        }
    } else {
        r = ssmb_smux_read(mux, id, d->got + d->received, cap, &n);
    }
    CHECK(r == SSMB_OK || r == SSMB_AGAIN || r == SSMB_CLOSED);
    d->received += n;
}

/* A side is done with a stream when it sent and received everything; the
   closer (client for even, server for odd streams) then sends FIN. */
static void smux_maybe_close(ssmb_smux *mux, smux_flow *f, int is_client) {
    smux_dir *out = is_client ? &f->up : &f->down, *in = is_client ? &f->down : &f->up;
    int *done = is_client ? &f->client_done : &f->server_done;
    int closer = ((f->id - 3) / 2 % 2 == 0) == is_client;
    if (*done || out->sent != SMUX_BYTES || in->received != SMUX_BYTES || !closer) return;
    if (ssmb_smux_close(mux, f->id) == SSMB_OK) *done = 1;
}

static void smux_server_events(smux_pair *p) {
    ssmb_smux_event ev;
    while (ssmb_smux_poll(p->s, &ev) == SSMB_OK) {
        smux_flow *f = smux_flow_of(p, ev.stream_id);
        if (!CHECK(f != NULL)) continue;
        if (ev.type == SSMB_SMUX_EVENT_OPENED) f->opened_at_server = 1;
        if (ev.type == SSMB_SMUX_EVENT_CLOSED) { /* the client's FIN: all its data is here */
            while (f->up.received < SMUX_BYTES && ssmb_smux_available(p->s, f->id))
                smux_read_some(p, p->s, f->id, &f->up);
            CHECK_EQ_INT(f->up.received, SMUX_BYTES);
            CHECK(ssmb_smux_close(p->s, f->id) == SSMB_OK); /* our FIN, as the reference sends */
            f->server_done = 1;
        }
    }
}

static void smux_client_events(smux_pair *p) {
    ssmb_smux_event ev;
    while (ssmb_smux_poll(p->c, &ev) == SSMB_OK) {
        smux_flow *f = smux_flow_of(p, ev.stream_id);
        if (!CHECK(f != NULL)) continue;
        CHECK(ev.type == SSMB_SMUX_EVENT_DATA || ev.type == SSMB_SMUX_EVENT_CLOSED);
        if (ev.type == SSMB_SMUX_EVENT_CLOSED) {
            size_t took = 0;
            CHECK(ssmb_smux_write(p->c, f->id, "x", 1, &took) == SSMB_CLOSED); /* ended both ways */
            while (f->down.received < SMUX_BYTES && ssmb_smux_available(p->c, f->id))
                smux_read_some(p, p->c, f->id, &f->down);
            CHECK_EQ_INT(f->down.received, SMUX_BYTES);
            CHECK(ssmb_smux_close(p->c, f->id) == SSMB_OK);
            f->client_done = 1;
        }
    }
}

/* Streams are opened three at first, then one more each time one ends. */
static void smux_open_more(smux_pair *p) {
    int active = 0, i;
    for (i = 0; i < p->opened; i++) active += !p->f[i].client_done;
    while (p->opened < SMUX_STREAMS && active < 3 + (p->opened % 2)) {
        uint32_t id = 0;
        if (ssmb_smux_open(p->c, &id) != SSMB_OK) return;
        CHECK_EQ_INT(id, 3 + 2 * (uint32_t)p->opened);
        p->f[p->opened++].id = id;
        active++;
    }
}

static void smux_step(smux_pair *p) {
    int i;
    smux_open_more(p);
    for (i = 0; i < p->opened; i++) {
        smux_flow *f = &p->f[i];
        if (!f->client_done) {
            smux_write_some(p, p->c, f->id, &f->up);
            smux_read_some(p, p->c, f->id, &f->down);
            smux_maybe_close(p->c, f, 1);
        }
        if (f->opened_at_server && !f->server_done) {
            smux_write_some(p, p->s, f->id, &f->down);
            smux_read_some(p, p->s, f->id, &f->up);
            smux_maybe_close(p->s, f, 0);
        }
    }
    smux_pump(p->c, p->s, &p->rng, p->now, &p->stalls);
    smux_pump(p->s, p->c, &p->rng, p->now, &p->stalls);
    smux_server_events(p);
    smux_client_events(p);
    p->now += 7;
}

static int smux_all_done(const smux_pair *p) {
    int i;
    if (p->opened < SMUX_STREAMS) return 0;
    for (i = 0; i < SMUX_STREAMS; i++)
        if (!p->f[i].client_done || !p->f[i].server_done) return 0;
    return 1;
}

static void smux_fill(uint8_t *p, size_t n, uint32_t seed) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)(smux_rand(&seed) >> 7);
}

static int smux_same_hash(const smux_dir *d) {
    uint8_t a[32], b[32];
    ssmb_sha256(d->data, SMUX_BYTES, a);
    ssmb_sha256(d->got, d->received, b);
    return d->received == SMUX_BYTES && memcmp(a, b, 32) == 0;
}

static void smux_pair_free(smux_pair *p) {
    int i;
    for (i = 0; i < SMUX_STREAMS; i++) {
        free(p->f[i].up.data);
        free(p->f[i].up.got);
        free(p->f[i].down.data);
        free(p->f[i].down.got);
    }
}

SSMB_TEST(smux_pair_ten_streams_a_mebibyte_each_way) {
    static smux_pair p;
    smux_counting kc, ks;
    ssmb_smux_desc dc, ds;
    ssmb_smux_metrics mc, ms;
    long steps = 0, ok = 0;
    int i;
    memset(&p, 0, sizeof p);
    memset(&kc, 0, sizeof kc);
    memset(&ks, 0, sizeof ks);
    p.rng = 0x2545F491u;
    for (i = 0; i < SMUX_STREAMS; i++) {
        p.f[i].up.data = (uint8_t *)malloc(SMUX_BYTES);
        p.f[i].up.got = (uint8_t *)malloc(SMUX_BYTES);
        p.f[i].down.data = (uint8_t *)malloc(SMUX_BYTES);
        p.f[i].down.got = (uint8_t *)malloc(SMUX_BYTES);
        smux_fill(p.f[i].up.data, SMUX_BYTES, 100u + (uint32_t)i);
        smux_fill(p.f[i].down.data, SMUX_BYTES, 200u + (uint32_t)i);
    }
    smux_desc_init(&dc, SSMB_SMUX_CLIENT, &kc);
    smux_desc_init(&ds, SSMB_SMUX_SERVER, &ks);
    ds.stream_buffer_bytes = 5000; /* small rings: back-pressure all the time */
    dc.output_buffer_bytes = 40000;
    p.c = smux_make(&dc);
    p.s = smux_make(&ds);
    if (p.c && p.s) {
        CHECK(kc.allocs == 1 && ks.allocs == 1);
        while (!smux_all_done(&p) && steps++ < 2000000) smux_step(&p);
        CHECK(smux_all_done(&p));
        for (i = 0; i < SMUX_STREAMS; i++) ok += smux_same_hash(&p.f[i].up) + smux_same_hash(&p.f[i].down);
        CHECK_EQ_INT(ok, 2 * SMUX_STREAMS);
        ssmbt_report("smux pair streams (1 MiB each way, SHA-256)", ok, 2 * SMUX_STREAMS, "directions");
        /* the FIN answering a FIN finds the stream gone and is only counted */
        for (i = 0; i < 1000; i++) {
            smux_pump(p.c, p.s, &p.rng, p.now, NULL);
            smux_pump(p.s, p.c, &p.rng, p.now, NULL);
        }
        ssmb_smux_get_metrics(p.c, &mc);
        ssmb_smux_get_metrics(p.s, &ms);
        CHECK_EQ_INT(mc.opened_local, SMUX_STREAMS);
        CHECK_EQ_INT(ms.opened_peer, SMUX_STREAMS);
        CHECK_EQ_INT(mc.fins_in + ms.fins_in, SMUX_STREAMS);
        CHECK_EQ_INT(mc.ignored + ms.ignored, SMUX_STREAMS);
        CHECK_EQ_INT(mc.data_in, (uint64_t)SMUX_STREAMS * SMUX_BYTES);
        CHECK_EQ_INT(ms.data_in, (uint64_t)SMUX_STREAMS * SMUX_BYTES);
        CHECK_EQ_INT(ssmb_smux_stream_count(p.c) + ssmb_smux_stream_count(p.s), 0);
        CHECK(kc.allocs == 1 && ks.allocs == 1); /* nothing allocated after create */
        CHECK(p.stalls > 100);                   /* back-pressure was exercised */
    }
    ssmb_smux_destroy(p.c);
    ssmb_smux_destroy(p.s);
    CHECK(kc.live == 0 && ks.live == 0 && kc.frees == 1 && ks.frees == 1);
    smux_pair_free(&p);
}

/* ---- stream ends ---- */

SSMB_TEST(smux_fin_from_peer_ends_both_ways) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    ssmb_smux_event ev;
    ssmb_smux_metrics m;
    uint32_t id = 0;
    uint8_t buf[16];
    size_t n = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK);
    smux_feed_frame(mux, SSMB_SMUX_PSH, id, "bye", 3);
    smux_feed_frame(mux, SSMB_SMUX_FIN, id, NULL, 0);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_DATA && ev.stream_id == id &&
          ev.available == 3);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_CLOSED && ev.available == 3);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_AGAIN);
    CHECK(ssmb_smux_write(mux, id, "x", 1, &n) == SSMB_CLOSED && n == 0); /* no half-close (§16) */
    CHECK(ssmb_smux_read(mux, id, buf, 2, &n) == SSMB_OK && n == 2 && memcmp(buf, "by", 2) == 0);
    CHECK(ssmb_smux_read(mux, id, buf, sizeof buf, &n) == SSMB_OK && n == 1 && buf[0] == 'e');
    CHECK(ssmb_smux_read(mux, id, buf, sizeof buf, &n) == SSMB_CLOSED && n == 0);
    /* late frames for it before and after our close: skipped, counted */
    smux_feed_frame(mux, SSMB_SMUX_PSH, id, "late", 4);
    CHECK(ssmb_smux_close(mux, id) == SSMB_OK);
    smux_feed_frame(mux, SSMB_SMUX_PSH, id, "later", 5);
    smux_feed_frame(mux, SSMB_SMUX_FIN, id, NULL, 0);
    CHECK(ssmb_smux_read(mux, id, buf, sizeof buf, &n) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_smux_close(mux, id) == SSMB_ERR_INVALID_STATE);
    ssmb_smux_get_metrics(mux, &m);
    CHECK_EQ_INT(m.ignored, 3);
    CHECK_EQ_INT(m.ignored_bytes, 9);
    CHECK_EQ_INT(m.fins_in, 1);
    CHECK_EQ_INT(m.fins_out, 1);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_AGAIN);
    CHECK(ssmb_smux_last_error(mux) == SSMB_OK);
    ssmb_smux_destroy(mux);
}

/* Zero-copy writing: the header written for data the caller placed is
   the codec's own frame header; it waits (AGAIN) while the mux's output
   holds anything, so frames keep their order; a stream the peer ended is
   CLOSED, an unknown one INVALID_STATE; the peer's mux reads the data. */
SSMB_TEST(smux_write_header_frames_placed_data) {
    ssmb_smux_desc d;
    ssmb_smux *cli, *srv;
    ssmb_smux_event ev;
    ssmb_smux_metrics m;
    uint32_t id = 0, id2 = 0;
    uint8_t out[64], want[64], placed[SSMB_SMUX_HEADER_SIZE + 5], buf[16];
    size_t n = 0, wn = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    cli = smux_make(&d);
    smux_desc_init(&d, SSMB_SMUX_SERVER, NULL);
    srv = smux_make(&d);
    if (!cli || !srv) return;
    CHECK(ssmb_smux_open(cli, &id) == SSMB_OK);
    memcpy(placed + SSMB_SMUX_HEADER_SIZE, "hello", 5);
    CHECK(ssmb_smux_write_header(cli, id, 5, placed) == SSMB_AGAIN); /* the SYN waits first */
    n = smux_drain(cli, out, sizeof out);
    CHECK(ssmb_smux_write_header(cli, id, 0, placed) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_write_header(cli, id, SSMB_SMUX_MAX_DATA + 1, placed) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_write_header(cli, id + 2, 5, placed) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_smux_write_header(cli, id, 5, placed) == SSMB_OK);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, id, "hello", 5, want, sizeof want, &wn) == SSMB_OK);
    CHECK(wn == sizeof placed && memcmp(placed, want, wn) == 0);
    CHECK(ssmb_smux_out_buf(cli, &wn) == NULL); /* nothing queued in the mux for it */
    memcpy(out + n, placed, sizeof placed);
    smux_feed_all(srv, out, n + sizeof placed, 0);
    CHECK(ssmb_smux_poll(srv, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_OPENED && ev.stream_id == id);
    CHECK(ssmb_smux_poll(srv, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_DATA && ev.available == 5);
    CHECK(ssmb_smux_read(srv, id, buf, sizeof buf, &n) == SSMB_OK && n == 5 && memcmp(buf, "hello", 5) == 0);
    ssmb_smux_get_metrics(cli, &m);
    CHECK_EQ_INT(m.data_out, 5);
    CHECK_EQ_INT(m.bytes_out, 2 * SSMB_SMUX_HEADER_SIZE + 5);
    /* after the peer's FIN: CLOSED */
    CHECK(ssmb_smux_open(cli, &id2) == SSMB_OK);
    (void)smux_drain(cli, out, sizeof out);
    smux_feed_frame(cli, SSMB_SMUX_FIN, id2, NULL, 0);
    CHECK(ssmb_smux_write_header(cli, id2, 5, placed) == SSMB_CLOSED);
    ssmb_smux_destroy(cli);
    ssmb_smux_destroy(srv);
}

SSMB_TEST(smux_fin_from_us_ends_both_ways_at_the_server) {
    ssmb_smux_desc dc, ds;
    ssmb_smux *c, *s;
    ssmb_smux_event ev;
    uint8_t wire[256];
    uint32_t id = 0;
    size_t n, took = 0;
    smux_desc_init(&dc, SSMB_SMUX_CLIENT, NULL);
    smux_desc_init(&ds, SSMB_SMUX_SERVER, NULL);
    c = smux_make(&dc);
    s = smux_make(&ds);
    if (c && s) {
        CHECK(ssmb_smux_open(c, &id) == SSMB_OK);
        CHECK(ssmb_smux_write(c, id, "abc", 3, &took) == SSMB_OK);
        CHECK(ssmb_smux_close(c, id) == SSMB_OK);
        n = smux_drain(c, wire, sizeof wire);
        smux_feed_all(s, wire, n, 0);
        CHECK(ssmb_smux_poll(s, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_OPENED && ev.stream_id == 3);
        CHECK(ssmb_smux_poll(s, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_DATA && ev.available == 3);
        CHECK(ssmb_smux_poll(s, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_CLOSED);
        CHECK(ssmb_smux_write(s, id, "z", 1, &took) == SSMB_CLOSED);
        CHECK_EQ_INT(ssmb_smux_available(s, id), 3);
        CHECK(ssmb_smux_close(s, id) == SSMB_OK);
        CHECK_EQ_INT(ssmb_smux_available(s, id), 0);
        /* the server's own streams use even ids */
        CHECK(ssmb_smux_open(s, &id) == SSMB_OK && id == 2);
    }
    ssmb_smux_destroy(c);
    ssmb_smux_destroy(s);
}

/* ---- back-pressure ---- */

SSMB_TEST(smux_back_pressure_stops_consuming) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    ssmb_smux_metrics m;
    uint8_t wire[3 * (SSMB_SMUX_HEADER_SIZE + 4000)], payload[4000], got[12000], sink[1024];
    uint32_t a = 0, b = 0, seed = 7;
    size_t len = 0, n, used = 0, at = 0, got_b = 0, i;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.stream_buffer_bytes = 1024;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &a) == SSMB_OK && ssmb_smux_open(mux, &b) == SSMB_OK);
    for (i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)smux_rand(&seed);
    /* 4000 bytes for a, nobody reads them; then 4000 for b, 4000 for a */
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, a, payload, 4000, wire, sizeof wire, &n) == SSMB_OK);
    len += n;
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, b, payload, 4000, wire + len, sizeof wire - len, &n) == SSMB_OK);
    len += n;
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, a, payload, 4000, wire + len, sizeof wire - len, &n) == SSMB_OK);
    len += n;
    CHECK(ssmb_smux_feed(mux, wire, len, &used, 0) == SSMB_AGAIN);
    CHECK_EQ_INT(used, SSMB_SMUX_HEADER_SIZE + 1024);
    CHECK_EQ_INT(ssmb_smux_available(mux, a), 1024);
    at = used;
    CHECK(ssmb_smux_feed(mux, wire + at, len - at, &used, 0) == SSMB_AGAIN && used == 0); /* still full */
    /* b is stuck behind a (v1 has no windows): reading a lets the rest in */
    while (at < len) {
        size_t r = 0;
        if (ssmb_smux_read(mux, a, sink, 700, &r) == SSMB_OK) CHECK(r <= 700);
        while (ssmb_smux_read(mux, b, got + got_b, sizeof got - got_b, &r) == SSMB_OK) got_b += r;
        CHECK(ssmb_smux_available(mux, a) <= 1024 && ssmb_smux_available(mux, b) <= 1024);
        CHECK(ssmb_smux_feed(mux, wire + at, len - at, &used, 0) >= 0);
        at += used;
    }
    CHECK_EQ_INT(got_b, 4000);
    CHECK_EQ_MEM(got, payload, 4000);
    while (ssmb_smux_read(mux, a, sink, sizeof sink, &n) == SSMB_OK) {
    }
    ssmb_smux_get_metrics(mux, &m);
    CHECK_EQ_INT(m.data_in, 12000);
    CHECK_EQ_INT(m.bytes_in, len);
    /* closing the stuck stream also lets the stream go on: its data is skipped */
    len = 0;
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, b, payload, 4000, wire, sizeof wire, &n) == SSMB_OK);
    len += n;
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, a, payload, 10, wire + len, sizeof wire - len, &n) == SSMB_OK);
    len += n;
    CHECK(ssmb_smux_feed(mux, wire, len, &used, 0) == SSMB_AGAIN && used < len);
    CHECK(ssmb_smux_close(mux, b) == SSMB_OK);
    at = used;
    CHECK(ssmb_smux_feed(mux, wire + at, len - at, &used, 0) == SSMB_OK && at + used == len);
    ssmb_smux_get_metrics(mux, &m);
    CHECK_EQ_INT(m.ignored_bytes, 4000 - 1024);
    ssmb_smux_destroy(mux);
}

SSMB_TEST(smux_output_full_is_again) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    static uint8_t big[200000];
    uint32_t id = 0, other = 0;
    size_t took = 0, space, total = 0, n = 0;
    int opened = 0, i;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.max_streams = 4;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK);
    space = ssmb_smux_write_space(mux);
    CHECK(space > 32768);
    CHECK(ssmb_smux_write(mux, id, big, space, &took) == SSMB_OK && took == space); /* taken whole */
    CHECK(ssmb_smux_write(mux, id, big, 1000, &took) == SSMB_AGAIN && took == 0);
    CHECK(ssmb_smux_write_space(mux) == 0);
    CHECK(ssmb_smux_write(mux, id, big, 0, &took) == SSMB_OK);
    /* the reserve still carries control frames */
    CHECK(ssmb_smux_open(mux, &other) == SSMB_OK);
    CHECK(ssmb_smux_close(mux, other) == SSMB_OK);
    CHECK(ssmb_smux_close(mux, id) == SSMB_OK);
    /* until it too is used up */
    for (i = 0; i < 100; i++) {
        ssmb_result r = ssmb_smux_open(mux, &other);
        if (r == SSMB_AGAIN) break;
        CHECK(r == SSMB_OK);
        opened++;
        if (ssmb_smux_close(mux, other) == SSMB_AGAIN) break;
    }
    CHECK(i < 100 && opened > 0);
    /* frames are at most 32768 data bytes, and every byte is in them */
    while (ssmb_smux_out_buf(mux, &n) && n) {
        const uint8_t *p = ssmb_smux_out_buf(mux, &n);
        ssmb_smux_header h;
        if (!CHECK(ssmb_smux_header_parse(p, n, &h) == SSMB_OK)) break;
        CHECK(h.length <= SSMB_SMUX_MAX_DATA);
        if (h.cmd == SSMB_SMUX_PSH) total += h.length;
        CHECK(ssmb_smux_out_ack(mux, SSMB_SMUX_HEADER_SIZE + h.length) == SSMB_OK);
    }
    CHECK_EQ_INT(total, space);
    CHECK(ssmb_smux_out_ack(mux, 1) == SSMB_ERR_INVALID_ARG);
    ssmb_smux_destroy(mux);
}

SSMB_TEST(smux_stream_limit) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    uint32_t id = 0;
    int i;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.max_streams = 3;
    mux = smux_make(&d);
    if (!mux) return;
    for (i = 0; i < 3; i++) CHECK(ssmb_smux_open(mux, &id) == SSMB_OK && id == 3u + 2u * (uint32_t)i);
    CHECK(ssmb_smux_open(mux, &id) == SSMB_ERR_LIMIT && id == 0);
    CHECK(ssmb_smux_close(mux, 5) == SSMB_OK);
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK && id == 9); /* ids are never reused */
    CHECK_EQ_INT(ssmb_smux_stream_count(mux), 3);
    ssmb_smux_destroy(mux);
}

/* ---- keep-alive (§7.4) on a virtual clock ---- */

SSMB_TEST(smux_keepalive_nop_and_timeout) {
    static const uint8_t nop[8] = {1, 3, 0, 0, 0, 0, 0, 0};
    ssmb_smux_desc d;
    ssmb_smux *mux;
    ssmb_smux_event ev;
    uint8_t out[64];
    size_t used = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.keepalive = 1;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_next_deadline(mux) == 0); /* the clock starts at the first tick */
    CHECK(ssmb_smux_tick(mux, 5000) == SSMB_OK);
    CHECK(ssmb_smux_next_deadline(mux) == 15000);
    CHECK(ssmb_smux_tick(mux, 14999) == SSMB_OK);
    CHECK(smux_drain(mux, out, sizeof out) == 0);
    CHECK(ssmb_smux_tick(mux, 15000) == SSMB_OK);
    if (CHECK(smux_drain(mux, out, sizeof out) == 8)) CHECK_EQ_MEM(out, nop, 8);
    CHECK(ssmb_smux_next_deadline(mux) == 25000);
    /* a NOP from the peer is input: the 30 s window starts again */
    CHECK(ssmb_smux_feed(mux, nop, 8, &used, 20000) == SSMB_OK && used == 8);
    CHECK(ssmb_smux_tick(mux, 25000) == SSMB_OK);
    CHECK(smux_drain(mux, out, sizeof out) == 8);
    CHECK(ssmb_smux_tick(mux, 35000) == SSMB_OK);
    CHECK(ssmb_smux_tick(mux, 45000) == SSMB_OK);
    CHECK(ssmb_smux_next_deadline(mux) == 50000);
    CHECK(ssmb_smux_tick(mux, 49999) == SSMB_OK);
    CHECK(ssmb_smux_tick(mux, 50000) == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_ERROR &&
          ev.result == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_smux_next_deadline(mux) == SSMB_NO_DEADLINE);
    CHECK(ssmb_smux_feed(mux, nop, 8, &used, 50001) == SSMB_ERR_TIMEOUT && used == 0);
    CHECK(ssmb_smux_out_buf(mux, &used) == NULL);
    ssmb_smux_destroy(mux);
}

SSMB_TEST(smux_keepalive_off_by_default) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    uint8_t out[16];
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_next_deadline(mux) == SSMB_NO_DEADLINE);
    CHECK(ssmb_smux_tick(mux, 0) == SSMB_OK);
    CHECK(ssmb_smux_tick(mux, 10ull * 3600 * 1000) == SSMB_OK);
    CHECK(smux_drain(mux, out, sizeof out) == 0);
    CHECK(ssmb_smux_last_error(mux) == SSMB_OK);
    ssmb_smux_destroy(mux);
    /* the client's rule (§7.4): on for agents up to 3.1.1511.0 */
    CHECK(!ssmb_agent_has("3.1.1511.0", SSMB_AGENT_NO_SMUX_KEEPALIVE));
    CHECK(ssmb_agent_has("3.1.1600.0", SSMB_AGENT_NO_SMUX_KEEPALIVE));
}

/* ---- hostile input ---- */

static ssmb_result smux_feed_bytes(const uint8_t *p, size_t n, size_t *used) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    ssmb_smux_event ev;
    ssmb_result r;
    uint32_t id = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    mux = smux_make(&d);
    if (!mux) return SSMB_ERR_INTERNAL;
    r = ssmb_smux_feed(mux, p, n, used, 0);
    if (r < 0) {
        CHECK(ssmb_smux_last_error(mux) == r);
        CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_ERROR && ev.result == r);
        CHECK(ssmb_smux_poll(mux, &ev) == r);
        CHECK(ssmb_smux_open(mux, &id) == r);
    }
    ssmb_smux_destroy(mux);
    return r;
}

SSMB_TEST(smux_malformed_input) {
    static const uint8_t ok_then_bad[] = {1, 3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0};
    static const uint8_t bad_cmd[] = {1, 4, 0, 0, 3, 0, 0, 0};
    static const uint8_t too_long[] = {1, 2, 0x01, 0x80, 3, 0, 0, 0};
    static const uint8_t fin_data[] = {1, 1, 2, 0, 3, 0, 0, 0, 'h', 'i'};
    static const uint8_t truncated[] = {1, 2, 5, 0, 3, 0, 0, 0, 'h', 'e'};
    size_t used = 0;
    CHECK(smux_feed_bytes(ok_then_bad, sizeof ok_then_bad, &used) == SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(used, 16); /* the bad header is consumed, the error sticks */
    CHECK(smux_feed_bytes(bad_cmd, sizeof bad_cmd, &used) == SSMB_ERR_MALFORMED);
    CHECK(smux_feed_bytes(too_long, sizeof too_long, &used) == SSMB_ERR_LIMIT);
    CHECK(smux_feed_bytes(fin_data, sizeof fin_data, &used) == SSMB_ERR_MALFORMED);
    CHECK(smux_feed_bytes(truncated, sizeof truncated, &used) == SSMB_OK && used == sizeof truncated);
    CHECK(smux_feed_bytes(truncated, 7, &used) == SSMB_OK && used == 7);
}

SSMB_TEST(smux_unknown_ids_and_unwanted_syns) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    ssmb_smux_event ev;
    ssmb_smux_metrics m;
    uint8_t out[64];
    uint32_t id = 0;
    static const uint8_t fin9[8] = {1, 1, 0, 0, 9, 0, 0, 0};
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    mux = smux_make(&d);
    if (!mux) return;
    smux_feed_frame(mux, SSMB_SMUX_PSH, 77, "stale", 5);
    smux_feed_frame(mux, SSMB_SMUX_FIN, 77, NULL, 0);
    smux_feed_frame(mux, SSMB_SMUX_SYN, 2, NULL, 0); /* the client takes no streams (§7.4) */
    smux_feed_frame(mux, SSMB_SMUX_PSH, 2, "x", 1);
    smux_feed_frame(mux, SSMB_SMUX_PSH, 0, "", 0);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_AGAIN);
    ssmb_smux_get_metrics(mux, &m);
    CHECK_EQ_INT(m.ignored, 5);
    CHECK_EQ_INT(m.ignored_bytes, 6);
    CHECK_EQ_INT(m.frames_in, 5);
    CHECK(ssmb_smux_stream_count(mux) == 0 && smux_drain(mux, out, sizeof out) == 0);
    ssmb_smux_destroy(mux);
    /* the server role refuses SYNs beyond max_streams with FIN */
    smux_desc_init(&d, SSMB_SMUX_SERVER, NULL);
    d.max_streams = 2;
    mux = smux_make(&d);
    if (!mux) return;
    smux_feed_frame(mux, SSMB_SMUX_SYN, 5, NULL, 0);
    smux_feed_frame(mux, SSMB_SMUX_SYN, 7, NULL, 0);
    smux_feed_frame(mux, SSMB_SMUX_SYN, 7, NULL, 0); /* a repeat: ignored */
    smux_feed_frame(mux, SSMB_SMUX_SYN, 9, NULL, 0);
    smux_feed_frame(mux, SSMB_SMUX_SYN, 0, NULL, 0);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_OPENED && ev.stream_id == 5);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_OK && ev.type == SSMB_SMUX_EVENT_OPENED && ev.stream_id == 7);
    CHECK(ssmb_smux_poll(mux, &ev) == SSMB_AGAIN);
    if (CHECK(smux_drain(mux, out, sizeof out) == 8)) CHECK_EQ_MEM(out, fin9, 8);
    ssmb_smux_get_metrics(mux, &m);
    CHECK(m.refused == 1 && m.ignored == 2 && m.opened_peer == 2);
    CHECK(ssmb_smux_open(mux, &id) == SSMB_ERR_LIMIT);
    ssmb_smux_destroy(mux);
}

/* Random bytes, and random mutations of valid traffic, fed in random cuts:
   an error or skipping, never a crash, and each call's work bounded. */
SSMB_TEST(smux_hostile_bytes) {
    uint32_t rng = 0xC0FFEEu;
    uint8_t buf[2048], src[32];
    memset(src, 0x5a, sizeof src);
    long round, errors = 0;
    for (round = 0; round < 3000; round++) {
        ssmb_smux_desc d;
        ssmb_smux *mux;
        ssmb_smux_event ev;
        size_t len = 0, at = 0, used = 0, i;
        uint32_t id = 0;
        smux_desc_init(&d, round % 2 ? SSMB_SMUX_SERVER : SSMB_SMUX_CLIENT, NULL);
        d.stream_buffer_bytes = 64;
        mux = smux_make(&d);
        if (!mux) return;
        ssmb_smux_open(mux, &id);
        while (len + 40 < sizeof buf) { /* mostly plausible frames */
            uint32_t r = smux_rand(&rng);
            size_t dl = r % 3 == 0 ? r % 30 : 0, fl = 0;
            ssmb_smux_frame_encode(dl ? SSMB_SMUX_PSH : (r >> 8) % 4, (r >> 12) % 8, src, dl, buf + len,
                                   sizeof buf - len, &fl);
            len += fl;
        }
        for (i = 0; i < 4; i++) buf[smux_rand(&rng) % len] = (uint8_t)smux_rand(&rng);
        while (at < len) {
            size_t cut = 1 + smux_rand(&rng) % 64, n = 0;
            uint8_t sink[128];
            ssmb_result r;
            if (cut > len - at) cut = len - at;
            r = ssmb_smux_feed(mux, buf + at, cut, &used, 0);
            if (r < 0) {
                errors++;
                break;
            }
            at += used;
            while (ssmb_smux_poll(mux, &ev) == SSMB_OK)
                if (ev.type == SSMB_SMUX_EVENT_CLOSED || smux_rand(&rng) % 4 == 0) ssmb_smux_close(mux, ev.stream_id);
            if (id) ssmb_smux_read(mux, id, sink, sizeof sink, &n);
            for (i = 0; i < 8; i++) ssmb_smux_read(mux, (uint32_t)i, sink, sizeof sink, &n);
            if (ssmb_smux_out_buf(mux, &n)) ssmb_smux_out_ack(mux, n);
        }
        ssmb_smux_destroy(mux);
    }
    CHECK(errors > 0);
}

/* ---- create, memory ---- */

SSMB_TEST(smux_one_allocation_and_failures) {
    ssmb_smux_desc d;
    ssmb_smux *mux = NULL;
    smux_counting k;
    memset(&k, 0, sizeof k);
    smux_desc_init(&d, SSMB_SMUX_CLIENT, &k);
    k.fail_at = 1;
    CHECK(ssmb_smux_create(&d, &mux) == SSMB_ERR_NOMEM && mux == NULL);
    CHECK(k.live == 0 && k.allocs == 1 && k.frees == 0);
    k.fail_at = 0;
    mux = smux_make(&d);
    CHECK(k.allocs == 2 && k.live == ssmb_smux_memory_size(&d));
    /* defaults: 16 streams of 16 KiB and a 64 KiB output fit in it */
    CHECK(ssmb_smux_memory_size(&d) >= 16u * 16384u + 65536u);
    ssmb_smux_destroy(mux);
    CHECK(k.live == 0 && k.frees == 1);
    ssmb_smux_destroy(NULL);
    /* bad descs */
    d.role = 2;
    CHECK(ssmb_smux_create(&d, &mux) == SSMB_ERR_INVALID_ARG && mux == NULL);
    d.role = SSMB_SMUX_CLIENT;
    d.max_frame_data = 32769;
    CHECK(ssmb_smux_create(&d, &mux) == SSMB_ERR_INVALID_ARG);
    d.max_frame_data = 0;
    d.max_streams = 1025;
    CHECK(ssmb_smux_create(&d, &mux) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_memory_size(&d) == 0);
    d.max_streams = 0;
    d.allocator.free_fn = NULL;
    CHECK(ssmb_smux_create(&d, &mux) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_smux_create(NULL, &mux) == SSMB_ERR_INVALID_ARG);
    CHECK(k.allocs == 2);
}

SSMB_TEST(smux_small_frames_setting) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    static uint8_t data[5000];
    uint32_t id = 0;
    size_t took = 0, n = 0;
    ssmb_smux_header h;
    const uint8_t *p;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.max_frame_data = 1024;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK);
    CHECK(ssmb_smux_out_ack(mux, 8) == SSMB_OK);
    CHECK(ssmb_smux_write(mux, id, data, sizeof data, &took) == SSMB_OK && took == sizeof data);
    p = ssmb_smux_out_buf(mux, &n);
    CHECK_EQ_INT(n, 5 * 8 + 5000);
    CHECK(ssmb_smux_header_parse(p, n, &h) == SSMB_OK && h.length == 1024 && h.cmd == SSMB_SMUX_PSH);
    ssmb_smux_destroy(mux);
}

/* Waiting on our own full stream buffer is not the peer's silence. */
SSMB_TEST(smux_keepalive_spares_a_stalled_mux) {
    static uint8_t wire[SSMB_SMUX_HEADER_SIZE + 4000], payload[4000];
    ssmb_smux_desc d;
    ssmb_smux *mux;
    uint8_t sink[512];
    uint32_t id = 0;
    size_t n = 0, used = 0;
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    d.keepalive = 1;
    d.stream_buffer_bytes = 1024;
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &id) == SSMB_OK);
    CHECK(ssmb_smux_frame_encode(SSMB_SMUX_PSH, id, payload, 4000, wire, sizeof wire, &n) == SSMB_OK);
    CHECK(ssmb_smux_feed(mux, wire, n, &used, 0) == SSMB_AGAIN && used == SSMB_SMUX_HEADER_SIZE + 1024);
    CHECK(ssmb_smux_tick(mux, 40000) == SSMB_OK); /* stalled: not a timeout */
    CHECK(ssmb_smux_read(mux, id, sink, sizeof sink, &n) == SSMB_OK && n == sizeof sink);
    CHECK(ssmb_smux_tick(mux, 69999) == SSMB_OK);
    CHECK(ssmb_smux_tick(mux, 70000) == SSMB_ERR_TIMEOUT);
    ssmb_smux_destroy(mux);
}

/* A fixed script of frames gives the same streams, bytes and counters fed
   whole, one byte at a time, and cut in two at every offset (STYLE §2.14). */
typedef struct smux_outcome {
    uint8_t a[64], b[64];
    size_t a_len, b_len;
    ssmb_result a_end, b_end;
    ssmb_smux_metrics m;
} smux_outcome;

static void smux_add(uint8_t *w, size_t cap, size_t *len, uint32_t cmd, uint32_t id, const char *data) {
    size_t n = 0;
    CHECK(ssmb_smux_frame_encode(cmd, id, data, data ? strlen(data) : 0, w + *len, cap - *len, &n) == SSMB_OK);
    *len += n;
}

static size_t smux_script(uint8_t *w, size_t cap) {
    size_t len = 0;
    smux_add(w, cap, &len, SSMB_SMUX_PSH, 3, "hello");
    smux_add(w, cap, &len, SSMB_SMUX_NOP, 0, NULL);
    smux_add(w, cap, &len, SSMB_SMUX_PSH, 5, "other stream");
    smux_add(w, cap, &len, SSMB_SMUX_PSH, 9, "nobody's"); /* unknown id: skipped */
    smux_add(w, cap, &len, SSMB_SMUX_SYN, 2, NULL);       /* the client takes no streams */
    smux_add(w, cap, &len, SSMB_SMUX_PSH, 3, ", world");
    smux_add(w, cap, &len, SSMB_SMUX_FIN, 3, NULL);
    smux_add(w, cap, &len, SSMB_SMUX_PSH, 5, "!");
    return len;
}

/* cut 0: whole; cut SIZE_MAX: one byte at a time; else two pieces. */
static void smux_run_script(const uint8_t *w, size_t len, size_t cut, smux_outcome *o) {
    ssmb_smux_desc d;
    ssmb_smux *mux;
    uint32_t a = 0, b = 0;
    size_t at = 0, used = 0;
    memset(o, 0, sizeof *o);
    smux_desc_init(&d, SSMB_SMUX_CLIENT, NULL);
    mux = smux_make(&d);
    if (!mux) return;
    CHECK(ssmb_smux_open(mux, &a) == SSMB_OK && ssmb_smux_open(mux, &b) == SSMB_OK);
    while (at < len) {
        size_t piece = cut == (size_t)-1 ? 1 : cut == 0 || at >= cut ? len - at : cut - at;
        CHECK(ssmb_smux_feed(mux, w + at, piece, &used, 0) == SSMB_OK && used == piece);
        at += piece;
    }
    CHECK(ssmb_smux_read(mux, a, o->a, sizeof o->a, &o->a_len) == SSMB_OK);
    CHECK(ssmb_smux_read(mux, b, o->b, sizeof o->b, &o->b_len) == SSMB_OK);
    o->a_end = ssmb_smux_read(mux, a, o->a, 0, &used);
    o->b_end = ssmb_smux_read(mux, b, o->b + o->b_len, sizeof o->b - o->b_len, &used);
    ssmb_smux_get_metrics(mux, &o->m);
    ssmb_smux_destroy(mux);
}

SSMB_TEST(smux_every_cut_gives_the_same) {
    uint8_t w[256];
    size_t len = smux_script(w, sizeof w), cut;
    smux_outcome whole, other;
    long ok = 0, total = 0;
    smux_run_script(w, len, 0, &whole);
    CHECK(whole.a_len == 12 && memcmp(whole.a, "hello, world", 12) == 0);
    CHECK(whole.b_len == 13 && memcmp(whole.b, "other stream!", 13) == 0);
    CHECK(whole.a_end == SSMB_CLOSED && whole.b_end == SSMB_AGAIN);
    CHECK(whole.m.frames_in == 8 && whole.m.ignored == 2 && whole.m.ignored_bytes == 8 && whole.m.nops_in == 1);
    for (cut = 1; cut <= len; cut++) {
        smux_run_script(w, len, cut == len ? (size_t)-1 : cut, &other);
        total++;
        if (CHECK(other.a_len == whole.a_len && other.b_len == whole.b_len) &&
            CHECK(memcmp(other.a, whole.a, whole.a_len) == 0 && memcmp(other.b, whole.b, whole.b_len) == 0) &&
            CHECK(other.a_end == whole.a_end && other.b_end == whole.b_end) &&
            CHECK(memcmp(&other.m, &whole.m, sizeof whole.m) == 0))
            ok++;
    }
    ssmbt_report("smux script cut at every offset", ok, total, "cuts");
}
