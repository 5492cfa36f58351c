/* The JSON reader and unescaper on arbitrary text, then a walk of every
   token with every typed getter. */
#include "../../ssmbridge.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ssmb_json_token toks[256];
    ssmb_json doc;
    int32_t i;
    if (ssmb_json_parse(&doc, (const char *)data, size, toks, 256) != SSMB_OK) return 0;
    for (i = 0; i < doc.count; i++) {
        ssmb_str raw = ssmb_json_raw(&doc, i);
        int64_t v;
        uint32_t u;
        int b;
        char out[512];
        size_t n;
        (void)ssmb_json_get_i64(&doc, i, &v);
        (void)ssmb_json_get_u32(&doc, i, &u);
        (void)ssmb_json_get_bool(&doc, i, &b);
        (void)ssmb_json_is_null(&doc, i);
        (void)ssmb_json_size(&doc, i);
        (void)ssmb_json_at(&doc, i, 0);
        (void)ssmb_json_find(&doc, i, "SessionId");
        if (ssmb_json_kind(&doc, i) == SSMB_JSON_STRING) (void)ssmb_json_unescape(raw, out, sizeof out, &n);
    }
    return 0;
}
