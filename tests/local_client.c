/* local_client - a client built only from ssmbridge's public pieces, run
   against ssmb-local --no-tls: the StartSession request writer and parser
   over a plain socket, the engine's WebSocket (SigV4-signed upgrade), an
   ssmb_channel in the client role and, for port sessions, an ssmb_smux
   client.

   usage: local_client ENDPOINT KEY SECRET REGION run COMMAND
            runs COMMAND as a NonInteractiveCommands session: its stdout and
            stderr are copied, the exit status is the remote exit code
          local_client ENDPOINT KEY SECRET REGION forward PORT BYTES
            smux port forwarding to PORT (an echo server): BYTES go through
            one stream and must come back unchanged; prints the rate
   Exits 100 on any failure. Bounded: gives up after 60 s. */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    ssmb_engine *eng;
    ssmb_ws ws;
    ssmb_channel *ch;
    ssmb_smux *mux;
    const char *token;
    int open, done, failed, forward;
    int32_t exit_code;
    uint8_t msg[1 << 17];
    size_t msg_len;
    /* forward */
    uint32_t stream;
    size_t total, sent, got;
    uint64_t t0;
} client;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(const char *what) {
    fprintf(stderr, "local_client: %s\n", what);
    exit(100);
}

static uint8_t pattern(size_t i) { return (uint8_t)(i * 7u + (i >> 9)); }

/* One API call over a fresh plain TCP connection; the response into buf. */
static size_t api_call(int port, const char *req, size_t len, char *buf, size_t cap) {
    struct sockaddr_in a;
    size_t have = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) fail("connect");
    if (write(fd, req, len) != (ssize_t)len) fail("write");
    for (;;) {
        static char copy[65536];
        ssmb_api_response resp;
        ssize_t n = read(fd, buf + have, cap - have);
        if (n <= 0) break;
        have += (size_t)n;
        memcpy(copy, buf, have);
        if (ssmb_api_response_parse(copy, have, &resp) != SSMB_ERR_TRUNCATED) break;
    }
    close(fd);
    return have;
}

static void on_channel_events(client *c) {
    ssmb_channel_event ev;
    while (ssmb_channel_poll(c->ch, &ev) == SSMB_OK) {
        if (ev.type == SSMB_CHANNEL_EVENT_READY && c->forward) {
            ssmb_smux_desc d;
            memset(&d, 0, sizeof d);
            d.role = SSMB_SMUX_CLIENT;
            d.stream_buffer_bytes = 1 << 16;
            if (ssmb_smux_create(&d, &c->mux) != SSMB_OK || ssmb_smux_open(c->mux, &c->stream) != SSMB_OK)
                fail("smux");
            c->t0 = now_ms();
        } else if (ev.type == SSMB_CHANNEL_EVENT_DATA && c->forward && c->mux) {
            size_t off = 0;
            while (off < ev.len) {
                size_t used = 0;
                uint8_t buf[65536];
                size_t n = 0, i;
                ssmb_result r = ssmb_smux_feed(c->mux, ev.data + off, ev.len - off, &used, now_ms());
                off += used;
                while (ssmb_smux_read(c->mux, c->stream, buf, sizeof buf, &n) == SSMB_OK && n) {
                    for (i = 0; i < n; i++)
                        if (buf[i] != pattern(c->got + i)) {
                            size_t j, k;
                            fprintf(stderr, "local_client: byte %zu (read of %zu at %zu) is %u, not %u\n", c->got + i,
                                    n, c->got, buf[i], pattern(c->got + i));
                            for (k = 0; k < 4096 && c->got + i >= k; k++) {
                                for (j = 0; j + c->got + i - k < c->total && j < 16; j++)
                                    if (buf[i + j] != pattern(c->got + i - k + j)) break;
                                if (j == 16) {
                                    fprintf(stderr, "local_client: it matches byte %zu\n", c->got + i - k);
                                    break;
                                }
                            }
                            for (k = 1; k < 70000 && i + 16 < n; k++) {
                                for (j = 0; j < 16; j++)
                                    if (buf[i + j] != pattern(c->got + i + k + j)) break;
                                if (j == 16) {
                                    fprintf(stderr, "local_client: it matches byte %zu (ahead)\n", c->got + i + k);
                                    break;
                                }
                            }
                            fail("echoed bytes differ");
                        }
                    c->got += n;
                }
                if (r < 0) fail("smux feed");
            }
        } else if (ev.type == SSMB_CHANNEL_EVENT_DATA) {
            fwrite(ev.data, 1, ev.len, ev.payload_type == SSMB_PAYLOAD_STDERR ? stderr : stdout);
        } else if (ev.type == SSMB_CHANNEL_EVENT_EXIT_CODE) {
            c->exit_code = ev.exit_code;
        } else if (ev.type == SSMB_CHANNEL_EVENT_CLOSED) {
            c->done = 1;
        }
    }
}

static void on_event(ssmb_engine *eng, const ssmb_event *ev, void *user_data) {
    client *c = (client *)user_data;
    (void)eng;
    if (ev->type == SSMB_EVENT_WS_OPEN) {
        char open[1024];
        size_t n = 0, acc = 0;
        if (ssmb_channel_open_frame(c->ch, c->token, open, sizeof open, &n) != SSMB_OK) fail("open frame");
        if (ssmb_engine_ws_send(c->eng, c->ws, SSMB_WS_TEXT, open, n, 1, &acc) != SSMB_OK || acc != n)
            fail("send open frame");
        c->open = 1;
    } else if (ev->type == SSMB_EVENT_WS_MESSAGE) {
        const ssmb_ws_piece *p = &ev->piece;
        if (p->opcode != SSMB_WS_TEXT && p->opcode != SSMB_WS_BINARY) return;
        if (p->flags & SSMB_WS_MESSAGE_START) c->msg_len = 0;
        if (c->msg_len + p->len > sizeof c->msg) fail("message too long");
        memcpy(c->msg + c->msg_len, p->data, p->len);
        c->msg_len += p->len;
        if (p->flags & SSMB_WS_MESSAGE_END) {
            while (ssmb_channel_recv(c->ch, c->msg, c->msg_len, p->opcode == SSMB_WS_TEXT, now_ms()) == SSMB_AGAIN)
                on_channel_events(c);
            on_channel_events(c);
        }
    } else if (ev->type == SSMB_EVENT_WS_CLOSED) {
        if (!c->done) {
            fprintf(stderr, "local_client: WebSocket closed: %s (%d)\n", ssmb_result_str((ssmb_result)ev->result),
                    (int)ev->detail);
            c->failed = 1;
        }
        c->done = 1;
    }
}

static void pump(client *c) {
    const uint8_t *f;
    size_t n, acc;
    uint64_t now = now_ms();
    ssmb_channel_tick(c->ch, now);
    if (c->mux) {
        const uint8_t *p;
        uint8_t buf[16384];
        while (c->sent < c->total && ssmb_smux_write_space(c->mux) > 0) {
            size_t k = c->total - c->sent, i, took = 0;
            if (k > sizeof buf) k = sizeof buf;
            if (k > ssmb_smux_write_space(c->mux)) k = ssmb_smux_write_space(c->mux);
            for (i = 0; i < k; i++) buf[i] = pattern(c->sent + i);
            if (ssmb_smux_write(c->mux, c->stream, buf, k, &took) != SSMB_OK || !took) break;
            c->sent += took;
        }
        while ((p = ssmb_smux_out_buf(c->mux, &n)) != NULL && n) {
            size_t took = 0;
            if (ssmb_channel_send(c->ch, SSMB_PAYLOAD_OUTPUT, p, n, &took) != SSMB_OK || !took) break;
            ssmb_smux_out_ack(c->mux, took);
        }
    }
    while (c->open && ssmb_channel_next_frame(c->ch, &f, &n) == SSMB_OK) {
        if (ssmb_engine_ws_send_space(c->eng, c->ws) < n) break;
        acc = 0;
        if (ssmb_engine_ws_send(c->eng, c->ws, SSMB_WS_BINARY, f, n, 1, &acc) != SSMB_OK || acc != n) break;
        ssmb_channel_frame_sent(c->ch, now);
    }
}

int main(int argc, char **argv) {
    static char req[65536], resp[65536];
    static client c;
    ssmb_api_call call;
    ssmb_api_start_session args;
    ssmb_api_parameter param;
    ssmb_api_response ar;
    ssmb_api_session sess;
    ssmb_desc d;
    ssmb_conn_desc cd;
    ssmb_channel_desc chd;
    const char *values[1];
    char stream_url[2048], token[4096], port_text[16];
    size_t n = 0;
    int port;
    ssmb_result r;
    ssmb_api_stream_policy policy;
    uint64_t deadline;
    if (argc < 7 || strncmp(argv[1], "http://127.0.0.1:", 17) != 0) {
        fprintf(stderr, "usage: local_client http://127.0.0.1:PORT KEY SECRET REGION run CMD | forward PORT BYTES\n");
        return 2;
    }
    port = atoi(argv[1] + 17);
    memset(&policy, 0, sizeof policy);
    policy.custom_host = "127.0.0.1";
    policy.allow_custom = 1;
    policy.allow_plain_ws = 1;
    c.forward = strcmp(argv[5], "forward") == 0;
    memset(&call, 0, sizeof call);
    call.endpoint = argv[1];
    call.region = argv[4];
    call.creds.access_key_id = ssmb_str_c(argv[2]);
    call.creds.secret_access_key = ssmb_str_c(argv[3]);
    call.time = (int64_t)time(NULL);
    memset(&args, 0, sizeof args);
    args.target = "i-0123456789abcdef0";
    if (c.forward) {
        if (argc < 8) return 2;
        args.document_name = "AWS-StartPortForwardingSession";
        snprintf(port_text, sizeof port_text, "%s", argv[6]);
        values[0] = port_text;
        param.name = "portNumber";
        c.total = (size_t)strtoull(argv[7], NULL, 10);
    } else {
        args.document_name = "AWS-StartNonInteractiveCommand";
        values[0] = argv[6];
        param.name = "command";
    }
    param.values = values;
    param.value_count = 1;
    args.parameters = &param;
    args.parameter_count = 1;
    if (ssmb_api_start_session_write(&call, &args, req, sizeof req, &n) != SSMB_OK) fail("request");
    n = api_call(port, req, n, resp, sizeof resp);
    if ((r = ssmb_api_start_session_parse(resp, n, &policy, &ar, &sess)) != SSMB_OK) {
        fprintf(stderr, "local_client: %s\n", ssmb_result_str(r));
        fprintf(stderr, "local_client: StartSession: %.*s: %.*s\n", (int)ar.error_type.len, ar.error_type.ptr,
                (int)ar.error_message.len, ar.error_message.ptr);
        return 100;
    }
    snprintf(stream_url, sizeof stream_url, "%.*s", (int)sess.stream_url.len, sess.stream_url.ptr);
    snprintf(token, sizeof token, "%.*s", (int)sess.token_value.len, sess.token_value.ptr);
    c.token = token;

    memset(&chd, 0, sizeof chd);
    chd.role = SSMB_CHANNEL_CLIENT;
    chd.send_buffer_bytes = 1 << 20;
    chd.send_buffer_messages = 1024;
    if (ssmb_channel_create(&chd, &c.ch) != SSMB_OK || ssmb_channel_start(c.ch, now_ms()) != SSMB_OK) fail("channel");
    memset(&d, 0, sizeof d);
    d.event_fn = on_event;
    d.event_user_data = &c;
    d.max_connections = 1;
    if (ssmb_engine_create(&d, &c.eng) != SSMB_OK) fail("engine");
    memset(&cd, 0, sizeof cd);
    cd.url = stream_url;
    cd.credentials = call.creds;
    cd.region = argv[4];
    if (ssmb_engine_ws_open(c.eng, &cd, &c, now_ms(), &c.ws) != SSMB_OK) fail("ws open");
    deadline = now_ms() + 60000;
    while (!c.done && now_ms() < deadline) {
        int t;
        pump(&c);
        if (c.forward && c.mux && c.got >= c.total && c.total) {
            double s = (double)(now_ms() - c.t0) / 1000.0;
            fprintf(stderr, "local_client: %zu bytes echoed in %.3f s (%.1f MB/s)\n", c.got, s,
                    s > 0 ? (double)c.got / s / 1e6 : 0.0);
            ssmb_smux_close(c.mux, c.stream);
            c.total = 0;
            pump(&c);
            ssmb_channel_send_flag(c.ch, SSMB_FLAG_TERMINATE_SESSION);
        }
        t = ssmb_engine_timeout_ms(c.eng, now_ms(), 20);
        ssmb_engine_wait(c.eng, t < 0 ? 20 : t);
        ssmb_engine_tick(c.eng, now_ms());
    }
    fflush(stdout);
    if (!c.done) fail("timed out");
    if (c.failed) return 100;
    ssmb_engine_destroy(c.eng);
    ssmb_smux_destroy(c.mux);
    ssmb_channel_destroy(c.ch);
    return c.forward ? 0 : (int)c.exit_code;
}
