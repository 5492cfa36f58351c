/* hmac room: RFC 4231, Project Wycheproof, and streaming against one-shot. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>

/* Reads and parses a JSON vector file; returns its text (free it after
   ssmbt_json_free), or NULL with a failed check. */
static char *load_json_vector(const char *rel, ssmbt_json *j) {
    char path[512];
    size_t len;
    char *text = ssmbt_read_file(ssmbt_vector_path(rel, path, sizeof path), &len);
    if (!text) {
        ssmbt_fail(__FILE__, __LINE__, path);
        return NULL;
    }
    if (!CHECK(ssmbt_json_load(j, text, len) == 0)) {
        free(text);
        return NULL;
    }
    return text;
}

/* Hex string field of a JSON object, decoded; NULL when absent or bad. */
static uint8_t *json_hex(const ssmbt_json *j, int obj, const char *key, size_t *len) {
    char *hex = ssmbt_json_str(j, ssmbt_json_get(j, obj, key), NULL);
    uint8_t *bytes = hex ? ssmbt_unhex(hex, strlen(hex), len) : NULL;
    free(hex);
    return bytes;
}

/* RFC 4231 §4: seven cases; case 5 gives only the first 128 bits. */
SSMB_TEST(hmac_rfc4231) {
    ssmbt_json j;
    char *text = load_json_vector("hmac/rfc4231-hmac-sha256.json", &j);
    int cases, k;
    long ok = 0;
    if (!text) return;
    cases = ssmbt_json_len(&j, ssmbt_json_get(&j, 0, "cases"));
    CHECK_EQ_INT(cases, 7);
    for (k = 0; k < cases; k++) {
        int c = ssmbt_json_at(&j, ssmbt_json_get(&j, 0, "cases"), k);
        int trunc = ssmbt_json_get(&j, c, "truncated_to_bits");
        size_t key_len = 0, data_len = 0, want_len = 0;
        uint8_t *key = json_hex(&j, c, "key_hex", &key_len), *data = json_hex(&j, c, "data_hex", &data_len);
        uint8_t *want = json_hex(&j, c, "hmac_sha256", &want_len), tag[32];
        /* The expected value is as long as the RFC prints it: 32 bytes, or
           the truncated prefix's bits / 8. */
        size_t expect_len = trunc >= 0 ? (size_t)ssmbt_json_int(&j, trunc) / 8 : 32;
        if (CHECK(key && data && want && want_len == expect_len && want_len <= 32)) {
            CHECK_EQ_INT(key_len, ssmbt_json_int(&j, ssmbt_json_get(&j, c, "key_len")));
            CHECK_EQ_INT(data_len, ssmbt_json_int(&j, ssmbt_json_get(&j, c, "data_len")));
            ssmb_hmac_sha256(key, key_len, data, data_len, tag);
            ok += CHECK_EQ_MEM(tag, want, want_len);
        }
        free(key);
        free(data);
        free(want);
    }
    ssmbt_report("hmac rfc4231", ok, cases, "cases");
    ssmbt_json_free(&j);
    free(text);
}

/* One Wycheproof MacTest: a "valid" tag must equal our tag truncated to
   tagSize bits, an "invalid" one must differ from it. */
static int wycheproof_case(const ssmbt_json *j, int t, size_t tag_bytes) {
    size_t key_len = 0, msg_len = 0, tag_len = 0;
    uint8_t *key = json_hex(j, t, "key", &key_len), *msg = json_hex(j, t, "msg", &msg_len);
    uint8_t *tag = json_hex(j, t, "tag", &tag_len), mac[32];
    char *result = ssmbt_json_str(j, ssmbt_json_get(j, t, "result"), NULL);
    int ok = 0;
    if (CHECK(key && msg && tag && result && tag_len == tag_bytes && tag_bytes <= 32)) {
        int valid = strcmp(result, "valid") == 0, equal;
        CHECK(valid || strcmp(result, "invalid") == 0);
        ssmb_hmac_sha256(key, key_len, msg, msg_len, mac);
        equal = memcmp(mac, tag, tag_bytes) == 0;
        CHECK(ssmb_equal_ct(mac, tag, tag_bytes) == equal);
        ok = valid ? CHECK_EQ_MEM(mac, tag, tag_bytes) : CHECK(!equal);
    }
    free(key);
    free(msg);
    free(tag);
    free(result);
    return ok;
}

SSMB_TEST(hmac_wycheproof) {
    ssmbt_json j;
    char *text = load_json_vector("hmac/wycheproof/hmac_sha256_test.json", &j);
    int groups, g, t;
    long ok = 0, total = 0;
    if (!text) return;
    groups = ssmbt_json_len(&j, ssmbt_json_get(&j, 0, "testGroups"));
    for (g = 0; g < groups; g++) {
        int group = ssmbt_json_at(&j, ssmbt_json_get(&j, 0, "testGroups"), g);
        int tests = ssmbt_json_get(&j, group, "tests");
        size_t tag_bytes = (size_t)ssmbt_json_int(&j, ssmbt_json_get(&j, group, "tagSize")) / 8;
        for (t = 0; t < ssmbt_json_len(&j, tests); t++) {
            ok += wycheproof_case(&j, ssmbt_json_at(&j, tests, t), tag_bytes);
            total++;
        }
    }
    CHECK_EQ_INT(total, ssmbt_json_int(&j, ssmbt_json_get(&j, 0, "numberOfTests")));
    CHECK_EQ_INT(total, 174);
    ssmbt_report("hmac wycheproof", ok, total, "tests");
    ssmbt_json_free(&j);
    free(text);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Keys of 0..200 bytes (so shorter than, equal to and longer than the
   64-byte block), messages up to 3000 bytes fed in random pieces. */
SSMB_TEST(hmac_streaming_equals_one_shot) {
    uint8_t key[200], msg[3000];
    uint64_t s = 0x5eed5eed5eedull;
    int round, rounds = 300;
    long ok = 0;
    size_t i;
    for (i = 0; i < sizeof key; i++) key[i] = (uint8_t)(xorshift(&s) >> 56);
    for (i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(xorshift(&s) >> 56);
    for (round = 0; round < rounds; round++) {
        size_t key_len = round < 3 ? (size_t)(63 + round) : (size_t)(xorshift(&s) % (sizeof key + 1));
        size_t msg_len = (size_t)(xorshift(&s) % (sizeof msg + 1)), done = 0;
        ssmb_hmac_sha256_ctx ctx;
        uint8_t whole[32], pieces[32];
        int n = 0;
        ssmb_hmac_sha256(key, key_len, msg, msg_len, whole);
        ssmb_hmac_sha256_init(&ctx, key, key_len);
        while (done < msg_len) {
            size_t take = (size_t)(xorshift(&s) % (msg_len - done + 1));
            if (++n > 32) take = msg_len - done;
            ssmb_hmac_sha256_update(&ctx, msg + done, take);
            done += take;
        }
        ssmb_hmac_sha256_final(&ctx, pieces);
        ok += CHECK_EQ_MEM(pieces, whole, 32);
    }
    ssmbt_report("hmac streaming vs one-shot", ok, rounds, "messages");
}

/* Keys longer than the block are hashed first (RFC 2104 §2): a 100-byte key
   and its SHA-256 give the same tag. Empty key and message are valid. */
SSMB_TEST(hmac_long_key_and_empty_input) {
    uint8_t key[100], hashed[32], a[32], b[32];
    size_t i;
    for (i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
    ssmb_sha256(key, sizeof key, hashed);
    ssmb_hmac_sha256(key, sizeof key, "message", 7, a);
    ssmb_hmac_sha256(hashed, sizeof hashed, "message", 7, b);
    CHECK_EQ_MEM(a, b, 32);
    ssmb_hmac_sha256(key, 64, "message", 7, b);
    CHECK(memcmp(a, b, 32) != 0);
    ssmb_hmac_sha256(NULL, 0, NULL, 0, a);
    ssmb_hmac_sha256("", 0, "", 0, b);
    CHECK_EQ_MEM(a, b, 32);
}
