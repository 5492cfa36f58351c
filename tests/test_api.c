/* api room: the AWS JSON 1.1 calls. Requests are checked against the SSM
   SigV4 vectors (tests/vectors/sigv4-ssm) stage by stage and parsed back;
   responses cover success (Content-Length and chunked), AWS errors, hostile
   and truncated bodies; then retries, endpoint resolution and the StreamUrl
   host check. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>
#include <strings.h>

#define T_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char t_akid[] = "AKIDEXAMPLE";
static const char t_secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static const char t_token[] = "FQoGZXIvYXdzEXAMPLEtokenEXAMPLEtoken==";

static ssmb_str t_str(const char *p, size_t n) {
    ssmb_str s;
    s.ptr = p;
    s.len = n;
    return s;
}

static int t_eq(ssmb_str s, const char *want) { return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0; }

/* ---- a written request, read back ---- */

#define T_MAX_HEADERS 16

typedef struct t_req {
    ssmb_str method, target, version;
    ssmb_http_header headers[T_MAX_HEADERS];
    size_t header_count;
    ssmb_str body;
} t_req;

/* Strict HTTP/1.1 reading: CRLF lines, "Name: value", a blank line, then
   exactly Content-Length bytes to the end. 0 when well-formed. */
static int t_req_parse(t_req *r, const char *text, size_t len) {
    const char *p = text, *end = text + len, *eol, *sp1, *sp2;
    size_t i, cl = (size_t)-1;
    memset(r, 0, sizeof *r);
    if (!(eol = strstr(p, "\r\n")) || eol >= end) return -1;
    sp1 = (const char *)memchr(p, ' ', (size_t)(eol - p));
    sp2 = sp1 ? (const char *)memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2) return -1;
    r->method = t_str(p, (size_t)(sp1 - p));
    r->target = t_str(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    r->version = t_str(sp2 + 1, (size_t)(eol - sp2 - 1));
    for (p = eol + 2;; p = eol + 2) {
        const char *colon;
        if (!(eol = strstr(p, "\r\n")) || eol >= end) return -1;
        if (eol == p) break;
        colon = (const char *)memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon[1] != ' ' || r->header_count == T_MAX_HEADERS) return -1;
        r->headers[r->header_count].name = t_str(p, (size_t)(colon - p));
        r->headers[r->header_count++].value = t_str(colon + 2, (size_t)(eol - colon - 2));
    }
    r->body = t_str(eol + 2, (size_t)(end - eol - 2));
    for (i = 0; i < r->header_count; i++)
        if (t_eq(r->headers[i].name, "Content-Length")) cl = (size_t)strtoul(r->headers[i].value.ptr, NULL, 10);
    return cl == r->body.len ? 0 : -1;
}

static ssmb_str t_req_header(const t_req *r, const char *name) {
    size_t i;
    for (i = 0; i < r->header_count; i++)
        if (r->headers[i].name.len == strlen(name) && strncasecmp(r->headers[i].name.ptr, name, strlen(name)) == 0)
            return r->headers[i].value;
    return t_str(NULL, 0);
}

static int t_req_count(const t_req *r, const char *name) {
    size_t i;
    int n = 0;
    for (i = 0; i < r->header_count; i++)
        if (r->headers[i].name.len == strlen(name) && strncasecmp(r->headers[i].name.ptr, name, strlen(name)) == 0) n++;
    return n;
}

static void t_call(ssmb_api_call *c, const char *endpoint, const char *region, const char *token) {
    memset(c, 0, sizeof *c);
    c->endpoint = endpoint;
    c->region = region;
    c->creds.access_key_id = ssmb_str_c(t_akid);
    c->creds.secret_access_key = ssmb_str_c(t_secret);
    c->creds.session_token = ssmb_str_c(token);
    c->time = 1714564800; /* 2024-05-01T12:00:00Z */
}

/* Re-signs a parsed request with the headers it sent that SigV4 covers and
   checks the Authorization header it carries. */
static int t_signature_consistent(const t_req *r, const ssmb_api_call *c, const char *service) {
    ssmb_http_header h[3];
    ssmb_sigv4_request sr;
    ssmb_sigv4_params p;
    ssmb_sigv4_output o;
    char authz[1024];
    size_t n = 0;
    memset(&sr, 0, sizeof sr);
    memset(&p, 0, sizeof p);
    h[0].name = ssmb_str_c("Host");
    h[0].value = t_req_header(r, "Host");
    h[1].name = ssmb_str_c("Content-Type");
    h[1].value = t_req_header(r, "Content-Type");
    h[2].name = ssmb_str_c("X-Amz-Target");
    h[2].value = t_req_header(r, "X-Amz-Target");
    sr.method = r->method;
    sr.path = r->target;
    sr.headers = h;
    sr.header_count = 3;
    sr.body = r->body.ptr;
    sr.body_len = r->body.len;
    p.creds = c->creds;
    p.region = ssmb_str_c(c->region);
    p.service = ssmb_str_c(service);
    p.time = c->time;
    if (ssmb_sigv4_sign(&sr, &p, authz, sizeof authz, &n, &o) != SSMB_OK) return 0;
    return t_eq(t_req_header(r, "Authorization"), authz) && t_eq(t_req_header(r, "X-Amz-Date"), o.amz_date);
}

/* ---- SigV4 vectors: the call shape of every SSM operation ---- */

static char *t_read_vector(const char *rel, size_t *len) {
    char path[512];
    return ssmbt_read_file(ssmbt_vector_path(rel, path, sizeof path), len);
}

static char *t_vstr(const ssmbt_json *j, int obj, const char *key) {
    int t = ssmbt_json_get(j, obj, key);
    return t < 0 || ssmbt_json_is_null(j, t) ? NULL : ssmbt_json_str(j, t, NULL);
}

/* The value of header `name` among the vector's pre-signing headers. */
static char *t_vheader(const ssmbt_json *j, int v, const char *name) {
    int hs = ssmbt_json_get(j, ssmbt_json_get(j, v, "request"), "headers"), i;
    for (i = 0; i < ssmbt_json_len(j, hs); i++) {
        int pair = ssmbt_json_at(j, hs, i);
        char *n = ssmbt_json_str(j, ssmbt_json_at(j, pair, 0), NULL);
        int match = n && strcasecmp(n, name) == 0;
        free(n);
        if (match) return ssmbt_json_str(j, ssmbt_json_at(j, pair, 1), NULL);
    }
    return NULL;
}

/* Stages 1-4 from what the request carries: the canonical request, the
   string to sign, the signing key and the signature. */
static int t_vector_stages(const ssmbt_json *j, int v, const t_req *r, const ssmb_api_call *c, const char *service) {
    ssmb_http_header h[5];
    ssmb_sigv4_request sr;
    ssmb_sigv4_params p;
    char creq[4096], sts[512], sig[65], key_hex[65];
    uint8_t digest[32], key[32];
    size_t n = 0, sn = 0, hn = 0;
    const char *names[] = {"Host", "Content-Type", "X-Amz-Target", "X-Amz-Date", "X-Amz-Security-Token"};
    char *want_creq = t_vstr(j, v, "canonical_request"), *want_sts = t_vstr(j, v, "string_to_sign");
    char *want_key = t_vstr(j, v, "signing_key_hex"), *want_sig = t_vstr(j, v, "signature");
    int ok = 1;
    size_t i;
    memset(&sr, 0, sizeof sr);
    memset(&p, 0, sizeof p);
    for (i = 0; i < T_COUNT_OF(names); i++) {
        ssmb_str val = t_req_header(r, names[i]);
        if (!val.ptr) continue;
        h[hn].name = ssmb_str_c(names[i]);
        h[hn++].value = val;
    }
    sr.method = r->method;
    sr.path = r->target;
    sr.headers = h;
    sr.header_count = hn;
    sr.body = r->body.ptr;
    sr.body_len = r->body.len;
    p.creds = c->creds;
    p.region = ssmb_str_c(c->region);
    p.service = ssmb_str_c(service);
    p.time = c->time;
    ok &= CHECK(ssmb_sigv4_canonical_request(&sr, &p, creq, sizeof creq, &n) == SSMB_OK);
    ok &= CHECK(want_creq && strcmp(creq, want_creq) == 0);
    ssmb_sha256(creq, n, digest);
    ok &= CHECK(ssmb_sigv4_string_to_sign(&p, digest, sts, sizeof sts, &sn) == SSMB_OK);
    ok &= CHECK(want_sts && strcmp(sts, want_sts) == 0);
    ok &= CHECK(ssmb_sigv4_signing_key(&p, key) == SSMB_OK);
    ssmb_hex_encode(key, 32, key_hex, sizeof key_hex);
    ok &= CHECK(want_key && strcmp(key_hex, want_key) == 0);
    ssmb_sigv4_signature(key, sts, sn, sig);
    ok &= CHECK(want_sig && strcmp(sig, want_sig) == 0);
    free(want_creq);
    free(want_sts);
    free(want_key);
    free(want_sig);
    return ok;
}

/* One vector through ssmb_api_request_write: the vector's body, keys,
   region and time; the Authorization header byte for byte. */
static int t_ssm_vector(const ssmbt_json *j, int v) {
    int creds = ssmbt_json_get(j, v, "credentials"), req = ssmbt_json_get(j, v, "request");
    char *url = t_vstr(j, req, "url"), *body = t_vstr(j, req, "body"), *region = t_vstr(j, v, "region");
    char *service = t_vstr(j, v, "service"), *stamp = t_vstr(j, v, "timestamp");
    char *akid = t_vstr(j, creds, "access_key_id"), *secret = t_vstr(j, creds, "secret_access_key");
    char *token = t_vstr(j, creds, "session_token"), *want = t_vstr(j, v, "authorization");
    char *target = t_vheader(j, v, "X-Amz-Target"), *trimmed;
    char out[8192];
    size_t n = 0;
    ssmb_api_call c;
    t_req r;
    int ok = 1;
    memset(&c, 0, sizeof c);
    if (!url || !body || !region || !service || !stamp || !akid || !secret || !want || !target) ok = 0;
    if (ok) {
        for (trimmed = target + strlen(target); trimmed > target && trimmed[-1] == ' '; trimmed--) trimmed[-1] = '\0';
        c.endpoint = url;
        c.region = region;
        c.creds.access_key_id = ssmb_str_c(akid);
        c.creds.secret_access_key = ssmb_str_c(secret);
        c.creds.session_token = ssmb_str_c(token);
        ok &= CHECK(ssmb_amz_date_parse(stamp, strlen(stamp), &c.time) == SSMB_OK);
        ok &= CHECK(ssmb_api_request_write(&c, service, target, body, strlen(body), out, sizeof out, &n) == SSMB_OK);
        ok &= CHECK(t_req_parse(&r, out, n) == 0);
        ok &= CHECK(t_eq(t_req_header(&r, "Authorization"), want));
        ok &= CHECK(t_eq(t_req_header(&r, "X-Amz-Date"), stamp));
        ok &= CHECK(t_eq(r.body, body));
        ok &= CHECK(token ? t_eq(t_req_header(&r, "X-Amz-Security-Token"), token)
                          : t_req_count(&r, "X-Amz-Security-Token") == 0);
        if (ok) ok &= t_vector_stages(j, v, &r, &c, service);
    }
    free(url);
    free(body);
    free(region);
    free(service);
    free(stamp);
    free(akid);
    free(secret);
    free(token);
    free(want);
    free(target);
    return ok;
}

SSMB_TEST(api_sigv4_ssm_vectors) {
    size_t len = 0;
    char *text = t_read_vector("sigv4-ssm/ssm-sigv4-vectors.json", &len);
    ssmbt_json j;
    long ok = 0, total = 0;
    int vectors, i, ops[3] = {0, 0, 0};
    if (!CHECK(text && ssmbt_json_load(&j, text, len) == 0)) {
        free(text);
        return;
    }
    vectors = ssmbt_json_get(&j, 0, "vectors");
    for (i = 0; i < ssmbt_json_len(&j, vectors); i++) {
        int v = ssmbt_json_at(&j, vectors, i);
        char *name = t_vstr(&j, v, "name"), *cl = t_vheader(&j, v, "Content-Length");
        char *target = t_vheader(&j, v, "X-Amz-Target");
        /* The one vector that signs Content-Length is not the SDK's shape;
           the library signs what botocore signs. */
        if (!cl) {
            int passed = t_ssm_vector(&j, v);
            total++;
            ok += passed;
            if (!passed) printf("    api vector %s failed\n", name ? name : "?");
            if (passed && target && strstr(target, "StartSession")) ops[0]++;
            if (passed && target && strstr(target, "ResumeSession")) ops[1]++;
            if (passed && target && strstr(target, "TerminateSession")) ops[2]++;
        }
        free(name);
        free(cl);
        free(target);
    }
    CHECK_EQ_INT(total, 11);
    CHECK(ops[0] > 0 && ops[1] > 0 && ops[2] > 0);
    ssmbt_report("api sigv4 ssm vectors", ok, total, "vectors");
    ssmbt_json_free(&j);
    free(text);
}

/* ---- requests ---- */

static const char *const t_ports[] = {"80"};
static const char *const t_local_ports[] = {"56789"};

static void t_start_args(ssmb_api_start_session *s, ssmb_api_parameter p[2]) {
    memset(s, 0, sizeof *s);
    p[0].name = "portNumber";
    p[0].values = t_ports;
    p[0].value_count = 1;
    p[1].name = "localPortNumber";
    p[1].values = t_local_ports;
    p[1].value_count = 1;
    s->target = "i-0123456789abcdef0";
    s->document_name = "AWS-StartPortForwardingSession";
    s->parameters = p;
    s->parameter_count = 2;
    s->reason = "debugging";
}

SSMB_TEST(api_start_session_request) {
    ssmb_api_call c;
    ssmb_api_start_session s;
    ssmb_api_parameter p[2];
    char out[4096];
    size_t n = 0;
    t_req r;
    t_call(&c, "https://ssm.us-east-1.amazonaws.com", "us-east-1", NULL);
    t_start_args(&s, p);
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_OK);
    CHECK_EQ_INT(strlen(out), n);
    CHECK(t_req_parse(&r, out, n) == 0);
    CHECK(t_eq(r.method, "POST") && t_eq(r.target, "/") && t_eq(r.version, "HTTP/1.1"));
    CHECK(t_eq(r.headers[0].name, "Host") && t_eq(r.headers[0].value, "ssm.us-east-1.amazonaws.com"));
    CHECK(t_eq(t_req_header(&r, "Content-Type"), "application/x-amz-json-1.1"));
    CHECK(t_eq(t_req_header(&r, "X-Amz-Target"), "AmazonSSM.StartSession"));
    CHECK(t_eq(t_req_header(&r, "X-Amz-Date"), "20240501T120000Z"));
    CHECK(t_eq(t_req_header(&r, "User-Agent"), "ssmbridge/" SSMB_VERSION_STRING));
    CHECK_EQ_INT(t_req_count(&r, "X-Amz-Security-Token"), 0);
    CHECK(t_eq(r.body, "{\"Target\":\"i-0123456789abcdef0\",\"DocumentName\":\"AWS-StartPortForwardingSession\","
                       "\"Parameters\":{\"portNumber\":[\"80\"],\"localPortNumber\":[\"56789\"]},"
                       "\"Reason\":\"debugging\"}"));
    CHECK(strstr(t_req_header(&r, "Authorization").ptr,
                 "Credential=AKIDEXAMPLE/20240501/us-east-1/ssm/aws4_request, "
                 "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=") != NULL);
    CHECK(t_signature_consistent(&r, &c, "ssm"));
    /* only the target */
    s.document_name = NULL;
    s.parameter_count = 0;
    s.reason = "";
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(r.body, "{\"Target\":\"i-0123456789abcdef0\"}"));
}

SSMB_TEST(api_request_sizes) {
    ssmb_api_call c;
    ssmb_api_start_session s;
    ssmb_api_parameter p[2];
    char out[4096], *exact;
    size_t need = 0, n = 0;
    t_call(&c, "https://ssm.us-east-1.amazonaws.com", "us-east-1", t_token);
    t_start_args(&s, p);
    CHECK(ssmb_api_start_session_write(&c, &s, NULL, 0, &need) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(ssmb_api_start_session_write(&c, &s, out, need - 1, &n) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(n, need);
    /* exactly the size: no NUL, and nothing written past it (ASan) */
    exact = (char *)malloc(need);
    CHECK(ssmb_api_start_session_write(&c, &s, exact, need, &n) == SSMB_OK);
    CHECK_EQ_INT(n, need);
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_OK);
    CHECK_EQ_INT(n, need);
    CHECK(memcmp(exact, out, need) == 0);
    free(exact);
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, NULL) == SSMB_ERR_INVALID_ARG);
}

SSMB_TEST(api_session_requests) {
    ssmb_api_call c;
    char out[4096], id96[97], id97[98];
    size_t n = 0;
    t_req r;
    t_call(&c, "https://ssm.eu-west-1.amazonaws.com/", "eu-west-1", t_token);
    CHECK(ssmb_api_resume_session_write(&c, "user-0123456789abcdef0", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0);
    CHECK(t_eq(t_req_header(&r, "X-Amz-Target"), "AmazonSSM.ResumeSession"));
    CHECK(t_eq(r.body, "{\"SessionId\":\"user-0123456789abcdef0\"}"));
    CHECK(t_eq(t_req_header(&r, "X-Amz-Security-Token"), t_token));
    CHECK(strstr(t_req_header(&r, "Authorization").ptr,
                 "/eu-west-1/ssm/aws4_request, "
                 "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, ") != NULL);
    CHECK(t_signature_consistent(&r, &c, "ssm"));
    CHECK(ssmb_api_terminate_session_write(&c, "user-0123456789abcdef0", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0);
    CHECK(t_eq(t_req_header(&r, "X-Amz-Target"), "AmazonSSM.TerminateSession"));
    CHECK(t_signature_consistent(&r, &c, "ssm"));
    memset(id96, 'a', 96);
    id96[96] = '\0';
    memset(id97, 'a', 97);
    id97[97] = '\0';
    CHECK(ssmb_api_terminate_session_write(&c, id96, out, sizeof out, &n) == SSMB_OK);
    CHECK(ssmb_api_terminate_session_write(&c, id97, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_terminate_session_write(&c, "", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_resume_session_write(&c, NULL, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    /* a quote and a backslash in the id are escaped, not injected */
    CHECK(ssmb_api_resume_session_write(&c, "a\"b\\c", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(r.body, "{\"SessionId\":\"a\\\"b\\\\c\"}"));
}

SSMB_TEST(api_generate_data_key_request) {
    ssmb_api_call c;
    ssmb_api_data_key_request k;
    char out[4096];
    size_t n = 0;
    t_req r;
    t_call(&c, "https://kms.us-east-1.amazonaws.com", "us-east-1", t_token);
    memset(&k, 0, sizeof k);
    k.key_id = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    k.session_id = "user-0123456789abcdef0";
    k.target_id = "i-0123456789abcdef0";
    CHECK(ssmb_api_generate_data_key_write(&c, &k, out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0);
    CHECK(t_eq(t_req_header(&r, "Host"), "kms.us-east-1.amazonaws.com"));
    CHECK(t_eq(t_req_header(&r, "X-Amz-Target"), "TrentService.GenerateDataKey"));
    CHECK(t_eq(r.body, "{\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\","
                       "\"NumberOfBytes\":64,\"EncryptionContext\":{\"aws:ssm:SessionId\":\"user-0123456789abcdef0\","
                       "\"aws:ssm:TargetId\":\"i-0123456789abcdef0\"}}"));
    CHECK(strstr(t_req_header(&r, "Authorization").ptr, "/us-east-1/kms/aws4_request, ") != NULL);
    CHECK(t_signature_consistent(&r, &c, "kms"));
    k.random_challenge = "Y2hhbGxlbmdl";
    CHECK(ssmb_api_generate_data_key_write(&c, &k, out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0);
    CHECK(strstr(r.body.ptr, ",\"aws:ssm:TargetId\":\"i-0123456789abcdef0\","
                             "\"aws:ssm:RandomChallenge\":\"Y2hhbGxlbmdl\"}}") != NULL);
    CHECK(t_signature_consistent(&r, &c, "kms"));
    k.key_id = "";
    CHECK(ssmb_api_generate_data_key_write(&c, &k, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    k.key_id = "alias/ssm";
    k.target_id = NULL;
    CHECK(ssmb_api_generate_data_key_write(&c, &k, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_generate_data_key_write(&c, NULL, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
}

static char *t_repeat(const char *unit, size_t times) {
    size_t u = strlen(unit), i;
    char *s = (char *)malloc(u * times + 1);
    for (i = 0; i < times; i++) memcpy(s + i * u, unit, u);
    s[u * times] = '\0';
    return s;
}

/* The model's limits on StartSession (PROTOCOL.md §9). */
SSMB_TEST(api_start_session_limits) {
    ssmb_api_call c;
    ssmb_api_start_session s;
    ssmb_api_parameter p[2];
    char out[8192];
    size_t n = 0;
    char *t400 = t_repeat("a", 400), *t401 = t_repeat("a", 401), *u400 = t_repeat("\xc3\xa9", 400);
    char *d128 = t_repeat("A", 128), *d129 = t_repeat("A", 129), *r256 = t_repeat("r", 256), *r257 = t_repeat("r", 257);
    static const char *const null_value[] = {NULL};
    const struct {
        const char *target, *doc, *reason;
        ssmb_result want;
    } cases[] = {
        {"i-1", NULL, NULL, SSMB_OK},
        {"", NULL, NULL, SSMB_ERR_INVALID_ARG},
        {NULL, NULL, NULL, SSMB_ERR_INVALID_ARG},
        {t400, NULL, NULL, SSMB_OK},
        {t401, NULL, NULL, SSMB_ERR_INVALID_ARG},
        {u400, NULL, NULL, SSMB_OK}, /* 400 characters, 800 bytes */
        {"i-1", "abc", NULL, SSMB_OK},
        {"i-1", "ab", NULL, SSMB_ERR_INVALID_ARG},
        {"i-1", d128, NULL, SSMB_OK},
        {"i-1", d129, NULL, SSMB_ERR_INVALID_ARG},
        {"i-1", "arn:aws:ssm:us-east-1::document/AWS-StartSSHSession_x.1", NULL, SSMB_OK},
        {"i-1", "AWS Start", NULL, SSMB_ERR_INVALID_ARG},
        {"i-1", "AWS*Start", NULL, SSMB_ERR_INVALID_ARG},
        {"i-1", "AWS\"Start", NULL, SSMB_ERR_INVALID_ARG},
        {"i-1", NULL, r256, SSMB_OK},
        {"i-1", NULL, r257, SSMB_ERR_INVALID_ARG},
        {"i-\xff", NULL, NULL, SSMB_ERR_MALFORMED},
    };
    size_t i;
    t_call(&c, "https://ssm.us-east-1.amazonaws.com", "us-east-1", NULL);
    for (i = 0; i < T_COUNT_OF(cases); i++) {
        ssmb_result got;
        memset(&s, 0, sizeof s);
        s.target = cases[i].target;
        s.document_name = cases[i].doc;
        s.reason = cases[i].reason;
        got = ssmb_api_start_session_write(&c, &s, out, sizeof out, &n);
        if (got != cases[i].want) printf("    start session case %u: %d\n", (unsigned)i, (int)got);
        CHECK(got == cases[i].want);
    }
    t_start_args(&s, p);
    p[1].name = "portNumber"; /* a name twice */
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    p[1].name = "";
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    p[1].name = "localPortNumber";
    p[1].values = null_value;
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    p[1].values = NULL;
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    p[1].value_count = 0; /* an empty list is written as [] */
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_OK);
    CHECK(strstr(out, "\"localPortNumber\":[]") != NULL);
    s.parameters = NULL;
    CHECK(ssmb_api_start_session_write(&c, &s, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_start_session_write(&c, NULL, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    free(t400);
    free(t401);
    free(u400);
    free(d128);
    free(d129);
    free(r256);
    free(r257);
}

SSMB_TEST(api_request_endpoints_and_headers) {
    ssmb_api_call c;
    char out[4096];
    size_t n = 0;
    t_req r;
    t_call(&c, "http://localhost:4566", "us-east-1", NULL);
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(t_req_header(&r, "Host"), "localhost:4566") && t_eq(r.target, "/"));
    CHECK(t_signature_consistent(&r, &c, "ssm"));
    c.endpoint = "https://ssm.example.test:443/prefix/";
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(t_req_header(&r, "Host"), "ssm.example.test"));
    CHECK(t_eq(r.target, "/prefix/"));
    CHECK(t_signature_consistent(&r, &c, "ssm"));
    c.endpoint = "https://[::1]:8443";
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(t_req_header(&r, "Host"), "[::1]:8443"));
    c.user_agent = "my-tool/1.0";
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_OK);
    CHECK(t_req_parse(&r, out, n) == 0 && t_eq(t_req_header(&r, "User-Agent"), "my-tool/1.0"));
    c.user_agent = "evil\r\nX-Injected: 1";
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    c.user_agent = NULL;
    c.creds.session_token = ssmb_str_c("tok\r\nX-Injected: 1");
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) != SSMB_OK);
    c.creds.session_token = ssmb_str_c("");
    {
        static const char *const bad[] = {"https://ssm.us-east-1.amazonaws.com/?x=1",
                                          "wss://ssm.us-east-1.amazonaws.com",
                                          "ssm.us-east-1.amazonaws.com",
                                          "https://user@host/",
                                          "",
                                          "https://h/#f"};
        size_t i;
        for (i = 0; i < T_COUNT_OF(bad); i++) {
            c.endpoint = bad[i];
            CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
        }
        c.endpoint = NULL;
        CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    }
    c.endpoint = "https://ssm.us-east-1.amazonaws.com";
    c.region = "us east";
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    c.region = "us-east-1";
    c.creds.access_key_id = ssmb_str_c("");
    CHECK(ssmb_api_terminate_session_write(&c, "s-1", out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_request_write(&c, "ssm", NULL, "{}", 2, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_request_write(&c, "ssm", "AmazonSSM.X", NULL, 2, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_request_write(NULL, "ssm", "AmazonSSM.X", "{}", 2, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
}

/* ---- responses ---- */

/* A response in its own heap block of exactly its size (so ASan sees any
   read past the end); "\n" in head stands for CRLF. */
static char *t_response(const char *head, const char *body, size_t *len) {
    size_t hn = strlen(head), bn = body ? strlen(body) : 0, i, o = 0;
    char *buf = (char *)malloc(hn * 2 + 64 + bn + 1);
    for (i = 0; i < hn; i++) {
        if (head[i] == '\n') buf[o++] = '\r';
        buf[o++] = head[i];
    }
    if (body) {
        o += (size_t)sprintf(buf + o, "Content-Length: %u\r\n\r\n", (unsigned)bn);
        memcpy(buf + o, body, bn);
        o += bn;
    } else {
        buf[o++] = '\r';
        buf[o++] = '\n';
    }
    *len = o;
    return (char *)realloc(buf, o ? o : 1);
}

static const char t_ok_head[] = "HTTP/1.1 200 OK\nx-amzn-RequestId: 5b3ab2b4-8c87-4c3f-8c1e-6f7a2f0e6d9a\n"
                                "Content-Type: application/x-amz-json-1.1\n";
static const char t_start_body[] =
    "{\"SessionId\":\"user-0123456789abcdef0\",\"TokenValue\":\"AAEAAexampleTokenValue==\","
    "\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/user-0123456789abcdef0"
    "?role=publish_subscribe\"}";

static ssmb_result t_start_parse(const char *head, const char *body, ssmb_api_response *resp, ssmb_api_session *s) {
    size_t len;
    char *in = t_response(head, body, &len);
    ssmb_result r = ssmb_api_start_session_parse(in, len, NULL, resp, s);
    free(in);
    return r;
}

SSMB_TEST(api_start_session_response) {
    ssmb_api_response resp;
    ssmb_api_session s;
    size_t len;
    char *in = t_response(t_ok_head, t_start_body, &len);
    CHECK(ssmb_api_start_session_parse(in, len, NULL, &resp, &s) == SSMB_OK);
    CHECK_EQ_INT(resp.status, 200);
    CHECK_EQ_INT(resp.response_len, len);
    CHECK(t_eq(resp.request_id, "5b3ab2b4-8c87-4c3f-8c1e-6f7a2f0e6d9a"));
    CHECK(t_eq(s.session_id, "user-0123456789abcdef0"));
    CHECK(t_eq(s.token_value, "AAEAAexampleTokenValue=="));
    CHECK(t_eq(s.stream_url, "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/user-0123456789abcdef0"
                             "?role=publish_subscribe"));
    free(in);
    /* escapes decoded in place; unknown keys and whitespace ignored; bytes after the response left alone */
    in =
        t_response(t_ok_head,
                   "{ \"Extra\": [1, {\"a\": null}], \"SessionId\" : \"s\\u002d1\", \"TokenValue\": \"AB\\/CD\\u00e9\","
                   " \"StreamUrl\": \"wss:\\/\\/ssmmessages.eu-west-1.amazonaws.com\\/v1\\/data-channel\\/s-1\" }",
                   &len);
    in = (char *)realloc(in, len + 5);
    memcpy(in + len, "HTTP/", 5);
    CHECK(ssmb_api_start_session_parse(in, len + 5, NULL, &resp, &s) == SSMB_OK);
    CHECK_EQ_INT(resp.response_len, len);
    CHECK(t_eq(s.session_id, "s-1"));
    CHECK(t_eq(s.token_value, "AB/CD\xc3\xa9"));
    CHECK(t_eq(s.stream_url, "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s-1"));
    free(in);
}

SSMB_TEST(api_chunked_response) {
    ssmb_api_response resp;
    ssmb_api_session s;
    const char *pieces[] = {"{\"SessionId\":\"user-0123456789abcdef0\",",
                            "\"TokenValue\":\"AAEAAexampleTokenValue==\",",
                            "\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/x\"}"};
    char buf[1024], *in;
    size_t o = 0, i;
    o += (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (i = 0; i < T_COUNT_OF(pieces); i++)
        o += (size_t)sprintf(buf + o, "%x;ext=1\r\n%s\r\n", (unsigned)strlen(pieces[i]), pieces[i]);
    o += (size_t)sprintf(buf + o, "0\r\nX-Trailer: t\r\n\r\n");
    in = (char *)malloc(o);
    memcpy(in, buf, o);
    CHECK(ssmb_api_start_session_parse(in, o, NULL, &resp, &s) == SSMB_OK);
    CHECK_EQ_INT(resp.response_len, o);
    CHECK(t_eq(s.session_id, "user-0123456789abcdef0"));
    CHECK(t_eq(s.token_value, "AAEAAexampleTokenValue=="));
    CHECK(t_eq(s.stream_url, "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/x"));
    CHECK_EQ_INT(resp.body.len, strlen(pieces[0]) + strlen(pieces[1]) + strlen(pieces[2]));
    /* every shorter prefix is incomplete */
    for (i = 0; i < o; i++) {
        char *cut = (char *)malloc(i ? i : 1);
        memcpy(cut, buf, i);
        CHECK(ssmb_api_start_session_parse(cut, i, NULL, &resp, &s) == SSMB_ERR_TRUNCATED);
        free(cut);
    }
    free(in);
}

SSMB_TEST(api_truncated_responses) {
    ssmb_api_response resp;
    ssmb_api_session s;
    size_t len, i, bad = 0;
    char *full = t_response(t_ok_head, t_start_body, &len);
    for (i = 0; i < len; i++) {
        char *cut = (char *)malloc(i ? i : 1);
        memcpy(cut, full, i);
        if (ssmb_api_start_session_parse(cut, i, NULL, &resp, &s) != SSMB_ERR_TRUNCATED) bad++;
        free(cut);
    }
    CHECK_EQ_INT(bad, 0);
    free(full);
}

SSMB_TEST(api_error_responses) {
    const struct {
        const char *head, *body;
        ssmb_result want;
        const char *type, *message;
        int retryable;
    } cases[] = {
        {"HTTP/1.1 400 Bad Request\n",
         "{\"__type\":\"com.amazonaws.ssm#TargetNotConnected\",\"message\":\"i-1 is not connected.\"}",
         SSMB_ERR_AWS_API, "TargetNotConnected", "i-1 is not connected.", 0},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"InvalidDocument\",\"Message\":\"Document AWS-X not found\"}",
         SSMB_ERR_AWS_API, "InvalidDocument", "Document AWS-X not found", 0},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"DoesNotExistException\"}", SSMB_ERR_AWS_API,
         "DoesNotExistException", "", 0},
        {"HTTP/1.1 400 Bad Request\n",
         "{\"__type\":\"aws.protocoltests#ValidationException:http://internal.amazon.com/coral/\",\"message\":\"a "
         "\\\"b\\\"\"}",
         SSMB_ERR_AWS_API, "ValidationException", "a \"b\"", 0},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}",
         SSMB_ERR_AWS_API, "ThrottlingException", "Rate exceeded", 1},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"com.amazon.coral.availability#ThrottlingException\"}",
         SSMB_ERR_AWS_API, "ThrottlingException", "", 1},
        {"HTTP/1.1 429 Too Many Requests\n", "{\"__type\":\"TooManyRequestsException\"}", SSMB_ERR_AWS_API,
         "TooManyRequestsException", "", 1},
        {"HTTP/1.1 500 Internal Server Error\n", "{\"__type\":\"InternalServerError\",\"Message\":\"boom\"}",
         SSMB_ERR_AWS_API, "InternalServerError", "boom", 1},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"ProvisionedThroughputExceededException\"}", SSMB_ERR_AWS_API,
         "ProvisionedThroughputExceededException", "", 1},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"RequestLimitExceeded\"}", SSMB_ERR_AWS_API,
         "RequestLimitExceeded", "", 1},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"Throttling\"}", SSMB_ERR_AWS_API, "Throttling", "", 1},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"com.amazonaws.kms#AccessDeniedException\",\"Message\":\"no\"}",
         SSMB_ERR_AWS_API, "AccessDeniedException", "no", 0},
        /* the header names the type when the body does not */
        {"HTTP/1.1 400 Bad Request\nx-amzn-ErrorType: UnrecognizedClientException:http://internal.amazon.com/\n",
         "{\"message\":\"The security token included in the request is invalid.\"}", SSMB_ERR_AWS_API,
         "UnrecognizedClientException", "The security token included in the request is invalid.", 0},
        {"HTTP/1.1 403 Forbidden\nx-amzn-ErrorType: AccessDeniedException\n", "<html>nope</html>", SSMB_ERR_AWS_API,
         "AccessDeniedException", "", 0},
        /* no AWS error at all */
        {"HTTP/1.1 503 Service Unavailable\nContent-Type: text/html\n", "<html>busy</html>", SSMB_ERR_HTTP, "", "", 1},
        {"HTTP/1.1 502 Bad Gateway\n", "", SSMB_ERR_HTTP, "", "", 1},
        {"HTTP/1.1 504 Gateway Timeout\n", "{\"__type\":3}", SSMB_ERR_HTTP, "", "", 1},
        {"HTTP/1.1 404 Not Found\n", "{\"message\":\"x\"}", SSMB_ERR_HTTP, "", "x", 0},
        {"HTTP/1.1 400 Bad Request\n", "[\"__type\"]", SSMB_ERR_HTTP, "", "", 0},
        {"HTTP/1.1 400 Bad Request\n", "{\"__type\":\"Broken", SSMB_ERR_HTTP, "", "", 0},
        {"HTTP/1.1 301 Moved\n", "", SSMB_ERR_HTTP, "", "", 0},
    };
    size_t i;
    for (i = 0; i < T_COUNT_OF(cases); i++) {
        ssmb_api_response resp;
        size_t len;
        char *in = t_response(cases[i].head, cases[i].body, &len);
        ssmb_result r = ssmb_api_response_parse(in, len, &resp);
        int ok = r == cases[i].want && t_eq(resp.error_type, cases[i].type) &&
                 t_eq(resp.error_message, cases[i].message) && (int)resp.retryable == cases[i].retryable;
        if (!ok)
            printf("    error case %u: %d type %.*s message %.*s retryable %u\n", (unsigned)i, (int)r,
                   (int)resp.error_type.len, resp.error_type.ptr, (int)resp.error_message.len, resp.error_message.ptr,
                   resp.retryable);
        CHECK(ok);
        free(in);
    }
}

SSMB_TEST(api_hostile_responses) {
    const struct {
        const char *head, *body;
        ssmb_result want;
    } cases[] = {
        {t_ok_head, "", SSMB_ERR_JSON},
        {t_ok_head, "{", SSMB_ERR_JSON},
        {t_ok_head, "not json", SSMB_ERR_JSON},
        {t_ok_head, "[]", SSMB_ERR_JSON},
        {t_ok_head, "\"SessionId\"", SSMB_ERR_JSON},
        {t_ok_head, "{}", SSMB_ERR_JSON},
        {t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":\"t\"}", SSMB_ERR_JSON},
        {t_ok_head, "{\"SessionId\":\"s\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head, "{\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":1,\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":\"s\",\"TokenValue\":[\"t\"],\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":{}}", SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":null,\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":\"\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":\"s\\ud800\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/"
         "\"}",
         SSMB_ERR_JSON},
        {t_ok_head,
         "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"} x",
         SSMB_ERR_JSON},
        /* a forged StreamUrl */
        {t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://evil.example/v1/data-channel/s\"}",
         SSMB_ERR_SSM_PROTOCOL},
        {t_ok_head,
         "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":\"ws://ssmmessages.us-east-1.amazonaws.com/\"}",
         SSMB_ERR_SSM_PROTOCOL},
        /* framing */
        {"HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 6\n\n{}", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nContent-Length: x\n\n{}", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nContent-Length: 99999999999999999999999\n\n{}", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nContent-Length: 2\nTransfer-Encoding: chunked\n\n2\r\n{}\r\n0\r\n\r\n", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n2\r\n{}\r\n0\r\n\r\n", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nzz\r\n{}\r\n0\r\n\r\n", NULL, SSMB_ERR_HTTP},
        {"HTTP/1.1 200 OK\nContent-Encoding: gzip\n", "{}", SSMB_ERR_UNSUPPORTED},
        {"HTTP/1.1 200 OK\nContent-Length: 10\n\n{}", NULL, SSMB_ERR_TRUNCATED},
        {"HTTP/1.1 200 OK\nBad Header\n", "{}", SSMB_ERR_HTTP},
        {"HTTP/1.1 2000 OK\n", "{}", SSMB_ERR_HTTP},
        {"garbage\n", "{}", SSMB_ERR_HTTP},
    };
    size_t i;
    for (i = 0; i < T_COUNT_OF(cases); i++) {
        ssmb_api_response resp;
        ssmb_api_session s;
        ssmb_result r = t_start_parse(cases[i].head, cases[i].body, &resp, &s);
        if (r != cases[i].want) printf("    hostile case %u: %d\n", (unsigned)i, (int)r);
        CHECK(r == cases[i].want);
        CHECK(r != SSMB_OK && s.session_id.len == 0 && s.token_value.len == 0 && s.stream_url.len == 0);
    }
}

SSMB_TEST(api_oversized_fields) {
    ssmb_api_response resp;
    ssmb_api_session s;
    char *id97 = t_repeat("a", 97), *id96 = t_repeat("a", 96), *tok = t_repeat("T", 4097),
         *tok_ok = t_repeat("T", 4096);
    char *path = t_repeat("p", 2100), body[12000];
    sprintf(body,
            "{\"SessionId\":\"%s\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
            id97);
    CHECK(t_start_parse(t_ok_head, body, &resp, &s) == SSMB_ERR_LIMIT);
    sprintf(body,
            "{\"SessionId\":\"%s\",\"TokenValue\":\"%s\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
            id96, tok_ok);
    CHECK(t_start_parse(t_ok_head, body, &resp, &s) == SSMB_OK);
    sprintf(body,
            "{\"SessionId\":\"s\",\"TokenValue\":\"%s\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/\"}",
            tok);
    CHECK(t_start_parse(t_ok_head, body, &resp, &s) == SSMB_ERR_LIMIT);
    sprintf(body,
            "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/%s\"}",
            path);
    CHECK(t_start_parse(t_ok_head, body, &resp, &s) == SSMB_ERR_LIMIT);
    {
        /* more values than the token store holds */
        char *many = t_repeat("1,", 600);
        many[strlen(many) - 1] = '\0';
        sprintf(body, "{\"Pad\":[%s],\"SessionId\":\"s\"}", many);
        CHECK(t_start_parse(t_ok_head, body, &resp, &s) == SSMB_ERR_LIMIT);
        free(many);
    }
    free(id97);
    free(id96);
    free(tok);
    free(tok_ok);
    free(path);
}

SSMB_TEST(api_resume_terminate_responses) {
    ssmb_api_response resp;
    ssmb_api_session s;
    ssmb_api_stream_policy pol;
    size_t len;
    char *in = t_response(t_ok_head, t_start_body, &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_OK);
    CHECK(t_eq(s.token_value, "AAEAAexampleTokenValue==") && s.stream_url.len > 0);
    free(in);
    /* no token: the session timed out (PROTOCOL.md §4.5) */
    in = t_response(t_ok_head, "{\"SessionId\":\"user-0123456789abcdef0\"}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_CLOSED);
    CHECK(t_eq(s.session_id, "user-0123456789abcdef0") && s.token_value.len == 0);
    free(in);
    in = t_response(t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":null}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_CLOSED);
    free(in);
    in = t_response(t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":\"\"}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_CLOSED);
    free(in);
    in = t_response(t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":7}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_ERR_JSON);
    free(in);
    /* a StreamUrl the policy refuses is dropped, not followed */
    in =
        t_response(t_ok_head, "{\"SessionId\":\"s\",\"TokenValue\":\"t\",\"StreamUrl\":\"wss://evil.example/\"}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_OK);
    CHECK(t_eq(s.token_value, "t") && s.stream_url.len == 0);
    free(in);
    memset(&pol, 0, sizeof pol);
    pol.region = "eu-west-1";
    in = t_response(t_ok_head, t_start_body, &len);
    CHECK(ssmb_api_resume_session_parse(in, len, &pol, &resp, &s) == SSMB_OK && s.stream_url.len == 0);
    free(in);
    in = t_response(t_ok_head, t_start_body, &len);
    CHECK(ssmb_api_start_session_parse(in, len, &pol, &resp, &s) == SSMB_ERR_SSM_PROTOCOL);
    free(in);
    in = t_response("HTTP/1.1 400 Bad Request\n", "{\"__type\":\"DoesNotExistException\",\"Message\":\"gone\"}", &len);
    CHECK(ssmb_api_resume_session_parse(in, len, NULL, &resp, &s) == SSMB_ERR_AWS_API);
    CHECK(t_eq(resp.error_type, "DoesNotExistException") && t_eq(resp.error_message, "gone"));
    free(in);
    in = t_response(t_ok_head, "{\"SessionId\":\"user-0123456789abcdef0\"}", &len);
    CHECK(ssmb_api_terminate_session_parse(in, len, &resp, &s) == SSMB_OK &&
          t_eq(s.session_id, "user-0123456789abcdef0"));
    free(in);
    in = t_response(t_ok_head, "{}", &len);
    CHECK(ssmb_api_terminate_session_parse(in, len, &resp, &s) == SSMB_OK && s.session_id.len == 0);
    free(in);
    in = t_response(t_ok_head, "{\"SessionId\":false}", &len);
    CHECK(ssmb_api_terminate_session_parse(in, len, &resp, &s) == SSMB_ERR_JSON);
    free(in);
    CHECK(ssmb_api_terminate_session_parse(NULL, 0, &resp, &s) == SSMB_ERR_INVALID_ARG);
    {
        char one[] = "x";
        CHECK(ssmb_api_terminate_session_parse(one, 0, NULL, &s) == SSMB_ERR_INVALID_ARG);
        CHECK(ssmb_api_terminate_session_parse(one, 0, &resp, NULL) == SSMB_ERR_INVALID_ARG);
    }
}

/* ---- GenerateDataKey ---- */

static char *t_b64(const uint8_t *p, size_t n) {
    size_t cap = ssmb_base64_encoded_len(n) + 1, len = 0;
    char *s = (char *)malloc(cap);
    ssmb_base64_encode(p, n, s, cap, &len);
    return s;
}

static ssmb_result t_data_key(const char *body, ssmb_api_data_key *k, uint8_t *ct, size_t ct_cap, char **keep) {
    ssmb_api_response resp;
    size_t len;
    char *in = t_response(t_ok_head, body, &len);
    ssmb_result r;
    memset(k, 0, sizeof *k);
    memset(k->plaintext, 0xAA, sizeof k->plaintext);
    k->ciphertext = ct;
    k->ciphertext_cap = ct_cap;
    r = ssmb_api_generate_data_key_parse(in, len, &resp, k);
    if (keep)
        *keep = in;
    else
        free(in);
    return r;
}

static int t_contains(const char *hay, size_t n, const char *needle, size_t k) {
    size_t i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static int t_all_zero(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

SSMB_TEST(api_generate_data_key_response) {
    uint8_t key[64], blob[200], ct[6144], k65[65];
    char *kb, *bb, *k32b, *k65b, *big_b, body[16384], *in = NULL;
    uint8_t *big = (uint8_t *)calloc(6145, 1);
    ssmb_api_data_key k;
    size_t i;
    for (i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
    for (i = 0; i < sizeof blob; i++) blob[i] = (uint8_t)(255 - i);
    memset(k65, 1, sizeof k65);
    kb = t_b64(key, 64);
    bb = t_b64(blob, sizeof blob);
    k32b = t_b64(key, 32);
    k65b = t_b64(k65, 65);
    big_b = t_b64(big, 6145);
    sprintf(body,
            "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/k\",\"Plaintext\":\"%s\"}",
            bb, kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, &in) == SSMB_OK);
    CHECK(memcmp(k.plaintext, key, 64) == 0);
    CHECK_EQ_INT(k.ciphertext_len, sizeof blob);
    CHECK(memcmp(ct, blob, sizeof blob) == 0);
    CHECK(t_eq(k.key_id, "arn:aws:kms:us-east-1:111122223333:key/k"));
    /* the key's text is gone from the response buffer */
    CHECK(in && !t_contains(in, strlen(body) + 40, kb, 16));
    free(in);
    /* the escaped form '\/' decodes too */
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", "AAEC\\/w==", kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_OK);
    CHECK(k.ciphertext_len == 4 && ct[0] == 0 && ct[1] == 1 && ct[2] == 2 && ct[3] == 0xff && k.key_id.len == 0);
    /* the wrong plaintext sizes, bad base64 */
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", bb, k32b);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_MALFORMED && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", bb, k65b);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_MALFORMED && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%.84s!!!!\"}", bb, kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_MALFORMED && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"CiphertextBlob\":\"AAE\",\"Plaintext\":\"%s\"}", kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_MALFORMED && t_all_zero(k.plaintext, 64));
    /* the ciphertext buffer */
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", bb, kb);
    CHECK(t_data_key(body, &k, ct, 10, NULL) == SSMB_ERR_BUFFER_TOO_SMALL && t_all_zero(k.plaintext, 64));
    CHECK_EQ_INT(k.ciphertext_len, sizeof blob);
    CHECK(t_data_key(body, &k, NULL, 0, NULL) == SSMB_ERR_BUFFER_TOO_SMALL);
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", big_b, kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_LIMIT && t_all_zero(k.plaintext, 64));
    /* missing, wrong types */
    sprintf(body, "{\"CiphertextBlob\":\"%s\"}", bb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_JSON && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"Plaintext\":\"%s\"}", kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_JSON && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"CiphertextBlob\":5,\"Plaintext\":\"%s\"}", kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_JSON && t_all_zero(k.plaintext, 64));
    sprintf(body, "{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\",\"KeyId\":[]}", bb, kb);
    CHECK(t_data_key(body, &k, ct, sizeof ct, NULL) == SSMB_ERR_JSON && t_all_zero(k.plaintext, 64));
    {
        ssmb_api_response resp;
        size_t len;
        char *e =
            t_response("HTTP/1.1 400 Bad Request\n",
                       "{\"__type\":\"NotFoundException\",\"message\":\"Alias arn:aws:kms:x is not found.\"}", &len);
        memset(&k, 0, sizeof k);
        CHECK(ssmb_api_generate_data_key_parse(e, len, &resp, &k) == SSMB_ERR_AWS_API);
        CHECK(t_eq(resp.error_type, "NotFoundException") && resp.retryable == 0);
        free(e);
    }
    free(kb);
    free(bb);
    free(k32b);
    free(k65b);
    free(big_b);
    free(big);
}

/* ---- retries ---- */

SSMB_TEST(api_retry_classification) {
    const struct {
        uint32_t status;
        const char *type;
        int want;
    } cases[] = {
        {400, "ThrottlingException", 1},
        {400, "Throttling", 1},
        {400, "TooManyRequestsException", 1},
        {400, "RequestLimitExceeded", 1},
        {400, "ProvisionedThroughputExceededException", 1},
        {400, "RequestThrottledException", 1},
        {400, "PriorRequestNotComplete", 1},
        {400, "RequestTimeout", 1},
        {429, "", 1},
        {500, "", 1},
        {502, "", 1},
        {503, "", 1},
        {504, "", 1},
        {599, "", 1},
        {500, "InternalServerError", 1},
        {400, "ValidationException", 0},
        {400, "TargetNotConnected", 0},
        {400, "InvalidDocument", 0},
        {403, "AccessDeniedException", 0},
        {400, "throttlingexception", 0},
        {400, "ThrottlingExceptionX", 0},
        {400, "", 0},
        {404, "", 0},
        {200, "", 0},
    };
    size_t i;
    for (i = 0; i < T_COUNT_OF(cases); i++)
        CHECK(ssmb_api_is_retryable(cases[i].status, ssmb_str_c(cases[i].type)) == cases[i].want);
    CHECK(ssmb_api_is_retryable(400, t_str(NULL, 3)) == 0);
}

SSMB_TEST(api_retry_delays) {
    const uint32_t randoms[] = {0u, 1u, 0x80000000u, 0xFFFFFFFFu, 0x12345678u};
    const int64_t want[][3] = {
        {1000, 2000, 4000}, {1000, 2000, 4000}, {1250, 2500, 5000}, {1499, 2998, 5996}, {1035, 2070, 4140}};
    size_t i;
    uint32_t k;
    for (i = 0; i < T_COUNT_OF(randoms); i++) {
        for (k = 0; k < 3; k++) CHECK_EQ_INT(ssmb_api_retry_delay_ms(k, randoms[i]), want[i][k]);
        CHECK_EQ_INT(ssmb_api_retry_delay_ms(3, randoms[i]), -1);
    }
    CHECK_EQ_INT(ssmb_api_retry_delay_ms(SSMB_API_MAX_RETRIES, 0), -1);
    CHECK_EQ_INT(ssmb_api_retry_delay_ms(64, 0), -1);
    CHECK_EQ_INT(ssmb_api_retry_delay_ms(0xFFFFFFFFu, 0), -1);
    /* every random value lands in [1000, 1500) x 2^k */
    for (i = 0; i < 100000; i++) {
        uint32_t r = (uint32_t)(i * 2654435761u);
        int64_t d = ssmb_api_retry_delay_ms(2, r);
        if (d < 4000 || d >= 6000 || d % 4 != 0) {
            CHECK(0);
            break;
        }
    }
}

/* ---- endpoints ---- */

typedef struct t_env {
    const char *names[6];
    const char *values[6];
    int calls;
} t_env;

static const char *t_getenv(const char *name, void *user_data) {
    t_env *e = (t_env *)user_data;
    size_t i;
    e->calls++;
    for (i = 0; i < 6 && e->names[i]; i++)
        if (strcmp(e->names[i], name) == 0) return e->values[i];
    return NULL;
}

SSMB_TEST(api_endpoint_table) {
    const struct {
        const char *service, *region;
        uint32_t fips;
        ssmb_result want;
        const char *url;
    } cases[] = {
        {"ssm", "us-east-1", 0, SSMB_OK, "https://ssm.us-east-1.amazonaws.com"},
        {"kms", "us-east-1", 0, SSMB_OK, "https://kms.us-east-1.amazonaws.com"},
        {"sts", "eu-west-1", 0, SSMB_OK, "https://sts.eu-west-1.amazonaws.com"},
        {"ssmmessages", "ap-south-1", 0, SSMB_OK, "https://ssmmessages.ap-south-1.amazonaws.com"},
        {"ssm", "cn-north-1", 0, SSMB_OK, "https://ssm.cn-north-1.amazonaws.com.cn"},
        {"kms", "cn-northwest-1", 0, SSMB_OK, "https://kms.cn-northwest-1.amazonaws.com.cn"},
        {"ssm", "us-gov-west-1", 0, SSMB_OK, "https://ssm.us-gov-west-1.amazonaws.com"},
        {"ssm", "us-east-1", 1, SSMB_OK, "https://ssm-fips.us-east-1.amazonaws.com"},
        {"kms", "us-west-2", 1, SSMB_OK, "https://kms-fips.us-west-2.amazonaws.com"},
        {"sts", "us-east-2", 1, SSMB_OK, "https://sts-fips.us-east-2.amazonaws.com"},
        {"kms", "us-gov-west-1", 1, SSMB_OK, "https://kms-fips.us-gov-west-1.amazonaws.com"},
        {"kms", "eu-west-1", 1, SSMB_OK, "https://kms-fips.eu-west-1.amazonaws.com"},
        {"kms", "ap-southeast-2", 1, SSMB_OK, "https://kms-fips.ap-southeast-2.amazonaws.com"},
        {"ssm", "ca-central-1", 1, SSMB_OK, "https://ssm-fips.ca-central-1.amazonaws.com"},
        {"ssm", "ca-west-1", 1, SSMB_OK, "https://ssm-fips.ca-west-1.amazonaws.com"},
        {"ssm", "us-west-1", 1, SSMB_OK, "https://ssm-fips.us-west-1.amazonaws.com"},
        /* GovCloud: the regional ssm and sts hosts are the FIPS ones */
        {"ssm", "us-gov-east-1", 1, SSMB_OK, "https://ssm.us-gov-east-1.amazonaws.com"},
        {"sts", "us-gov-west-1", 1, SSMB_OK, "https://sts.us-gov-west-1.amazonaws.com"},
        {"ssm", "eu-west-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"sts", "ca-central-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"ssm", "cn-north-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"kms", "cn-north-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"ssmmessages", "us-east-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"ssm", "us-iso-east-1", 0, SSMB_ERR_UNSUPPORTED, ""},
        {"kms", "us-isob-east-1", 1, SSMB_ERR_UNSUPPORTED, ""},
        {"ssm", "eu-isoe-west-1", 0, SSMB_ERR_UNSUPPORTED, ""},
        {"ssm", "eusc-de-east-1", 0, SSMB_ERR_UNSUPPORTED, ""},
        {"ssm", "il-central-1", 0, SSMB_OK, "https://ssm.il-central-1.amazonaws.com"},
        {"ssm", "us-east-1.evil.example", 0, SSMB_ERR_INVALID_ARG, ""},
        {"ssm", "us-east-1/", 0, SSMB_ERR_INVALID_ARG, ""},
        {"ssm", "-us", 0, SSMB_ERR_INVALID_ARG, ""},
        {"ssm", "", 0, SSMB_ERR_INVALID_ARG, ""},
        {"ssm", NULL, 0, SSMB_ERR_INVALID_ARG, ""},
        {"SSM", "us-east-1", 0, SSMB_ERR_INVALID_ARG, ""},
        {"", "us-east-1", 0, SSMB_ERR_INVALID_ARG, ""},
        {NULL, "us-east-1", 0, SSMB_ERR_INVALID_ARG, ""},
        {"ss m", "us-east-1", 0, SSMB_ERR_INVALID_ARG, ""},
    };
    size_t i;
    for (i = 0; i < T_COUNT_OF(cases); i++) {
        ssmb_api_endpoint_desc d;
        char out[256] = "";
        size_t n = 0;
        uint32_t src = 99;
        ssmb_result r;
        memset(&d, 0, sizeof d);
        d.service = cases[i].service;
        d.region = cases[i].region;
        d.fips = cases[i].fips;
        r = ssmb_api_endpoint_resolve(&d, out, sizeof out, &n, &src);
        if (r != cases[i].want || (r == SSMB_OK && (strcmp(out, cases[i].url) != 0 || n != strlen(out))))
            printf("    endpoint case %u: %d %s\n", (unsigned)i, (int)r, out);
        CHECK(r == cases[i].want);
        if (r == SSMB_OK) CHECK(strcmp(out, cases[i].url) == 0 && n == strlen(out) && src == SSMB_API_ENDPOINT_DEFAULT);
    }
}

static ssmb_result t_resolve(const char *service, const char *arg, t_env *env, char *out, uint32_t *src) {
    ssmb_api_endpoint_desc d;
    size_t n = 0;
    memset(&d, 0, sizeof d);
    d.service = service;
    d.region = "us-east-1";
    d.endpoint_url = arg;
    d.getenv_fn = env ? t_getenv : NULL;
    d.getenv_user_data = env;
    out[0] = '\0';
    return ssmb_api_endpoint_resolve(&d, out, 256, &n, src);
}

SSMB_TEST(api_endpoint_overrides) {
    t_env e;
    char out[256];
    uint32_t src = 0;
    ssmb_api_endpoint_desc d;
    size_t n = 0;
    memset(&e, 0, sizeof e);
    e.names[0] = "AWS_ENDPOINT_URL_SSM";
    e.values[0] = "https://vpce-0123-abcd.ssm.us-east-1.vpce.amazonaws.com";
    e.names[1] = "AWS_ENDPOINT_URL";
    e.values[1] = "http://localhost:4566";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_OK);
    CHECK(strcmp(out, "https://vpce-0123-abcd.ssm.us-east-1.vpce.amazonaws.com") == 0);
    CHECK_EQ_INT(src, SSMB_API_ENDPOINT_ENV_SERVICE);
    /* KMS has its own endpoint: the SSM variable does not apply to it */
    CHECK(t_resolve("kms", NULL, &e, out, &src) == SSMB_OK && strcmp(out, "http://localhost:4566") == 0);
    CHECK_EQ_INT(src, SSMB_API_ENDPOINT_ENV_GLOBAL);
    e.names[2] = "AWS_ENDPOINT_URL_KMS";
    e.values[2] = "https://kms.example.test:8443";
    CHECK(t_resolve("kms", NULL, &e, out, &src) == SSMB_OK && strcmp(out, "https://kms.example.test:8443") == 0);
    CHECK_EQ_INT(src, SSMB_API_ENDPOINT_ENV_SERVICE);
    e.names[3] = "AWS_ENDPOINT_URL_SSMMESSAGES";
    e.values[3] = "https://messages.example.test";
    CHECK(t_resolve("ssmmessages", NULL, &e, out, &src) == SSMB_OK &&
          strcmp(out, "https://messages.example.test") == 0);
    CHECK(t_resolve("sts", NULL, &e, out, &src) == SSMB_OK && strcmp(out, "http://localhost:4566") == 0);
    /* the argument wins over everything */
    CHECK(t_resolve("ssm", "https://ssm.example.test/", &e, out, &src) == SSMB_OK);
    CHECK(strcmp(out, "https://ssm.example.test/") == 0 && src == SSMB_API_ENDPOINT_ARGUMENT);
    CHECK(t_resolve("ssm", "", &e, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_ENV_SERVICE);
    /* AWS_IGNORE_CONFIGURED_ENDPOINT_URLS */
    e.names[4] = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";
    e.values[4] = "TRUE";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_OK && strcmp(out, "https://ssm.us-east-1.amazonaws.com") == 0);
    CHECK_EQ_INT(src, SSMB_API_ENDPOINT_DEFAULT);
    CHECK(t_resolve("ssm", "http://127.0.0.1:9", &e, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_ARGUMENT);
    e.values[4] = "false";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_ENV_SERVICE);
    /* empty values are unset; bad ones are errors */
    e.values[0] = "";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_ENV_GLOBAL);
    e.values[0] = "ftp://x";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_ERR_INVALID_ARG);
    e.values[0] = "https://x/?q=1";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_ERR_INVALID_ARG);
    e.values[0] = "wss://x";
    CHECK(t_resolve("ssm", NULL, &e, out, &src) == SSMB_ERR_INVALID_ARG);
    CHECK(t_resolve("ssm", "not a url", &e, out, &src) == SSMB_ERR_INVALID_ARG);
    CHECK(t_resolve("ssm", "https://a@b", NULL, out, &src) == SSMB_ERR_INVALID_ARG);
    /* no callback: no environment */
    CHECK(t_resolve("ssm", NULL, NULL, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_DEFAULT);
    /* AWS_USE_FIPS_ENDPOINT turns fips on (overrides still win) */
    memset(&e, 0, sizeof e);
    e.names[0] = "AWS_USE_FIPS_ENDPOINT";
    e.values[0] = "True";
    CHECK(t_resolve("kms", NULL, &e, out, &src) == SSMB_OK);
    CHECK(strcmp(out, "https://kms-fips.us-east-1.amazonaws.com") == 0);
    CHECK(t_resolve("ssmmessages", NULL, &e, out, &src) == SSMB_ERR_UNSUPPORTED);
    CHECK(t_resolve("kms", "http://localhost:4566", &e, out, &src) == SSMB_OK && src == SSMB_API_ENDPOINT_ARGUMENT);
    e.values[0] = "false";
    CHECK(t_resolve("kms", NULL, &e, out, &src) == SSMB_OK && strcmp(out, "https://kms.us-east-1.amazonaws.com") == 0);
    /* an override needs no region; fips does not apply to it */
    memset(&d, 0, sizeof d);
    d.service = "ssm";
    d.fips = 1;
    d.endpoint_url = "http://localhost:4566";
    CHECK(ssmb_api_endpoint_resolve(&d, out, sizeof out, &n, NULL) == SSMB_OK);
    /* sizes */
    d.endpoint_url = NULL;
    d.region = "us-east-1";
    CHECK(ssmb_api_endpoint_resolve(&d, NULL, 0, &n, NULL) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(n, strlen("https://ssm-fips.us-east-1.amazonaws.com"));
    CHECK(ssmb_api_endpoint_resolve(&d, out, n, &n, NULL) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(ssmb_api_endpoint_resolve(&d, out, n + 1, &n, NULL) == SSMB_OK);
    CHECK(ssmb_api_endpoint_resolve(&d, out, sizeof out, NULL, NULL) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_endpoint_resolve(NULL, out, sizeof out, &n, NULL) == SSMB_ERR_INVALID_ARG);
}

/* ---- StreamUrl ---- */

SSMB_TEST(api_stream_url_table) {
    const struct {
        const char *url;
        ssmb_result want;
    } cases[] = {
        {"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe", SSMB_OK},
        {"wss://ssmmessages.eu-central-2.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe&cell-number=AAE",
         SSMB_OK},
        {"wss://ssmmessages.us-east-1.amazonaws.com:443/v1/data-channel/s-1", SSMB_OK},
        {"wss://ssmmessages.us-east-1.amazonaws.com", SSMB_OK},
        {"WSS://SSMMESSAGES.US-EAST-1.AMAZONAWS.COM/v1/data-channel/s-1", SSMB_OK},
        {"wss://ssmmessages.cn-north-1.amazonaws.com.cn/v1/data-channel/s-1", SSMB_OK},
        {"wss://ssmmessages-fips.us-gov-west-1.amazonaws.com/v1/data-channel/s-1", SSMB_OK},
        {"wss://ssmmessages-fips.us-east-1.amazonaws.com/v1/data-channel/s-1", SSMB_OK},
        {"wss://vpce-0123456789abcdef0-abcdefgh.ssmmessages.us-east-1.vpce.amazonaws.com/v1/data-channel/s", SSMB_OK},
        {"wss://vpce-0123456789abcdef0-abcdefgh-us-east-1a.ssmmessages.us-east-1.vpce.amazonaws.com/v1/x", SSMB_OK},
        {"wss://vpce-0123-abcd.ssmmessages.cn-north-1.vpce.amazonaws.com.cn/v1/x", SSMB_OK},
        /* look-alikes */
        {"wss://ssmmessages.us-east-1.amazonaws.com.evil.example/v1/data-channel/s-1", SSMB_ERR_SSM_PROTOCOL},
        {"wss://evil-ssmmessages.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessagesx.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://x.ssmmessages.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com./", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.co/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com.cn/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.cn-north-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages..amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us_east_1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.evil.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com:8443/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages-fips.eu-west-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages-fips.cn-north-1.amazonaws.com.cn/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages-fips.us-gov-east-1.amazonaws.com.cn/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://vpce-.ssmmessages.us-east-1.vpce.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://vpce-1.ssm.us-east-1.vpce.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://vpce-1.ssmmessages.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://vpce-1.ssmmessages.us-east-1.vpce.amazonaws.com.evil.example/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://evil.vpce-1.ssmmessages.us-east-1.vpce.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://vpce_1.ssmmessages.us-east-1.vpce.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        /* schemes, user info, addresses, oddities */
        {"ws://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1", SSMB_ERR_SSM_PROTOCOL},
        {"https://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1", SSMB_ERR_SSM_PROTOCOL},
        {"http://ssmmessages.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://user@ssmmessages.us-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com@evil.example/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com:443@evil.example/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com/#x", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages.us-east-1.amazonaws.com/ x", SSMB_ERR_SSM_PROTOCOL},
        {"wss://54.239.28.85/v1/data-channel/s-1", SSMB_ERR_SSM_PROTOCOL},
        {"wss://[::1]/v1/data-channel/s-1", SSMB_ERR_SSM_PROTOCOL},
        {"wss://[2600:1f18::1]:443/", SSMB_ERR_SSM_PROTOCOL},
        {"wss://ssmmessages%2eus-east-1.amazonaws.com/", SSMB_ERR_SSM_PROTOCOL},
        {"wss:///v1/data-channel", SSMB_ERR_SSM_PROTOCOL},
        {"ssmmessages.us-east-1.amazonaws.com", SSMB_ERR_SSM_PROTOCOL},
        {"", SSMB_ERR_SSM_PROTOCOL},
    };
    ssmb_api_stream_policy pol;
    size_t i;
    memset(&pol, 0, sizeof pol);
    for (i = 0; i < T_COUNT_OF(cases); i++) {
        ssmb_result r = ssmb_api_stream_url_check(cases[i].url, strlen(cases[i].url), &pol);
        if (r != cases[i].want) printf("    stream url case %u (%s): %d\n", (unsigned)i, cases[i].url, (int)r);
        CHECK(r == cases[i].want);
    }
    /* the length bounds the text: a good prefix of a longer string */
    CHECK(ssmb_api_stream_url_check("wss://ssmmessages.us-east-1.amazonaws.com.evil", 41, &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check(NULL, 0, &pol) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_stream_url_check("wss://x", 7, NULL) == SSMB_ERR_INVALID_ARG);
}

SSMB_TEST(api_stream_url_policy) {
    ssmb_api_stream_policy pol;
    const char *aws = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1";
    const char *cn = "wss://ssmmessages.cn-north-1.amazonaws.com.cn/v1/data-channel/s-1";
    const char *vpce = "wss://vpce-1-a.ssmmessages.us-east-1.vpce.amazonaws.com/v1/data-channel/s-1";
    memset(&pol, 0, sizeof pol);
    pol.region = "us-east-1";
    CHECK(ssmb_api_stream_url_check(aws, strlen(aws), &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check(vpce, strlen(vpce), &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check(cn, strlen(cn), &pol) == SSMB_ERR_SSM_PROTOCOL);
    pol.region = "cn-north-1";
    CHECK(ssmb_api_stream_url_check(cn, strlen(cn), &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check(aws, strlen(aws), &pol) == SSMB_ERR_SSM_PROTOCOL);
    /* a custom host: only with the flag, only exactly, ws only when allowed too */
    memset(&pol, 0, sizeof pol);
    pol.custom_host = "localhost";
    CHECK(ssmb_api_stream_url_check("wss://localhost:8443/v1/data-channel/s", 38, &pol) == SSMB_ERR_SSM_PROTOCOL);
    pol.allow_custom = 1;
    CHECK(ssmb_api_stream_url_check("wss://localhost:8443/v1/data-channel/s", 38, &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check("wss://LOCALHOST/", 16, &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check("wss://localhost.evil.example/", 29, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check("wss://evillocalhost/", 20, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check("wss://localhos/", 15, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check("ws://localhost:8080/", 20, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check("https://localhost/", 18, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check(aws, strlen(aws), &pol) == SSMB_OK);
    pol.allow_plain_ws = 1;
    CHECK(ssmb_api_stream_url_check("ws://localhost:8080/", 20, &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check("ws://ssmmessages.us-east-1.amazonaws.com/", 41, &pol) == SSMB_ERR_SSM_PROTOCOL);
    CHECK(ssmb_api_stream_url_check("http://localhost:8080/", 22, &pol) == SSMB_ERR_SSM_PROTOCOL);
    pol.custom_host = "127.0.0.1";
    CHECK(ssmb_api_stream_url_check("wss://127.0.0.1:9000/x", 22, &pol) == SSMB_OK);
    CHECK(ssmb_api_stream_url_check("wss://127.0.0.2:9000/x", 22, &pol) == SSMB_ERR_SSM_PROTOCOL);
    pol.custom_host = "::1";
    CHECK(ssmb_api_stream_url_check("wss://[::1]:9000/x", 18, &pol) == SSMB_OK);
    pol.custom_host = "";
    CHECK(ssmb_api_stream_url_check("wss://localhost/", 16, &pol) == SSMB_ERR_SSM_PROTOCOL);
    pol.custom_host = NULL;
    CHECK(ssmb_api_stream_url_check("wss://localhost/", 16, &pol) == SSMB_ERR_SSM_PROTOCOL);
}

/* ---- a round trip: the request writers' output through the response side ---- */

SSMB_TEST(api_response_parse_arguments) {
    ssmb_api_response resp;
    char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    CHECK(ssmb_api_response_parse(text, strlen(text), NULL) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_response_parse(NULL, 0, &resp) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_api_response_parse(text, strlen(text), &resp) == SSMB_OK);
    CHECK(t_eq(resp.body, "{}") && resp.status == 200 && resp.request_id.len == 0 && resp.retryable == 0);
    CHECK(ssmb_api_response_parse(text, 0, &resp) == SSMB_ERR_TRUNCATED);
}

/* ---- mutated responses: any bytes give a result, never a crash ---- */

static uint32_t t_next(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static int t_view_inside(ssmb_str v, const char *buf, size_t len) {
    return v.len == 0 || (v.ptr >= buf && v.ptr + v.len <= buf + len);
}

/* One mutated copy through every parser; 1 when the outcome is sane. */
static int t_mutant(const char *base, size_t base_len, uint32_t *seed, int parser) {
    size_t len = base_len, k, edits = 1 + t_next(seed) % 4;
    char *in;
    ssmb_api_response resp;
    ssmb_api_session s;
    ssmb_api_data_key dk;
    uint8_t ct[64];
    ssmb_result r;
    if (t_next(seed) % 4 == 0) len = t_next(seed) % (base_len + 1);
    in = (char *)malloc(len ? len : 1);
    memcpy(in, base, len);
    for (k = 0; k < edits && len; k++) in[t_next(seed) % len] = (char)(t_next(seed) & 0xff);
    memset(&dk, 0, sizeof dk);
    dk.ciphertext = ct;
    dk.ciphertext_cap = sizeof ct;
    if (parser == 0)
        r = ssmb_api_start_session_parse(in, len, NULL, &resp, &s);
    else if (parser == 1)
        r = ssmb_api_resume_session_parse(in, len, NULL, &resp, &s);
    else if (parser == 2)
        r = ssmb_api_terminate_session_parse(in, len, &resp, &s);
    else
        r = ssmb_api_generate_data_key_parse(in, len, &resp, &dk);
    k = r == SSMB_OK || r == SSMB_CLOSED || r < 0;
    if (parser < 3 && (r == SSMB_OK || r == SSMB_CLOSED))
        k = k && t_view_inside(s.session_id, in, len) && t_view_inside(s.token_value, in, len) &&
            t_view_inside(s.stream_url, in, len);
    if (parser == 0 && r == SSMB_OK) {
        ssmb_api_stream_policy pol;
        memset(&pol, 0, sizeof pol);
        k = k && ssmb_api_stream_url_check(s.stream_url.ptr, s.stream_url.len, &pol) == SSMB_OK;
    }
    k = k && t_view_inside(resp.body, in, len) && t_view_inside(resp.error_type, in, len) &&
        t_view_inside(resp.error_message, in, len) && resp.response_len <= len;
    free(in);
    return (int)k;
}

SSMB_TEST(api_mutated_responses) {
    char chunked[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10\r\n{\"SessionId\":\"s\"\r\n"
        "51\r\n,\"TokenValue\":\"t\\/\",\"StreamUrl\":\"wss://ssmmessages.us-east-1.amazonaws.com/v1/x\"}\r\n"
        "0\r\n\r\n";
    const char *key_body =
        "{\"CiphertextBlob\":\"AAECAw==\",\"KeyId\":\"k\",\"Plaintext\":"
        "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\"}";
    char *bases[4];
    size_t lens[4], b;
    uint32_t seed = 12345;
    long ok = 0, total = 0;
    int p;
    bases[0] = t_response(t_ok_head, t_start_body, &lens[0]);
    bases[1] = chunked;
    lens[1] = strlen(chunked);
    bases[2] = t_response("HTTP/1.1 400 Bad Request\nx-amzn-ErrorType: X:y\n",
                          "{\"__type\":\"a#ThrottlingException\",\"message\":\"m\\u00e9\\ud83d\\ude00\"}", &lens[2]);
    bases[3] = t_response(t_ok_head, key_body, &lens[3]);
    {
        /* the unmutated bases are what they claim to be */
        ssmb_api_response resp;
        ssmb_api_session s;
        ssmb_api_data_key dk;
        uint8_t ct[8];
        char *copy = (char *)malloc(lens[1]);
        memcpy(copy, chunked, lens[1]);
        CHECK(ssmb_api_start_session_parse(copy, lens[1], NULL, &resp, &s) == SSMB_OK && t_eq(s.token_value, "t/"));
        free(copy);
        copy = (char *)malloc(lens[2]);
        memcpy(copy, bases[2], lens[2]);
        CHECK(ssmb_api_response_parse(copy, lens[2], &resp) == SSMB_ERR_AWS_API && resp.retryable == 1);
        CHECK(t_eq(resp.error_message, "m\xc3\xa9\xf0\x9f\x98\x80"));
        free(copy);
        copy = (char *)malloc(lens[3]);
        memcpy(copy, bases[3], lens[3]);
        memset(&dk, 0, sizeof dk);
        dk.ciphertext = ct;
        dk.ciphertext_cap = sizeof ct;
        CHECK(ssmb_api_generate_data_key_parse(copy, lens[3], &resp, &dk) == SSMB_OK && dk.plaintext[63] == 63);
        free(copy);
    }
    for (b = 0; b < 4; b++)
        for (p = 0; p < 4; p++) {
            int i;
            for (i = 0; i < 1500; i++) {
                ok += t_mutant(bases[b], lens[b], &seed, p);
                total++;
            }
        }
    CHECK_EQ_INT(ok, total);
    ssmbt_report("api mutated responses", ok, total, "responses");
    free(bases[0]);
    free(bases[2]);
    free(bases[3]);
}
