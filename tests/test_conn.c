/* conn room: the sans-I/O WebSocket connection against a scripted server
   in this file (plain bytes, SSMB_TLS_EXTERNAL): the upgrade, messages both
   ways, control frames, closes, timers, bad answers, SigV4 of the upgrade
   (checked by an independent Python implementation), byte-at-a-time I/O,
   and the allocator promises. TLS end to end is tested with the engine. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>
#include <unistd.h>

/* ---- deterministic hooks ---- */

static ssmb_result fixed_random(void *buf, size_t len, void *user_data) {
    uint32_t *state = (uint32_t *)user_data;
    uint8_t *p = (uint8_t *)buf;
    size_t i;
    for (i = 0; i < len; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        p[i] = (uint8_t)*state;
    }
    return SSMB_OK;
}

static ssmb_result no_random(void *buf, size_t len, void *user_data) {
    (void)buf;
    (void)len;
    (void)user_data;
    return SSMB_ERR_NO_RANDOM;
}

/* 2024-05-01T12:00:00Z */
static int64_t fixed_utc(void *user_data) {
    (void)user_data;
    return 1714564800;
}

/* Counts every allocation and byte; fails the Nth allocation when asked. */
typedef struct counting {
    long allocs, frees, fail_at;
    size_t live;
} counting;

static void *count_alloc(size_t n, void *user_data) {
    counting *k = (counting *)user_data;
    k->allocs++;
    if (k->fail_at && k->allocs == k->fail_at) return NULL;
    k->live += n;
    return malloc(n);
}

static void count_free(void *p, size_t n, void *user_data) {
    counting *k = (counting *)user_data;
    k->frees++;
    k->live -= n;
    free(p);
}

/* ---- the scripted server ---- */

typedef struct server {
    ssmb_conn *c;
    uint64_t now;
    size_t chunk;                   /* bytes per transfer each way; 0 = as many as offered */
    char request[8192];             /* the client's HTTP request */
    size_t request_len;
    int request_done;
    ssmb_ws_reader reader;          /* the client's frames */
    uint8_t frames[1 << 16];        /* client bytes after the request, not yet read */
    size_t frames_len;
    uint8_t got[1 << 20];           /* payload of client messages, concatenated */
    size_t got_len;
    long got_messages, got_pings, got_pongs, got_closes;
    uint32_t got_close_code;
    uint8_t last_control[126];
    size_t last_control_len;
    uint8_t recv[1 << 20];          /* what the conn handed out, concatenated */
    size_t recv_len;
    long recv_messages;
} server;

static uint32_t rng_state = 12345;

static void base_desc(ssmb_conn_desc *d, const char *url) {
    memset(d, 0, sizeof *d);
    d->url = url;
    d->tls_mode = SSMB_TLS_EXTERNAL;
    d->random_fn = fixed_random;
    d->random_user_data = &rng_state;
    d->utc_fn = fixed_utc;
}

/* Reads the client's frames out of s->frames. */
static void server_read_frames(server *s) {
    size_t at = 0;
    while (at < s->frames_len) {
        ssmb_ws_piece p;
        size_t used = 0;
        ssmb_result r = ssmb_ws_read(&s->reader, s->frames + at, s->frames_len - at, &used, &p);
        at += used;
        if (r != SSMB_OK) break;
        if (p.opcode == SSMB_WS_PING) {
            s->got_pings++;
            memcpy(s->last_control, p.data, p.len);
            s->last_control_len = p.len;
        } else if (p.opcode == SSMB_WS_PONG) {
            s->got_pongs++;
            memcpy(s->last_control, p.data, p.len);
            s->last_control_len = p.len;
        } else if (p.opcode == SSMB_WS_CLOSE) {
            s->got_closes++;
            s->got_close_code = p.close_code;
        } else {
            memcpy(s->got + s->got_len, p.data, p.len);
            s->got_len += p.len;
            if (p.flags & SSMB_WS_MESSAGE_END) s->got_messages++;
        }
    }
    memmove(s->frames, s->frames + at, s->frames_len - at);
    s->frames_len -= at;
}

/* Takes what the client sends (s->chunk bytes at a time). */
static void server_drain(server *s) {
    const uint8_t *p;
    size_t n;
    while ((p = ssmb_conn_send_buf(s->c, &n)) != NULL && n > 0) {
        if (s->chunk && n > s->chunk) n = s->chunk;
        if (!s->request_done) {
            size_t k;
            for (k = 0; k < n && !s->request_done; k++) {
                s->request[s->request_len++] = (char)p[k];
                s->request[s->request_len] = '\0';
                if (s->request_len >= 4 && memcmp(s->request + s->request_len - 4, "\r\n\r\n", 4) == 0)
                    s->request_done = 1;
            }
            if (k < n) {
                memcpy(s->frames + s->frames_len, p + k, n - k);
                s->frames_len += n - k;
            }
        } else {
            memcpy(s->frames + s->frames_len, p, n);
            s->frames_len += n;
        }
        ssmb_conn_send_ack(s->c, n);
    }
    server_read_frames(s);
}

/* Takes every piece the conn has. */
static void server_collect(server *s) {
    ssmb_ws_piece p;
    while (ssmb_conn_recv_message(s->c, &p) == SSMB_OK) {
        memcpy(s->recv + s->recv_len, p.data, p.len);
        s->recv_len += p.len;
        if (p.flags & SSMB_WS_MESSAGE_END) s->recv_messages++;
    }
}

/* Gives the client bytes (s->chunk at a time), collecting messages so the
   input never stays full. */
static int server_send(server *s, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data;
    size_t done = 0;
    int stuck = 0;
    while (done < len && stuck < 3) {
        size_t cap = 0, n;
        uint8_t *dst = ssmb_conn_recv_buf(s->c, &cap);
        if (!dst || cap == 0) {
            server_collect(s);
            server_drain(s);
            stuck++;
            continue;
        }
        stuck = 0;
        n = len - done < cap ? len - done : cap;
        if (s->chunk && n > s->chunk) n = s->chunk;
        memcpy(dst, p + done, n);
        if (ssmb_conn_recv_ack(s->c, n, s->now) < 0) return 0;
        done += n;
        server_collect(s);
        server_drain(s);
    }
    return done == len;
}

/* A server frame (unmasked). */
static int server_frame(server *s, uint32_t opcode, int fin, const void *payload, size_t n) {
    static uint8_t frame[(1 << 16) + 16];
    size_t len = 0;
    if (ssmb_ws_frame_write(opcode, fin, payload, n, NULL, frame, sizeof frame, &len) != SSMB_OK) return 0;
    return server_send(s, frame, len);
}

/* Value of a request header (case-insensitive name), or "". */
static const char *request_header(const server *s, const char *name, char *out, size_t cap) {
    const char *line = strstr(s->request, "\r\n");
    size_t nlen = strlen(name);
    out[0] = '\0';
    while (line && line[2] != '\r') {
        const char *start = line + 2, *end = strstr(start, "\r\n");
        size_t k;
        for (k = 0; k < nlen && start[k] && (start[k] | 32) == (name[k] | 32); k++) {}
        if (k == nlen && start[k] == ':') {
            const char *v = start + k + 1;
            size_t vlen;
            while (*v == ' ') v++;
            vlen = (size_t)(end - v);
            if (vlen >= cap) vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return out;
        }
        line = end;
    }
    return out;
}

/* Answers the upgrade; extra bytes (frames) may ride in the same write. */
static int server_accept(server *s, const void *extra, size_t extra_len) {
    char key[64], accept[29], resp[1 << 16];
    int n;
    server_drain(s);
    if (!s->request_done) return 0;
    request_header(s, "Sec-WebSocket-Key", key, sizeof key);
    if (ssmb_ws_accept_key(key, strlen(key), accept) != SSMB_OK) return 0;
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    if (extra_len) memcpy(resp + n, extra, extra_len);
    return server_send(s, resp, (size_t)n + extra_len);
}

static server *server_open(const ssmb_conn_desc *d, size_t chunk) {
    server *s = (server *)calloc(1, sizeof *s);
    if (!s) return NULL;
    s->chunk = chunk;
    s->now = 1000;
    ssmb_ws_reader_init(&s->reader, SSMB_WS_READ_FROM_CLIENT, 0);
    if (ssmb_conn_create(d, &s->c) != SSMB_OK || ssmb_conn_start(s->c, s->now) != SSMB_OK) {
        ssmb_conn_destroy(s->c);
        free(s);
        return NULL;
    }
    return s;
}

static void server_close(server *s) {
    if (!s) return;
    ssmb_conn_destroy(s->c);
    free(s);
}

/* Sends a whole message from the client, pumping output as it goes. */
static int client_send(server *s, uint32_t opcode, const uint8_t *data, size_t len) {
    size_t done = 0;
    int spins = 0;
    do {
        size_t took = 0;
        ssmb_result r = ssmb_conn_send_message(s->c, opcode, data + done, len - done, 1, &took);
        if (r < 0) return 0;
        done += took;
        server_drain(s);
        if (++spins > 100000) return 0;
    } while (done < len || (len == 0 && spins == 0));
    return 1;
}

/* ---- tests ---- */

SSMB_TEST(url_parse) {
    ssmb_url u;
    const char *stream = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe";
    CHECK(ssmb_url_parse(stream, strlen(stream), &u) == SSMB_OK);
    CHECK(ssmb_str_eq(u.host, "ssmmessages.us-east-1.amazonaws.com") && u.port == 443 && u.secure);
    CHECK(ssmb_str_eq(u.path, "/v1/data-channel/s-1") && ssmb_str_eq(u.query, "role=publish_subscribe"));
    CHECK(ssmb_str_eq(u.target, "/v1/data-channel/s-1?role=publish_subscribe"));
    CHECK(ssmb_url_parse("ws://[::1]:8080", 15, &u) == SSMB_OK && ssmb_str_eq(u.host, "::1") && u.port == 8080 &&
          u.ipv6_literal && !u.secure && ssmb_str_eq(u.target, "/"));
    CHECK(ssmb_url_parse("HTTPS://127.0.0.1:1/", 20, &u) == SSMB_OK && u.secure && u.port == 1);
    CHECK(ssmb_url_parse("ftp://x/", 8, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://user@x/", 12, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://x:0/", 9, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://x:65536/", 13, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://x/a#frag", 13, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://x/a b", 10, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://x?q=1", 10, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://", 5, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://[::1", 9, &u) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_url_parse("ws://[zz]/", 10, &u) == SSMB_ERR_MALFORMED);
}

SSMB_TEST(conn_bad_desc) {
    ssmb_conn_desc d;
    ssmb_conn *c = (ssmb_conn *)1;
    base_desc(&d, "http://localhost/");
    CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_INVALID_ARG && c == NULL);
    base_desc(&d, "ws://local host/");
    CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_INVALID_ARG);
    base_desc(&d, "wss://localhost/");
    d.tls_mode = SSMB_TLS_AUTO; /* TLS without trust anchors */
    CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_INVALID_ARG || ssmb_conn_create(&d, &c) == SSMB_ERR_UNSUPPORTED);
    base_desc(&d, "ws://localhost/");
    d.credentials.access_key_id = ssmb_str_c("AKID"); /* no secret, no region */
    CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_INVALID_ARG);
    base_desc(&d, "ws://localhost/");
    d.allocator.alloc_fn = count_alloc; /* free_fn missing */
    CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_conn_create(NULL, &c) == SSMB_ERR_INVALID_ARG);
}

/* The exchange run whole, one byte at a time, and in odd chunks: the same
   bytes arrive on each side every time. */
static void exchange(size_t chunk, long *ok) {
    ssmb_conn_desc d;
    server *s;
    uint8_t big[70000];
    size_t i;
    int good = 1;
    for (i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7 + (i >> 9));
    base_desc(&d, "ws://localhost:8080/v1/data-channel/s-1?role=publish_subscribe");
    s = server_open(&d, chunk);
    if (!CHECK(s != NULL)) return;
    good &= CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_HANDSHAKE);
    {
        uint8_t first[64];
        size_t n = 0;
        /* A frame in the same write as the 101 must not be lost. */
        good &= CHECK(ssmb_ws_frame_write(SSMB_WS_TEXT, 1, "early", 5, NULL, first, sizeof first, &n) == SSMB_OK);
        good &= CHECK(server_accept(s, first, n));
    }
    good &= CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_OPEN);
    good &= CHECK(strncmp(s->request, "GET /v1/data-channel/s-1?role=publish_subscribe HTTP/1.1\r\n", 58) == 0);
    good &= CHECK(strstr(s->request, "\r\nHost: localhost:8080\r\n") != NULL);
    good &= CHECK(strstr(s->request, "Authorization") == NULL); /* no credentials, no signature */
    server_collect(s);
    good &= CHECK(s->recv_messages == 1 && s->recv_len == 5 && memcmp(s->recv, "early", 5) == 0);
    /* Server to client: fragmented binary with a ping between fragments. */
    good &= CHECK(server_frame(s, SSMB_WS_BINARY, 0, big, 30000));
    good &= CHECK(server_frame(s, SSMB_WS_PING, 1, "are-you-there", 13));
    good &= CHECK(server_frame(s, SSMB_WS_CONTINUATION, 1, big + 30000, sizeof big - 30000));
    server_collect(s);
    server_drain(s);
    good &= CHECK(s->recv_messages == 2 && s->recv_len == 5 + sizeof big && memcmp(s->recv + 5, big, sizeof big) == 0);
    good &= CHECK(s->got_pongs == 1 && s->last_control_len == 13 && memcmp(s->last_control, "are-you-there", 13) == 0);
    /* Client to server: empty, small, large. */
    good &= CHECK(client_send(s, SSMB_WS_TEXT, (const uint8_t *)"", 0));
    good &= CHECK(client_send(s, SSMB_WS_TEXT, (const uint8_t *)"hello", 5));
    good &= CHECK(client_send(s, SSMB_WS_BINARY, big, sizeof big));
    server_drain(s);
    good &= CHECK(s->got_messages == 3 && s->got_len == 5 + sizeof big && memcmp(s->got + 5, big, sizeof big) == 0);
    /* The server closes; the conn answers with the same code. */
    {
        uint8_t close_payload[SSMB_WS_MAX_CONTROL_PAYLOAD];
        size_t n = 0;
        good &= CHECK(ssmb_ws_close_payload_build(1000, "Bye", 3, close_payload, &n) == SSMB_OK);
        good &= CHECK(server_frame(s, SSMB_WS_CLOSE, 1, close_payload, n));
    }
    server_collect(s);
    server_drain(s);
    good &= CHECK(s->got_closes == 1 && s->got_close_code == 1000);
    good &= CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_CLOSED);
    {
        int32_t detail = 0;
        ssmb_str reason;
        good &= CHECK(ssmb_conn_last_error(s->c, &detail) == SSMB_CLOSED && detail == 1000);
        good &= CHECK(ssmb_conn_peer_close(s->c, &reason) == 1000 && ssmb_str_eq(reason, "Bye"));
        good &= CHECK(ssmb_conn_wants(s->c) == SSMB_WANT_CLOSED);
    }
    server_close(s);
    *ok += good;
}

SSMB_TEST(conn_exchange_chunked) {
    static const size_t chunks[] = {0, 1, 2, 3, 7, 100, 1500, 4096};
    long ok = 0;
    size_t i;
    for (i = 0; i < sizeof chunks / sizeof chunks[0]; i++) exchange(chunks[i], &ok);
    ssmbt_report("conn exchange, whole and chunked", ok, (long)(sizeof chunks / sizeof chunks[0]), "runs");
}

SSMB_TEST(conn_client_close_and_timers) {
    ssmb_conn_desc d;
    server *s;
    base_desc(&d, "ws://localhost/");
    d.ping_interval_ms = 1000;
    d.idle_timeout_ms = 5000;
    d.close_timeout_ms = 200;
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    CHECK(ssmb_conn_next_deadline(s->c) == s->now + 1000);
    /* After ping_interval_ms without sending: a "keepalive" ping. */
    s->now += 1000;
    CHECK(ssmb_conn_tick(s->c, s->now) == SSMB_OK);
    server_drain(s);
    CHECK(s->got_pings == 1 && s->last_control_len == 9 && memcmp(s->last_control, "keepalive", 9) == 0);
    /* The client closes; no answer within close_timeout_ms: closed anyway. */
    CHECK(ssmb_conn_close(s->c, 1000, "done", s->now) == SSMB_OK);
    server_drain(s);
    CHECK(s->got_closes == 1 && s->got_close_code == 1000);
    CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_CLOSING);
    CHECK(ssmb_conn_send_message(s->c, SSMB_WS_TEXT, "x", 1, 1, NULL) == SSMB_CLOSED);
    s->now += 200;
    ssmb_conn_tick(s->c, s->now);
    CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_CLOSED);
    CHECK(ssmb_conn_last_error(s->c, NULL) == SSMB_ERR_TIMEOUT);
    server_close(s);

    /* Client close answered by the server: clean. */
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    CHECK(ssmb_conn_close(s->c, 1001, NULL, s->now) == SSMB_OK);
    server_drain(s);
    {
        uint8_t p[2] = {0x03, 0xe9};
        CHECK(server_frame(s, SSMB_WS_CLOSE, 1, p, 2));
    }
    server_collect(s);
    CHECK(ssmb_conn_get_state(s->c) == SSMB_CONN_CLOSED && ssmb_conn_last_error(s->c, NULL) == SSMB_CLOSED);
    server_close(s);
}

SSMB_TEST(conn_dead_peer_and_handshake_timeout) {
    ssmb_conn_desc d;
    server *s;
    int32_t detail = 0;
    base_desc(&d, "ws://localhost/");
    d.idle_timeout_ms = 3000;
    d.ping_interval_ms = 1000;
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    /* Pings go out, nothing comes back: dead after idle_timeout_ms. */
    for (; s->now < 1000 + 2999; s->now += 100) CHECK(ssmb_conn_tick(s->c, s->now) == SSMB_OK);
    server_drain(s);
    CHECK(s->got_pings >= 2);
    s->now = 1000 + 3000;
    CHECK(ssmb_conn_tick(s->c, s->now) == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_conn_last_error(s->c, &detail) == SSMB_ERR_TIMEOUT && detail == 1006);
    server_close(s);

    d.handshake_timeout_ms = 500;
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(ssmb_conn_next_deadline(s->c) == 1500);
    CHECK(ssmb_conn_tick(s->c, 1499) == SSMB_OK);
    CHECK(ssmb_conn_tick(s->c, 1500) == SSMB_ERR_TIMEOUT);
    CHECK(ssmb_conn_wants(s->c) & (SSMB_WANT_CLOSED | SSMB_WANT_WRITE));
    server_close(s);
}

/* Answers that must end the connection with a specific error. */
static ssmb_result refused_with(const char *response, int32_t *detail) {
    ssmb_conn_desc d;
    server *s;
    ssmb_result r;
    base_desc(&d, "ws://localhost/");
    s = server_open(&d, 0);
    if (!s) return SSMB_ERR_INTERNAL;
    server_drain(s);
    server_send(s, response, strlen(response));
    r = ssmb_conn_last_error(s->c, detail);
    server_close(s);
    return r;
}

SSMB_TEST(conn_bad_upgrade_answers) {
    int32_t detail = 0;
    CHECK(refused_with("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &detail) == SSMB_ERR_AUTH &&
          detail == 403);
    CHECK(refused_with("HTTP/1.1 500 Oops\r\n\r\n", &detail) == SSMB_ERR_HTTP && detail == 500);
    CHECK(refused_with("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                       &detail) == SSMB_ERR_HTTP);
    CHECK(refused_with("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", &detail) == SSMB_ERR_HTTP);
    CHECK(refused_with("HTTP/1.1 1O1 Bad\r\n\r\n", &detail) == SSMB_ERR_HTTP);
    CHECK(refused_with("garbage\r\n\r\n", &detail) == SSMB_ERR_HTTP);
    {
        static char huge[20000];
        memset(huge, 'a', sizeof huge - 1);
        memcpy(huge, "HTTP/1.1 101 OK\r\nX: ", 20);
        CHECK(refused_with(huge, &detail) == SSMB_ERR_LIMIT);
    }
    {
        /* The answer stops half way and the transport ends. */
        ssmb_conn_desc d;
        server *s;
        base_desc(&d, "ws://localhost/");
        s = server_open(&d, 0);
        if (CHECK(s != NULL)) {
            server_drain(s);
            server_send(s, "HTTP/1.1 101 Swi", 16);
            ssmb_conn_recv_eof(s->c, s->now);
            CHECK(ssmb_conn_last_error(s->c, &detail) == SSMB_ERR_IO && detail == 1006);
            server_close(s);
        }
    }
}

SSMB_TEST(conn_protocol_errors_close_with_code) {
    ssmb_conn_desc d;
    server *s;
    ssmb_ws_piece p;
    uint8_t masked[16];
    size_t n = 0;
    static const uint8_t key[4] = {1, 2, 3, 4};
    base_desc(&d, "ws://localhost/");
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    /* A server must not mask (RFC 6455 §5.1): 1002. */
    CHECK(ssmb_ws_frame_write(SSMB_WS_TEXT, 1, "hi", 2, key, masked, sizeof masked, &n) == SSMB_OK);
    CHECK(server_send(s, masked, n));
    CHECK(ssmb_conn_recv_message(s->c, &p) == SSMB_ERR_WS_PROTOCOL || ssmb_conn_last_error(s->c, NULL) == SSMB_ERR_WS_PROTOCOL);
    server_drain(s);
    CHECK(s->got_closes == 1 && s->got_close_code == 1002);
    server_close(s);

    /* Invalid UTF-8 in a text message: 1007. */
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    CHECK(server_frame(s, SSMB_WS_TEXT, 1, "\xc3\x28", 2));
    server_collect(s);
    server_drain(s);
    CHECK(s->got_closes == 1 && s->got_close_code == 1007);
    CHECK(ssmb_conn_last_error(s->c, NULL) == SSMB_ERR_WS_PROTOCOL);
    server_close(s);

    /* Over max_message_size: 1009. */
    d.max_message_size = 100;
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(server_accept(s, NULL, 0));
    {
        uint8_t big[200];
        memset(big, 'x', sizeof big);
        CHECK(server_frame(s, SSMB_WS_BINARY, 1, big, sizeof big));
    }
    server_collect(s);
    server_drain(s);
    CHECK(s->got_closes == 1 && s->got_close_code == 1009);
    CHECK(ssmb_conn_last_error(s->c, NULL) == SSMB_ERR_LIMIT);
    server_close(s);
}

/* Runs tests/sigv4_check.py (an independent SigV4 implementation in
   Python) on the captured request: 0 when the signature verifies. */
static int python_sigv4_check(const server *s, const char *args, int quiet) {
    char path[64], cmd[512];
    FILE *f;
    int rc;
    snprintf(path, sizeof path, "build/upgrade-request-%d.txt", (int)getpid());
    f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(s->request, 1, s->request_len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 tests/sigv4_check.py %s < %s%s", args, path, quiet ? " >/dev/null 2>&1" : "");
    rc = system(cmd);
    remove(path);
    return rc;
}

SSMB_TEST(conn_signed_upgrade) {
    ssmb_conn_desc d;
    server *s;
    char v[1024];
    base_desc(&d, "ws://localhost:7443/v1/data-channel/sess-1?role=publish_subscribe");
    d.credentials.access_key_id = ssmb_str_c("AKIDEXAMPLE");
    d.credentials.secret_access_key = ssmb_str_c("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    d.credentials.session_token = ssmb_str_c("IQoJb3JpZ2luX2VjEXAMPLETOKEN/+=");
    d.region = "eu-west-1";
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    server_drain(s);
    CHECK(s->request_done);
    CHECK(strcmp(request_header(s, "X-Amz-Date", v, sizeof v), "20240501T120000Z") == 0);
    CHECK(strcmp(request_header(s, "X-Amz-Security-Token", v, sizeof v), "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+=") == 0);
    CHECK(strncmp(request_header(s, "Authorization", v, sizeof v),
                  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ssmmessages/aws4_request, "
                  "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=",
                  143) == 0);
    CHECK(python_sigv4_check(s, "AKIDEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY eu-west-1 ssmmessages", 0) == 0);
    /* The check fails with another secret: it can tell. */
    CHECK(python_sigv4_check(s, "AKIDEXAMPLE wrongsecret eu-west-1 ssmmessages", 1) != 0);
    server_close(s);

    /* A presigned StreamUrl goes out unsigned (PROTOCOL.md §4.1). */
    base_desc(&d, "ws://localhost/v1/data-channel/s?role=publish_subscribe&X-Amz-Signature=abc");
    d.credentials.access_key_id = ssmb_str_c("AKIDEXAMPLE");
    d.credentials.secret_access_key = ssmb_str_c("secret");
    d.region = "us-east-1";
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    server_drain(s);
    CHECK(s->request_done && strstr(s->request, "Authorization") == NULL && strstr(s->request, "X-Amz-Date") == NULL);
    server_close(s);
}

SSMB_TEST(conn_allocations) {
    ssmb_conn_desc d;
    counting k;
    server *s;
    uint8_t msg[1200];
    long before, i;
    int ok = 1;
    memset(&k, 0, sizeof k);
    memset(msg, 'm', sizeof msg);
    base_desc(&d, "ws://localhost/");
    d.allocator.alloc_fn = count_alloc;
    d.allocator.free_fn = count_free;
    d.allocator.user_data = &k;
    s = server_open(&d, 0);
    if (!CHECK(s != NULL)) return;
    CHECK(k.allocs == 1); /* everything in one allocation */
    CHECK(server_accept(s, NULL, 0));
    before = k.allocs;
    for (i = 0; i < 10000 && ok; i++) {
        ok &= client_send(s, SSMB_WS_BINARY, msg, sizeof msg);
        ok &= server_frame(s, SSMB_WS_BINARY, 1, msg, sizeof msg);
        server_collect(s);
        s->recv_len = 0;
        s->got_len = 0;
    }
    CHECK(ok);
    CHECK(s->got_messages == 10000 && s->recv_messages == 10000);
    CHECK_EQ_INT(k.allocs - before, 0);
    server_close(s);
    CHECK(k.live == 0 && k.frees == k.allocs);

    /* The one allocation fails: SSMB_ERR_NOMEM, nothing held. */
    memset(&k, 0, sizeof k);
    k.fail_at = 1;
    {
        ssmb_conn *c = NULL;
        CHECK(ssmb_conn_create(&d, &c) == SSMB_ERR_NOMEM && c == NULL && k.live == 0);
    }
}

SSMB_TEST(conn_no_random) {
    ssmb_conn_desc d;
    ssmb_conn *c = NULL;
    base_desc(&d, "ws://localhost/");
    d.random_fn = no_random;
    CHECK(ssmb_conn_create(&d, &c) == SSMB_OK);
    CHECK(ssmb_conn_start(c, 0) == SSMB_ERR_NO_RANDOM);
    CHECK(ssmb_conn_get_state(c) == SSMB_CONN_CLOSED);
    ssmb_conn_destroy(c);
}
