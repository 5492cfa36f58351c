/* ssmb_test.h - the test suite's own tiny harness: registration, checks with
   hex dumps, suite counts, vector-file helpers (JSON read with jsmn directly,
   independent of the library's own JSON code). */
#ifndef SSMB_TEST_H
#define SSMB_TEST_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*ssmbt_fn)(void);
void ssmbt_register(const char *name, const char *file, ssmbt_fn fn);
/* Records a failed check; returns 0 so it can be used in expressions. */
int ssmbt_fail(const char *file, int line, const char *what);
int ssmbt_fail_mem(const char *file, int line, const char *what, const void *got, const void *want, size_t n);
/* Prints "<suite>: <ok>/<total> <unit>" (one line per suite of vectors). */
void ssmbt_report(const char *suite, long ok, long total, const char *unit);
/* Number of failed checks so far in the running test. */
long ssmbt_failures(void);

/* Path of a file under tests/vectors (SSMB_VECTORS overrides the folder). */
const char *ssmbt_vector_path(const char *rel, char *buf, size_t cap);
/* Whole file, NUL-terminated, malloc'ed (test code only); NULL if missing. */
char *ssmbt_read_file(const char *path, size_t *len);
/* Hex text to malloc'ed bytes (NULL on bad hex). */
uint8_t *ssmbt_unhex(const char *hex, size_t hex_len, size_t *out_len);

/* Minimal JSON access over jsmn for reading vector files. */
typedef struct ssmbt_json {
    const char *text;
    void *toks;          /* jsmntok_t array */
    int count;
} ssmbt_json;
int ssmbt_json_load(ssmbt_json *j, const char *text, size_t len); /* 0 ok */
void ssmbt_json_free(ssmbt_json *j);
int ssmbt_json_get(const ssmbt_json *j, int obj, const char *key); /* -1 if absent */
int ssmbt_json_len(const ssmbt_json *j, int tok);                 /* array/object children */
int ssmbt_json_at(const ssmbt_json *j, int arr, int i);
int ssmbt_json_is_null(const ssmbt_json *j, int tok);
/* String value with JSON escapes decoded (\n, \", \\, \uXXXX): malloc'ed. */
char *ssmbt_json_str(const ssmbt_json *j, int tok, size_t *len);
long long ssmbt_json_int(const ssmbt_json *j, int tok);
int ssmbt_json_bool(const ssmbt_json *j, int tok);

#if defined(__GNUC__) || defined(__clang__)
#define SSMBT__CTOR __attribute__((constructor))
#else
#error "the test harness registers tests with constructors (gcc or clang)"
#endif

#define SSMB_TEST(name)                                                          \
    static void ssmbt_test_##name(void);                                          \
    SSMBT__CTOR static void ssmbt_reg_##name(void) {                              \
        ssmbt_register(#name, __FILE__, ssmbt_test_##name);                       \
    }                                                                             \
    static void ssmbt_test_##name(void)

#define CHECK(c) ((c) ? 1 : ssmbt_fail(__FILE__, __LINE__, #c))
#define CHECK_EQ_INT(a, b)                                                               \
    do {                                                                                 \
        long long ssmbt_a_ = (long long)(a), ssmbt_b_ = (long long)(b);                  \
        if (ssmbt_a_ != ssmbt_b_) {                                                      \
            char ssmbt_m_[256];                                                          \
            snprintf(ssmbt_m_, sizeof ssmbt_m_, "%s == %s (%lld != %lld)", #a, #b,       \
                     ssmbt_a_, ssmbt_b_);                                                \
            ssmbt_fail(__FILE__, __LINE__, ssmbt_m_);                                    \
        }                                                                                \
    } while (0)
#define CHECK_EQ_MEM(got, want, n)                                                        \
    (memcmp((got), (want), (n)) == 0 ? 1                                                 \
                                     : ssmbt_fail_mem(__FILE__, __LINE__, #got " == " #want, \
                                                      (got), (want), (n)))
#define CHECK_EQ_STR(got, want) \
    (strcmp((got), (want)) == 0 ? 1 : ssmbt_fail_mem(__FILE__, __LINE__, #got " == " #want, \
                                                     (got), (want), strlen(want) + 1))

#ifdef __cplusplus
}
#endif
#endif
