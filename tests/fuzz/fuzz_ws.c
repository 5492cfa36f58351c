/* The WebSocket reader (both roles) on arbitrary bytes, fed whole and in
   pieces whose sizes come from the input itself. */
#include "../../ssmbridge.h"
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void read_all(uint8_t *buf, size_t size, uint32_t flags, size_t step) {
    ssmb_ws_reader r;
    size_t at = 0;
    ssmb_ws_reader_init(&r, flags, 1 << 16);
    while (at < size) {
        size_t len = size - at < step ? size - at : step, used = 0;
        ssmb_ws_piece p;
        ssmb_result res = ssmb_ws_read(&r, buf + at, len, &used, &p);
        if (used > len) __builtin_trap();
        at += used;
        if (res < 0 || res == SSMB_CLOSED) break;
        if (res == SSMB_OK && p.len && !p.data) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    ssmb_ws_frame_header h;
    if (!copy) return 0;
    (void)ssmb_ws_frame_header_parse(data, size, &h);
    memcpy(copy, data, size);
    read_all(copy, size, 0, size ? size : 1);
    memcpy(copy, data, size);
    read_all(copy, size, SSMB_WS_READ_FROM_CLIENT, 1 + (size ? data[0] % 17 : 0));
    free(copy);
    return 0;
}
