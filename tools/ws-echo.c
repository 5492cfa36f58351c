/* ws-echo - connects to a WebSocket server with ssmbridge's engine and sends
   every text and binary message back unchanged, piece by piece as it
   arrives (a long message goes back as fragments of one message). Pings are
   answered by the library. Exits 0 when the server closes cleanly; any
   other end prints one line on stderr and exits 1.

   usage: ws-echo [--ca FILE] URL */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the echo holds: the part of a piece a send did not take yet. While
   it holds one, the engine hands out no further piece (back-pressure), so
   one piece is all it ever holds. */
typedef struct echo {
    ssmb_ws ws;
    uint8_t *rest;
    size_t rest_len, rest_cap;
    uint32_t opcode;
    int final;              /* the rest ends its message */
    int pending;            /* a rest (maybe empty, final) waits for WS_WRITABLE */
    int done;
    int exit_code;
} echo;

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fail(echo *e, const char *what, int32_t result, int32_t detail) {
    fprintf(stderr, "ws-echo: %s: %s (detail %d)\n", what, ssmb_result_str((ssmb_result)result), (int)detail);
    e->exit_code = 1;
    e->done = 1;
}

/* Sends what is held; keeps what the engine does not take. */
static void flush(ssmb_engine *eng, echo *e) {
    size_t taken = 0;
    ssmb_result r;
    if (!e->pending) return;
    r = ssmb_engine_ws_send(eng, e->ws, e->opcode, e->rest, e->rest_len, e->final, &taken);
    if (r == SSMB_AGAIN) return; /* WS_WRITABLE comes when there is room */
    if (r != SSMB_OK) {
        ssmb_engine_ws_abort(eng, e->ws);
        fail(e, "send", r, 0);
        return;
    }
    if (taken) memmove(e->rest, e->rest + taken, e->rest_len - taken);
    e->rest_len -= taken;
    e->pending = e->rest_len > 0;
}

static int hold(echo *e, const ssmb_ws_piece *p) {
    if (p->len > e->rest_cap) {
        uint8_t *grown = (uint8_t *)realloc(e->rest, p->len);
        if (!grown) return 0;
        e->rest = grown;
        e->rest_cap = p->len;
    }
    if (p->len) memcpy(e->rest, p->data, p->len);
    e->rest_len = p->len;
    e->opcode = p->opcode;
    e->final = (p->flags & SSMB_WS_MESSAGE_END) != 0;
    e->pending = 1;
    return 1;
}

static void on_event(ssmb_engine *eng, const ssmb_event *ev, void *user_data) {
    echo *e = (echo *)user_data;
    switch (ev->type) {
    case SSMB_EVENT_WS_MESSAGE:
        /* An empty piece that does not end its message carries nothing. */
        if (ev->piece.len == 0 && !(ev->piece.flags & SSMB_WS_MESSAGE_END)) break;
        if (!hold(e, &ev->piece)) {
            ssmb_engine_ws_abort(eng, e->ws);
            fail(e, "out of memory", SSMB_ERR_NOMEM, 0);
            break;
        }
        flush(eng, e);
        break;
    case SSMB_EVENT_WS_WRITABLE: flush(eng, e); break;
    case SSMB_EVENT_WS_CLOSED:
        if (ev->result == SSMB_CLOSED) e->done = 1;
        else fail(e, "connection", ev->result, ev->detail);
        break;
    default: break;
    }
}

static int usage(void) {
    fprintf(stderr, "usage: ws-echo [--ca FILE] URL\n");
    return 2;
}

int main(int argc, char **argv) {
    ssmb_desc d;
    ssmb_conn_desc cd;
    ssmb_engine *eng = NULL;
    echo e;
    ssmb_result r;
    const char *url = NULL;
    int i;
    memset(&d, 0, sizeof d);
    memset(&cd, 0, sizeof cd);
    memset(&e, 0, sizeof e);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) d.ca_file = argv[++i];
        else if (argv[i][0] == '-' || url) return usage();
        else url = argv[i];
    }
    if (!url) return usage();
    d.event_fn = on_event;
    d.event_user_data = &e;
    d.max_connections = 1;
    r = ssmb_engine_create(&d, &eng);
    if (r != SSMB_OK) {
        fprintf(stderr, "ws-echo: engine: %s\n", ssmb_result_str(r));
        return 1;
    }
    cd.url = url;
    cd.max_message_size = 64u << 20;
    r = ssmb_engine_ws_open(eng, &cd, &e, monotonic_ms(), &e.ws);
    if (r != SSMB_OK) fail(&e, url, r, 0);
    while (!e.done) {
        ssmb_engine_wait(eng, 1000);
        ssmb_engine_tick(eng, monotonic_ms());
    }
    ssmb_engine_destroy(eng);
    free(e.rest);
    return e.exit_code;
}
