/* The HTTP response parser on every prefix of the input (it must be safe
   to call again with a grown buffer), the header helpers, and the chunked
   decoder fed in small pieces. */
#include "../../ssmbridge.h"
#include "fuzz.h"

static void check_head(const char *in, size_t len) {
    ssmb_http_header headers[32];
    ssmb_http_response r;
    int present;
    uint64_t n;
    if (ssmb_http_response_parse(in, len, headers, 32, 4096, &r) != SSMB_OK) return;
    if (r.head_len > len) __builtin_trap();
    (void)ssmb_http_content_length(&r, &present, &n);
    (void)ssmb_http_check_ws_upgrade(&r, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    (void)ssmb_http_header_has_token(&r, "Connection", "upgrade");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    ssmb_http_chunked c;
    size_t at = 0, i;
    for (i = size > 512 ? size - 512 : 0; i <= size; i++) check_head(in, i);
    ssmb_http_chunked_init(&c, 1 << 20);
    while (at < size) {
        size_t len = size - at < 7 ? size - at : 7, used = 0;
        ssmb_str piece;
        ssmb_result r = ssmb_http_chunked_read(&c, in + at, len, &used, &piece);
        if (used > len) __builtin_trap();
        at += used;
        if (r < 0 || r == SSMB_CLOSED) break;
    }
    return 0;
}
