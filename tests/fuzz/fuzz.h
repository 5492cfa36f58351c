/* Shared by the fuzz targets: each defines LLVMFuzzerTestOneInput. Built
   with clang's libFuzzer by `make fuzz`, and with replay.c (a plain main
   that replays the seed corpus and seeded mutations of it) by `make test`. */
#ifndef SSMB_FUZZ_H
#define SSMB_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#ifdef __cplusplus
}
#endif
#endif
