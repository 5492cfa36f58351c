/* A whole sans-I/O connection: the upgrade answered correctly, then the
   input's bytes as the server's stream, fed in pieces whose sizes come
   from the input, with messages taken and timers run in between. */
#include "../../ssmbridge.h"
#include "fuzz.h"

#include <stdio.h>
#include <string.h>

static ssmb_result counter_random(void *buf, size_t len, void *user_data) {
    uint8_t *p = (uint8_t *)buf;
    uint32_t *s = (uint32_t *)user_data;
    size_t i;
    for (i = 0; i < len; i++) p[i] = (uint8_t)(*s = *s * 1103515245u + 12345u) >> 16;
    return SSMB_OK;
}

static int64_t fixed_utc(void *user_data) {
    (void)user_data;
    return 1714564800;
}

/* Reads the request, answers 101 with the right accept key. */
static int upgrade(ssmb_conn *c) {
    char req[8192], key[64] = "", resp[256], accept[29];
    size_t len = 0, n;
    const uint8_t *out;
    const char *k;
    while ((out = ssmb_conn_send_buf(c, &n)) != NULL && n && len + n < sizeof req) {
        memcpy(req + len, out, n);
        len += n;
        ssmb_conn_send_ack(c, n);
    }
    req[len] = '\0';
    k = strstr(req, "Sec-WebSocket-Key: ");
    if (!k || sscanf(k + 19, "%63[^\r]", key) != 1 || ssmb_ws_accept_key(key, strlen(key), accept) != SSMB_OK)
        return 0;
    n = (size_t)snprintf(resp, sizeof resp,
                         "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                         accept);
    return ssmb_conn_feed(c, resp, n, &len, 0) == SSMB_OK && ssmb_conn_get_state(c) == SSMB_CONN_OPEN;
}

static void drain(ssmb_conn *c) {
    const uint8_t *out;
    size_t n;
    ssmb_ws_piece p;
    while (ssmb_conn_recv_message(c, &p) == SSMB_OK) {
        size_t took;
        if (p.len && !p.data) __builtin_trap();
        (void)ssmb_conn_send_message(c, p.opcode, p.data, p.len, (p.flags & SSMB_WS_MESSAGE_END) != 0, &took);
    }
    while ((out = ssmb_conn_send_buf(c, &n)) != NULL && n) ssmb_conn_send_ack(c, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ssmb_conn_desc d;
    ssmb_conn *c = NULL;
    uint32_t seed = 7;
    uint64_t now = 0;
    size_t at = 0;
    memset(&d, 0, sizeof d);
    d.url = "ws://localhost/v1/data-channel/fuzz?role=publish_subscribe";
    d.tls_mode = SSMB_TLS_EXTERNAL;
    d.random_fn = counter_random;
    d.random_user_data = &seed;
    d.utc_fn = fixed_utc;
    d.max_message_size = 1 << 16;
    d.buffer_size = 4096;
    if (ssmb_conn_create(&d, &c) != SSMB_OK) return 0;
    if (ssmb_conn_start(c, now) == SSMB_OK && upgrade(c)) {
        while (at < size && ssmb_conn_get_state(c) != SSMB_CONN_CLOSED) {
            size_t step = 1 + data[at] % 64, used = 0;
            if (step > size - at) step = size - at;
            (void)ssmb_conn_feed(c, data + at, step, &used, now);
            at += used ? used : step;
            drain(c);
            now += 500;
            (void)ssmb_conn_tick(c, now);
        }
    }
    ssmb_conn_destroy(c);
    return 0;
}
