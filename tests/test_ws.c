/* ws room: RFC 6455 framing. The frames in tests/vectors/websocket (RFC 6455
   §5.7 examples, derived valid frames, invalid frames with the close code a
   receiver must answer) through the header codec and the message reader,
   fed whole, one byte at a time and split at every offset; masking against
   a byte loop; the accept key against BearSSL's SHA-1. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for the guard-page test */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <bearssl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- small test utilities ------------------------------------------------ */

static uint64_t wst_rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t wst_rand(void) { /* xorshift64*, deterministic */
    wst_rng_state ^= wst_rng_state >> 12;
    wst_rng_state ^= wst_rng_state << 25;
    wst_rng_state ^= wst_rng_state >> 27;
    return (uint32_t)((wst_rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* The reference mask: one byte at a time, RFC 6455 §5.3 as written. */
static void wst_mask_ref(uint8_t *p, size_t n, const uint8_t key[4], size_t offset) {
    size_t i;
    for (i = 0; i < n; i++) p[i] ^= key[(offset + i) % 4];
}

static uint8_t *wst_unhex_str(const char *hex, size_t *n) { return ssmbt_unhex(hex, strlen(hex), n); }

/* ---- the vector file ------------------------------------------------------ */

#define WST_MAX_FRAMES 4
#define WST_MAX_MSGS 8

typedef struct wst_frame {
    uint8_t *bytes;         /* the frame on the wire */
    size_t len;
    int truncated;          /* the entry is a cut-off header */
    int fin, rsv, opcode, masked, header_len;
    uint8_t key[4];
    uint64_t payload_len;
    uint8_t *payload;       /* expected payload, unmasked; NULL when the vector has none */
} wst_frame;

/* A message as the vectors describe it. */
typedef struct wst_msg {
    int opcode;
    uint8_t *data;
    size_t len;
    int complete;           /* its last frame is in and valid */
} wst_msg;

typedef struct wst_entry {
    char name[96];
    const char *section;
    int from_client;        /* client-to-server: frames must be masked */
    int invalid;            /* from the "invalid" section */
    long close_code;        /* expected close code; 0 for null (implementation-defined) */
    long also_close_code;   /* also_acceptable_close_codes[0], or 0 */
    int nframes;
    wst_frame frames[WST_MAX_FRAMES];
    uint8_t *stream;        /* every frame back to back */
    size_t stream_len;
    wst_msg data[WST_MAX_MSGS];     /* text/binary messages in the order they start */
    int ndata;
    wst_msg control[WST_MAX_MSGS];  /* control messages in order */
    int ncontrol;
    char completions[WST_MAX_MSGS * 2 + 1]; /* opcodes of completed messages, in order ('a' + opcode) */
} wst_entry;

static char *wst_str(const ssmbt_json *j, int obj, const char *key) {
    int t = ssmbt_json_get(j, obj, key);
    return (t < 0 || ssmbt_json_is_null(j, t)) ? NULL : ssmbt_json_str(j, t, NULL);
}

/* Unsigned 64-bit field (payload_len reaches 2^63, past long long). */
static uint64_t wst_u64(const ssmbt_json *j, int obj, const char *key) {
    char *s = wst_str(j, obj, key);
    uint64_t v = s ? strtoull(s, NULL, 10) : 0;
    free(s);
    return v;
}

static int wst_bool(const ssmbt_json *j, int obj, const char *key) { return ssmbt_json_bool(j, ssmbt_json_get(j, obj, key)); }

/* README: frames over 600 bytes carry "payload byte[i] = i mod 256" and
   their sha256 instead of hex. */
static uint8_t *wst_pattern(uint64_t n) {
    uint8_t *p = (uint8_t *)malloc((size_t)n + 1);
    size_t i;
    for (i = 0; i < (size_t)n; i++) p[i] = (uint8_t)i;
    return p;
}

static int wst_sha256_is(const uint8_t *p, size_t n, const char *hex) {
    uint8_t d[32];
    char h[65];
    ssmb_sha256(p, n, d);
    ssmb_hex_encode(d, 32, h, sizeof h);
    return hex && strcmp(h, hex) == 0;
}

/* The expected unmasked payload: payload_hex, or the pattern checked
   against payload_sha256. */
static uint8_t *wst_load_payload(const ssmbt_json *j, int dec, uint64_t payload_len) {
    char *hex = wst_str(j, dec, "payload_hex"), *sha = wst_str(j, dec, "payload_sha256");
    uint8_t *p = NULL;
    size_t n = 0;
    if (hex) {
        p = wst_unhex_str(hex, &n);
        CHECK(p && n == payload_len);
    } else if (sha) {
        p = wst_pattern(payload_len);
        CHECK(wst_sha256_is(p, (size_t)payload_len, sha));
    }
    free(hex);
    free(sha);
    return p;
}

/* The frame bytes: hex, or header_hex + the (masked) pattern checked
   against the frame's sha256. Masking here is the test's own byte loop. */
static uint8_t *wst_load_bytes(const ssmbt_json *j, int fr, const wst_frame *f, size_t *len) {
    char *hex = wst_str(j, fr, "hex"), *hdr = wst_str(j, fr, "header_hex"), *sha = wst_str(j, fr, "sha256");
    uint8_t *b = NULL, *h;
    size_t n = 0, hn = 0;
    if (hex) {
        b = wst_unhex_str(hex, &n);
    } else if (hdr && f->payload) {
        h = wst_unhex_str(hdr, &hn);
        n = hn + (size_t)f->payload_len;
        b = (uint8_t *)malloc(n);
        memcpy(b, h, hn);
        memcpy(b + hn, f->payload, (size_t)f->payload_len);
        if (f->masked) wst_mask_ref(b + hn, (size_t)f->payload_len, f->key, 0);
        CHECK(wst_sha256_is(b, n, sha));
        free(h);
    }
    CHECK(b != NULL && (long long)n == ssmbt_json_int(j, ssmbt_json_get(j, fr, "len")));
    free(hex);
    free(hdr);
    free(sha);
    *len = n;
    return b;
}

static void wst_add_completion(char *list, int opcode) {
    size_t n = strlen(list);
    list[n] = (char)('a' + opcode);
    list[n + 1] = '\0';
}

static void wst_append(wst_msg *m, const uint8_t *p, size_t n) {
    m->data = (uint8_t *)realloc(m->data, m->len + n + 1);
    if (n) memcpy(m->data + m->len, p, n);
    m->len += n;
}

/* Folds a frame into the expected messages (RFC 6455 §5.4): data frames
   build a message until FIN, control frames are messages of their own. An
   offending frame adds its bytes (a streaming reader may hand out a valid
   prefix before it sees the fault) but completes nothing. */
static void wst_expect_frame(wst_entry *e, const wst_frame *f, int offending) {
    wst_msg *m;
    if (!f->payload) return;
    if (f->opcode & 8) {
        m = &e->control[e->ncontrol++];
    } else if (f->opcode != 0 || e->ndata == 0) { /* (a stray continuation gets one too) */
        m = &e->data[e->ndata++];
    } else {
        m = &e->data[e->ndata - 1];
    }
    m->opcode = f->opcode ? f->opcode : m->opcode;
    wst_append(m, f->payload, (size_t)f->payload_len);
    if (f->fin && !offending) {
        m->complete = 1;
        wst_add_completion(e->completions, m->opcode);
    }
}

static void wst_load_frame(const ssmbt_json *j, int fr, wst_frame *f) {
    int dec = ssmbt_json_get(j, fr, "decoded");
    char *key = wst_str(j, dec, "mask_key_hex");
    memset(f, 0, sizeof *f);
    f->truncated = wst_bool(j, dec, "truncated");
    f->fin = wst_bool(j, dec, "fin");
    f->rsv = wst_bool(j, dec, "rsv1") << 2 | wst_bool(j, dec, "rsv2") << 1 | wst_bool(j, dec, "rsv3");
    f->opcode = (int)ssmbt_json_int(j, ssmbt_json_get(j, dec, "opcode"));
    f->masked = wst_bool(j, dec, "masked");
    f->header_len = (int)ssmbt_json_int(j, ssmbt_json_get(j, dec, "header_len"));
    f->payload_len = wst_u64(j, dec, "payload_len");
    if (key) {
        uint8_t *k = wst_unhex_str(key, NULL);
        memcpy(f->key, k, 4);
        free(k);
        free(key);
    }
    if (!f->truncated) f->payload = wst_load_payload(j, dec, f->payload_len);
    f->bytes = wst_load_bytes(j, fr, f, &f->len);
}

static void wst_load_entry(const ssmbt_json *j, int v, const char *section, wst_entry *e) {
    int frames = ssmbt_json_get(j, v, "frames"), cc = ssmbt_json_get(j, v, "expected_close_code");
    int also = ssmbt_json_get(j, v, "also_acceptable_close_codes"), i;
    char *name = wst_str(j, v, "name"), *dir = wst_str(j, v, "direction");
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "?");
    e->section = section;
    e->from_client = dir && strcmp(dir, "client-to-server") == 0;
    e->invalid = strcmp(section, "invalid") == 0;
    e->close_code = (cc >= 0 && !ssmbt_json_is_null(j, cc)) ? (long)ssmbt_json_int(j, cc) : 0;
    e->also_close_code = also >= 0 && ssmbt_json_len(j, also) > 0 ? (long)ssmbt_json_int(j, ssmbt_json_at(j, also, 0)) : 0;
    e->nframes = ssmbt_json_len(j, frames);
    CHECK(e->nframes >= 1 && e->nframes <= WST_MAX_FRAMES);
    for (i = 0; i < e->nframes && i < WST_MAX_FRAMES; i++) {
        wst_frame *f = &e->frames[i];
        wst_load_frame(j, ssmbt_json_at(j, frames, i), f);
        e->stream = (uint8_t *)realloc(e->stream, e->stream_len + f->len + 1);
        memcpy(e->stream + e->stream_len, f->bytes, f->len);
        e->stream_len += f->len;
        /* an invalid entry's last frame is the offending one, unless the entry
           is implementation-defined (accepted here) */
        wst_expect_frame(e, f, e->invalid && e->close_code != 0 && i + 1 == e->nframes);
    }
    free(name);
    free(dir);
}

static void wst_free_entry(wst_entry *e) {
    int i;
    for (i = 0; i < e->nframes; i++) {
        free(e->frames[i].bytes);
        free(e->frames[i].payload);
    }
    for (i = 0; i < e->ndata; i++) free(e->data[i].data);
    for (i = 0; i < e->ncontrol; i++) free(e->control[i].data);
    free(e->stream);
}

/* ---- a sink that checks the reader's pieces against expected messages ---- */

typedef struct wst_sink {
    const wst_entry *e;
    int ndata, ncontrol;    /* messages started so far */
    int data_open;          /* a text/binary message is open */
    size_t data_off;        /* bytes of it seen */
    char completions[WST_MAX_MSGS * 2 + 1];
    int bad;                /* pieces that did not match */
} wst_sink;

static void wst_sink_control(wst_sink *s, const ssmb_ws_piece *p) {
    const wst_msg *m = s->ncontrol < s->e->ncontrol ? &s->e->control[s->ncontrol++] : NULL;
    if (!m || p->flags != (SSMB_WS_MESSAGE_START | SSMB_WS_MESSAGE_END) || (int)p->opcode != m->opcode ||
        p->len != m->len || (p->len && memcmp(p->data, m->data, p->len) != 0)) {
        s->bad++;
        return;
    }
    if (m->opcode == SSMB_WS_CLOSE) { /* §7.1.5: the code is the first two bytes, else 1005 */
        uint32_t want = m->len >= 2 ? (uint32_t)(m->data[0] << 8 | m->data[1]) : 1005;
        if (p->close_code != want || p->close_reason.len != (m->len >= 2 ? m->len - 2 : 0)) s->bad++;
    }
    if (strlen(s->completions) < WST_MAX_MSGS * 2) wst_add_completion(s->completions, (int)p->opcode);
}

static void wst_sink_data(wst_sink *s, const ssmb_ws_piece *p) {
    const wst_msg *m;
    if (p->flags & SSMB_WS_MESSAGE_START) {
        if (s->data_open || s->ndata >= s->e->ndata) {
            s->bad++;
            return;
        }
        s->ndata++;
        s->data_open = 1;
        s->data_off = 0;
    }
    if (!s->data_open) {
        s->bad++;
        return;
    }
    m = &s->e->data[s->ndata - 1];
    if ((int)p->opcode != m->opcode || s->data_off + p->len > m->len ||
        (p->len && memcmp(p->data, m->data + s->data_off, p->len) != 0))
        s->bad++;
    s->data_off += p->len;
    if (p->flags & SSMB_WS_MESSAGE_END) {
        if (!m->complete || s->data_off != m->len) s->bad++;
        s->data_open = 0;
        if (strlen(s->completions) < WST_MAX_MSGS * 2) wst_add_completion(s->completions, (int)p->opcode);
    }
}

static void wst_sink_piece(wst_sink *s, const ssmb_ws_piece *p) {
    if (p->opcode & 8) wst_sink_control(s, p);
    else wst_sink_data(s, p);
}

/* ---- feeding the reader ---------------------------------------------------- */

typedef struct wst_result {
    ssmb_result final;      /* what a call with no more input says */
    uint32_t close_code;
    char completions[WST_MAX_MSGS * 2 + 1];
    int bad;                /* mismatching pieces */
    int pieces_outside;     /* data pieces not pointing into the input */
} wst_result;

/* Feeds in[0..len) to the reader until it is used up or the reader stops. */
static ssmb_result wst_feed(ssmb_ws_reader *r, uint8_t *in, size_t len, wst_sink *s, wst_result *res) {
    ssmb_result rc = SSMB_AGAIN;
    while (len > 0) {
        ssmb_ws_piece p;
        size_t used = 0;
        rc = ssmb_ws_read(r, in, len, &used, &p);
        if (used > len) {
            res->bad++;
            return SSMB_ERR_INTERNAL;
        }
        if (rc == SSMB_OK) {
            if (!(p.opcode & 8) && p.len && (p.data < in || p.data + p.len > in + used)) res->pieces_outside++;
            wst_sink_piece(s, &p);
        } else if (rc == SSMB_AGAIN && used != len) {
            res->bad++; /* AGAIN promises that all input was taken */
        }
        in += used;
        len -= used;
        if (rc != SSMB_OK) break;
    }
    return rc;
}

/* One run over the entry's stream. split: the stream goes in as two pieces
   cut there (0 = whole); bytewise: one byte per call. */
static wst_result wst_run(const wst_entry *e, uint8_t *work, size_t split, int bytewise, uint64_t max_message) {
    ssmb_ws_reader r;
    wst_sink s;
    wst_result res;
    ssmb_ws_piece p;
    size_t used, pos = 0;
    memset(&s, 0, sizeof s);
    memset(&res, 0, sizeof res);
    s.e = e;
    memcpy(work, e->stream, e->stream_len); /* masked payloads are unmasked in place */
    ssmb_ws_reader_init(&r, e->from_client ? SSMB_WS_READ_FROM_CLIENT : 0, max_message);
    if (bytewise) {
        for (pos = 0; pos < e->stream_len; pos++)
            if (wst_feed(&r, work + pos, 1, &s, &res) < 0) break;
    } else {
        if (split && wst_feed(&r, work, split, &s, &res) < 0) split = e->stream_len;
        if (split < e->stream_len) wst_feed(&r, work + split, e->stream_len - split, &s, &res);
    }
    res.final = ssmb_ws_read(&r, work, 0, &used, &p);
    res.close_code = r.close_code;
    memcpy(res.completions, s.completions, sizeof res.completions);
    res.bad += s.bad;
    return res;
}

static int wst_same(const wst_result *a, const wst_result *b) {
    return a->final == b->final && a->close_code == b->close_code && strcmp(a->completions, b->completions) == 0 && a->bad == b->bad &&
           a->pieces_outside == b->pieces_outside;
}

/* What the whole-stream run must show for this entry. */
static void wst_check_outcome(const wst_entry *e, const wst_result *r) {
    size_t nc = strlen(e->completions);
    int closes = nc > 0 && e->completions[nc - 1] == 'a' + SSMB_WS_CLOSE;
    CHECK_EQ_INT(r->bad, 0);
    CHECK_EQ_INT(r->pieces_outside, 0);
    CHECK_EQ_STR(r->completions, e->completions);
    if (!e->invalid || e->close_code == 0) {
        /* valid, or implementation-defined (non-minimal length): accepted */
        CHECK_EQ_INT(r->final, closes ? SSMB_CLOSED : SSMB_AGAIN);
    } else if (e->close_code == SSMB_WS_CLOSE_ABNORMAL) {
        /* 1006: the input just ended inside the header; no close frame to send */
        CHECK_EQ_INT(r->final, SSMB_AGAIN);
    } else {
        CHECK(r->final == SSMB_ERR_WS_PROTOCOL);
        CHECK(r->close_code == (uint32_t)e->close_code || r->close_code == (uint32_t)e->also_close_code);
        if (r->close_code != (uint32_t)e->close_code) printf("  note %s: close %u\n", e->name, r->close_code);
    }
}

/* Header parse field by field, every shorter prefix SSMB_AGAIN. */
static void wst_check_header_parse(const wst_frame *f) {
    ssmb_ws_frame_header h;
    size_t k, hl = f->truncated ? f->len : (size_t)f->header_len;
    ssmb_result rc = ssmb_ws_frame_header_parse(f->bytes, f->len, &h);
    for (k = 0; k < hl && k < f->len; k++) {
        ssmb_result pr = ssmb_ws_frame_header_parse(f->bytes, k, &h);
        /* the top bit of a 64-bit length fails as soon as its byte is in */
        if (!(f->payload_len >> 63 && k > 2)) CHECK_EQ_INT(pr, SSMB_AGAIN);
    }
    if (f->truncated) {
        CHECK_EQ_INT(rc, SSMB_AGAIN);
        return;
    }
    if (f->payload_len >> 63) {
        CHECK_EQ_INT(rc, SSMB_ERR_WS_PROTOCOL);
        return;
    }
    CHECK_EQ_INT(rc, SSMB_OK);
    CHECK_EQ_INT(h.fin, f->fin);
    CHECK_EQ_INT(h.rsv, f->rsv);
    CHECK_EQ_INT(h.opcode, f->opcode);
    CHECK_EQ_INT(h.masked, f->masked);
    CHECK_EQ_INT(h.header_len, f->header_len);
    CHECK(h.payload_len == f->payload_len);
    CHECK_EQ_MEM(h.mask_key, f->key, 4);
}

/* Encoding a valid frame gives back its exact bytes. */
static void wst_check_encode(const wst_frame *f) {
    uint8_t hdr[SSMB_WS_MAX_HEADER_SIZE], *out = (uint8_t *)malloc(f->len + 1);
    size_t n = 0, need = 0;
    const uint8_t *key = f->masked ? f->key : NULL;
    CHECK_EQ_INT(ssmb_ws_frame_header_encode((uint32_t)f->opcode, f->fin, f->payload_len, key, hdr, &n), SSMB_OK);
    CHECK(n == (size_t)f->header_len && CHECK_EQ_MEM(hdr, f->bytes, n));
    CHECK_EQ_INT(ssmb_ws_frame_write((uint32_t)f->opcode, f->fin, f->payload, (size_t)f->payload_len, key, out,
                                     f->len, &n),
                 SSMB_OK);
    CHECK(n == f->len && CHECK_EQ_MEM(out, f->bytes, n));
    CHECK_EQ_INT(ssmb_ws_frame_write((uint32_t)f->opcode, f->fin, f->payload, (size_t)f->payload_len, key, out,
                                     f->len - 1, &need),
                 SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(need == f->len);
    free(out);
}

static void wst_check_entry(const wst_entry *e) {
    uint8_t *work = (uint8_t *)malloc(e->stream_len + 1);
    wst_result whole, other;
    size_t k;
    int i, mismatches = 0;
    for (i = 0; i < e->nframes; i++) {
        wst_check_header_parse(&e->frames[i]);
        if (!e->invalid) wst_check_encode(&e->frames[i]);
    }
    whole = wst_run(e, work, 0, 0, 0);
    wst_check_outcome(e, &whole);
    other = wst_run(e, work, 0, 1, 0);
    if (!wst_same(&whole, &other)) {
        ssmbt_fail(__FILE__, __LINE__, "one byte at a time differs from whole");
        printf("    entry %s\n", e->name);
    }
    for (k = 1; k < e->stream_len; k++) {
        other = wst_run(e, work, k, 0, 0);
        if (!wst_same(&whole, &other) && mismatches++ < 3)
            printf("  FAIL split at %zu differs from whole (entry %s)\n", k, e->name);
    }
    if (mismatches) ssmbt_fail(__FILE__, __LINE__, "two-piece splits differ from whole");
    free(work);
}

static int wst_load_file(ssmbt_json *j, char **text) {
    char path[512];
    size_t len = 0;
    *text = ssmbt_read_file(ssmbt_vector_path("websocket/rfc6455-frames.json", path, sizeof path), &len);
    if (!CHECK(*text != NULL)) return -1;
    if (!CHECK(ssmbt_json_load(j, *text, len) == 0)) return -1;
    return 0;
}

SSMB_TEST(ws_rfc6455_vectors) {
    static const char *sections[] = {"rfc6455_section_5_7", "derived_valid", "invalid"};
    ssmbt_json j;
    char *text;
    long ok = 0, total = 0;
    size_t s;
    if (wst_load_file(&j, &text) != 0) return;
    for (s = 0; s < 3; s++) {
        int arr = ssmbt_json_get(&j, 0, sections[s]), i, n = ssmbt_json_len(&j, arr);
        CHECK(n > 0);
        for (i = 0; i < n; i++) {
            wst_entry *e = (wst_entry *)calloc(1, sizeof *e);
            long before = ssmbt_failures();
            wst_load_entry(&j, ssmbt_json_at(&j, arr, i), sections[s], e);
            wst_check_entry(e);
            total++;
            if (ssmbt_failures() == before) ok++;
            else printf("    (entry %s / %s)\n", sections[s], e->name);
            wst_free_entry(e);
            free(e);
        }
    }
    ssmbt_json_free(&j);
    free(text);
    ssmbt_report("websocket rfc6455 vectors", ok, total, "frames");
}

/* RFC 6455 §1.3 / §4.2.2: the handshake example's key and accept value. */
SSMB_TEST(ws_handshake_vectors) {
    ssmbt_json j;
    char *text, *key, *accept, *guid, out[29], client_key[25];
    int hs;
    long ok = 0;
    if (wst_load_file(&j, &text) != 0) return;
    hs = ssmbt_json_get(&j, 0, "handshake");
    key = wst_str(&j, hs, "sec_websocket_key");
    accept = wst_str(&j, hs, "sec_websocket_accept");
    guid = wst_str(&j, hs, "guid");
    if (CHECK(key && accept && guid)) {
        ok += CHECK(strcmp(guid, SSMB_WS_GUID) == 0);
        ok += CHECK(ssmb_ws_accept_key(key, strlen(key), out) == SSMB_OK && CHECK_EQ_STR(out, accept));
        /* the note: the key is base64 of the 16-byte nonce "the sample nonce" */
        ssmb_ws_client_key((const uint8_t *)"the sample nonce", client_key);
        ok += CHECK_EQ_STR(client_key, key);
    }
    free(key);
    free(accept);
    free(guid);
    ssmbt_json_free(&j);
    free(text);
    ssmbt_report("websocket handshake vectors", ok, 3, "keys");
}

/* SHA-1 inside the accept key, against BearSSL's, across block boundaries. */
SSMB_TEST(ws_accept_key_vs_bearssl) {
    char key[300], out[29], want[29];
    size_t n, i;
    long ok = 0, total = 0;
    for (n = 0; n < sizeof key; n++) {
        br_sha1_context ctx;
        uint8_t d[20];
        for (i = 0; i < n; i++) key[i] = (char)(33 + wst_rand() % 90);
        br_sha1_init(&ctx);
        br_sha1_update(&ctx, key, n);
        br_sha1_update(&ctx, SSMB_WS_GUID, strlen(SSMB_WS_GUID));
        br_sha1_out(&ctx, d);
        ssmb_base64_encode(d, 20, want, sizeof want, NULL);
        total++;
        if (CHECK(ssmb_ws_accept_key(key, n, out) == SSMB_OK) && CHECK_EQ_STR(out, want)) ok++;
    }
    ssmbt_report("websocket accept key vs bearssl sha1", ok, total, "keys");
}

/* ---- masking --------------------------------------------------------------- */

SSMB_TEST(ws_mask_matches_byte_loop) {
    static uint8_t a[20000], b[20000];
    int round;
    for (round = 0; round < 3000; round++) {
        uint8_t key[4];
        size_t n = round < 600 ? (size_t)round % 300 : wst_rand() % (round < 2900 ? 2048 : 19000);
        size_t align = wst_rand() % 16, offset = wst_rand();
        size_t i;
        for (i = 0; i < 4; i++) key[i] = (uint8_t)wst_rand();
        for (i = 0; i < n; i++) a[align + i] = b[align + i] = (uint8_t)wst_rand();
        ssmb_ws_mask(a + align, n, key, offset);
        wst_mask_ref(b + align, n, key, offset);
        if (!CHECK_EQ_MEM(a + align, b + align, n)) {
            printf("    n=%zu align=%zu offset=%zu\n", n, align, offset);
            break;
        }
    }
}

/* A payload masked in pieces of any size equals it masked whole. */
SSMB_TEST(ws_mask_in_pieces) {
    static uint8_t whole[5000], pieces[5000];
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t i, pos;
    for (i = 0; i < sizeof whole; i++) whole[i] = pieces[i] = (uint8_t)(i * 7);
    ssmb_ws_mask(whole, sizeof whole, key, 0);
    for (pos = 0; pos < sizeof pieces;) {
        size_t n = 1 + wst_rand() % 97;
        if (n > sizeof pieces - pos) n = sizeof pieces - pos;
        ssmb_ws_mask(pieces + pos, n, key, pos);
        pos += n;
    }
    CHECK_EQ_MEM(pieces, whole, sizeof whole);
    ssmb_ws_mask(whole, sizeof whole, key, 0);
    for (i = 0; i < sizeof whole; i++)
        if (!CHECK(whole[i] == (uint8_t)(i * 7))) break;
}

/* ---- encoder arguments ----------------------------------------------------- */

SSMB_TEST(ws_encode_refuses_bad_frames) {
    uint8_t h[SSMB_WS_MAX_HEADER_SIZE];
    size_t n;
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_PING, 1, 126, NULL, h, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_PING, 0, 1, NULL, h, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_CLOSE, 1, 125, NULL, h, &n), SSMB_OK);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(3, 1, 0, NULL, h, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(0xb, 1, 0, NULL, h, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_BINARY, 1, (uint64_t)1 << 63, NULL, h, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_BINARY, 1, ((uint64_t)1 << 63) - 1, NULL, h, &n), SSMB_OK);
    CHECK(n == 10 && h[0] == 0x82 && h[1] == 127 && h[2] == 0x7f && h[9] == 0xff);
    CHECK_EQ_INT(ssmb_ws_frame_header_encode(SSMB_WS_CONTINUATION, 0, 0, NULL, h, &n), SSMB_OK);
    CHECK(n == 2 && h[0] == 0x00 && h[1] == 0x00);
}

/* ---- the reader beyond the vectors ---------------------------------------- */

/* Builds a server-to-client frame with the library's (vector-tested) writer. */
static size_t wst_make_frame(uint8_t *out, size_t cap, uint32_t opcode, int fin, const void *p, size_t n) {
    size_t len = 0;
    CHECK_EQ_INT(ssmb_ws_frame_write(opcode, fin, p, n, NULL, out, cap, &len), SSMB_OK);
    return len;
}

/* Reads the whole buffer; counts complete messages; returns what the reader
   says at the end (SSMB_AGAIN: all taken, wants more). */
static ssmb_result wst_read_all(ssmb_ws_reader *r, uint8_t *in, size_t len, int *messages, uint8_t *text,
                                size_t *text_len) {
    ssmb_result rc = SSMB_AGAIN;
    while (len) {
        ssmb_ws_piece p;
        size_t used;
        rc = ssmb_ws_read(r, in, len, &used, &p);
        in += used;
        len -= used;
        if (rc != SSMB_OK) break;
        if (text && !(p.opcode & 8)) {
            memcpy(text + *text_len, p.data, p.len);
            *text_len += p.len;
        }
        if (messages && (p.flags & SSMB_WS_MESSAGE_END)) (*messages)++;
    }
    if (rc == SSMB_OK) { /* input used up right after a piece: ask for the state */
        ssmb_ws_piece p;
        size_t used;
        rc = ssmb_ws_read(r, in, 0, &used, &p);
    }
    return rc;
}

SSMB_TEST(ws_reader_message_size_limit) {
    static uint8_t buf[300], payload[64];
    ssmb_ws_reader r;
    size_t n;
    int msgs = 0;
    memset(payload, 'a', sizeof payload);
    /* exactly at the limit: fine; a ping does not count toward it */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_BINARY, 0, payload, 6);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_PING, 1, payload, 50);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, payload, 4);
    ssmb_ws_reader_init(&r, 0, 10);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, &msgs, NULL, NULL), SSMB_AGAIN);
    CHECK_EQ_INT(msgs, 2);
    /* one byte over, across fragments: refused at the second header, 1009 */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_TEXT, 0, payload, 6);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, payload, 5);
    ssmb_ws_reader_init(&r, 0, 10);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, NULL, NULL, NULL), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(r.close_code, SSMB_WS_CLOSE_TOO_BIG);
    /* a single frame over the limit fails on its header, before any payload */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_BINARY, 1, payload, 11);
    ssmb_ws_reader_init(&r, 0, 10);
    CHECK_EQ_INT(wst_read_all(&r, buf, 2, NULL, NULL, NULL), SSMB_ERR_LIMIT);
    /* the next message starts from zero again */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_BINARY, 1, payload, 10);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_BINARY, 1, payload, 10);
    msgs = 0;
    ssmb_ws_reader_init(&r, 0, 10);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, &msgs, NULL, NULL), SSMB_AGAIN);
    CHECK_EQ_INT(msgs, 2);
}

/* "€" (E2 82 AC) and "𝄞" (F0 9D 84 9E) split across fragments, with a ping
   and a pong between them, fed in every two-piece split. */
SSMB_TEST(ws_reader_utf8_across_fragments) {
    static const uint8_t text[] = {'a', 0xe2, 0x82, 0xac, 'b', 0xf0, 0x9d, 0x84, 0x9e, 'c'};
    static uint8_t buf[200], work[200], got[64];
    size_t n, k;
    int bad = 0;
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_TEXT, 0, text, 2);              /* a E2 */
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_PING, 1, "x", 1);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 0, text + 2, 4); /* 82 AC b F0 */
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_PONG, 1, "", 0);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 0, text + 6, 0);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, text + 6, 4); /* 9D 84 9E c */
    for (k = 0; k <= n; k++) {
        ssmb_ws_reader r;
        size_t got_len = 0;
        int msgs = 0;
        ssmb_result a, b = SSMB_AGAIN;
        memcpy(work, buf, n);
        ssmb_ws_reader_init(&r, 0, 0);
        a = wst_read_all(&r, work, k, &msgs, got, &got_len);
        if (a == SSMB_AGAIN) b = wst_read_all(&r, work + k, n - k, &msgs, got, &got_len);
        if (a != SSMB_AGAIN || b != SSMB_AGAIN || msgs != 3 || got_len != sizeof text ||
            memcmp(got, text, sizeof text) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

SSMB_TEST(ws_reader_utf8_errors_across_fragments) {
    static uint8_t buf[200];
    ssmb_ws_reader r;
    size_t n;
    /* E2 82 then a fragment starting with 'x': the sequence is cut short */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_TEXT, 0, "\xe2\x82", 2);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, "x", 1);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, NULL, NULL, NULL), SSMB_ERR_WS_PROTOCOL);
    CHECK_EQ_INT(r.close_code, SSMB_WS_CLOSE_INVALID_DATA);
    /* the message ends inside a code point */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_TEXT, 0, "ok", 2);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, "\xf0\x9d\x84", 3);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, NULL, NULL, NULL), SSMB_ERR_WS_PROTOCOL);
    CHECK_EQ_INT(r.close_code, SSMB_WS_CLOSE_INVALID_DATA);
    /* binary messages are not checked */
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_BINARY, 1, "\xff\xfe", 2);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(wst_read_all(&r, buf, n, NULL, NULL, NULL), SSMB_AGAIN);
}

/* The test's own UTF-8 rule, written from the definition (RFC 3629 §3-4):
   decode by bit pattern, then refuse overlong forms, surrogates and values
   past U+10FFFF. 1 when valid. */
static int wst_utf8_ref(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp, min;
        size_t len, k;
        if (p[i] < 0x80) { i++; continue; }
        if ((p[i] & 0xe0) == 0xc0) len = 2, cp = p[i] & 0x1fu, min = 0x80;
        else if ((p[i] & 0xf0) == 0xe0) len = 3, cp = p[i] & 0x0fu, min = 0x800;
        else if ((p[i] & 0xf8) == 0xf0) len = 4, cp = p[i] & 0x07u, min = 0x10000;
        else return 0;
        if (i + len > n) return 0;
        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

static int wst_reader_accepts_text(const uint8_t *p, size_t n);

/* Counts one case; *bad when the reader and the reference disagree. */
static void wst_utf8_case(const uint8_t *p, size_t n, long *checked, long *bad) {
    (*checked)++;
    if (wst_reader_accepts_text(p, n) != wst_utf8_ref(p, n)) (*bad)++;
}

static int wst_reader_accepts_text(const uint8_t *p, size_t n) {
    uint8_t buf[64];
    ssmb_ws_reader r;
    size_t len = wst_make_frame(buf, sizeof buf, SSMB_WS_TEXT, 1, p, n);
    ssmb_ws_reader_init(&r, 0, 0);
    return wst_read_all(&r, buf, len, NULL, NULL, NULL) == SSMB_AGAIN;
}

/* Every 1- and 2-byte sequence, every 3-byte sequence, and 4-byte sequences
   around every boundary, against the reference rule. */
SSMB_TEST(ws_reader_utf8_exhaustive) {
    static const uint8_t edges[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    uint8_t s[4];
    long checked = 0, bad = 0;
    unsigned a, b, c, d;
    for (a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        wst_utf8_case(s, 1, &checked, &bad);
        for (b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            wst_utf8_case(s, 2, &checked, &bad);
            if (a < 0xe0 || a > 0xef) continue;
            for (c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                wst_utf8_case(s, 3, &checked, &bad);
            }
        }
    }
    for (a = 0xf0; a <= 0xf5; a++)
        for (b = 0; b < 256; b++)
            for (c = 0; c < sizeof edges; c++)
                for (d = 0; d < sizeof edges; d++) {
                    s[0] = (uint8_t)a;
                    s[1] = (uint8_t)b;
                    s[2] = edges[c];
                    s[3] = edges[d];
                    wst_utf8_case(s, 4, &checked, &bad);
                }
    CHECK_EQ_INT(bad, 0);
    CHECK(checked > 1000000);
}

/* Control frames in the middle of a fragmented message; a close there ends
   the stream; nothing is read after the close. */
SSMB_TEST(ws_reader_interleaved_control) {
    static uint8_t buf[400];
    uint8_t close_payload[SSMB_WS_MAX_CONTROL_PAYLOAD];
    ssmb_ws_reader r;
    ssmb_ws_piece p;
    size_t n, cn, used, off = 0;
    CHECK_EQ_INT(ssmb_ws_close_payload_build(1001, "going away", 10, close_payload, &cn), SSMB_OK);
    n = wst_make_frame(buf, sizeof buf, SSMB_WS_BINARY, 0, "12", 2);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_PING, 1, "ping", 4);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 0, "34", 2);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CLOSE, 1, close_payload, cn);
    n += wst_make_frame(buf + n, sizeof buf - n, SSMB_WS_CONTINUATION, 1, "56", 2);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, buf, n, &used, &p), SSMB_OK);
    CHECK(p.opcode == SSMB_WS_BINARY && p.flags == SSMB_WS_MESSAGE_START && p.len == 2 && memcmp(p.data, "12", 2) == 0);
    CHECK(p.data == buf + 2); /* zero copy: a view of the input */
    off += used;
    CHECK_EQ_INT(ssmb_ws_read(&r, buf + off, n - off, &used, &p), SSMB_OK);
    CHECK(p.opcode == SSMB_WS_PING && p.len == 4 && memcmp(p.data, "ping", 4) == 0);
    off += used;
    CHECK_EQ_INT(ssmb_ws_read(&r, buf + off, n - off, &used, &p), SSMB_OK);
    CHECK(p.opcode == SSMB_WS_BINARY && p.flags == 0 && p.len == 2 && memcmp(p.data, "34", 2) == 0);
    off += used;
    CHECK_EQ_INT(ssmb_ws_read(&r, buf + off, n - off, &used, &p), SSMB_OK);
    CHECK(p.opcode == SSMB_WS_CLOSE && p.close_code == 1001 && p.close_reason.len == 10 &&
          memcmp(p.close_reason.ptr, "going away", 10) == 0);
    off += used;
    CHECK_EQ_INT(ssmb_ws_read(&r, buf + off, n - off, &used, &p), SSMB_CLOSED);
    CHECK_EQ_INT(used, 0);
}

/* A control frame split over calls is still handed out whole. */
SSMB_TEST(ws_reader_control_gathered_whole) {
    static uint8_t buf[200], payload[125];
    const uint8_t key[4] = {1, 2, 3, 4};
    ssmb_ws_reader r;
    ssmb_ws_piece p;
    size_t n, i, used;
    int outs = 0;
    for (i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i + 1);
    CHECK_EQ_INT(ssmb_ws_frame_write(SSMB_WS_PING, 1, payload, 125, key, buf, sizeof buf, &n), SSMB_OK);
    ssmb_ws_reader_init(&r, SSMB_WS_READ_FROM_CLIENT, 0);
    for (i = 0; i < n; i++) {
        ssmb_result rc = ssmb_ws_read(&r, buf + i, 1, &used, &p);
        CHECK_EQ_INT(used, 1);
        if (rc == SSMB_OK) {
            outs++;
            CHECK(i == n - 1 && p.len == 125 && memcmp(p.data, payload, 125) == 0);
        } else {
            CHECK_EQ_INT(rc, SSMB_AGAIN);
        }
    }
    CHECK_EQ_INT(outs, 1);
}

/* Rules the first two bytes decide fail before the rest of the frame is in. */
SSMB_TEST(ws_reader_fails_early) {
    static uint8_t close1[2] = {0x88, 0x01}, big_ping[2] = {0x89, 0x7e}, msb[3] = {0x82, 0x7f, 0x80};
    ssmb_ws_reader r;
    ssmb_ws_piece p;
    size_t used;
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, close1, 2, &used, &p), SSMB_ERR_WS_PROTOCOL); /* 1-byte close payload */
    CHECK_EQ_INT(r.close_code, SSMB_WS_CLOSE_PROTOCOL_ERROR);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, big_ping, 2, &used, &p), SSMB_ERR_WS_PROTOCOL);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, msb, 3, &used, &p), SSMB_ERR_WS_PROTOCOL); /* 7 length bytes still missing */
}

SSMB_TEST(ws_reader_errors_are_sticky) {
    static uint8_t buf[16] = {0xc1, 0x00, 0x81, 0x00};
    ssmb_ws_reader r;
    ssmb_ws_piece p;
    size_t used = 99;
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, buf, 4, &used, &p), SSMB_ERR_WS_PROTOCOL);
    CHECK_EQ_INT(r.close_code, SSMB_WS_CLOSE_PROTOCOL_ERROR);
    CHECK_EQ_INT(ssmb_ws_read(&r, buf + 2, 2, &used, &p), SSMB_ERR_WS_PROTOCOL);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, NULL, 0, &used, &p), SSMB_ERR_WS_PROTOCOL);
    ssmb_ws_reader_init(&r, 0, 0);
    CHECK_EQ_INT(ssmb_ws_read(&r, NULL, 0, &used, &p), SSMB_AGAIN);
}

/* ---- close payloads ---------------------------------------------------------- */

SSMB_TEST(ws_close_codes) {
    /* RFC 6455 §7.4.1-§7.4.2 and the IANA registry: what may be on the wire */
    static const uint32_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint32_t bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    size_t i;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) CHECK(ssmb_ws_close_code_valid(good[i]) == 1);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(ssmb_ws_close_code_valid(bad[i]) == 0);
}

SSMB_TEST(ws_close_payload_build_parse) {
    uint8_t out[SSMB_WS_MAX_CONTROL_PAYLOAD];
    char reason[200];
    size_t n = 99;
    uint32_t code;
    ssmb_str why;
    memset(reason, 'r', sizeof reason);
    CHECK(ssmb_ws_close_payload_build(1000, "bye", 3, out, &n) == SSMB_OK && n == 5);
    CHECK(out[0] == 0x03 && out[1] == 0xe8 && memcmp(out + 2, "bye", 3) == 0);
    CHECK(ssmb_ws_close_payload_parse(out, n, &code, &why) == SSMB_OK && code == 1000 && ssmb_str_eq(why, "bye"));
    CHECK(ssmb_ws_close_payload_build(0, NULL, 0, out, &n) == SSMB_OK && n == 0);
    CHECK(ssmb_ws_close_payload_parse(out, 0, &code, &why) == SSMB_OK && code == 1005 && why.len == 0);
    CHECK(ssmb_ws_close_payload_build(4999, reason, 123, out, &n) == SSMB_OK && n == 125);
    CHECK_EQ_INT(ssmb_ws_close_payload_build(4999, reason, 124, out, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_close_payload_build(1005, NULL, 0, out, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_close_payload_build(0, "x", 1, out, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_close_payload_build(1000, "\xc3\x28", 2, out, &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_ws_close_payload_parse(out, 1, &code, &why), SSMB_ERR_WS_PROTOCOL);
    out[0] = 0x03, out[1] = 0xed; /* 1005 */
    CHECK_EQ_INT(ssmb_ws_close_payload_parse(out, 2, &code, &why), SSMB_ERR_WS_PROTOCOL);
    out[0] = 0x03, out[1] = 0xe8, out[2] = 0xff;
    CHECK_EQ_INT(ssmb_ws_close_payload_parse(out, 3, &code, &why), SSMB_ERR_MALFORMED);
}

/* ---- inputs that end at an unreadable page ---------------------------------- */

/* The frame is copied so that its last byte is the last readable byte before
   a PROT_NONE page: any read past the end faults, with or without ASan. */
static uint8_t *wst_guard_place(uint8_t *pages, size_t page, const uint8_t *p, size_t n) {
    uint8_t *at = pages + page - n;
    memcpy(at, p, n);
    return at;
}

SSMB_TEST(ws_guard_page_inputs) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n, k;
    uint8_t *pages = (uint8_t *)mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static uint8_t frame[300];
    const uint8_t key[4] = {9, 8, 7, 6};
    if (!CHECK(pages != MAP_FAILED)) return;
    CHECK(mprotect(pages + page, page, PROT_NONE) == 0);
    CHECK_EQ_INT(ssmb_ws_frame_write(SSMB_WS_TEXT, 1, "guarded text payload", 20, key, frame, sizeof frame, &n),
                 SSMB_OK);
    for (k = 0; k <= n; k++) { /* every prefix, ending at the guard */
        ssmb_ws_reader r;
        ssmb_ws_frame_header h;
        uint8_t *at = wst_guard_place(pages, page, frame, k);
        (void)ssmb_ws_frame_header_parse(at, k, &h);
        ssmb_ws_reader_init(&r, SSMB_WS_READ_FROM_CLIENT, 0);
        CHECK_EQ_INT(wst_read_all(&r, at, k, NULL, NULL, NULL), SSMB_AGAIN);
    }
    munmap(pages, 2 * page);
}
