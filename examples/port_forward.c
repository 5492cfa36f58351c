/* port_forward.c - a local port that reaches a port on a managed node.

   A Port session (AWS-StartPortForwardingSession) plus a forward: the
   engine listens on 127.0.0.1, and every connection accepted there is
   carried over the session to REMOTE_PORT on the node (one multiplexed
   stream each with current agents). The program only runs the loop and
   reports; the bytes never pass through its hands. Ctrl-C ends the
   session cleanly with ssmb_engine_shutdown.

   Usage: port_forward [--endpoint-url URL] TARGET REMOTE_PORT [LISTEN]
   LISTEN defaults to 127.0.0.1:0 (any free port); the bound address is
   printed as "listening on 127.0.0.1:PORT". Credentials, region,
   AWS_ENDPOINT_URL_SSM and AWS_CA_BUNDLE come from the environment.
   Build: make (or cc -std=c99 -D_POSIX_C_SOURCE=200809L port_forward.c -lbearssl). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* Takes every pending event; returns 1 once the session has closed. */
static int drain(ssmb_engine *eng) {
    ssmb_event ev;
    int closed = 0;
    while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
        if (ev.type == SSMB_EVENT_SESSION_STATE && ev.state == SSMB_SESSION_READY)
            fprintf(stderr, "port_forward: session ready\n");
        if (ev.type == SSMB_EVENT_FORWARD_OPEN || ev.type == SSMB_EVENT_FORWARD_CLOSE)
            fprintf(stderr, "port_forward: connection %d %s\n", (int)ev.detail,
                    ev.type == SSMB_EVENT_FORWARD_OPEN ? "open" : "closed");
        if (ev.type == SSMB_EVENT_SESSION_CLOSED) {
            fprintf(stderr, "port_forward: session closed: %s %.*s\n", ssmb_result_str(ev.result),
                    (int)ev.message.len, ev.message.len ? ev.message.ptr : "");
            closed = 1;
        }
    }
    return closed;
}

int main(int argc, char **argv) {
    ssmb_desc d;
    ssmb_session_desc sd;
    ssmb_document doc;
    ssmb_forward_desc fd;
    ssmb_engine *eng = NULL;
    ssmb_session s;
    ssmb_forward f;
    char addr[128];
    const char *endpoint = getenv("AWS_ENDPOINT_URL_SSM");
    int arg = 1, closed = 0;
    uint64_t deadline;
    struct sigaction sa;

    if (!endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (argc > 2 && strcmp(argv[1], "--endpoint-url") == 0) {
        endpoint = argv[2];
        arg = 3;
    }
    if (argc - arg != 2 && argc - arg != 3) {
        fprintf(stderr, "usage: port_forward [--endpoint-url URL] TARGET REMOTE_PORT [LISTEN]\n");
        return 2;
    }
    memset(&d, 0, sizeof d);
    d.ca_file = getenv("AWS_CA_BUNDLE");
    memset(&sd, 0, sizeof sd);
    sd.target = argv[arg];
    /* localPortNumber 0: omitted (it only names the port in the service's logs). */
    ssmb_document_port_forward(&sd, &doc, (uint16_t)atoi(argv[arg + 1]), 0);
    if (endpoint && *endpoint) {
        sd.endpoint_url = endpoint;
        sd.allow_custom_stream_host = 1;
    }
    /* The forward is opened right after the start: it binds and listens now,
       and accepts once the session is READY. */
    memset(&fd, 0, sizeof fd);
    fd.listen = argc - arg == 3 ? argv[arg + 2] : "127.0.0.1:0";
    fd.events = 1;                      /* FORWARD_OPEN / FORWARD_CLOSE, for the messages above */
    if (ssmb_engine_create(&d, &eng) != SSMB_OK || ssmb_session_start(eng, &sd, now_ms(), &s) != SSMB_OK ||
        ssmb_forward_open(eng, s, &fd, &f) != SSMB_OK || ssmb_forward_address(eng, f, addr, sizeof addr) != SSMB_OK) {
        fprintf(stderr, "port_forward: cannot start (region, credentials, endpoint, listen address?)\n");
        return 1;
    }
    printf("listening on %s\n", addr);
    fflush(stdout);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The loop. ssmb_engine_wait retries on EINTR, so a signal is noticed
       when the wait ends: at most 250 ms later. */
    while (!stop && !closed) {
        ssmb_engine_wait(eng, ssmb_engine_timeout_ms(eng, now_ms(), 250));
        ssmb_engine_tick(eng, now_ms());
        closed = drain(eng);
    }

    /* Shutdown: TerminateSession, the forward's connections closed, the
       WebSocket's close handshake, all driven by the same loop for at most
       five seconds. */
    deadline = now_ms() + 5000;
    while (!ssmb_engine_shutdown(eng, now_ms(), deadline)) {
        ssmb_engine_wait(eng, ssmb_engine_timeout_ms(eng, now_ms(), 100));
        ssmb_engine_tick(eng, now_ms());
        closed |= drain(eng);
    }
    ssmb_engine_destroy(eng);
    return stop ? 0 : 1;
}
