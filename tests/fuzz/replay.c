/* A plain main for every fuzz target (with gcc or clang, no libFuzzer):
   replays the files named on the command line (the seed corpus), then runs
   --mutations N seeded mutations of them (bit flips, byte sets, cuts,
   splices, repeats), so `make test` exercises each target briefly and the
   same inputs every time. Prints "fuzz NAME: N/N inputs" and exits 0 when
   nothing crashed (a crash ends the process). */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEEDS 256
#define MAX_INPUT (1 << 17)

static uint32_t rng = 0x9e3779b9u;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static size_t mutate(uint8_t *buf, size_t len, const uint8_t *other, size_t other_len) {
    int rounds = 1 + (int)(next() % 4);
    while (rounds--) {
        uint32_t op = next() % 6, at = len ? next() % (uint32_t)len : 0;
        if (op == 0 && len) buf[at] ^= (uint8_t)(1u << (next() % 8));
        else if (op == 1 && len) buf[at] = (uint8_t)next();
        else if (op == 2 && len) len = at;
        else if (op == 3 && other_len && at + other_len / 2 < MAX_INPUT) {
            size_t n = other_len / 2;
            memcpy(buf + at, other + (other_len - n), n);
            if (at + n > len) len = at + n;
        } else if (op == 4 && len && len * 2 < MAX_INPUT) {
            memcpy(buf + len, buf, len);
            len *= 2;
        } else if (len) {
            static const uint8_t edge[] = {0x00, 0x7f, 0x80, 0xff, 0x7e, '"', '\\', '{', '}', '\r', '\n'};
            buf[at] = edge[next() % sizeof edge];
        }
    }
    return len;
}

int main(int argc, char **argv) {
    static uint8_t *seeds[MAX_SEEDS];
    static size_t seed_len[MAX_SEEDS];
    static uint8_t buf[MAX_INPUT];
    const char *name = "target";
    long mutations = 0, runs = 0, i;
    int n = 0, a;
    for (a = 1; a < argc; a++) {
        FILE *f;
        if (strcmp(argv[a], "--mutations") == 0 && a + 1 < argc) { mutations = atol(argv[++a]); continue; }
        if (strcmp(argv[a], "--name") == 0 && a + 1 < argc) { name = argv[++a]; continue; }
        if (n == MAX_SEEDS || !(f = fopen(argv[a], "rb"))) continue;
        seeds[n] = (uint8_t *)malloc(MAX_INPUT);
        seed_len[n] = seeds[n] ? fread(seeds[n], 1, MAX_INPUT / 2, f) : 0;
        fclose(f);
        if (seeds[n]) n++;
    }
    for (i = 0; i < n; i++, runs++) LLVMFuzzerTestOneInput(seeds[i], seed_len[i]);
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0), runs++;
    for (i = 0; n > 0 && i < mutations; i++, runs++) {
        int s = (int)(next() % (uint32_t)n), o = (int)(next() % (uint32_t)n);
        size_t len = seed_len[s];
        memcpy(buf, seeds[s], len);
        len = mutate(buf, len, seeds[o], seed_len[o]);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz %s: %ld/%ld inputs\n", name, runs, runs);
    for (i = 0; i < n; i++) free(seeds[i]);
    return 0;
}
