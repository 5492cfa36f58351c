/* json room: the reader over jsmn (grammar check, lookups, typed getters,
   unescaping) and the writer (escaping, UTF-8 checks, sticky errors,
   sizing, depth). */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>

#define TOKS 256
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Parses an exact-size heap copy of text, so that a read past its end is
   caught by the sanitizer build. */
static ssmb_result parse_copy(const char *text, size_t len, size_t max_tokens) {
    static ssmb_json_token toks[TOKS];
    ssmb_json doc;
    char *copy = (char *)malloc(len ? len : 1);
    ssmb_result r;
    if (len) memcpy(copy, text, len);
    r = ssmb_json_parse(&doc, copy, len, toks, max_tokens);
    free(copy);
    return r;
}

static ssmb_result parse_str(const char *text) { return parse_copy(text, strlen(text), TOKS); }

static const char lookup_doc[] =
    "{\"a\":1,\"nested\":{\"a\":2,\"list\":[1,{\"a\":3},[4,5]]},\"s\":\"x\\\"y\",\"t\":true,"
    "\"f\":false,\"n\":null,\"after\":[{\"deep\":{\"last\":4}}],\"last\":-7}";

SSMB_TEST(json_parse_lookups) {
    ssmb_json_token toks[64];
    ssmb_json doc;
    int32_t nested, list, el, v;
    int64_t i64 = 0;
    int b = -1;
    ssmb_str s;
    char text[16];
    size_t n = 0;
    if (!CHECK(ssmb_json_parse(&doc, lookup_doc, strlen(lookup_doc), toks, 64) == SSMB_OK)) return;
    CHECK(ssmb_json_kind(&doc, 0) == SSMB_JSON_OBJECT);
    CHECK_EQ_INT(ssmb_json_size(&doc, 0), 8);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "a"), &i64) == SSMB_OK && i64 == 1);
    nested = ssmb_json_find(&doc, 0, "nested");
    CHECK(ssmb_json_kind(&doc, nested) == SSMB_JSON_OBJECT);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, nested, "a"), &i64) == SSMB_OK && i64 == 2);
    list = ssmb_json_find(&doc, nested, "list");
    CHECK(ssmb_json_kind(&doc, list) == SSMB_JSON_ARRAY && ssmb_json_size(&doc, list) == 3);
    el = ssmb_json_at(&doc, list, 1);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, el, "a"), &i64) == SSMB_OK && i64 == 3);
    el = ssmb_json_at(&doc, list, 2);
    CHECK(ssmb_json_size(&doc, el) == 2);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_at(&doc, el, 1), &i64) == SSMB_OK && i64 == 5);
    CHECK(ssmb_json_at(&doc, list, 3) == -1 && ssmb_json_at(&doc, list, -1) == -1);
    /* "last" appears inside "after" too; the top-level one comes after that subtree. */
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "last"), &i64) == SSMB_OK && i64 == -7);
    CHECK(ssmb_json_get_str(&doc, ssmb_json_find(&doc, 0, "s"), &s) == SSMB_OK && s.len == 4 &&
          memcmp(s.ptr, "x\\\"y", 4) == 0);
    CHECK(ssmb_json_unescape(s, text, sizeof text, &n) == SSMB_OK && n == 3 && strcmp(text, "x\"y") == 0);
    CHECK(ssmb_json_get_bool(&doc, ssmb_json_find(&doc, 0, "t"), &b) == SSMB_OK && b == 1);
    CHECK(ssmb_json_get_bool(&doc, ssmb_json_find(&doc, 0, "f"), &b) == SSMB_OK && b == 0);
    v = ssmb_json_find(&doc, 0, "n");
    CHECK(ssmb_json_is_null(&doc, v) && ssmb_json_get_bool(&doc, v, &b) == SSMB_ERR_JSON);
    CHECK(!ssmb_json_is_null(&doc, ssmb_json_find(&doc, 0, "f")));
    CHECK(ssmb_json_get_str(&doc, ssmb_json_find(&doc, 0, "a"), &s) == SSMB_ERR_JSON);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "s"), &i64) == SSMB_ERR_JSON);
    CHECK(ssmb_json_find(&doc, 0, "missing") == -1 && ssmb_json_find(&doc, list, "a") == -1);
    CHECK(ssmb_json_find(&doc, -1, "a") == -1 && ssmb_json_find(&doc, doc.count, "a") == -1);
    CHECK(ssmb_json_kind(&doc, doc.count) == SSMB_JSON_UNDEFINED && ssmb_json_kind(&doc, -5) == SSMB_JSON_UNDEFINED);
    s = ssmb_json_raw(&doc, 0);
    CHECK(s.len == strlen(lookup_doc) && s.ptr == lookup_doc);
    s = ssmb_json_raw(&doc, nested);
    CHECK(s.len == 32 && memcmp(s.ptr, "{\"a\":2,", 7) == 0 && s.ptr[31] == '}');
    s = ssmb_json_raw(&doc, -1);
    CHECK(s.len == 0 && s.ptr != NULL);
}

SSMB_TEST(json_find_compares_unescaped_keys) {
    static const char text[] = "{\"k\\u0065y\":5,\"x\\\\y\":6,\"\\ud83d\\ude00\":7,\"key2\":8}";
    ssmb_json_token toks[16];
    ssmb_json doc;
    int64_t v = 0;
    if (!CHECK(ssmb_json_parse(&doc, text, strlen(text), toks, 16) == SSMB_OK)) return;
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "key"), &v) == SSMB_OK && v == 5);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "x\\y"), &v) == SSMB_OK && v == 6);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "\xf0\x9f\x98\x80"), &v) == SSMB_OK && v == 7);
    CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, "key2"), &v) == SSMB_OK && v == 8);
    CHECK(ssmb_json_find(&doc, 0, "ke") == -1 && ssmb_json_find(&doc, 0, "keyy") == -1);
}

SSMB_TEST(json_parse_accepts_valid_documents) {
    static const char *good[] = {
        "0", "-0", "1.5", "-1.5e+10", "1E-2", "0.0e0", "123456789012345678901234567890", "true", "false", "null",
        "\"\"", "\"a\\u00e9\\/\\b\"", "[]", "{}", " \t\r\n[ 1 , 2 ]\n", "{\"a\":{\"b\":[[],{}]}}", "[\"a\",\"b\"]",
        "{\"\":0}", "[{}, [], \"\", 0, true]", "\"\xc3\xa9\"", "{ \"a\" : 1 , \"b\" : [ ] }"};
    size_t i;
    long ok = 0;
    for (i = 0; i < COUNT_OF(good); i++) {
        ssmb_result r = parse_str(good[i]);
        if (r == SSMB_OK) ok++;
        else printf("  valid document rejected (%d): %s\n", (int)r, good[i]);
    }
    ssmbt_report("json valid documents accepted", ok, (long)COUNT_OF(good), "cases");
}

typedef struct bad_doc {
    const char *text;
    size_t len; /* 0: strlen */
} bad_doc;

SSMB_TEST(json_parse_rejects_malformed_documents) {
    static const bad_doc bad[] = {
        {"", 0}, {"   ", 0}, {"{", 0}, {"}", 0}, {"[", 0}, {"]", 0}, {"[1,]", 0}, {"[,1]", 0}, {"[1,,2]", 0},
        {"[1 2]", 0}, {"{\"a\"}", 0}, {"{\"a\":}", 0}, {"{\"a\" 1}", 0}, {"{\"a\"::1}", 0}, {"{a:1}", 0},
        {"{1:2}", 0}, {"{\"a\":1,}", 0}, {"{,}", 0}, {"{\"a\":1 \"b\":2}", 0}, {"[\"a\":1]", 0}, {"[}", 0},
        {"{]", 0}, {"tru", 0}, {"nul", 0}, {"True", 0}, {"01", 0}, {"-01", 0}, {"1.", 0}, {".5", 0}, {"1e", 0},
        {"1e+", 0}, {"-", 0}, {"+1", 0}, {"0x10", 0}, {"NaN", 0}, {"[1]x", 0}, {"{} {}", 0}, {"[] []", 0},
        {"1 2", 0}, {"\"abc", 0}, {"\"a\x01" "b\"", 0}, {"\"a\nb\"", 0}, {"\"\\x\"", 0}, {"\"\\u12\"", 0},
        {"\"\\u12g4\"", 0}, {"[1]\0", 4}, {"\0", 1}, {"[1\0]", 4}, {"{\"a\":[1,2}", 0}, {"[\"a\\\"]", 0},
        {"'a'", 0}, {"[1,2]]", 0}, {"{\"a\":1}}", 0}, {"[tr ue]", 0}, {"[1 ,]", 0}, {"\"\\", 0},
        {"[\"\\u\"]", 0}, {"{\"a\":1,\"b\"}", 0}, {"[-]", 0}, {"[1.e5]", 0}, {"[\x7f]", 0}, {"{\"a\" : [1] ,}", 0},
        {"[null,]", 0}, {"[\"a\"\"b\"]", 0}, {"{\"a\":1:2}", 0}, {"\xef\xbb\xbf{}", 0}};
    size_t i;
    long ok = 0;
    for (i = 0; i < COUNT_OF(bad); i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        ssmb_result r = parse_copy(bad[i].text, len, TOKS);
        if (r == SSMB_ERR_JSON) ok++;
        else printf("  malformed document #%u got %d instead of SSMB_ERR_JSON\n", (unsigned)i, (int)r);
    }
    ssmbt_report("json malformed documents rejected", ok, (long)COUNT_OF(bad), "cases");
}

/* Every proper prefix of a document whose root is a container or a string
   is incomplete and must be refused, never read past. */
SSMB_TEST(json_parse_every_prefix_rejected) {
    static const char *docs[] = {
        lookup_doc, "{\"k\\u0065y\":[1,{\"x\":\"\\ud83d\\ude00\"}],\"z\":null}", "[[[[\"deep\"]]]]",
        "\"just a string with \\\"escapes\\\"\"", "{\"AgentVersion\":\"3.3.987.0\",\"RequestedClientActions\":[]}"};
    size_t d, n;
    long ok = 0, total = 0;
    for (d = 0; d < COUNT_OF(docs); d++) {
        size_t len = strlen(docs[d]);
        CHECK(parse_copy(docs[d], len, TOKS) == SSMB_OK);
        for (n = 0; n < len; n++, total++) {
            ssmb_result r = parse_copy(docs[d], n, TOKS);
            if (r == SSMB_ERR_JSON) ok++;
            else printf("  prefix %u of document %u got %d\n", (unsigned)n, (unsigned)d, (int)r);
        }
    }
    ssmbt_report("json prefixes rejected", ok, total, "prefixes");
}

SSMB_TEST(json_parse_limits) {
    ssmb_json_token toks[40];
    ssmb_json doc;
    char deep[80];
    int i;
    CHECK(parse_copy("[1,2,3]", 7, 3) == SSMB_ERR_LIMIT);
    CHECK(parse_copy("[1,2,3]", 7, 4) == SSMB_OK);
    CHECK(parse_copy("{\"a\":\"b\"}", 9, 2) == SSMB_ERR_LIMIT);
    CHECK(parse_copy("[]", 2, 0) == SSMB_ERR_LIMIT);
    CHECK(ssmb_json_parse(&doc, "[]", 2, NULL, 5) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_json_parse(NULL, "[]", 2, toks, 5) == SSMB_ERR_INVALID_ARG);
    /* Nesting up to SSMB_JSON_MAX_DEPTH is fine, one more is a limit. */
    for (i = 0; i < SSMB_JSON_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[2 * SSMB_JSON_MAX_DEPTH - 1 - i] = ']';
    }
    CHECK(ssmb_json_parse(&doc, deep, 2 * SSMB_JSON_MAX_DEPTH, toks, 40) == SSMB_OK);
    CHECK_EQ_INT(doc.count, SSMB_JSON_MAX_DEPTH);
    for (i = 0; i <= SSMB_JSON_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[2 * SSMB_JSON_MAX_DEPTH + 1 - i] = ']';
    }
    CHECK(ssmb_json_parse(&doc, deep, 2 * SSMB_JSON_MAX_DEPTH + 2, toks, 40) == SSMB_ERR_LIMIT);
    CHECK_EQ_INT(doc.count, 0);
    /* Text over 2 GiB is refused before a byte is read. */
    if ((size_t)-1 > (size_t)INT32_MAX)
        CHECK(ssmb_json_parse(&doc, "{}", (size_t)INT32_MAX + 1, toks, 40) == SSMB_ERR_LIMIT);
}

/* Parses "[<num>]" and reads the element both ways. */
static void int_case(const char *num, ssmb_result want_i64, int64_t i64, ssmb_result want_u32, uint32_t u32) {
    ssmb_json_token toks[4];
    ssmb_json doc;
    char text[64];
    int64_t gi = 12345;
    uint32_t gu = 12345;
    snprintf(text, sizeof text, "[%s]", num);
    if (!CHECK(ssmb_json_parse(&doc, text, strlen(text), toks, 4) == SSMB_OK)) return;
    if (!CHECK(ssmb_json_get_i64(&doc, 1, &gi) == want_i64) || !CHECK(ssmb_json_get_u32(&doc, 1, &gu) == want_u32))
        printf("    number: %s\n", num);
    if (want_i64 == SSMB_OK) CHECK(gi == i64);
    if (want_u32 == SSMB_OK) CHECK(gu == u32);
}

SSMB_TEST(json_get_integers_strict) {
    int_case("0", SSMB_OK, 0, SSMB_OK, 0);
    int_case("-0", SSMB_OK, 0, SSMB_OK, 0);
    int_case("42", SSMB_OK, 42, SSMB_OK, 42);
    int_case("-1", SSMB_OK, -1, SSMB_ERR_OVERFLOW, 0);
    int_case("4294967295", SSMB_OK, 4294967295LL, SSMB_OK, 4294967295u);
    int_case("4294967296", SSMB_OK, 4294967296LL, SSMB_ERR_OVERFLOW, 0);
    int_case("9223372036854775807", SSMB_OK, INT64_MAX, SSMB_ERR_OVERFLOW, 0);
    int_case("-9223372036854775808", SSMB_OK, INT64_MIN, SSMB_ERR_OVERFLOW, 0);
    int_case("9223372036854775808", SSMB_ERR_OVERFLOW, 0, SSMB_ERR_OVERFLOW, 0);
    int_case("-9223372036854775809", SSMB_ERR_OVERFLOW, 0, SSMB_ERR_OVERFLOW, 0);
    int_case("18446744073709551615", SSMB_ERR_OVERFLOW, 0, SSMB_ERR_OVERFLOW, 0);
    int_case("18446744073709551616", SSMB_ERR_OVERFLOW, 0, SSMB_ERR_OVERFLOW, 0);
    int_case("99999999999999999999999999", SSMB_ERR_OVERFLOW, 0, SSMB_ERR_OVERFLOW, 0);
    int_case("1.0", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("1e3", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("-1.5e400", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("true", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("null", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("\"1\"", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
    int_case("[]", SSMB_ERR_JSON, 0, SSMB_ERR_JSON, 0);
}

typedef struct unescape_case {
    const char *raw;
    ssmb_result want;
    const char *bytes;
    size_t len;
} unescape_case;

SSMB_TEST(json_unescape_cases) {
    static const unescape_case cases[] = {
        {"plain", SSMB_OK, "plain", 5},
        {"a\\nb", SSMB_OK, "a\nb", 3},
        {"\\\"\\\\\\/\\b\\f\\n\\r\\t", SSMB_OK, "\"\\/\b\f\n\r\t", 8},
        {"\\u0041", SSMB_OK, "A", 1},
        {"\\u00e9", SSMB_OK, "\xc3\xa9", 2},
        {"\\u07FF", SSMB_OK, "\xdf\xbf", 2},
        {"\\u20AC", SSMB_OK, "\xe2\x82\xac", 3},
        {"\\uffff", SSMB_OK, "\xef\xbf\xbf", 3},
        {"\\ud83d\\ude00", SSMB_OK, "\xf0\x9f\x98\x80", 4},
        {"\\uD834\\uDD1E", SSMB_OK, "\xf0\x9d\x84\x9e", 4},
        {"\\udbff\\udfff", SSMB_OK, "\xf4\x8f\xbf\xbf", 4},
        {"x\\u0000y", SSMB_OK, "x\0y", 3},
        {"\xc3\xa9", SSMB_OK, "\xc3\xa9", 2},
        {"\\ud83d", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ud83dx", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ud83d\\u0041", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ud83d\\ud83d", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ud83d\\", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ud83d\\ude0", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\ude00", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\x", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\U0041", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\", SSMB_ERR_MALFORMED, NULL, 0},
        {"a\\", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\u12", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\u12g4", SSMB_ERR_MALFORMED, NULL, 0},
        {"\\u-123", SSMB_ERR_MALFORMED, NULL, 0},
    };
    size_t i;
    long ok = 0;
    for (i = 0; i < COUNT_OF(cases); i++) {
        char out[16];
        size_t n = 999, len = strlen(cases[i].raw);
        char *raw = (char *)malloc(len + 1); /* exact size: no read past the view */
        ssmb_str view;
        ssmb_result r;
        memcpy(raw, cases[i].raw, len);
        view.ptr = raw;
        view.len = len;
        memset(out, 0x55, sizeof out);
        r = ssmb_json_unescape(view, out, sizeof out, &n);
        if (r == cases[i].want &&
            (r != SSMB_OK || (n == cases[i].len && memcmp(out, cases[i].bytes, n) == 0 && out[n] == '\0')))
            ok++;
        else
            printf("  unescape case %u (%s) got %d\n", (unsigned)i, cases[i].raw, (int)r);
        free(raw);
    }
    ssmbt_report("json unescape", ok, (long)COUNT_OF(cases), "cases");
}

SSMB_TEST(json_unescape_sizing) {
    char out[8];
    size_t n = 0;
    ssmb_str raw = ssmb_str_c("abc\\u00e9");
    memset(out, 'Z', sizeof out);
    CHECK(ssmb_json_unescape(raw, NULL, 0, &n) == SSMB_ERR_BUFFER_TOO_SMALL && n == 5);
    CHECK(ssmb_json_unescape(raw, out, 4, &n) == SSMB_ERR_BUFFER_TOO_SMALL && n == 5);
    CHECK(out[4] == 'Z' && out[5] == 'Z');
    CHECK(ssmb_json_unescape(raw, out, 5, &n) == SSMB_OK && n == 5 && memcmp(out, "abc\xc3\xa9", 5) == 0);
    CHECK(out[5] == 'Z'); /* no room for the NUL: none written */
    CHECK(ssmb_json_unescape(raw, out, 6, &n) == SSMB_OK && n == 5 && out[5] == '\0');
    CHECK(ssmb_json_unescape(ssmb_str_c(""), out, 1, &n) == SSMB_OK && n == 0 && out[0] == '\0');
}

/* ---- writer ---- */

SSMB_TEST(json_writer_document) {
    static const char want[] =
        "{\"a\":1,\"b\":[true,false,null,\"x\"],\"c\":{},\"d\":[],\"e\":-9223372036854775808,"
        "\"f\":18446744073709551615,\"g\":9223372036854775807,\"h\":{\"i\":[[],{\"j\":0}]},\"raw\":{\"k\":[1]}}";
    char buf[256];
    size_t n = 0;
    ssmb_json_writer w;
    ssmb_json_writer_init(&w, buf, sizeof buf);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "a", 1);
    ssmb_json_writer_i64(&w, 1);
    ssmb_json_writer_key(&w, "b", 1);
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_bool(&w, 1);
    ssmb_json_writer_bool(&w, 0);
    ssmb_json_writer_null(&w);
    ssmb_json_writer_string(&w, "x", 1);
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_key(&w, "c", 1);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_key(&w, "d", 1);
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_key(&w, "e", 1);
    ssmb_json_writer_i64(&w, INT64_MIN);
    ssmb_json_writer_key(&w, "f", 1);
    ssmb_json_writer_u64(&w, UINT64_MAX);
    ssmb_json_writer_key(&w, "g", 1);
    ssmb_json_writer_i64(&w, INT64_MAX);
    ssmb_json_writer_key(&w, "h", 1);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "i", 1);
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "j", 1);
    ssmb_json_writer_u64(&w, 0);
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_key(&w, "raw", 3);
    ssmb_json_writer_raw(&w, "{\"k\":[1]}", 9);
    ssmb_json_writer_end_object(&w);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_OK);
    CHECK_EQ_INT(n, strlen(want));
    CHECK_EQ_STR(buf, want);
    CHECK(parse_copy(buf, n, TOKS) == SSMB_OK);
}

/* The escaped form RFC 8259 §7 calls for, spelled out per character. */
static const char *expected_escape(unsigned c, char tmp[8]) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case 8: return "\\b";
    case 9: return "\\t";
    case 10: return "\\n";
    case 12: return "\\f";
    case 13: return "\\r";
    default: break;
    }
    if (c < 0x20) {
        snprintf(tmp, 8, "\\u%04x", c);
        return tmp;
    }
    tmp[0] = (char)c;
    tmp[1] = '\0';
    return tmp;
}

SSMB_TEST(json_writer_escapes_every_control_character) {
    unsigned c;
    long ok = 0, total = 0;
    char all[40], back[64], buf[512];
    size_t n = 0, k = 0;
    ssmb_json_writer w;
    ssmb_json_token toks[4];
    ssmb_json doc;
    ssmb_str raw;
    for (c = 0; c < 0x80; c++) {
        char tmp[8], want[16], out[16];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '/' && c != 0x7f) continue;
        total++;
        snprintf(want, sizeof want, "\"%s\"", expected_escape(c, tmp));
        {
            char one = (char)c;
            ssmb_json_writer_init(&w, out, sizeof out);
            ssmb_json_writer_string(&w, &one, 1);
        }
        if (ssmb_json_writer_finish(&w, &n) == SSMB_OK && n == strlen(want) && strcmp(out, want) == 0) ok++;
        else printf("  character 0x%02x escaped wrongly\n", c);
    }
    ssmbt_report("json writer escapes", ok, total, "characters");
    /* All 32 control characters plus quote and backslash in one string round-trip. */
    for (c = 0; c < 0x20; c++) all[k++] = (char)c;
    all[k++] = '"';
    all[k++] = '\\';
    ssmb_json_writer_init(&w, buf, sizeof buf);
    ssmb_json_writer_string(&w, all, k);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_OK);
    if (!CHECK(ssmb_json_parse(&doc, buf, n, toks, 4) == SSMB_OK && ssmb_json_get_str(&doc, 0, &raw) == SSMB_OK))
        return;
    CHECK(ssmb_json_unescape(raw, back, sizeof back, &n) == SSMB_OK && n == k && memcmp(back, all, k) == 0);
}

typedef struct utf8_case {
    const char *bytes;
    size_t len;
    int valid;
} utf8_case;

SSMB_TEST(json_writer_utf8_validation) {
    static const utf8_case cases[] = {
        {"\xc3\xa9", 2, 1}, {"\xe2\x82\xac", 3, 1}, {"\xf4\x8f\xbf\xbf", 4, 1}, {"\xef\xbf\xbf", 3, 1},
        {"\xed\x9f\xbf", 3, 1}, {"\xee\x80\x80", 3, 1}, {"\xf0\x90\x80\x80", 4, 1}, {"\xc2\x80", 2, 1},
        {"\xe0\xa0\x80", 3, 1}, {"a\xf0\x9f\x98\x80z", 6, 1}, {"\x7f", 1, 1},
        {"\x80", 1, 0}, {"\xbf", 1, 0}, {"\xc0\x80", 2, 0}, {"\xc1\xbf", 2, 0}, {"\xe0\x80\x80", 3, 0},
        {"\xe0\x9f\xbf", 3, 0}, {"\xed\xa0\x80", 3, 0}, {"\xed\xbf\xbf", 3, 0}, {"\xf0\x80\x80\x80", 4, 0},
        {"\xf0\x8f\xbf\xbf", 4, 0}, {"\xf4\x90\x80\x80", 4, 0}, {"\xf5\x80\x80\x80", 4, 0}, {"\xff", 1, 0},
        {"\xfe", 1, 0}, {"\xc3", 1, 0}, {"\xe2\x82", 2, 0}, {"\xf0\x9f\x98", 3, 0}, {"\xc3\x41", 2, 0},
        {"\xe2\x28\xa1", 3, 0}, {"ok\xc3", 3, 0}};
    size_t i;
    long ok = 0;
    for (i = 0; i < COUNT_OF(cases); i++) {
        char out[32];
        size_t n = 0;
        ssmb_json_writer w;
        ssmb_result r, key_r;
        ssmb_json_writer_init(&w, out, sizeof out);
        ssmb_json_writer_string(&w, cases[i].bytes, cases[i].len);
        r = ssmb_json_writer_finish(&w, &n);
        ssmb_json_writer_init(&w, out, sizeof out);
        ssmb_json_writer_begin_object(&w);
        ssmb_json_writer_key(&w, cases[i].bytes, cases[i].len);
        ssmb_json_writer_null(&w);
        ssmb_json_writer_end_object(&w);
        key_r = ssmb_json_writer_finish(&w, &n);
        if (cases[i].valid ? (r == SSMB_OK && key_r == SSMB_OK)
                           : (r == SSMB_ERR_MALFORMED && key_r == SSMB_ERR_MALFORMED))
            ok++;
        else
            printf("  utf-8 case %u: string %d, key %d\n", (unsigned)i, (int)r, (int)key_r);
        if (cases[i].valid && r == SSMB_OK) { /* valid UTF-8 passes through unchanged */
            ssmb_json_writer_init(&w, out, sizeof out);
            ssmb_json_writer_string(&w, cases[i].bytes, cases[i].len);
            CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_OK && n == cases[i].len + 2 &&
                  memcmp(out + 1, cases[i].bytes, cases[i].len) == 0);
        }
    }
    ssmbt_report("json writer utf-8", ok, (long)COUNT_OF(cases), "cases");
}

SSMB_TEST(json_writer_sticky_error) {
    char buf[64];
    size_t n = 0, len_at_error;
    ssmb_json_writer w;
    ssmb_json_writer_init(&w, buf, sizeof buf);
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_string(&w, "ok", 2);
    ssmb_json_writer_string(&w, "\xff", 1);
    len_at_error = w.len;
    CHECK(w.error == SSMB_ERR_MALFORMED);
    ssmb_json_writer_string(&w, "more", 4);
    ssmb_json_writer_i64(&w, 5);
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_end_array(&w); /* would be a state error: the first error stays */
    CHECK(w.len == len_at_error);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_ERR_MALFORMED);
    /* A state error, then a depth error: still the state error. */
    ssmb_json_writer_init(&w, buf, sizeof buf);
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_begin_array(&w);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_ERR_INVALID_STATE);
}

/* Builds the same document into the given buffer. */
static ssmb_result build_sample(char *buf, size_t cap, size_t *n) {
    ssmb_json_writer w;
    ssmb_json_writer_init(&w, buf, cap);
    ssmb_json_writer_begin_object(&w);
    ssmb_json_writer_key(&w, "name", 4);
    ssmb_json_writer_string(&w, "tab\there", 8);
    ssmb_json_writer_key(&w, "n", 1);
    ssmb_json_writer_i64(&w, -12);
    ssmb_json_writer_end_object(&w);
    return ssmb_json_writer_finish(&w, n);
}

SSMB_TEST(json_writer_buffer_sizing) {
    static const char want[] = "{\"name\":\"tab\\there\",\"n\":-12}";
    size_t need = 0, n = 0, cap;
    char buf[64];
    CHECK(build_sample(NULL, 0, &need) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(need, strlen(want));
    for (cap = 0; cap < need; cap++) {
        memset(buf, 'Z', sizeof buf);
        n = 0;
        if (!CHECK(build_sample(buf, cap, &n) == SSMB_ERR_BUFFER_TOO_SMALL && n == need)) break;
        if (!CHECK(buf[cap] == 'Z' && buf[need] == 'Z')) break; /* nothing written at or past cap */
    }
    memset(buf, 'Z', sizeof buf);
    CHECK(build_sample(buf, need, &n) == SSMB_OK && n == need && memcmp(buf, want, need) == 0 && buf[need] == 'Z');
    CHECK(build_sample(buf, need + 1, &n) == SSMB_OK && n == need && strcmp(buf, want) == 0);
}

SSMB_TEST(json_writer_depth_limit) {
    char buf[128];
    size_t n = 0;
    int i;
    ssmb_json_writer w;
    ssmb_json_writer_init(&w, buf, sizeof buf);
    for (i = 0; i < SSMB_JSON_MAX_DEPTH; i++) ssmb_json_writer_begin_array(&w);
    for (i = 0; i < SSMB_JSON_MAX_DEPTH; i++) ssmb_json_writer_end_array(&w);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_OK && n == 2 * SSMB_JSON_MAX_DEPTH);
    ssmb_json_writer_init(&w, buf, sizeof buf);
    for (i = 0; i < SSMB_JSON_MAX_DEPTH; i++) {
        ssmb_json_writer_begin_object(&w);
        ssmb_json_writer_key(&w, "k", 1);
    }
    ssmb_json_writer_begin_array(&w);
    CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_ERR_LIMIT);
}

SSMB_TEST(json_writer_refuses_misuse) {
    char buf[64];
    size_t n = 0;
    ssmb_json_writer w;
#define MISUSE(steps, want)                                    \
    do {                                                       \
        ssmb_json_writer_init(&w, buf, sizeof buf);            \
        steps;                                                 \
        CHECK(ssmb_json_writer_finish(&w, &n) == (want));      \
    } while (0)
    MISUSE(ssmb_json_writer_key(&w, "a", 1), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_array(&w), ssmb_json_writer_key(&w, "a", 1)), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_object(&w), ssmb_json_writer_i64(&w, 1)), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_array(&w), ssmb_json_writer_end_object(&w)), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_object(&w), ssmb_json_writer_end_array(&w)), SSMB_ERR_INVALID_STATE);
    MISUSE(ssmb_json_writer_end_array(&w), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_i64(&w, 1), ssmb_json_writer_i64(&w, 2)), SSMB_ERR_INVALID_STATE);
    MISUSE(ssmb_json_writer_begin_object(&w), SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_object(&w), ssmb_json_writer_key(&w, "a", 1), ssmb_json_writer_end_object(&w)),
           SSMB_ERR_INVALID_STATE);
    MISUSE((ssmb_json_writer_begin_object(&w), ssmb_json_writer_key(&w, "a", 1), ssmb_json_writer_key(&w, "b", 1)),
           SSMB_ERR_INVALID_STATE);
    MISUSE((void)0, SSMB_ERR_INVALID_STATE);
    MISUSE(ssmb_json_writer_raw(&w, "", 0), SSMB_ERR_INVALID_ARG);
    MISUSE(ssmb_json_writer_string(&w, NULL, 3), SSMB_ERR_INVALID_ARG);
    MISUSE(ssmb_json_writer_string(&w, NULL, 0), SSMB_OK); /* the empty string */
    CHECK(strcmp(buf, "\"\"") == 0);
#undef MISUSE
}

/* Writer output read back by the reader. */
SSMB_TEST(json_writer_reader_roundtrip) {
    static const int64_t values[] = {0, 1, -1, 1000000007, INT64_MAX, INT64_MIN, -4294967296LL};
    char buf[512], key[8];
    size_t n = 0, i;
    ssmb_json_writer w;
    ssmb_json_token toks[32];
    ssmb_json doc;
    ssmb_json_writer_init(&w, buf, sizeof buf);
    ssmb_json_writer_begin_object(&w);
    for (i = 0; i < COUNT_OF(values); i++) {
        snprintf(key, sizeof key, "k%u", (unsigned)i);
        ssmb_json_writer_key(&w, key, strlen(key));
        ssmb_json_writer_i64(&w, values[i]);
    }
    ssmb_json_writer_end_object(&w);
    if (!CHECK(ssmb_json_writer_finish(&w, &n) == SSMB_OK)) return;
    if (!CHECK(ssmb_json_parse(&doc, buf, n, toks, 32) == SSMB_OK)) return;
    for (i = 0; i < COUNT_OF(values); i++) {
        int64_t v = 0;
        snprintf(key, sizeof key, "k%u", (unsigned)i);
        CHECK(ssmb_json_get_i64(&doc, ssmb_json_find(&doc, 0, key), &v) == SSMB_OK && v == values[i]);
    }
}
