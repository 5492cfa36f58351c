/* The test runner: runs every registered test (or those whose name contains
   --filter TEXT), prints failures with file and line, suite counts as the
   tests report them, and a last line "N passed, N failed" counting tests. */
#define _POSIX_C_SOURCE 200809L
#include "ssmb_test.h"

#include <stdlib.h>
#define JSMN_STATIC
#include <jsmn.h>

#define SSMBT_MAX_TESTS 1024

typedef struct ssmbt_entry {
    const char *name;
    const char *file;
    ssmbt_fn fn;
} ssmbt_entry;

static ssmbt_entry ssmbt_tests[SSMBT_MAX_TESTS];
static int ssmbt_count;
static long ssmbt_current_failures;
static const char *ssmbt_current_name = "";

void ssmbt_register(const char *name, const char *file, ssmbt_fn fn) {
    if (ssmbt_count < SSMBT_MAX_TESTS) {
        ssmbt_tests[ssmbt_count].name = name;
        ssmbt_tests[ssmbt_count].file = file;
        ssmbt_tests[ssmbt_count].fn = fn;
        ssmbt_count++;
    }
}

long ssmbt_failures(void) { return ssmbt_current_failures; }

int ssmbt_fail(const char *file, int line, const char *what) {
    if (ssmbt_current_failures < 20) printf("  FAIL %s:%d [%s]: %s\n", file, line, ssmbt_current_name, what);
    ssmbt_current_failures++;
    return 0;
}

static void ssmbt_dump(const char *label, const uint8_t *p, size_t n) {
    size_t i;
    printf("    %s:", label);
    for (i = 0; i < n && i < 160; i++) printf("%s%02x", i % 32 == 0 ? "\n      " : "", p[i]);
    if (n > 160) printf(" ... (%zu bytes)", n);
    printf("\n");
}

int ssmbt_fail_mem(const char *file, int line, const char *what, const void *got, const void *want, size_t n) {
    const uint8_t *g = (const uint8_t *)got, *w = (const uint8_t *)want;
    size_t first = 0;
    while (first < n && g[first] == w[first]) first++;
    if (ssmbt_current_failures < 20) {
        printf("  FAIL %s:%d [%s]: %s (first difference at byte %zu of %zu)\n", file, line, ssmbt_current_name,
               what, first, n);
        ssmbt_dump("got ", g, n);
        ssmbt_dump("want", w, n);
    }
    ssmbt_current_failures++;
    return 0;
}

void ssmbt_report(const char *suite, long ok, long total, const char *unit) {
    printf("%s: %ld/%ld %s\n", suite, ok, total, unit ? unit : "cases");
    if (ok != total) ssmbt_fail(__FILE__, __LINE__, "suite count incomplete");
}

const char *ssmbt_vector_path(const char *rel, char *buf, size_t cap) {
    const char *dir = getenv("SSMB_VECTORS");
    snprintf(buf, cap, "%s/%s", dir && *dir ? dir : "tests/vectors", rel);
    return buf;
}

char *ssmbt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = (char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static int ssmbt_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

uint8_t *ssmbt_unhex(const char *hex, size_t hex_len, size_t *out_len) {
    uint8_t *out;
    size_t i;
    if (hex_len % 2) return NULL;
    out = (uint8_t *)malloc(hex_len / 2 + 1);
    if (!out) return NULL;
    for (i = 0; i < hex_len; i += 2) {
        int hi = ssmbt_hexval(hex[i]), lo = ssmbt_hexval(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    if (out_len) *out_len = hex_len / 2;
    return out;
}

/* ---- JSON for vector files (jsmn directly) ---- */

int ssmbt_json_load(ssmbt_json *j, const char *text, size_t len) {
    jsmn_parser p;
    int n;
    jsmn_init(&p);
    n = jsmn_parse(&p, text, len, NULL, 0);
    if (n <= 0) return -1;
    j->toks = malloc(sizeof(jsmntok_t) * (size_t)n);
    if (!j->toks) return -1;
    jsmn_init(&p);
    j->count = jsmn_parse(&p, text, len, (jsmntok_t *)j->toks, (unsigned)n);
    j->text = text;
    return j->count == n ? 0 : -1;
}

void ssmbt_json_free(ssmbt_json *j) {
    free(j->toks);
    j->toks = NULL;
}

/* Index just past the value at tok (skips its whole subtree). */
static int ssmbt_json_skip(const ssmbt_json *j, int tok) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    int end = t[tok].end, i = tok + 1;
    while (i < j->count && t[i].start < end) i++;
    return i;
}

int ssmbt_json_get(const ssmbt_json *j, int obj, const char *key) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    int i, k, klen = (int)strlen(key);
    if (obj < 0 || obj >= j->count || t[obj].type != JSMN_OBJECT) return -1;
    for (i = obj + 1, k = 0; k < t[obj].size; k++) {
        if (t[i].end - t[i].start == klen && memcmp(j->text + t[i].start, key, (size_t)klen) == 0) return i + 1;
        i = ssmbt_json_skip(j, i + 1);
    }
    return -1;
}

int ssmbt_json_len(const ssmbt_json *j, int tok) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    return tok < 0 ? 0 : t[tok].size;
}

int ssmbt_json_at(const ssmbt_json *j, int arr, int i) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    int k, pos = arr + 1;
    if (arr < 0 || t[arr].type != JSMN_ARRAY || i >= t[arr].size) return -1;
    for (k = 0; k < i; k++) pos = ssmbt_json_skip(j, pos);
    return pos;
}

int ssmbt_json_is_null(const ssmbt_json *j, int tok) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    return tok >= 0 && t[tok].type == JSMN_PRIMITIVE && j->text[t[tok].start] == 'n';
}

static void ssmbt_put_utf8(char *out, size_t *o, unsigned cp) {
    if (cp < 0x80) out[(*o)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 63));
        out[(*o)++] = (char)(0x80 | (cp & 63));
    } else {
        out[(*o)++] = (char)(0xf0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 63));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 63));
        out[(*o)++] = (char)(0x80 | (cp & 63));
    }
}

char *ssmbt_json_str(const ssmbt_json *j, int tok, size_t *len) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    const char *s;
    size_t n, i, o = 0;
    char *out;
    if (tok < 0) return NULL;
    s = j->text + t[tok].start;
    n = (size_t)(t[tok].end - t[tok].start);
    out = (char *)malloc(n + 1);
    if (!out) return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            out[o++] = s[i];
            continue;
        }
        i++;
        switch (s[i]) {
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'u': {
            unsigned cp = 0;
            int k;
            for (k = 1; k <= 4 && i + (size_t)k < n; k++) cp = cp * 16 + (unsigned)ssmbt_hexval(s[i + (size_t)k]);
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < n + 1 && s[i + 1] == '\\' && s[i + 2] == 'u') {
                unsigned lo = 0;
                for (k = 3; k <= 6; k++) lo = lo * 16 + (unsigned)ssmbt_hexval(s[i + (size_t)k]);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            ssmbt_put_utf8(out, &o, cp);
            break;
        }
        default: out[o++] = s[i]; break;
        }
    }
    out[o] = '\0';
    if (len) *len = o;
    return out;
}

long long ssmbt_json_int(const ssmbt_json *j, int tok) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    return tok < 0 ? 0 : strtoll(j->text + t[tok].start, NULL, 10);
}

int ssmbt_json_bool(const ssmbt_json *j, int tok) {
    const jsmntok_t *t = (const jsmntok_t *)j->toks;
    return tok >= 0 && j->text[t[tok].start] == 't';
}

int main(int argc, char **argv) {
    const char *filter = NULL;
    int i, passed = 0, failed = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) filter = argv[++i];
        else if (strcmp(argv[i], "--list") == 0) {
            int k;
            for (k = 0; k < ssmbt_count; k++) printf("%s (%s)\n", ssmbt_tests[k].name, ssmbt_tests[k].file);
            return 0;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 0; i < ssmbt_count; i++) {
        if (filter && !strstr(ssmbt_tests[i].name, filter)) continue;
        ssmbt_current_name = ssmbt_tests[i].name;
        ssmbt_current_failures = 0;
        ssmbt_tests[i].fn();
        if (ssmbt_current_failures) {
            printf("FAILED %s (%ld failed checks)\n", ssmbt_tests[i].name, ssmbt_current_failures);
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
