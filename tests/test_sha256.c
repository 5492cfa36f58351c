/* sha256 room: NIST CAVP (short, long, Monte Carlo) and the extra vectors on
   every implementation this CPU runs, the implementations against each
   other on pseudo-random input, and streaming against one-shot. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>

/* The implementations to test: portable always, SHA-NI when the CPU has it. */
static int impls_to_test(ssmb_sha256_impl out[2]) {
    int n = 0;
    out[n++] = SSMB_SHA256_PORTABLE;
    if (ssmb_sha256_impl_available(SSMB_SHA256_SHA_NI)) out[n++] = SSMB_SHA256_SHA_NI;
    return n;
}

static void sha256_with(ssmb_sha256_impl impl, const void *msg, size_t len, uint8_t out[32]) {
    ssmb_sha256_ctx ctx;
    CHECK(ssmb_sha256_init_impl(&ctx, impl) == SSMB_OK);
    ssmb_sha256_update(&ctx, msg, len);
    ssmb_sha256_final(&ctx, out);
}

/* Fixed-seed xorshift64: the same "random" input on every run. */
static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *s) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)(xorshift(s) >> 56);
}

/* Feeds msg to ctx in pieces cut at random points (empty pieces included). */
static void update_in_pieces(ssmb_sha256_ctx *ctx, const uint8_t *msg, size_t len, uint64_t *s) {
    int pieces = 0;
    while (len) {
        size_t take = xorshift(s) % 4 == 0 ? (size_t)(xorshift(s) % 4) : (size_t)(xorshift(s) % (len + 1));
        if (++pieces > 64 || take > len) take = len;
        ssmb_sha256_update(ctx, msg, take);
        msg += take;
        len -= take;
    }
}

/* ---- NIST CAVP .rsp files ---------------------------------------------- */

/* The value of the next line "KEY = value" at or after *pos (CRLF or LF
   endings); moves *pos past that line. 0 when there is none. */
static int rsp_value(const char **pos, const char *key, const char **val, size_t *len) {
    size_t klen = strlen(key);
    const char *p = *pos;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n;
        if (!end) end = p + strlen(p);
        n = (size_t)(end - p);
        if (n && p[n - 1] == '\r') n--;
        *pos = *end ? end + 1 : end;
        if (n >= klen + 3 && memcmp(p, key, klen) == 0 && memcmp(p + klen, " = ", 3) == 0) {
            *val = p + klen + 3;
            *len = n - klen - 3;
            return 1;
        }
        p = *pos;
    }
    return 0;
}

static char *read_vector(const char *rel, size_t *len) {
    char path[512];
    char *text = ssmbt_read_file(ssmbt_vector_path(rel, path, sizeof path), len);
    if (!text) ssmbt_fail(__FILE__, __LINE__, path);
    return text;
}

/* One "Len / Msg / MD" file on one implementation; returns cases passed. */
static long run_msg_file(const char *text, ssmb_sha256_impl impl, long *total) {
    const char *pos = text, *v;
    size_t n;
    long ok = 0;
    *total = 0;
    while (rsp_value(&pos, "Len", &v, &n)) {
        long bits = strtol(v, NULL, 10);
        uint8_t *msg, *md, got[32];
        size_t msg_len = 0, md_len = 0;
        if (!CHECK(rsp_value(&pos, "Msg", &v, &n))) break;
        msg = ssmbt_unhex(v, n, &msg_len);
        if (!CHECK(rsp_value(&pos, "MD", &v, &n))) break;
        md = ssmbt_unhex(v, n, &md_len);
        (*total)++;
        /* Len is in bits; "Len = 0" comes with "Msg = 00", the empty message. */
        if (CHECK(msg && md && md_len == 32 && bits % 8 == 0 && (size_t)(bits / 8) <= msg_len)) {
            sha256_with(impl, msg, (size_t)(bits / 8), got);
            ok += CHECK_EQ_MEM(got, md, 32);
            if (impl == ssmb_sha256_best_impl()) { /* and as either half of a pair */
                size_t len = (size_t)(bits / 8), i;
                uint8_t *other = (uint8_t *)malloc(len + 1), da[32], db[32];
                if (CHECK(other)) {
                    for (i = 0; i < len; i++) other[i] = (uint8_t)(msg[i] ^ 0x5a);
                    ssmb_sha256_pair(msg, len, other, len, da, db);
                    CHECK_EQ_MEM(da, md, 32);
                    ssmb_sha256_pair(other, len / 2, msg, len, da, db); /* and beside a shorter one */
                    CHECK_EQ_MEM(db, md, 32);
                    free(other);
                }
            }
        }
        free(msg);
        free(md);
    }
    return ok;
}

static void nist_msg_suite(const char *rel, const char *suite, long expected) {
    ssmb_sha256_impl impls[2];
    int i, n = impls_to_test(impls);
    size_t len;
    char *text = read_vector(rel, &len);
    if (!text) return;
    for (i = 0; i < n; i++) {
        char name[96];
        long total, ok = run_msg_file(text, impls[i], &total);
        CHECK_EQ_INT(total, expected);
        snprintf(name, sizeof name, "%s [%s]", suite, ssmb_sha256_impl_name(impls[i]));
        ssmbt_report(name, ok, total, "cases");
    }
    free(text);
}

SSMB_TEST(sha256_nist_short) {
    nist_msg_suite("sha256/nist-cavp-shabytetestvectors/SHA256ShortMsg.rsp", "sha256 nist short", 65);
}

SSMB_TEST(sha256_nist_long) {
    nist_msg_suite("sha256/nist-cavp-shabytetestvectors/SHA256LongMsg.rsp", "sha256 nist long", 64);
}

/* SHAVS §6.4 Monte Carlo: MD[i] = SHA-256(MD[i-3] || MD[i-2] || MD[i-1])
   for i = 3..1002, starting from three copies of the seed; MD[1002] is the
   checkpoint and the next seed. */
static long run_monte(const char *text, ssmb_sha256_impl impl, long *total) {
    const char *pos = text, *v;
    size_t n, seed_len = 0;
    uint8_t window[96], *seed;
    long ok = 0;
    int i;
    *total = 0;
    if (!CHECK(rsp_value(&pos, "Seed", &v, &n))) return 0;
    seed = ssmbt_unhex(v, n, &seed_len);
    if (!CHECK(seed && seed_len == 32)) {
        free(seed);
        return 0;
    }
    memcpy(window + 64, seed, 32);
    free(seed);
    while (rsp_value(&pos, "MD", &v, &n)) {
        size_t md_len = 0;
        uint8_t *md = ssmbt_unhex(v, n, &md_len);
        memcpy(window, window + 64, 32);
        memcpy(window + 32, window + 64, 32);
        for (i = 3; i <= 1002; i++) {
            uint8_t next[32];
            sha256_with(impl, window, 96, next);
            memmove(window, window + 32, 64);
            memcpy(window + 64, next, 32);
        }
        (*total)++;
        if (CHECK(md && md_len == 32)) ok += CHECK_EQ_MEM(window + 64, md, 32);
        free(md);
    }
    return ok;
}

SSMB_TEST(sha256_nist_monte) {
    ssmb_sha256_impl impls[2];
    int i, n = impls_to_test(impls);
    size_t len;
    char *text = read_vector("sha256/nist-cavp-shabytetestvectors/SHA256Monte.rsp", &len);
    if (!text) return;
    for (i = 0; i < n; i++) {
        char name[96];
        long total, ok = run_monte(text, impls[i], &total);
        CHECK_EQ_INT(total, 100);
        snprintf(name, sizeof name, "sha256 nist monte [%s]", ssmb_sha256_impl_name(impls[i]));
        ssmbt_report(name, ok, total, "checkpoints");
    }
    free(text);
}

/* ---- sha256-extra.json -------------------------------------------------- */

/* The message of one extra vector, built from its description. */
static uint8_t *extra_message(const ssmbt_json *j, int vec, size_t *len) {
    int ascii = ssmbt_json_get(j, vec, "msg_ascii");
    char *pattern;
    uint8_t *msg;
    size_t i;
    *len = (size_t)ssmbt_json_int(j, ssmbt_json_get(j, vec, "len"));
    if (ascii >= 0) {
        size_t n = 0;
        char *s = ssmbt_json_str(j, ascii, &n);
        CHECK(n == *len);
        return (uint8_t *)s;
    }
    pattern = ssmbt_json_str(j, ssmbt_json_get(j, vec, "msg_pattern"), NULL);
    msg = (uint8_t *)malloc(*len + 1);
    if (msg && pattern && strcmp(pattern, "byte[i] = i mod 256") == 0) {
        for (i = 0; i < *len; i++) msg[i] = (uint8_t)i;
    } else if (msg && pattern && strncmp(pattern, "'a' repeated ", 13) == 0) {
        memset(msg, 'a', *len);
    } else {
        ssmbt_fail(__FILE__, __LINE__, "unknown msg_pattern in sha256-extra.json");
        free(msg);
        msg = NULL;
    }
    free(pattern);
    return msg;
}

SSMB_TEST(sha256_extra_vectors) {
    ssmb_sha256_impl impls[2];
    int i, k, n = impls_to_test(impls), count;
    size_t len;
    char *text = read_vector("sha256/sha256-extra.json", &len);
    ssmbt_json j;
    long ok[2] = {0, 0};
    if (!text) return;
    if (!CHECK(ssmbt_json_load(&j, text, len) == 0)) {
        free(text);
        return;
    }
    count = ssmbt_json_len(&j, ssmbt_json_get(&j, 0, "vectors"));
    CHECK_EQ_INT(count, 151);
    for (k = 0; k < count; k++) {
        int vec = ssmbt_json_at(&j, ssmbt_json_get(&j, 0, "vectors"), k);
        char *hex = ssmbt_json_str(&j, ssmbt_json_get(&j, vec, "sha256"), NULL);
        size_t msg_len = 0, md_len = 0;
        uint8_t *msg = extra_message(&j, vec, &msg_len), *md = ssmbt_unhex(hex, hex ? strlen(hex) : 0, &md_len);
        for (i = 0; i < n && msg && md && md_len == 32; i++) {
            uint8_t got[32];
            sha256_with(impls[i], msg, msg_len, got);
            ok[i] += CHECK_EQ_MEM(got, md, 32);
        }
        free(msg);
        free(md);
        free(hex);
    }
    for (i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "sha256 extra [%s]", ssmb_sha256_impl_name(impls[i]));
        ssmbt_report(name, ok[i], count, "vectors");
    }
    ssmbt_json_free(&j);
    free(text);
}

/* ---- implementations and streaming ------------------------------------- */

#define RANDOM_MAX_LEN 65536

/* A length from 0..64 KiB, half of the time a short one so that every
   padding boundary gets hit. */
static size_t random_length(uint64_t *s) {
    return xorshift(s) % 2 ? (size_t)(xorshift(s) % 300) : (size_t)(xorshift(s) % (RANDOM_MAX_LEN + 1));
}

SSMB_TEST(sha256_impls_agree_on_random_input) {
    ssmb_sha256_impl impls[2];
    int n = impls_to_test(impls), round, rounds = 200;
    uint8_t *data = (uint8_t *)malloc(RANDOM_MAX_LEN);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    long ok = 0;
    if (!CHECK(data)) return;
    fill_random(data, RANDOM_MAX_LEN, &s);
    for (round = 0; round < rounds && n == 2; round++) {
        size_t len = random_length(&s), off = (size_t)(xorshift(&s) % (RANDOM_MAX_LEN - len + 1));
        uint8_t portable[32], accelerated[32], automatic[32];
        sha256_with(impls[0], data + off, len, portable);
        sha256_with(impls[1], data + off, len, accelerated);
        ssmb_sha256(data + off, len, automatic);
        ok += CHECK_EQ_MEM(accelerated, portable, 32) && CHECK_EQ_MEM(automatic, portable, 32);
    }
    if (n == 2) ssmbt_report("sha256 portable vs sha-ni, random input", ok, rounds, "messages");
    else printf("sha256 portable vs sha-ni: skipped, SHA-NI not compiled in or not on this CPU\n");
    free(data);
}

/* Pairs of different messages, of one length and of two, agree with the
   portable code. */
SSMB_TEST(sha256_pair_equals_two_digests) {
    int round, rounds = 200;
    uint8_t *data = (uint8_t *)malloc(RANDOM_MAX_LEN);
    uint64_t s = 0x5851f42d4c957f2dull;
    long ok = 0;
    if (!CHECK(data)) return;
    fill_random(data, RANDOM_MAX_LEN, &s);
    for (round = 0; round < rounds; round++) {
        size_t len = round < 130 ? (size_t)round : random_length(&s) / 2;
        size_t len_b = round % 2 ? len : random_length(&s) / 2;
        size_t oa = (size_t)(xorshift(&s) % (RANDOM_MAX_LEN / 2 - len + 1));
        size_t ob = RANDOM_MAX_LEN / 2 + (size_t)(xorshift(&s) % (RANDOM_MAX_LEN / 2 - len_b + 1));
        uint8_t wa[32], wb[32], ga[32], gb[32];
        sha256_with(SSMB_SHA256_PORTABLE, data + oa, len, wa);
        sha256_with(SSMB_SHA256_PORTABLE, data + ob, len_b, wb);
        ssmb_sha256_pair(data + oa, len, data + ob, len_b, ga, gb);
        ok += CHECK_EQ_MEM(ga, wa, 32) && CHECK_EQ_MEM(gb, wb, 32);
    }
    ssmbt_report("sha256 pairs vs two portable digests", ok, rounds, "pairs");
    free(data);
}

SSMB_TEST(sha256_streaming_equals_one_shot) {
    ssmb_sha256_impl impls[2];
    int i, n = impls_to_test(impls), round, rounds = 150;
    uint8_t *data = (uint8_t *)malloc(RANDOM_MAX_LEN);
    uint64_t s = 0x0123456789abcdefull;
    long ok = 0;
    if (!CHECK(data)) return;
    fill_random(data, RANDOM_MAX_LEN, &s);
    for (round = 0; round < rounds; round++) {
        size_t len = random_length(&s);
        for (i = 0; i < n; i++) {
            ssmb_sha256_ctx ctx;
            uint8_t whole[32], pieces[32];
            sha256_with(impls[i], data, len, whole);
            CHECK(ssmb_sha256_init_impl(&ctx, impls[i]) == SSMB_OK);
            update_in_pieces(&ctx, data, len, &s);
            ssmb_sha256_final(&ctx, pieces);
            ok += CHECK_EQ_MEM(pieces, whole, 32);
        }
    }
    ssmbt_report("sha256 streaming vs one-shot", ok, (long)rounds * n, "messages");
    free(data);
}

/* Byte-at-a-time updates across every padding boundary up to 200 bytes. */
SSMB_TEST(sha256_byte_at_a_time) {
    ssmb_sha256_impl impls[2];
    int i, n = impls_to_test(impls);
    uint8_t data[200];
    size_t len, k;
    uint64_t s = 42;
    fill_random(data, sizeof data, &s);
    for (i = 0; i < n; i++) {
        for (len = 0; len <= sizeof data; len++) {
            ssmb_sha256_ctx ctx;
            uint8_t whole[32], bytes[32];
            sha256_with(impls[i], data, len, whole);
            CHECK(ssmb_sha256_init_impl(&ctx, impls[i]) == SSMB_OK);
            for (k = 0; k < len; k++) ssmb_sha256_update(&ctx, data + k, 1);
            ssmb_sha256_final(&ctx, bytes);
            if (!CHECK_EQ_MEM(bytes, whole, 32)) break;
        }
    }
}

/* The context is plain data: a copy continues independently ("fork"). */
SSMB_TEST(sha256_context_copy_forks) {
    static const char prefix[] = "The quick brown fox jumps over the lazy dog, then keeps running";
    ssmb_sha256_ctx a, b;
    uint8_t got_a[32], got_b[32], want_a[32], want_b[32];
    char full_a[200], full_b[200];
    ssmb_sha256_init(&a);
    ssmb_sha256_update(&a, prefix, strlen(prefix));
    b = a;
    ssmb_sha256_update(&a, " north", 6);
    ssmb_sha256_update(&b, " south, far away", 16);
    ssmb_sha256_final(&a, got_a);
    ssmb_sha256_final(&b, got_b);
    snprintf(full_a, sizeof full_a, "%s north", prefix);
    snprintf(full_b, sizeof full_b, "%s south, far away", prefix);
    ssmb_sha256(full_a, strlen(full_a), want_a);
    ssmb_sha256(full_b, strlen(full_b), want_b);
    CHECK_EQ_MEM(got_a, want_a, 32);
    CHECK_EQ_MEM(got_b, want_b, 32);
}

#if defined(__x86_64__) && !defined(SSMB_NO_SHA_NI)
/* 1 when /proc/cpuinfo lists the sha_ni flag, 0 when it does not, -1 when
   there is no such file. Read line by line: procfs files report size 0. */
static int cpuinfo_has_sha_ni(void) {
    char line[4096];
    int has = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    while (has != 1 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        has = strstr(line, " sha_ni") != NULL;
    }
    fclose(f);
    return has;
}
#endif

SSMB_TEST(sha256_impl_selection) {
    ssmb_sha256_ctx ctx;
    ssmb_sha256_impl best = ssmb_sha256_best_impl();
    uint8_t out[32];
    CHECK(best == SSMB_SHA256_PORTABLE || best == SSMB_SHA256_SHA_NI);
    CHECK(ssmb_sha256_init_impl(&ctx, SSMB_SHA256_AUTO) == SSMB_OK && ctx.impl == (uint32_t)best);
    CHECK(ssmb_sha256_init_impl(&ctx, SSMB_SHA256_PORTABLE) == SSMB_OK && ctx.impl == SSMB_SHA256_PORTABLE);
    ssmb_sha256_init(&ctx);
    CHECK(ctx.impl == (uint32_t)best);
    CHECK(ssmb_sha256_impl_available(SSMB_SHA256_PORTABLE) && ssmb_sha256_impl_available(SSMB_SHA256_AUTO));
    CHECK(ssmb_sha256_impl_available(SSMB_SHA256_SHA_NI) == (best == SSMB_SHA256_SHA_NI));
    CHECK(ssmb_sha256_init_impl(&ctx, (ssmb_sha256_impl)7) == SSMB_ERR_UNSUPPORTED);
    CHECK(!ssmb_sha256_impl_available((ssmb_sha256_impl)7));
    CHECK_EQ_STR(ssmb_sha256_impl_name(SSMB_SHA256_PORTABLE), "portable");
    CHECK_EQ_STR(ssmb_sha256_impl_name(SSMB_SHA256_SHA_NI), "sha-ni");
    /* Asking twice gives the same answer (the second one from the memo). */
    CHECK(ssmb_sha256_best_impl() == best);
#if defined(__x86_64__) && !defined(SSMB_NO_SHA_NI)
    /* The kernel's view of the CPU, independent of the library's CPUID code
       (a test build with SSMB_NO_SHA_NI has no SHA-NI path to pick). */
    if (cpuinfo_has_sha_ni() == 1) CHECK(best == SSMB_SHA256_SHA_NI);
    if (cpuinfo_has_sha_ni() == 0) CHECK(best == SSMB_SHA256_PORTABLE);
#endif
    /* (NULL, 0) is the empty message (the digest of ShortMsg's Len = 0 case). */
    ssmb_sha256(NULL, 0, out);
    CHECK_EQ_MEM(out, "\xe3\xb0\xc4\x42\x98\xfc\x1c\x14\x9a\xfb\xf4\xc8\x99\x6f\xb9\x24"
                      "\x27\xae\x41\xe4\x64\x9b\x93\x4c\xa4\x95\x99\x1b\x78\x52\xb8\x55", 32);
}

/* Empty updates, (NULL, 0) included, change nothing, even mid-block. */
SSMB_TEST(sha256_empty_updates) {
    ssmb_sha256_impl impls[2];
    int i, n = impls_to_test(impls);
    for (i = 0; i < n; i++) {
        ssmb_sha256_ctx ctx;
        uint8_t got[32], want[32];
        sha256_with(impls[i], "abc", 3, want);
        CHECK(ssmb_sha256_init_impl(&ctx, impls[i]) == SSMB_OK);
        ssmb_sha256_update(&ctx, NULL, 0);
        ssmb_sha256_update(&ctx, "ab", 2);
        ssmb_sha256_update(&ctx, NULL, 0);
        ssmb_sha256_update(&ctx, "c", 1);
        ssmb_sha256_update(&ctx, "", 0);
        ssmb_sha256_final(&ctx, got);
        CHECK_EQ_MEM(got, want, 32);
    }
}
