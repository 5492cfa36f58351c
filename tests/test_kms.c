/* kms room: KMS session encryption (PROTOCOL.md §6). Every entry of the
   "crypto" section of vectors/ssm/other_vectors.json byte for byte (key
   split, the agent's nonce counter, AES-GCM payloads with fixed nonces, the
   whole encryption-challenge exchange), with whichever backend this build
   compiled in (BearSSL, or mbedTLS in build/test-mbedtls), and against
   BearSSL's portable code called directly. Then tampering, every
   truncation, wrong keys and sizes, in-place use, the ActionResult, and a
   cross-check against Python's `cryptography` when it is installed. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>
#include <unistd.h>

#include <bearssl.h>

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

static uint32_t xorshift(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fill(uint8_t *p, size_t n, uint32_t *seed) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)xorshift(seed);
}

static int all_zero(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Loads the vector file and finds its "crypto" section; NULL (with a
   failed check) when it cannot be read. */
static char *load_vectors(ssmbt_json *j, int *crypto) {
    char path[512];
    size_t len = 0;
    char *text = ssmbt_read_file(ssmbt_vector_path("ssm/other_vectors.json", path, sizeof path), &len);
    if (!CHECK(text != NULL) || !CHECK(ssmbt_json_load(j, text, len) == 0)) {
        free(text);
        return NULL;
    }
    *crypto = ssmbt_json_get(j, 0, "crypto");
    if (!CHECK(*crypto >= 0)) {
        ssmbt_json_free(j);
        free(text);
        return NULL;
    }
    return text;
}

/* Bytes of a hex string member; malloc'ed. */
static uint8_t *hex_member(const ssmbt_json *j, int obj, const char *key, size_t *n) {
    size_t len = 0;
    char *s = ssmbt_json_str(j, ssmbt_json_get(j, obj, key), &len);
    uint8_t *b = s ? ssmbt_unhex(s, len, n) : NULL;
    free(s);
    CHECK(b != NULL);
    return b;
}

static const uint8_t *vector_data_key(const ssmbt_json *j, int crypto, uint8_t out[64]) {
    size_t n = 0;
    uint8_t *b = hex_member(j, ssmbt_json_get(j, crypto, "key_split"), "kms_plaintext_64_hex", &n);
    memset(out, 0, 64);
    if (b && CHECK(n == 64)) memcpy(out, b, 64);
    free(b);
    return out;
}

static char suite_name[128];
static const char *suite(const char *what) {
    snprintf(suite_name, sizeof suite_name, "kms %s (%s)", what, ssmb_tls_backend());
    return suite_name;
}

/* ---- vectors ---- */

SSMB_TEST(kms_key_split_vector) {
    static const struct {
        const char *key;
        uint32_t role;
        int send;
    } want[] = {
        {"agent_encrypt_key_hex", SSMB_CHANNEL_AGENT, 1},
        {"agent_decrypt_key_hex", SSMB_CHANNEL_AGENT, 0},
        {"client_encrypt_key_hex", SSMB_CHANNEL_CLIENT, 1},
        {"client_decrypt_key_hex", SSMB_CHANNEL_CLIENT, 0},
    };
    ssmbt_json j;
    int crypto, split;
    long ok = 0;
    size_t i;
    uint8_t dk[64];
    char *text = load_vectors(&j, &crypto);
    if (!text) return;
    split = ssmbt_json_get(&j, crypto, "key_split");
    vector_data_key(&j, crypto, dk);
    for (i = 0; i < COUNT_OF(want); i++) {
        ssmb_kms_keys k;
        size_t n = 0;
        uint8_t *key = hex_member(&j, split, want[i].key, &n);
        if (CHECK(key && n == 32) && CHECK(ssmb_kms_keys_init(&k, want[i].role, dk, 64) == SSMB_OK) &&
            CHECK_EQ_MEM(want[i].send ? k.send_key : k.recv_key, key, 32) && CHECK(k.role == want[i].role) &&
            CHECK(k.ready == 1))
            ok++;
        free(key);
    }
    ssmbt_report("kms key split vector", ok, (long)COUNT_OF(want), "keys");
    ssmbt_json_free(&j);
    free(text);
}

static uint32_t word_of(const ssmbt_json *j, int arr, int i) {
    char *s = ssmbt_json_str(j, ssmbt_json_at(j, arr, i), NULL);
    uint32_t v = s ? (uint32_t)strtoul(s, NULL, 16) : 0;
    CHECK(s != NULL);
    free(s);
    return v;
}

SSMB_TEST(kms_nonce_counter_vector) {
    ssmbt_json j;
    int crypto, cases, i, n;
    long ok = 0;
    char *text = load_vectors(&j, &crypto);
    if (!text) return;
    cases = ssmbt_json_get(&j, ssmbt_json_get(&j, crypto, "nonce_counter_agent"), "cases");
    n = ssmbt_json_len(&j, cases);
    CHECK(n == 3);
    for (i = 0; i < n; i++) {
        int c = ssmbt_json_at(&j, cases, i), before = ssmbt_json_get(&j, c, "state_before"),
            after = ssmbt_json_get(&j, c, "state_after"), w, good = 1;
        ssmb_kms_nonce_counter ctr, again;
        uint8_t nonce[12], first[12];
        size_t len = 0;
        uint8_t *want = hex_member(&j, c, "nonce_emitted_hex", &len);
        for (w = 0; w < 3; w++) ctr.word[w] = word_of(&j, before, w);
        ssmb_kms_nonce_next(&ctr, nonce);
        good &= CHECK(want && len == 12) && CHECK_EQ_MEM(nonce, want, 12);
        for (w = 0; w < 3; w++) good &= CHECK(ctr.word[w] == word_of(&j, after, w));
        /* Starting from the emitted bytes gives the same state back. */
        if (want && len == 12) {
            ssmb_kms_nonce_init(&again, want);
            ssmb_kms_nonce_next(&again, first);
            good &= CHECK_EQ_MEM(first, want, 12) && CHECK(memcmp(&again, &ctr, sizeof ctr) == 0);
        }
        if (good) ok++;
        free(want);
    }
    ssmbt_report("kms agent nonce counter vector", ok, n, "cases");
    ssmbt_json_free(&j);
    free(text);
}

/* One AES-GCM payload vector: the sender seals it byte for byte (through
   the keys object and through the raw primitive), the receiver opens it,
   and the sender's own receive key refuses it. */
static int gcm_vector(const ssmbt_json *j, int obj, const uint8_t dk[64]) {
    ssmb_kms_keys client, agent;
    const ssmb_kms_keys *from, *to;
    size_t nn = 0, pn = 0, plen = 0, got = 0;
    uint8_t *nonce = hex_member(j, obj, "nonce_hex", &nn), *payload = hex_member(j, obj, "payload_hex", &pn);
    char *plain = ssmbt_json_str(j, ssmbt_json_get(j, obj, "plaintext_text"), &plen);
    char *which = ssmbt_json_str(j, ssmbt_json_get(j, obj, "key"), NULL);
    uint8_t out[256], back[256];
    int good = 1;
    good &= CHECK(nonce && nn == 12 && payload && plain && which && pn == plen + 28 && pn <= sizeof out);
    good &= CHECK(ssmb_kms_keys_init(&client, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_OK);
    good &= CHECK(ssmb_kms_keys_init(&agent, SSMB_CHANNEL_AGENT, dk, 64) == SSMB_OK);
    if (good) {
        /* "first half" is the agent's sending key (§6.2). */
        int agent_sends = strcmp(which, "first half") == 0;
        good &= CHECK(agent_sends || strcmp(which, "second half") == 0);
        from = agent_sends ? &agent : &client;
        to = agent_sends ? &client : &agent;
        good &= CHECK(ssmb_kms_encrypt_payload(from, plain, plen, nonce, out, sizeof out, &got) == SSMB_OK);
        good &= CHECK(got == pn) && CHECK_EQ_MEM(out, payload, pn);
        memset(out, 0, sizeof out);
        good &= CHECK(ssmb_aes256_gcm_seal(dk + (agent_sends ? 0 : 32), 32, nonce, plain, plen, out, sizeof out,
                                           &got) == SSMB_OK);
        good &= CHECK(got == pn) && CHECK_EQ_MEM(out, payload, pn);
        good &= CHECK(ssmb_kms_decrypt_payload(to, payload, pn, back, sizeof back, &got) == SSMB_OK);
        good &= CHECK(got == plen) && CHECK_EQ_MEM(back, plain, plen);
        good &= CHECK(ssmb_aes256_gcm_open(dk + (agent_sends ? 0 : 32), 32, payload, pn, back, sizeof back,
                                           &got) == SSMB_OK);
        good &= CHECK(got == plen) && CHECK_EQ_MEM(back, plain, plen);
        /* The sender's receive key is the other half: refused. */
        good &= CHECK(ssmb_kms_decrypt_payload(from, payload, pn, back, sizeof back, &got) == SSMB_ERR_AUTH);
        good &= CHECK(got == 0) && CHECK(all_zero(back, plen));
    }
    free(nonce);
    free(payload);
    free(plain);
    free(which);
    return good;
}

SSMB_TEST(kms_aes_gcm_payload_vectors) {
    static const char *names[] = {"agent_to_client", "client_to_agent"};
    ssmbt_json j;
    int crypto, pay;
    long ok = 0;
    size_t i;
    uint8_t dk[64];
    char *text = load_vectors(&j, &crypto);
    if (!text) return;
    vector_data_key(&j, crypto, dk);
    pay = ssmbt_json_get(&j, crypto, "aes_gcm_payloads");
    for (i = 0; i < COUNT_OF(names); i++) {
        int obj = ssmbt_json_get(&j, pay, names[i]);
        if (CHECK(obj >= 0) && gcm_vector(&j, obj, dk)) ok++;
    }
    ssmbt_report(suite("aes-gcm payload vectors"), ok, (long)COUNT_OF(names), "payloads");
    ssmbt_json_free(&j);
    free(text);
}

/* The nonce a challenge JSON carries: the first 12 decoded bytes. */
static int challenge_nonce(const char *json, uint8_t nonce[12]) {
    uint8_t raw[128];
    size_t n = 0;
    if (ssmb_challenge_parse(json, strlen(json), raw, sizeof raw, &n) != SSMB_OK || n < 12) return 0;
    memcpy(nonce, raw, 12);
    return 1;
}

SSMB_TEST(kms_encryption_challenge_vector) {
    ssmbt_json j;
    int crypto, ch;
    long ok = 0;
    uint8_t dk[64], rq_nonce[12], rs_nonce[12];
    size_t cn = 0, n = 0;
    char out[512];
    ssmb_kms_keys client, agent;
    uint8_t *challenge;
    char *req, *resp;
    char *text = load_vectors(&j, &crypto);
    if (!text) return;
    vector_data_key(&j, crypto, dk);
    ch = ssmbt_json_get(&j, crypto, "encryption_challenge");
    challenge = hex_member(&j, ch, "challenge_plaintext_hex", &cn);
    req = ssmbt_json_str(&j, ssmbt_json_get(&j, ch, "EncChallengeRequest_payload_json"), NULL);
    resp = ssmbt_json_str(&j, ssmbt_json_get(&j, ch, "EncChallengeResponse_payload_json"), NULL);
    if (CHECK(challenge && cn == SSMB_KMS_CHALLENGE_SIZE && req && resp) && CHECK(challenge_nonce(req, rq_nonce)) &&
        CHECK(challenge_nonce(resp, rs_nonce))) {
        CHECK(ssmb_kms_keys_init(&client, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_OK);
        CHECK(ssmb_kms_keys_init(&agent, SSMB_CHANNEL_AGENT, dk, 64) == SSMB_OK);
        /* 1. the agent's EncChallengeRequest */
        if (CHECK(ssmb_kms_challenge_request(&agent, challenge, cn, rq_nonce, out, sizeof out, &n) == SSMB_OK) &&
            CHECK(n == strlen(req)) && CHECK_EQ_STR(out, req))
            ok++;
        /* 2. the client's EncChallengeResponse */
        memset(out, 0, sizeof out);
        if (CHECK(ssmb_kms_challenge_answer(&client, req, strlen(req), rs_nonce, out, sizeof out, &n) ==
                  SSMB_OK) &&
            CHECK(n == strlen(resp)) && CHECK_EQ_STR(out, resp))
            ok++;
        /* 3. the agent accepts it */
        if (CHECK(ssmb_kms_challenge_verify(&agent, challenge, cn, resp, strlen(resp)) == SSMB_OK)) ok++;
        /* The response carries 124 base64 characters (§6.5). */
        CHECK(strlen(resp) == strlen("{\"Challenge\":\"\"}") + 124);
    }
    ssmbt_report(suite("encryption challenge vector"), ok, 3, "steps");
    free(challenge);
    free(req);
    free(resp);
    ssmbt_json_free(&j);
    free(text);
}

/* ---- failures ---- */

static const uint8_t test_key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t test_nonce[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};

/* Every single-bit change anywhere (nonce, ciphertext, tag) is refused,
   the output is zeroed and no length is given. */
SSMB_TEST(kms_tampering_refused) {
    static const char msg[] = "EXIT_CODE: 0 and some more text";
    uint8_t sealed[64], bad[64], out[64];
    size_t n = 0, got, i;
    long ok = 0, total = 0;
    CHECK(ssmb_aes256_gcm_seal(test_key, 32, test_nonce, msg, sizeof msg - 1, sealed, sizeof sealed, &n) == SSMB_OK);
    CHECK(n == sizeof msg - 1 + 28);
    for (i = 0; i < n * 8; i++) {
        ssmb_result r;
        memcpy(bad, sealed, n);
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        memset(out, 0xAA, sizeof out);
        got = 12345;
        r = ssmb_aes256_gcm_open(test_key, 32, bad, n, out, sizeof out, &got);
        total++;
        if (CHECK(r == SSMB_ERR_AUTH) && CHECK(got == 0) && CHECK(all_zero(out, n - 28)) && CHECK(out[n - 28] == 0xAA))
            ok++;
    }
    ssmbt_report(suite("bit flips refused"), ok, total, "flips");
    /* The untouched payload still opens; a wrong key does not. */
    CHECK(ssmb_aes256_gcm_open(test_key, 32, sealed, n, out, sizeof out, &got) == SSMB_OK && got == n - 28 &&
          memcmp(out, msg, got) == 0);
    {
        uint8_t other[32];
        memcpy(other, test_key, 32);
        other[31] ^= 0x80;
        CHECK(ssmb_aes256_gcm_open(other, 32, sealed, n, out, sizeof out, &got) == SSMB_ERR_AUTH);
        CHECK(all_zero(out, n - 28));
    }
    /* In place, a refused payload leaves zeros where the plaintext went. */
    memcpy(bad, sealed, n);
    bad[20] ^= 1;
    CHECK(ssmb_aes256_gcm_open(test_key, 32, bad, n, bad, n, &got) == SSMB_ERR_AUTH);
    CHECK(all_zero(bad, n - 28));
}

/* Every prefix: below 28 bytes SSMB_ERR_TRUNCATED, from 28 on the tag is
   read from the wrong place: SSMB_ERR_AUTH. Also a suffix cut. */
SSMB_TEST(kms_every_truncation) {
    static const char msg[] = "plainTextDataToBeEncrypted";
    uint8_t sealed[64], out[64];
    size_t n = 0, len, got;
    long ok = 0, total = 0;
    CHECK(ssmb_aes256_gcm_seal(test_key, 32, test_nonce, msg, sizeof msg - 1, sealed, sizeof sealed, &n) == SSMB_OK);
    for (len = 0; len < n; len++) {
        ssmb_result r, want = len < 28 ? SSMB_ERR_TRUNCATED : SSMB_ERR_AUTH;
        memset(out, 0xAA, sizeof out);
        got = 999;
        r = ssmb_aes256_gcm_open(test_key, 32, sealed, len, out, sizeof out, &got);
        total++;
        if (CHECK(r == want) && CHECK(len < 28 ? out[0] == 0xAA : (got == 0 && all_zero(out, len - 28)))) ok++;
        /* Dropping bytes from the front is refused the same way. */
        r = ssmb_aes256_gcm_open(test_key, 32, sealed + (n - len), len, out, sizeof out, &got);
        total++;
        if (CHECK(r == want)) ok++;
    }
    ssmbt_report(suite("truncations refused"), ok, total, "cuts");
    /* NULL with length 0 is a truncated payload, not a crash. */
    CHECK(ssmb_aes256_gcm_open(test_key, 32, NULL, 0, out, sizeof out, &got) == SSMB_ERR_TRUNCATED);
    {
        ssmb_kms_keys k;
        uint8_t dk[64];
        memset(dk, 7, sizeof dk);
        CHECK(ssmb_kms_keys_init(&k, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_OK);
        CHECK(ssmb_kms_decrypt_payload(&k, sealed, 27, out, sizeof out, &got) == SSMB_ERR_TRUNCATED);
    }
}

SSMB_TEST(kms_wrong_sizes_and_states) {
    static const size_t bad_data_keys[] = {0, 1, 32, 63, 65, 128};
    static const size_t bad_keys[] = {0, 16, 24, 31, 33, 64};
    uint8_t dk[128], buf[128], out[128];
    ssmb_kms_keys k, zero;
    size_t i, got = 0, n = 0;
    memset(dk, 0x5c, sizeof dk);
    memset(buf, 0x11, sizeof buf);
    for (i = 0; i < COUNT_OF(bad_data_keys); i++)
        CHECK(ssmb_kms_keys_init(&k, SSMB_CHANNEL_CLIENT, dk, bad_data_keys[i]) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_kms_keys_init(NULL, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_kms_keys_init(&k, SSMB_CHANNEL_CLIENT, NULL, 64) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_kms_keys_init(&k, 2, dk, 64) == SSMB_ERR_INVALID_ARG);
    for (i = 0; i < COUNT_OF(bad_keys); i++) {
        CHECK(ssmb_aes256_gcm_seal(dk, bad_keys[i], test_nonce, buf, 10, out, sizeof out, &got) ==
              SSMB_ERR_INVALID_ARG);
        CHECK(ssmb_aes256_gcm_open(dk, bad_keys[i], buf, 40, out, sizeof out, &got) == SSMB_ERR_INVALID_ARG);
    }
    CHECK(ssmb_aes256_gcm_seal(NULL, 32, test_nonce, buf, 10, out, sizeof out, &got) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_aes256_gcm_seal(dk, 32, NULL, buf, 10, out, sizeof out, &got) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_aes256_gcm_seal(dk, 32, test_nonce, NULL, 10, out, sizeof out, &got) == SSMB_ERR_INVALID_ARG);

    /* A zeroed or cleared object is refused, never used as an all-zero key. */
    memset(&zero, 0, sizeof zero);
    CHECK(ssmb_kms_encrypt_payload(&zero, buf, 10, test_nonce, out, sizeof out, &got) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_kms_decrypt_payload(&zero, buf, 40, out, sizeof out, &got) == SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_kms_challenge_request(&zero, buf, 64, test_nonce, (char *)out, sizeof out, &got) ==
          SSMB_ERR_INVALID_STATE);
    CHECK(ssmb_kms_encrypt_payload(NULL, buf, 10, test_nonce, out, sizeof out, &got) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_kms_keys_init(&k, SSMB_CHANNEL_AGENT, dk, 64) == SSMB_OK);
    ssmb_kms_keys_clear(&k);
    CHECK(all_zero((const uint8_t *)&k, sizeof k));
    CHECK(ssmb_kms_encrypt_payload(&k, buf, 10, test_nonce, out, sizeof out, &got) == SSMB_ERR_INVALID_STATE);
    ssmb_kms_keys_clear(NULL);

    /* Short buffers say how much they need. */
    CHECK(ssmb_aes256_gcm_seal(dk, 32, test_nonce, buf, 10, out, 37, &got) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(got == 38);
    CHECK(ssmb_aes256_gcm_seal(dk, 32, test_nonce, buf, 10, NULL, 0, &got) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(got == 38);
    CHECK(ssmb_aes256_gcm_seal(dk, 32, test_nonce, buf, 10, out, 38, &n) == SSMB_OK && n == 38);
    CHECK(ssmb_aes256_gcm_open(dk, 32, out, n, buf, 9, &got) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(got == 10);
    CHECK(ssmb_aes256_gcm_open(dk, 32, out, n, buf, 10, &got) == SSMB_OK && got == 10);

    /* The empty plaintext is 28 bytes, and opens to nothing. */
    CHECK(ssmb_aes256_gcm_seal(dk, 32, test_nonce, NULL, 0, out, sizeof out, &n) == SSMB_OK && n == 28);
    CHECK(ssmb_aes256_gcm_open(dk, 32, out, 28, NULL, 0, &got) == SSMB_OK && got == 0);
    out[27] ^= 1;
    CHECK(ssmb_aes256_gcm_open(dk, 32, out, 28, NULL, 0, &got) == SSMB_ERR_AUTH);
}

/* Seal and open at many lengths (block boundaries and beyond), through both
   roles, in place and out of place. */
SSMB_TEST(kms_round_trips) {
    static uint8_t plain[70000], sealed[70000 + 28], back[70000 + 28];
    uint8_t dk[64], nonce[12];
    ssmb_kms_keys client, agent;
    uint32_t seed = 0x2545F491u;
    size_t len, n, got;
    long ok = 0, total = 0;
    fill(dk, sizeof dk, &seed);
    CHECK(ssmb_kms_keys_init(&client, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_OK);
    CHECK(ssmb_kms_keys_init(&agent, SSMB_CHANNEL_AGENT, dk, 64) == SSMB_OK);
    for (len = 0; len <= 70000; len += (len < 300 ? 1 : len < 5000 ? 97 : 12345)) {
        const ssmb_kms_keys *from = (len & 1) ? &client : &agent, *to = (len & 1) ? &agent : &client;
        int good = 1;
        fill(plain, len, &seed);
        fill(nonce, 12, &seed);
        good &= CHECK(ssmb_kms_encrypt_payload(from, plain, len, nonce, sealed, sizeof sealed, &n) == SSMB_OK);
        good &= CHECK(n == len + 28) && CHECK(memcmp(sealed, nonce, 12) == 0);
        good &= CHECK(ssmb_kms_decrypt_payload(to, sealed, n, back, sizeof back, &got) == SSMB_OK);
        good &= CHECK(got == len) && CHECK(memcmp(back, plain, len) == 0);
        /* in place: the plaintext at the start of the buffer, sealed over it */
        memcpy(back, plain, len);
        good &= CHECK(ssmb_kms_encrypt_payload(from, back, len, nonce, back, sizeof back, &n) == SSMB_OK);
        good &= CHECK(memcmp(back, sealed, n) == 0);
        /* in place: the plaintext already where the ciphertext goes */
        memcpy(back + 12, plain, len);
        good &= CHECK(ssmb_kms_encrypt_payload(from, back + 12, len, nonce, back, sizeof back, &n) == SSMB_OK);
        good &= CHECK(memcmp(back, sealed, n) == 0);
        /* opened in place, both at the start and where the ciphertext sits */
        good &= CHECK(ssmb_kms_decrypt_payload(to, back, n, back, sizeof back, &got) == SSMB_OK);
        good &= CHECK(got == len) && CHECK(memcmp(back, plain, len) == 0);
        memcpy(back, sealed, n);
        good &= CHECK(ssmb_kms_decrypt_payload(to, back, n, back + 12, sizeof back - 12, &got) == SSMB_OK);
        good &= CHECK(memcmp(back + 12, plain, len) == 0);
        total++;
        if (good) ok++;
    }
    ssmbt_report(suite("round trips"), ok, total, "lengths");
}

SSMB_TEST(kms_payload_type_rules) {
    /* §6.4: the client sends Output encrypted; the agent Output, StdErr,
       ExitCode. Each side decrypts what the other encrypts. */
    uint32_t t;
    long ok = 0, total = 0;
    for (t = 0; t <= 13; t++) {
        int client_sends = t == SSMB_PAYLOAD_OUTPUT;
        int agent_sends = t == SSMB_PAYLOAD_OUTPUT || t == SSMB_PAYLOAD_STDERR || t == SSMB_PAYLOAD_EXIT_CODE;
        total++;
        if (CHECK(ssmb_kms_encrypts(SSMB_CHANNEL_CLIENT, t) == client_sends) &&
            CHECK(ssmb_kms_encrypts(SSMB_CHANNEL_AGENT, t) == agent_sends) &&
            CHECK(ssmb_kms_decrypts(SSMB_CHANNEL_CLIENT, t) == agent_sends) &&
            CHECK(ssmb_kms_decrypts(SSMB_CHANNEL_AGENT, t) == client_sends) && CHECK(!ssmb_kms_encrypts(7, t)) &&
            CHECK(!ssmb_kms_decrypts(7, t)))
            ok++;
    }
    ssmbt_report("kms payload type rules", ok, total, "types");
    CHECK(!ssmb_kms_encrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_SIZE));
    CHECK(!ssmb_kms_encrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_FLAG));
    CHECK(!ssmb_kms_encrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE));
    CHECK(!ssmb_kms_decrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_HANDSHAKE_REQUEST));
    CHECK(!ssmb_kms_decrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_FLAG));
    CHECK(!ssmb_kms_decrypts(SSMB_CHANNEL_CLIENT, SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST));
    CHECK(ssmb_kms_supported() == (strcmp(ssmb_tls_backend(), "none") != 0));
}

/* The answer to a JSON text (its result only). */
static ssmb_result answer_text(const ssmb_kms_keys *k, const char *json) {
    char out[1024];
    size_t n = 0;
    return ssmb_kms_challenge_answer(k, json, strlen(json), test_nonce, out, sizeof out, &n);
}

SSMB_TEST(kms_challenge_failures) {
    uint8_t dk[64], challenge[64], other[64], big[SSMB_KMS_CHALLENGE_MAX + 1];
    ssmb_kms_keys client, agent;
    char req[1024], resp[1024], out[1024];
    size_t rn = 0, sn = 0, n = 0;
    uint32_t seed = 77;
    fill(dk, sizeof dk, &seed);
    fill(challenge, sizeof challenge, &seed);
    memcpy(other, challenge, sizeof other);
    other[63] ^= 1;
    CHECK(ssmb_kms_keys_init(&client, SSMB_CHANNEL_CLIENT, dk, 64) == SSMB_OK);
    CHECK(ssmb_kms_keys_init(&agent, SSMB_CHANNEL_AGENT, dk, 64) == SSMB_OK);
    CHECK(ssmb_kms_challenge_request(&agent, challenge, 64, test_nonce, req, sizeof req, &rn) == SSMB_OK);
    CHECK(rn == 14 + 124 + 2 && strlen(req) == rn);
    CHECK(ssmb_kms_challenge_answer(&client, req, rn, test_nonce + 0, resp, sizeof resp, &sn) == SSMB_OK);
    CHECK(ssmb_kms_challenge_verify(&agent, challenge, 64, resp, sn) == SSMB_OK);
    /* a different challenge, a shorter one, or the agent's own request back */
    CHECK(ssmb_kms_challenge_verify(&agent, other, 64, resp, sn) == SSMB_ERR_AUTH);
    CHECK(ssmb_kms_challenge_verify(&agent, challenge, 63, resp, sn) == SSMB_ERR_AUTH);
    CHECK(ssmb_kms_challenge_verify(&agent, challenge, 64, req, rn) == SSMB_ERR_AUTH);
    /* the wrong side answering, a tampered request */
    CHECK(ssmb_kms_challenge_answer(&agent, req, rn, test_nonce, out, sizeof out, &n) == SSMB_ERR_AUTH);
    memcpy(out, req, rn + 1);
    out[40] = out[40] == 'A' ? 'B' : 'A';
    CHECK(ssmb_kms_challenge_answer(&client, out, rn, test_nonce, resp, sizeof resp, &n) == SSMB_ERR_AUTH);
    /* JSON, base64 and length problems */
    CHECK(answer_text(&client, "{\"Challenge\":") == SSMB_ERR_JSON);
    CHECK(answer_text(&client, "{\"Other\":\"AAAA\"}") == SSMB_ERR_JSON);
    CHECK(answer_text(&client, "{\"Challenge\":\"A*AA\"}") == SSMB_ERR_MALFORMED);
    CHECK(answer_text(&client, "{\"Challenge\":\"AAAA\"}") == SSMB_ERR_TRUNCATED);
    CHECK(ssmb_kms_challenge_request(&agent, big, sizeof big, test_nonce, out, sizeof out, &n) == SSMB_ERR_LIMIT);
    CHECK(ssmb_kms_challenge_verify(&agent, big, sizeof big, resp, sn) == SSMB_ERR_LIMIT);
    {
        /* a sealed challenge longer than SSMB_KMS_CHALLENGE_MAX */
        static uint8_t sealed[SSMB_KMS_CHALLENGE_MAX + 1 + 28];
        static char json[1024];
        size_t bn = 0, jn = 0;
        memset(big, 3, sizeof big);
        CHECK(ssmb_kms_encrypt_payload(&agent, big, sizeof big, test_nonce, sealed, sizeof sealed, &bn) == SSMB_OK);
        CHECK(ssmb_challenge_build(sealed, bn, json, sizeof json, &jn) == SSMB_OK);
        CHECK(ssmb_kms_challenge_answer(&client, json, jn, test_nonce, out, sizeof out, &n) == SSMB_ERR_LIMIT);
    }
    /* a short output buffer reports the size */
    CHECK(ssmb_kms_challenge_answer(&client, req, rn, test_nonce, out, 10, &n) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(n == rn);
    CHECK(ssmb_kms_challenge_answer(&client, req, rn, NULL, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
}

static ssmb_result parse_text(const char *json, uint8_t *blob, size_t cap, size_t *n, int *ack) {
    return ssmb_kms_action_result_parse(json, strlen(json), blob, cap, n, ack);
}

SSMB_TEST(kms_action_result) {
    static const uint8_t blob[] = {0x01, 0x02, 0x03, 0xfe, 0xff};
    uint8_t back[16];
    char out[256];
    size_t n = 0, bn = 0;
    int ack = -1;
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 0, out, sizeof out, &n) == SSMB_OK);
    CHECK_EQ_STR(out, "{\"KMSCipherTextKey\":\"AQID/v8=\",\"KMSCipherTextHash\":null}");
    CHECK(n == strlen(out));
    CHECK(ssmb_kms_action_result_parse(out, n, back, sizeof back, &bn, &ack) == SSMB_OK);
    CHECK(bn == sizeof blob && memcmp(back, blob, bn) == 0 && ack == 0);
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 1, out, sizeof out, &n) == SSMB_OK);
    CHECK_EQ_STR(out,
                 "{\"KMSCipherTextKey\":\"AQID/v8=\",\"KMSCipherTextHash\":null,\"ChallengeAcknowledgement\":true}");
    CHECK(ssmb_kms_action_result_parse(out, n, back, sizeof back, &bn, &ack) == SSMB_OK && ack == 1);
    /* exact fit without the NUL, one short, size query */
    memset(out, '#', sizeof out);
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 1, out, n, &bn) == SSMB_OK && bn == n && out[n] == '#');
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 1, out, n - 1, &bn) == SSMB_ERR_BUFFER_TOO_SMALL &&
          bn == n);
    CHECK(ssmb_kms_action_result_build(blob, sizeof blob, 1, NULL, 0, &bn) == SSMB_ERR_BUFFER_TOO_SMALL && bn == n);
    CHECK(ssmb_kms_action_result_build(blob, 0, 0, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    CHECK(ssmb_kms_action_result_build(NULL, 3, 0, out, sizeof out, &n) == SSMB_ERR_INVALID_ARG);
    /* parse problems */
    CHECK(parse_text("{\"KMSCipherTextHash\":null}", back, sizeof back, &bn, &ack) == SSMB_ERR_JSON);
    CHECK(parse_text("[]", back, sizeof back, &bn, &ack) == SSMB_ERR_JSON);
    CHECK(parse_text("{\"KMSCipherTextKey\":\"AQI\"}", back, sizeof back, &bn, &ack) == SSMB_ERR_MALFORMED);
    CHECK(parse_text("{\"KMSCipherTextKey\":\"AQID\",\"ChallengeAcknowledgement\":1}", back, sizeof back, &bn,
                     &ack) == SSMB_ERR_JSON);
    ack = -1;
    CHECK(parse_text("{\"KMSCipherTextKey\":\"AQID\",\"ChallengeAcknowledgement\":null}", back, sizeof back, &bn,
                     &ack) == SSMB_OK);
    CHECK(ack == 0 && bn == 3);
    CHECK(parse_text("{\"KMSCipherTextKey\":\"AQID\"}", back, 2, &bn, &ack) == SSMB_ERR_BUFFER_TOO_SMALL);
}

/* ---- independent references ---- */

/* BearSSL's portable code (ct64 AES, ctmul64 GHASH), called directly, must
   give the same bytes as the library: in the default build the library
   runs AES-NI and PCLMUL on CPUs that have them, in the mbedTLS build it
   runs mbedTLS. */
SSMB_TEST(kms_against_bearssl_portable) {
    static uint8_t plain[5000], mine[5000 + 28], ref[5000 + 28];
    uint8_t key[32], nonce[12];
    uint32_t seed = 99;
    size_t len, n;
    long ok = 0, total = 0;
    for (len = 0; len <= 5000; len += (len < 80 ? 1 : 331)) {
        br_aes_ct64_ctr_keys aes;
        br_gcm_context gcm;
        fill(key, 32, &seed);
        fill(nonce, 12, &seed);
        fill(plain, len, &seed);
        CHECK(ssmb_aes256_gcm_seal(key, 32, nonce, plain, len, mine, sizeof mine, &n) == SSMB_OK);
        br_aes_ct64_ctr_init(&aes, key, 32);
        br_gcm_init(&gcm, &aes.vtable, br_ghash_ctmul64);
        br_gcm_reset(&gcm, nonce, 12);
        br_gcm_flip(&gcm);
        memcpy(ref, nonce, 12);
        memcpy(ref + 12, plain, len);
        br_gcm_run(&gcm, 1, ref + 12, len);
        br_gcm_get_tag(&gcm, ref + 12 + len);
        total++;
        if (CHECK(n == len + 28) && CHECK_EQ_MEM(mine, ref, n)) ok++;
    }
    ssmbt_report(suite("seals against bearssl ct64/ctmul64"), ok, total, "lengths");
}

/* Python's `cryptography` (AESGCM) checks seals made here, when present. */
SSMB_TEST(kms_python_cryptography_cross_check) {
    static const char script[] =
        "import sys\n"
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
        "n = 0\n"
        "for line in open(sys.argv[1]):\n"
        "    k, nonce, p, s = [bytes.fromhex(x) for x in line.split(',')]\n"
        "    assert s == nonce + AESGCM(k).encrypt(nonce, p, None), 'seal differs'\n"
        "    assert AESGCM(k).decrypt(s[:12], s[12:], None) == p\n"
        "    n += 1\n"
        "print(n)\n";
    char path[] = "/tmp/ssmb-kms-XXXXXX", spath[64], cmd[256];
    static uint8_t plain[3000], sealed[3000 + 28];
    uint8_t key[32], nonce[12];
    uint32_t seed = 4242;
    size_t len, n, i;
    long total = 0;
    FILE *f, *sf;
    int fd, rc;
    if (system("python3 -c 'import cryptography' >/dev/null 2>&1") != 0) {
        printf("kms python cross-check: skipped (python3 with the cryptography module is not installed)\n");
        return;
    }
    fd = mkstemp(path);
    if (!CHECK(fd >= 0)) return;
    f = fdopen(fd, "w");
    if (!CHECK(f != NULL)) return;
    for (len = 0; len <= 3000; len += (len < 70 ? 1 : 173)) {
        fill(key, 32, &seed);
        fill(nonce, 12, &seed);
        fill(plain, len, &seed);
        if (!CHECK(ssmb_aes256_gcm_seal(key, 32, nonce, plain, len, sealed, sizeof sealed, &n) == SSMB_OK)) break;
        for (i = 0; i < 32; i++) fprintf(f, "%02x", key[i]);
        fputc(',', f);
        for (i = 0; i < 12; i++) fprintf(f, "%02x", nonce[i]);
        fputc(',', f);
        for (i = 0; i < len; i++) fprintf(f, "%02x", plain[i]);
        fputc(',', f);
        for (i = 0; i < n; i++) fprintf(f, "%02x", sealed[i]);
        fputc('\n', f);
        total++;
    }
    fclose(f);
    snprintf(spath, sizeof spath, "%s.py", path);
    sf = fopen(spath, "w");
    if (CHECK(sf != NULL)) {
        fputs(script, sf);
        fclose(sf);
        snprintf(cmd, sizeof cmd, "python3 %s %s >/dev/null", spath, path);
        rc = system(cmd);
        ssmbt_report(suite("seals checked by python cryptography"), rc == 0 ? total : 0, total, "payloads");
        unlink(spath);
    }
    unlink(path);
}
