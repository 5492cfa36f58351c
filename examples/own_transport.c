/* own_transport.c - drive an ssmb_conn over a socket this program owns.

   The conn is sans-I/O: it never touches the socket. This program connects
   a TCP socket itself, then loops: give the conn what the socket read, send
   what the conn wants sent, take the messages it decoded, run its timers.
   The same loop works over any byte transport (a serial link, libuv, a game
   engine's sockets); with SSMB_TLS_EXTERNAL the transport brings its own
   security, as here over plain ws:// for simplicity.

   Usage: own_transport ws://HOST:PORT/PATH "message"
   Sends the message, prints every message the server sends back, and closes
   after the first one (an echo server answers with the same text).
   Build: make (or cc -std=c99 -D_POSIX_C_SOURCE=200809L own_transport.c -lbearssl). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A TCP connection to the URL's host, which must be an IPv4 address here
   (resolving names is the engine's job; this example owns only a socket). */
static int dial(const ssmb_url *u) {
    struct sockaddr_in a;
    char host[64];
    int fd;
    if (u->host.len >= sizeof host) return -1;
    memcpy(host, u->host.ptr, u->host.len);
    host[u->host.len] = '\0';
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(u->port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* One turn of the loop: wait for the socket or the next timer, move bytes
   both ways. Returns 0 when the transport is finished. */
static int turn(ssmb_conn *c, int fd) {
    struct pollfd p;
    unsigned wants = ssmb_conn_wants(c);
    uint64_t deadline = ssmb_conn_next_deadline(c), now = now_ms();
    int timeout = deadline == SSMB_NO_DEADLINE ? 1000 : deadline <= now ? 0 : (int)(deadline - now);
    if (wants & SSMB_WANT_CLOSED) return 0;
    p.fd = fd;
    p.events = (short)(((wants & SSMB_WANT_READ) ? POLLIN : 0) | ((wants & SSMB_WANT_WRITE) ? POLLOUT : 0));
    p.revents = 0;
    if (poll(&p, 1, timeout > 1000 ? 1000 : timeout) < 0) return 0;
    if (p.revents & POLLOUT) {
        size_t n = 0;
        const uint8_t *out = ssmb_conn_send_buf(c, &n);
        ssize_t w = out ? send(fd, out, n, MSG_NOSIGNAL) : 0;
        if (w > 0) ssmb_conn_send_ack(c, (size_t)w);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        size_t cap = 0;
        uint8_t *in = ssmb_conn_recv_buf(c, &cap);
        ssize_t r = in ? recv(fd, in, cap, 0) : 0;
        if (r > 0) ssmb_conn_recv_ack(c, (size_t)r, now_ms());
        else if (in) ssmb_conn_recv_eof(c, now_ms());
    }
    ssmb_conn_tick(c, now_ms());
    return 1;
}

int main(int argc, char **argv) {
    ssmb_conn_desc d;
    ssmb_conn *c = NULL;
    ssmb_url url;
    ssmb_ws_piece piece;
    int fd, sent = 0, echoed = 0;
    int32_t detail = 0;
    ssmb_result why;
    if (argc != 3 || ssmb_url_parse(argv[1], strlen(argv[1]), &url) != SSMB_OK) {
        fprintf(stderr, "usage: own_transport ws://IPV4:PORT/PATH \"message\"\n");
        return 2;
    }
    memset(&d, 0, sizeof d);
    d.url = argv[1];
    d.tls_mode = SSMB_TLS_EXTERNAL;
    if ((fd = dial(&url)) < 0) {
        fprintf(stderr, "own_transport: cannot connect to %s\n", argv[1]);
        return 1;
    }
    if (ssmb_conn_create(&d, &c) != SSMB_OK || ssmb_conn_start(c, now_ms()) != SSMB_OK) {
        fprintf(stderr, "own_transport: cannot start the connection\n");
        return 1;
    }
    while (turn(c, fd)) {
        size_t took = 0;
        if (!sent && ssmb_conn_get_state(c) == SSMB_CONN_OPEN &&
            ssmb_conn_send_message(c, SSMB_WS_TEXT, argv[2], strlen(argv[2]), 1, &took) == SSMB_OK)
            sent = took == strlen(argv[2]);
        while (ssmb_conn_recv_message(c, &piece) == SSMB_OK) {
            fwrite(piece.data, 1, piece.len, stdout);
            if (piece.flags & SSMB_WS_MESSAGE_END) {
                putchar('\n');
                echoed = 1;
            }
        }
        if (echoed && ssmb_conn_get_state(c) == SSMB_CONN_OPEN) ssmb_conn_close(c, 1000, "done", now_ms());
    }
    why = ssmb_conn_last_error(c, &detail);
    if (why < 0) fprintf(stderr, "own_transport: %s (detail %d)\n", ssmb_result_str(why), (int)detail);
    ssmb_conn_destroy(c);
    close(fd);
    return why < 0 ? 1 : 0;
}
