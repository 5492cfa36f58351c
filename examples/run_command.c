/* run_command.c - run one command on a managed node and exit with its code.

   The smallest complete client: an engine, one session started with the
   AWS-StartNonInteractiveCommand document, and a loop that lets the engine
   sleep until something happens. The remote stdout and stderr arrive as
   separate events and go to our stdout and stderr; the exit code comes as
   an event just before the session closes.

   Usage: run_command [--endpoint-url URL] TARGET 'COMMAND'
   Everything else comes from the usual AWS environment: AWS_REGION,
   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (or a
   profile), AWS_ENDPOINT_URL_SSM and AWS_CA_BUNDLE.
   Against the local emulator:
       build/ssmb-local --port 0 --no-tls     (prints endpoint, keys, region)
       AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
       build/example-run_command --endpoint-url http://127.0.0.1:PORT \
           i-0123456789abcdef0 'echo hi; exit 3'; echo $?
   Build: make (or cc -std=c99 -D_POSIX_C_SOURCE=200809L run_command.c -lbearssl). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The engine's timers run on a monotonic millisecond clock we provide. */
static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int main(int argc, char **argv) {
    ssmb_desc d;
    ssmb_session_desc sd;
    ssmb_document doc;
    ssmb_engine *eng = NULL;
    ssmb_session s;
    ssmb_event ev;
    ssmb_result r;
    const char *endpoint = getenv("AWS_ENDPOINT_URL_SSM");
    int arg = 1, code = 255, closed = 0;

    if (!endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (argc == 5 && strcmp(argv[1], "--endpoint-url") == 0) {
        endpoint = argv[2];
        arg = 3;
    }
    if (argc - arg != 2) {
        fprintf(stderr, "usage: run_command [--endpoint-url URL] TARGET 'COMMAND'\n");
        return 2;
    }

    /* 1. The engine: zero means default everywhere. Credentials, region and
       endpoints are read from the environment by the session; the CA
       bundle is the engine's, so AWS_CA_BUNDLE is passed on here. */
    memset(&d, 0, sizeof d);
    d.ca_file = getenv("AWS_CA_BUNDLE");
    if ((r = ssmb_engine_create(&d, &eng)) != SSMB_OK) {
        fprintf(stderr, "run_command: engine: %s\n", ssmb_result_str(r));
        return 255;
    }

    /* 2. The session: a target and a typed document. With an endpoint of
       our own (a local emulator, a VPC endpoint), the data channel's host
       is that endpoint's, which the session refuses unless told. */
    memset(&sd, 0, sizeof sd);
    sd.target = argv[arg];
    ssmb_document_command(&sd, &doc, argv[arg + 1]);
    if (endpoint && *endpoint) {
        sd.endpoint_url = endpoint;
        sd.allow_custom_stream_host = 1;
    }
    if ((r = ssmb_session_start(eng, &sd, now_ms(), &s)) != SSMB_OK) {
        fprintf(stderr, "run_command: start: %s\n", ssmb_result_str(r));
        ssmb_engine_destroy(eng);
        return 255;
    }

    /* 3. The loop: sleep in the engine until a socket or a timer is due,
       let it work, then take every event before sleeping again. */
    while (!closed) {
        ssmb_engine_wait(eng, ssmb_engine_timeout_ms(eng, now_ms(), 1000));
        ssmb_engine_tick(eng, now_ms());
        while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
            switch (ev.type) {
            case SSMB_EVENT_SESSION_OUTPUT: fwrite(ev.data, 1, ev.len, stdout); break;
            case SSMB_EVENT_SESSION_STDERR: fwrite(ev.data, 1, ev.len, stderr); break;
            case SSMB_EVENT_SESSION_EXIT: code = ev.exit_code; break;
            case SSMB_EVENT_SESSION_CLOSED:
                /* SSMB_CLOSED is a normal end; anything else says why. */
                if (ev.result != SSMB_CLOSED && ev.message.len)
                    fprintf(stderr, "run_command: %.*s\n", (int)ev.message.len, ev.message.ptr);
                else if (ev.result != SSMB_CLOSED)
                    fprintf(stderr, "run_command: %s\n", ssmb_result_str(ev.result));
                closed = 1;
                break;
            default: break;
            }
        }
    }
    fflush(stdout);

    /* 4. The session is closed and its memory freed; the engine goes too. */
    ssmb_engine_destroy(eng);
    return code < 0 || code > 255 ? 255 : code;
}
