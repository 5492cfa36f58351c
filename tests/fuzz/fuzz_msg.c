/* ClientMessage decode, validate and every payload parser on arbitrary
   bytes: errors are fine, touching memory outside the input is not. */
#include "../../ssmbridge.h"
#include "fuzz.h"

#include <string.h>

static void parse_payloads(const uint8_t *p, size_t n) {
    ssmb_ack ack;
    ssmb_handshake_request hreq;
    ssmb_handshake_complete hc;
    ssmb_channel_closed cc;
    uint8_t challenge[256];
    size_t len = 0;
    uint32_t flag;
    int32_t code;
    (void)ssmb_ack_parse(p, n, &ack);
    (void)ssmb_handshake_request_parse(p, n, &hreq);
    (void)ssmb_handshake_complete_parse(p, n, &hc);
    (void)ssmb_channel_closed_parse(p, n, &cc);
    (void)ssmb_challenge_parse(p, n, challenge, sizeof challenge, &len);
    (void)ssmb_flag_decode(p, n, &flag);
    (void)ssmb_exit_code_parse(p, n, &code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ssmb_msg m;
    if (ssmb_msg_decode(data, size, &m) == SSMB_OK) {
        uint8_t again[SSMB_MSG_HEADER_SIZE + 4096];
        size_t n = 0;
        /* A message that validates re-encodes to a frame that validates. */
        if (ssmb_msg_validate(&m) == SSMB_OK && m.payload_size > 0 && m.payload_size <= 4096 &&
            ssmb_msg_encode(&m, again, sizeof again, &n) == SSMB_OK) {
            ssmb_msg back;
            if (ssmb_msg_decode(again, n, &back) != SSMB_OK || ssmb_msg_validate(&back) != SSMB_OK ||
                memcmp(again + 64, data + 64, 16) != 0)
                __builtin_trap();
        }
        parse_payloads(m.payload, m.payload_size);
    }
    parse_payloads(data, size);
    return 0;
}
