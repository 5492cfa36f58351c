/* http room: the WebSocket opening handshake of RFC 6455 §1.3 (from
   tests/vectors/websocket) written and parsed byte-exact; the response
   parser whole, byte by byte and at every split; limits, malformed heads,
   header helpers, Content-Length, the chunked decoder in pieces. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for the guard-page test */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HT_MAX_HEADERS 32

static ssmb_str ht_s(const char *s) { return ssmb_str_c(s); }

static ssmb_http_header ht_h(const char *name, const char *value) {
    ssmb_http_header h;
    h.name = ssmb_str_c(name);
    h.value = ssmb_str_c(value);
    return h;
}

static int ht_view_is(ssmb_str v, const char *s) { return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0; }

static ssmb_result ht_parse(const char *text, ssmb_http_header *h, ssmb_http_response *r) {
    return ssmb_http_response_parse(text, strlen(text), h, HT_MAX_HEADERS, 0, r);
}

/* ---- RFC 6455 §1.3 handshake, from the vector file ------------------------ */

typedef struct ht_handshake {
    char *text;
    ssmbt_json j;
    char *key, *accept, *request, *response;
} ht_handshake;

static int ht_load_handshake(ht_handshake *hs) {
    char path[512];
    size_t len = 0;
    int o;
    memset(hs, 0, sizeof *hs);
    hs->text = ssmbt_read_file(ssmbt_vector_path("websocket/rfc6455-frames.json", path, sizeof path), &len);
    if (!CHECK(hs->text != NULL) || !CHECK(ssmbt_json_load(&hs->j, hs->text, len) == 0)) return -1;
    o = ssmbt_json_get(&hs->j, 0, "handshake");
    hs->key = ssmbt_json_str(&hs->j, ssmbt_json_get(&hs->j, o, "sec_websocket_key"), NULL);
    hs->accept = ssmbt_json_str(&hs->j, ssmbt_json_get(&hs->j, o, "sec_websocket_accept"), NULL);
    hs->request = ssmbt_json_str(&hs->j, ssmbt_json_get(&hs->j, o, "client_request_example"), NULL);
    hs->response = ssmbt_json_str(&hs->j, ssmbt_json_get(&hs->j, o, "server_response_example"), NULL);
    return CHECK(hs->key && hs->accept && hs->request && hs->response) ? 0 : -1;
}

static void ht_free_handshake(ht_handshake *hs) {
    free(hs->key);
    free(hs->accept);
    free(hs->request);
    free(hs->response);
    ssmbt_json_free(&hs->j);
    free(hs->text);
}

/* The §1.3 request, written by the upgrade writer and by the plain writer. */
static int ht_check_request(const ht_handshake *hs) {
    ssmb_http_header extra[2], all[6];
    ssmb_http_request req;
    char out[512];
    size_t n = 0, want = strlen(hs->request);
    int ok;
    extra[0] = ht_h("Origin", "http://example.com");
    extra[1] = ht_h("Sec-WebSocket-Protocol", "chat, superchat");
    ok = CHECK(ssmb_http_upgrade_request_write(ht_s("/chat"), ht_s("server.example.com"), ht_s(hs->key), extra, 2,
                                               out, sizeof out, &n) == SSMB_OK) &&
         CHECK(n == want) && CHECK_EQ_STR(out, hs->request);
    all[0] = ht_h("Upgrade", "websocket");
    all[1] = ht_h("Connection", "Upgrade");
    all[2] = ht_h("Sec-WebSocket-Key", hs->key);
    all[3] = extra[0];
    all[4] = extra[1];
    all[5] = ht_h("Sec-WebSocket-Version", "13");
    memset(&req, 0, sizeof req);
    req.method = ht_s("GET");
    req.target = ht_s("/chat");
    req.host = ht_s("server.example.com");
    req.headers = all;
    req.header_count = 6;
    ok &= CHECK(ssmb_http_request_write(&req, out, sizeof out, &n) == SSMB_OK) && CHECK(n == want) &&
          CHECK_EQ_STR(out, hs->request);
    return ok;
}

/* The §1.3 response: parsed field by field and accepted as the answer to
   the request's key. */
static int ht_check_response(const ht_handshake *hs) {
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    char accept[29];
    int ok = CHECK(ht_parse(hs->response, h, &r) == SSMB_OK);
    if (!ok) return 0;
    ok &= CHECK(r.status == 101 && r.minor_version == 1 && ht_view_is(r.reason, "Switching Protocols"));
    ok &= CHECK(r.head_len == strlen(hs->response) && r.header_count == 4 && r.headers == h);
    ok &= CHECK(ht_view_is(h[0].name, "Upgrade") && ht_view_is(h[0].value, "websocket"));
    ok &= CHECK(ht_view_is(h[3].name, "Sec-WebSocket-Protocol") && ht_view_is(h[3].value, "chat"));
    ok &= CHECK(ssmb_ws_accept_key(hs->key, strlen(hs->key), accept) == SSMB_OK);
    ok &= CHECK(ssmb_http_check_ws_upgrade(&r, accept) == SSMB_OK);
    ok &= CHECK(ssmb_http_check_ws_upgrade(&r, hs->accept) == SSMB_OK);
    return ok;
}

SSMB_TEST(http_rfc6455_handshake_vectors) {
    ht_handshake hs;
    long ok = 0;
    if (ht_load_handshake(&hs) == 0) {
        ok += ht_check_request(&hs);
        ok += ht_check_response(&hs);
    }
    ht_free_handshake(&hs);
    ssmbt_report("http rfc6455 handshake vectors", ok, 2, "messages");
}

/* ---- the response parser in pieces ---------------------------------------- */

typedef struct ht_parsed {
    ssmb_result rc;
    uint32_t status, minor;
    char reason[64];
    size_t head_len, count;
    char headers[1024]; /* "name=value\n"... copied out of the views */
} ht_parsed;

/* Parses a private copy of in[0..len) (so no view may point at an earlier
   buffer) and copies the results out. */
static ht_parsed ht_parse_copy(const char *in, size_t len, size_t max_head) {
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    ht_parsed p;
    char *copy = (char *)malloc(len + 1);
    size_t i, o = 0;
    memcpy(copy, in, len);
    memset(&p, 0, sizeof p);
    p.rc = ssmb_http_response_parse(copy, len, h, HT_MAX_HEADERS, max_head, &r);
    if (p.rc == SSMB_OK) {
        p.status = r.status;
        p.minor = r.minor_version;
        snprintf(p.reason, sizeof p.reason, "%.*s", (int)r.reason.len, r.reason.ptr);
        p.head_len = r.head_len;
        p.count = r.header_count;
        for (i = 0; i < r.header_count; i++)
            o += (size_t)snprintf(p.headers + o, sizeof p.headers - o, "%.*s=%.*s\n", (int)h[i].name.len,
                                  h[i].name.ptr, (int)h[i].value.len, h[i].value.ptr);
    }
    free(copy);
    return p;
}

static int ht_same(const ht_parsed *a, const ht_parsed *b) {
    return a->rc == b->rc && a->status == b->status && a->minor == b->minor && strcmp(a->reason, b->reason) == 0 &&
           a->head_len == b->head_len && a->count == b->count && strcmp(a->headers, b->headers) == 0;
}

/* A caller that receives the response in pieces re-parses its grown buffer
   after each piece, so what the parser sees is always a prefix: one byte at
   a time means every prefix in turn, a two-piece split at k means prefix k
   then the whole. Every prefix short of the blank line must say SSMB_AGAIN,
   every longer one must give exactly the whole parse. */
static void ht_check_pieces(const char *resp, const char *label) {
    size_t len = strlen(resp), k;
    ht_parsed whole = ht_parse_copy(resp, len, 0), part;
    long bad = 0;
    CHECK_EQ_INT(whole.rc, SSMB_OK);
    for (k = 0; k < len; k++) {
        part = ht_parse_copy(resp, k, 0);
        if (k < whole.head_len ? part.rc != SSMB_AGAIN : !ht_same(&part, &whole)) bad++;
    }
    if (bad) printf("    %s: %ld prefixes differ\n", label, bad);
    CHECK_EQ_INT(bad, 0);
}

SSMB_TEST(http_response_whole_bytewise_split) {
    static const char *resp[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 5\r\n"
        "x-amzn-RequestId: 1234\r\n\r\nhello",
        "HTTP/1.0 404 \r\n\r\n",
        "HTTP/1.1 204\r\nA:\r\nB:  \t spaced value \t \r\nC:x\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05Hello",
    };
    ht_parsed p;
    size_t i;
    for (i = 0; i < sizeof resp / sizeof resp[0]; i++) ht_check_pieces(resp[i], resp[i]);
    p = ht_parse_copy(resp[0], strlen(resp[0]), 0);
    CHECK(p.status == 200 && p.minor == 1 && strcmp(p.reason, "OK") == 0 && p.count == 3);
    CHECK(p.head_len == strlen(resp[0]) - 5);
    CHECK_EQ_STR(p.headers, "Content-Type=application/x-amz-json-1.1\nContent-Length=5\nx-amzn-RequestId=1234\n");
    p = ht_parse_copy(resp[1], strlen(resp[1]), 0);
    CHECK(p.status == 404 && p.minor == 0 && p.reason[0] == 0 && p.count == 0);
    p = ht_parse_copy(resp[2], strlen(resp[2]), 0);
    CHECK(p.status == 204 && p.reason[0] == 0);
    CHECK_EQ_STR(p.headers, "A=\nB=spaced value\nC=x\n"); /* OWS trimmed, inner spaces kept */
}

SSMB_TEST(http_response_truncated_is_again) {
    static const char *partial[] = {"", "H", "HTTP/1.", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r",
                                    "HTTP/1.1 200 OK\r\nA: b", "HTTP/1.1 200 OK\r\nA: b\r\n",
                                    "HTTP/1.1 200 OK\r\nA: b\r\n\r"};
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    size_t i;
    for (i = 0; i < sizeof partial / sizeof partial[0]; i++) CHECK_EQ_INT(ht_parse(partial[i], h, &r), SSMB_AGAIN);
    CHECK_EQ_INT(ssmb_http_response_parse(NULL, 0, NULL, 0, 0, &r), SSMB_AGAIN);
}

SSMB_TEST(http_response_malformed) {
    static const char *bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n",          "HTTP/1.1 2000 OK\r\n\r\n",     "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",       "HTTP/2 200 OK\r\n\r\n",         "HTTP/1.2 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",         "HTTP/1.1  200 OK\r\n\r\n",      "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",          "HTTP/1.1 200 O\x01K\r\n\r\n",   "HTTP/1.1 200 OK\n\r\n",
        "ICY 200 OK\r\n\r\n",              "HTTP/1.1 200 OK\r\nA: b\n\r\n", "HTTP/1.1 200 OK\r\nA: b\r\n\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", /* obsolete line folding */
        "HTTP/1.1 200 OK\r\n\tA: b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",      /* space before the colon */
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA(b): c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",     /* bare CR in a value */
        "HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n",
    };
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ht_parse(bad[i], h, &r) != SSMB_ERR_HTTP) {
            ssmbt_fail(__FILE__, __LINE__, "malformed response accepted");
            printf("    case %zu: %s\n", i, bad[i]);
        }
    }
    /* NUL inside a value */
    CHECK_EQ_INT(ssmb_http_response_parse("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", 27, h, HT_MAX_HEADERS, 0, &r),
                 SSMB_ERR_HTTP);
    /* not HTTP at all: refused on the first bytes, without waiting for a line */
    CHECK_EQ_INT(ssmb_http_response_parse("\x16\x03\x01", 3, h, HT_MAX_HEADERS, 0, &r), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ssmb_http_response_parse("HTTX", 4, h, HT_MAX_HEADERS, 0, &r), SSMB_ERR_HTTP);
}

SSMB_TEST(http_response_limits) {
    static char big[40000];
    ssmb_http_header h[4];
    ssmb_http_response r;
    size_t n;
    const char *four = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    const char *five = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n";
    CHECK_EQ_INT(ssmb_http_response_parse(four, strlen(four), h, 4, 0, &r), SSMB_OK);
    CHECK_EQ_INT(r.header_count, 4);
    /* too many headers: known as soon as the fifth line is in */
    CHECK_EQ_INT(ssmb_http_response_parse(five, strlen(five), h, 4, 0, &r), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(ssmb_http_response_parse(four, strlen(four), NULL, 0, 0, &r), SSMB_ERR_LIMIT);
    /* the head limit: exactly at it is fine, one byte over is not */
    n = strlen(four);
    CHECK_EQ_INT(ssmb_http_response_parse(four, n, h, 4, n, &r), SSMB_OK);
    CHECK_EQ_INT(ssmb_http_response_parse(four, n, h, 4, n - 1, &r), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(ssmb_http_response_parse(four, n - 1, h, 4, n - 1, &r), SSMB_AGAIN);
    /* a huge header value against the default limit */
    n = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + n, 'v', 30000);
    memcpy(big + n + 30000, "\r\n\r\n", 4);
    n += 30004;
    CHECK_EQ_INT(ssmb_http_response_parse(big, n, h, 4, 0, &r), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(ssmb_http_response_parse(big, SSMB_HTTP_DEFAULT_MAX_HEAD, h, 4, 0, &r), SSMB_AGAIN);
    CHECK_EQ_INT(ssmb_http_response_parse(big, SSMB_HTTP_DEFAULT_MAX_HEAD + 1, h, 4, 0, &r), SSMB_ERR_LIMIT);
    CHECK_EQ_INT(ssmb_http_response_parse(big, n, h, 4, n, &r), SSMB_OK);
    CHECK_EQ_INT(r.headers[0].value.len, 30000);
}

/* ---- header helpers --------------------------------------------------------- */

SSMB_TEST(http_header_helpers) {
    const char *text = "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nX-A: 1\r\nCONNECTION: ,  Upgrade ,\r\n"
                       "x-a: 2\r\n\r\n";
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    const ssmb_http_header *f;
    if (!CHECK(ht_parse(text, h, &r) == SSMB_OK)) return;
    f = ssmb_http_header_find(&r, "X-A", NULL);
    CHECK(f == &h[1] && ht_view_is(f->value, "1"));
    f = ssmb_http_header_find(&r, "x-A", f);
    CHECK(f == &h[3] && ht_view_is(f->value, "2"));
    CHECK(ssmb_http_header_find(&r, "x-a", f) == NULL);
    CHECK(ssmb_http_header_find(&r, "X-", NULL) == NULL);
    CHECK(ssmb_http_header_has_token(&r, "Connection", "upgrade"));
    CHECK(ssmb_http_header_has_token(&r, "Connection", "Keep-Alive"));
    CHECK(!ssmb_http_header_has_token(&r, "Connection", "close"));
    CHECK(!ssmb_http_header_has_token(&r, "Connection", "Upgrad"));
    CHECK(ssmb_http_token_list_contains(ht_s("a, b ,c"), "B"));
    CHECK(ssmb_http_token_list_contains(ht_s("a,\tc"), "c"));
    CHECK(!ssmb_http_token_list_contains(ht_s("ab, cd"), "b"));
    CHECK(!ssmb_http_token_list_contains(ht_s(""), "a"));
}

static ssmb_result ht_content_length(const char *head, int *present, uint64_t *len) {
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    ssmb_result rc = ht_parse(head, h, &r);
    if (!CHECK(rc == SSMB_OK)) return rc;
    return ssmb_http_content_length(&r, present, len);
}

SSMB_TEST(http_content_length) {
    int present = -1;
    uint64_t n = 7;
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\n\r\n", &present, &n) == SSMB_OK && present == 0);
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", &present, &n) == SSMB_OK &&
          present == 1 && n == 42);
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\ncontent-length:  0 \r\n\r\n", &present, &n) == SSMB_OK && n == 0);
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", &present, &n) ==
              SSMB_OK &&
          n == UINT64_MAX);
    /* the same value twice, on two lines or as a list: taken as one */
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", &present, &n) ==
              SSMB_OK &&
          n == 7);
    CHECK(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", &present, &n) == SSMB_OK && n == 7);
    /* conflicting */
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n", &present, &n),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7,8\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    /* not strict digits */
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: +7\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7a\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 7,\r\n\r\n", &present, &n), SSMB_ERR_HTTP);
    /* past 2^64 - 1 */
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", &present, &n),
                 SSMB_ERR_OVERFLOW);
    CHECK_EQ_INT(ht_content_length("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", &present, &n),
                 SSMB_ERR_OVERFLOW);
}

/* ---- the WebSocket upgrade response ------------------------------------------ */

static ssmb_result ht_upgrade(const char *head, uint32_t *status) {
    ssmb_http_header h[HT_MAX_HEADERS];
    ssmb_http_response r;
    ssmb_result rc = ht_parse(head, h, &r);
    if (!CHECK(rc == SSMB_OK)) return rc;
    *status = r.status;
    return ssmb_http_check_ws_upgrade(&r, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

SSMB_TEST(http_upgrade_response_check) {
    uint32_t status = 0;
#define HT_ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
                            "Connection: keep-alive, upgrade\r\n" HT_ACCEPT "\r\n",
                            &status),
                 SSMB_OK);
    /* refused: the status tells why */
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &status), SSMB_ERR_HTTP);
    CHECK_EQ_INT(status, 403);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" HT_ACCEPT "\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.0 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" HT_ACCEPT "\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    /* missing or wrong accept */
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", &status),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOO=\r\n\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" HT_ACCEPT HT_ACCEPT "\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    /* Upgrade and Connection */
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nConnection: Upgrade\r\n" HT_ACCEPT "\r\n", &status), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" HT_ACCEPT "\r\n", &status),
                 SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\n" HT_ACCEPT "\r\n", &status), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" HT_ACCEPT "\r\n",
                            &status),
                 SSMB_ERR_HTTP);
    /* an extension nobody offered */
    CHECK_EQ_INT(ht_upgrade("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" HT_ACCEPT
                            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                            &status),
                 SSMB_ERR_HTTP);
#undef HT_ACCEPT
}

/* ---- the request writer ------------------------------------------------------ */

SSMB_TEST(http_request_writer_post) {
    static const char want[] = "POST / HTTP/1.1\r\nHost: ssm.us-east-1.amazonaws.com\r\n"
                               "Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AmazonSSM.StartSession\r\n"
                               "Content-Length: 25\r\n\r\n{\"Target\":\"i-0123456789\"}";
    ssmb_http_header h[2];
    ssmb_http_request req;
    char out[512];
    size_t n = 0, need = 0;
    h[0] = ht_h("Content-Type", "application/x-amz-json-1.1");
    h[1] = ht_h("X-Amz-Target", "AmazonSSM.StartSession");
    memset(&req, 0, sizeof req);
    req.method = ht_s("POST");
    req.target = ht_s("/");
    req.host = ht_s("ssm.us-east-1.amazonaws.com");
    req.headers = h;
    req.header_count = 2;
    req.has_body = 1;
    req.body = "{\"Target\":\"i-0123456789\"}";
    req.body_len = strlen((const char *)req.body);
    CHECK(ssmb_http_request_write(&req, out, sizeof out, &n) == SSMB_OK && n == sizeof want - 1);
    CHECK_EQ_STR(out, want);
    /* two passes: the size first, then an exact fit (no room for the NUL is fine) */
    CHECK(ssmb_http_request_write(&req, NULL, 0, &need) == SSMB_ERR_BUFFER_TOO_SMALL && need == n);
    CHECK(ssmb_http_request_write(&req, out, n - 1, &need) == SSMB_ERR_BUFFER_TOO_SMALL && need == n);
    memset(out, '#', sizeof out);
    CHECK(ssmb_http_request_write(&req, out, n, &need) == SSMB_OK && need == n && out[n] == '#');
    CHECK_EQ_MEM(out, want, n);
    /* an empty body still says Content-Length: 0; the body may be sent apart */
    req.body = NULL;
    req.body_len = 0;
    CHECK(ssmb_http_request_write(&req, out, sizeof out, &n) == SSMB_OK);
    CHECK(strstr(out, "\r\nContent-Length: 0\r\n\r\n") != NULL && out[n - 1] == '\n');
}

/* CR, LF, NUL or another control anywhere a caller's text lands: refused. */
SSMB_TEST(http_request_writer_refuses_injection) {
    static const char *bad_values[] = {"a\r\nInjected: 1", "a\nb", "a\rb", "a\x01", "\x7f"};
    static const char *bad_names[] = {"X-A\r\nB", "X A", "X:A", "", "X\tA", "X(A)"};
    ssmb_http_header h;
    ssmb_http_request req;
    char out[512];
    size_t n, i;
    memset(&req, 0, sizeof req);
    req.method = ht_s("GET");
    req.target = ht_s("/v1/data-channel/s-1?role=publish_subscribe");
    req.host = ht_s("ssmmessages.us-east-1.amazonaws.com");
    req.headers = &h;
    req.header_count = 1;
    h = ht_h("X-Ok", "tab\tand obs-text \xc3\xa9 are fine");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_OK);
    for (i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        h = ht_h("X-A", bad_values[i]);
        CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    }
    for (i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        h = ht_h(bad_names[i], "v");
        CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    }
    h.name = ht_s("X-A");
    h.value.ptr = "a\0b";
    h.value.len = 3;
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    h = ht_h("X-A", "v");
    req.host = ht_s("evil\r\nX: 1");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    req.host = ht_s("");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    req.host = ht_s("h");
    req.target = ht_s("/a b");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    req.target = ht_s("/a\r\n");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    req.target = ht_s("/");
    req.method = ht_s("GET /x");
    CHECK_EQ_INT(ssmb_http_request_write(&req, out, sizeof out, &n), SSMB_ERR_INVALID_ARG);
    /* the upgrade writer checks its key and extra headers the same way */
    h = ht_h("Authorization", "AWS4-HMAC-SHA256 Credential=x\r\n");
    CHECK_EQ_INT(ssmb_http_upgrade_request_write(ht_s("/"), ht_s("h"), ht_s("k"), &h, 1, out, sizeof out, &n),
                 SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_http_upgrade_request_write(ht_s("/"), ht_s("h"), ht_s("k\n"), NULL, 0, out, sizeof out, &n),
                 SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_http_upgrade_request_write(ht_s("/"), ht_s("h"), ht_s(""), NULL, 0, out, sizeof out, &n),
                 SSMB_ERR_INVALID_ARG);
}

/* ---- chunked bodies ------------------------------------------------------------ */

typedef struct ht_chunk_run {
    ssmb_result rc;         /* the last result */
    char data[256];
    size_t data_len;
    size_t consumed;        /* bytes used in total */
} ht_chunk_run;

/* Feeds in[0..len) to the decoder; appends data; stops at a non-OK result.
   Returns SSMB_AGAIN when all was used and more is wanted. */
static ssmb_result ht_chunk_feed(ssmb_http_chunked *c, const char *in, size_t len, ht_chunk_run *run) {
    ssmb_result rc = SSMB_AGAIN;
    while (len) {
        ssmb_str d;
        size_t used = 0;
        rc = ssmb_http_chunked_read(c, in, len, &used, &d);
        run->consumed += used;
        if (rc == SSMB_OK) {
            /* a view into this input, within what was used */
            if (d.ptr < in || d.ptr + d.len > in + used || run->data_len + d.len > sizeof run->data)
                return SSMB_ERR_INTERNAL;
            memcpy(run->data + run->data_len, d.ptr, d.len);
            run->data_len += d.len;
        } else if (rc == SSMB_AGAIN && used != len) {
            rc = SSMB_ERR_INTERNAL;
        }
        in += used;
        len -= used;
        if (rc != SSMB_OK) break;
    }
    return rc == SSMB_OK ? SSMB_AGAIN : rc; /* used up right after data: wants more */
}

/* The body split at split (0 = whole) or one byte at a time. */
static ht_chunk_run ht_chunk_run_body(const char *body, size_t len, size_t split, int bytewise, uint64_t max) {
    ssmb_http_chunked c;
    ht_chunk_run run;
    size_t i;
    memset(&run, 0, sizeof run);
    ssmb_http_chunked_init(&c, max);
    run.rc = SSMB_AGAIN;
    if (bytewise) {
        for (i = 0; i < len && run.rc == SSMB_AGAIN; i++) run.rc = ht_chunk_feed(&c, body + i, 1, &run);
    } else {
        run.rc = ht_chunk_feed(&c, body, split ? split : len, &run);
        if (split && run.rc == SSMB_AGAIN) run.rc = ht_chunk_feed(&c, body + split, len - split, &run);
    }
    return run;
}

static int ht_chunk_same(const ht_chunk_run *a, const ht_chunk_run *b) {
    return a->rc == b->rc && a->data_len == b->data_len && memcmp(a->data, b->data, a->data_len) == 0 &&
           a->consumed == b->consumed;
}

/* Whole, byte by byte and at every split give the same outcome. */
static ht_chunk_run ht_chunk_all_ways(const char *body, size_t len, uint64_t max) {
    ht_chunk_run whole = ht_chunk_run_body(body, len, 0, 0, max), other = ht_chunk_run_body(body, len, 0, 1, max);
    size_t k;
    long bad = !ht_chunk_same(&whole, &other);
    for (k = 1; k < len; k++) {
        other = ht_chunk_run_body(body, len, k, 0, max);
        bad += !ht_chunk_same(&whole, &other);
    }
    if (bad) printf("    chunked body %.40s...: %ld ways differ\n", body, bad);
    CHECK_EQ_INT(bad, 0);
    return whole;
}

SSMB_TEST(http_chunked_in_pieces) {
    static const char body[] = "5;name=\"quoted;value\"\r\nhello\r\n1A \t; a=b\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                               "00001\r\n!\r\n0\r\nX-Trailer: t\r\nX-More: m\r\n\r\nNEXT RESPONSE";
    static const char plain[] = "3\r\nabc\r\n0\r\n\r\n";
    ht_chunk_run r = ht_chunk_all_ways(body, sizeof body - 1, 0);
    CHECK_EQ_INT(r.rc, SSMB_CLOSED);
    CHECK(r.data_len == 32 && memcmp(r.data, "helloabcdefghijklmnopqrstuvwxyz!", 32) == 0);
    CHECK_EQ_INT(r.consumed, sizeof body - 1 - strlen("NEXT RESPONSE"));
    r = ht_chunk_all_ways(plain, sizeof plain - 1, 3);
    CHECK(r.rc == SSMB_CLOSED && r.data_len == 3 && r.consumed == sizeof plain - 1);
    r = ht_chunk_all_ways("0\r\n\r\n", 5, 0);
    CHECK(r.rc == SSMB_CLOSED && r.data_len == 0 && r.consumed == 5);
    /* truncated anywhere: SSMB_AGAIN, never an error */
    r = ht_chunk_all_ways(body, 40, 0);
    CHECK_EQ_INT(r.rc, SSMB_AGAIN);
}

SSMB_TEST(http_chunked_errors) {
    static const struct {
        const char *body;
        ssmb_result rc;
        uint64_t max;
    } cases[] = {
        {"\r\n", SSMB_ERR_HTTP, 0},                       /* no size */
        {"g\r\n", SSMB_ERR_HTTP, 0},                      /* not hex */
        {"-1\r\n", SSMB_ERR_HTTP, 0},
        {"1 2\r\n", SSMB_ERR_HTTP, 0},                    /* space inside the size */
        {"3\nabc\r\n", SSMB_ERR_HTTP, 0},                 /* bare LF */
        {"3\r\nabcd\r\n", SSMB_ERR_HTTP, 0},              /* data longer than its size */
        {"3\r\nabc\n0\r\n\r\n", SSMB_ERR_HTTP, 0},
        {"3;a\x01\r\nabc\r\n", SSMB_ERR_HTTP, 0},         /* control in an extension */
        {"0\r\nX: a\x01\r\n\r\n", SSMB_ERR_HTTP, 0},      /* control in a trailer */
        {"0\r\n\n", SSMB_ERR_HTTP, 0},
        {"10000000000000000\r\n", SSMB_ERR_OVERFLOW, 0},  /* 2^64 */
        {"123456789abcdef01\r\n", SSMB_ERR_OVERFLOW, 0},
        {"4\r\nabcd\r\n4\r\nabcd\r\n", SSMB_ERR_LIMIT, 7}, /* over max_body */
        {"8\r\n", SSMB_ERR_LIMIT, 7},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ht_chunk_run r = ht_chunk_all_ways(cases[i].body, strlen(cases[i].body), cases[i].max);
        if (r.rc != cases[i].rc) {
            ssmbt_fail(__FILE__, __LINE__, "chunked body result");
            printf("    case %zu: got %d want %d\n", i, r.rc, cases[i].rc);
        }
    }
}

SSMB_TEST(http_chunked_limits_and_stickiness) {
    static char line[SSMB_HTTP_CHUNK_LINE_MAX + 16], trailer[SSMB_HTTP_TRAILER_MAX + 64];
    ssmb_http_chunked c;
    ssmb_str d;
    size_t used, n;
    ht_chunk_run r;
    /* the largest size that fits 64 bits is read (and then waits for data) */
    r = ht_chunk_run_body("ffffffffffffffff\r\nab", 20, 0, 0, 0);
    CHECK(r.rc == SSMB_AGAIN && r.data_len == 2);
    /* leading zeros are fine up to the line limit */
    memset(line, '0', sizeof line);
    memcpy(line + SSMB_HTTP_CHUNK_LINE_MAX - 3, "1\r\n", 3);
    r = ht_chunk_run_body(line, SSMB_HTTP_CHUNK_LINE_MAX, 0, 0, 0);
    CHECK_EQ_INT(r.rc, SSMB_AGAIN);
    memcpy(line + SSMB_HTTP_CHUNK_LINE_MAX - 2, "1\r\n", 3);
    r = ht_chunk_run_body(line, SSMB_HTTP_CHUNK_LINE_MAX + 1, 0, 0, 0);
    CHECK_EQ_INT(r.rc, SSMB_ERR_LIMIT);
    /* trailers past their limit */
    n = (size_t)snprintf(trailer, sizeof trailer, "0\r\nX: ");
    memset(trailer + n, 't', sizeof trailer - n);
    r = ht_chunk_run_body(trailer, sizeof trailer, 0, 0, 0);
    CHECK_EQ_INT(r.rc, SSMB_ERR_LIMIT);
    /* errors stick; a finished body reads nothing more */
    ssmb_http_chunked_init(&c, 0);
    CHECK_EQ_INT(ssmb_http_chunked_read(&c, "x", 1, &used, &d), SSMB_ERR_HTTP);
    CHECK_EQ_INT(ssmb_http_chunked_read(&c, "0\r\n\r\n", 5, &used, &d), SSMB_ERR_HTTP);
    CHECK_EQ_INT(used, 0);
    ssmb_http_chunked_init(&c, 0);
    CHECK_EQ_INT(ssmb_http_chunked_read(&c, "0\r\n\r\n1", 6, &used, &d), SSMB_CLOSED);
    CHECK_EQ_INT(used, 5);
    CHECK_EQ_INT(ssmb_http_chunked_read(&c, "1", 1, &used, &d), SSMB_CLOSED);
    CHECK_EQ_INT(used, 0);
}

/* ---- inputs that end at an unreadable page ------------------------------------ */

SSMB_TEST(http_guard_page_inputs) {
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX:  y \r\n\r\n";
    static const char body[] = "3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    size_t page = (size_t)sysconf(_SC_PAGESIZE), k;
    char *pages = (char *)mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(pages != MAP_FAILED)) return;
    CHECK(mprotect(pages + page, page, PROT_NONE) == 0);
    for (k = 0; k <= sizeof resp - 1; k++) { /* every prefix ends at the guard */
        ssmb_http_header h[4];
        ssmb_http_response r;
        char *at = pages + page - k;
        memcpy(at, resp, k);
        CHECK_EQ_INT(ssmb_http_response_parse(at, k, h, 4, 0, &r), k == sizeof resp - 1 ? SSMB_OK : SSMB_AGAIN);
    }
    for (k = 0; k <= sizeof body - 1; k++) {
        ssmb_http_chunked c;
        ht_chunk_run run;
        char *at = pages + page - k;
        memcpy(at, body, k);
        memset(&run, 0, sizeof run);
        ssmb_http_chunked_init(&c, 0);
        CHECK_EQ_INT(ht_chunk_feed(&c, at, k, &run), k == sizeof body - 1 ? SSMB_CLOSED : SSMB_AGAIN);
    }
    munmap(pages, 2 * page);
}
