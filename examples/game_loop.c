/* game_loop.c - a session inside a fixed-rate frame loop that never blocks.

   Games and simulations own their loop and cannot hand the thread to
   poll(). Here the frame is 1/60 s: each frame calls ssmb_engine_tick once
   (it tries every socket without waiting, runs due timers and returns),
   takes the events, does the frame's own work, then sleeps until the next
   frame. TLS, SigV4, DNS and the data channel all advance in those short
   ticks. At the end the program prints the command's output and exit code,
   and how long the ticks took: a frame budget is 16.7 ms, and the engine
   should use a tiny part of it.

   Usage: game_loop [--endpoint-url URL] TARGET ['COMMAND']
   Credentials, region, AWS_ENDPOINT_URL_SSM and AWS_CA_BUNDLE come from the
   environment, as in run_command.c.
   Build: make (or cc -std=c99 -D_POSIX_C_SOURCE=200809L game_loop.c -lbearssl). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME_NS 16666667LL             /* 60 frames per second */
#define MAX_FRAMES (60 * 60)            /* give up after a minute */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps until the monotonic clock reads `when` (no-op when late). */
static void sleep_until(int64_t when) {
    int64_t left = when - now_ns();
    struct timespec ts;
    if (left <= 0) return;
    ts.tv_sec = (time_t)(left / 1000000000LL);
    ts.tv_nsec = (long)(left % 1000000000LL);
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    ssmb_desc d;
    ssmb_session_desc sd;
    ssmb_document doc;
    ssmb_engine *eng = NULL;
    ssmb_session s;
    ssmb_event ev;
    const char *endpoint = getenv("AWS_ENDPOINT_URL_SSM");
    const char *command = "echo hello from the node; uname -s; exit 7";
    int arg = 1, closed = 0, frames = 0, late = 0;
    int exit_code = -1, result = SSMB_OK;
    int64_t next, t0, took, tick_max = 0, tick_sum = 0;

    if (!endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (argc > 2 && strcmp(argv[1], "--endpoint-url") == 0) {
        endpoint = argv[2];
        arg = 3;
    }
    if (argc - arg != 1 && argc - arg != 2) {
        fprintf(stderr, "usage: game_loop [--endpoint-url URL] TARGET ['COMMAND']\n");
        return 2;
    }
    if (argc - arg == 2) command = argv[arg + 1];

    /* Setup happens before the loop: create reads the CA file, start
       reads the credential files. Neither is done again per frame. */
    memset(&d, 0, sizeof d);
    d.ca_file = getenv("AWS_CA_BUNDLE");
    memset(&sd, 0, sizeof sd);
    sd.target = argv[arg];
    ssmb_document_command(&sd, &doc, command);
    if (endpoint && *endpoint) {
        sd.endpoint_url = endpoint;
        sd.allow_custom_stream_host = 1;
    }
    if (ssmb_engine_create(&d, &eng) != SSMB_OK ||
        ssmb_session_start(eng, &sd, (uint64_t)(now_ns() / 1000000), &s) != SSMB_OK) {
        fprintf(stderr, "game_loop: cannot start the session (region, credentials, endpoint?)\n");
        return 1;
    }

    next = now_ns();
    while (!closed && frames < MAX_FRAMES) {
        /* 1. The network's share of the frame: one tick, timed. */
        t0 = now_ns();
        ssmb_engine_tick(eng, (uint64_t)(t0 / 1000000));
        took = now_ns() - t0;
        tick_sum += took;
        if (took > tick_max) tick_max = took;

        /* 2. Events: output is printed as it comes. */
        while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
            if (ev.type == SSMB_EVENT_SESSION_OUTPUT || ev.type == SSMB_EVENT_SESSION_STDERR)
                fwrite(ev.data, 1, ev.len, ev.type == SSMB_EVENT_SESSION_OUTPUT ? stdout : stderr);
            if (ev.type == SSMB_EVENT_SESSION_EXIT) exit_code = ev.exit_code;
            if (ev.type == SSMB_EVENT_SESSION_CLOSED) {
                closed = 1;
                result = ev.result;
                if (ev.result != SSMB_CLOSED)
                    fprintf(stderr, "game_loop: %.*s\n", (int)ev.message.len, ev.message.len ? ev.message.ptr : "");
            }
        }

        /* 3. The frame's own work would go here (physics, drawing, ...). */
        frames++;

        /* 4. Wait for the next frame; a frame that overran starts the
           schedule again from now instead of racing to catch up. */
        next += FRAME_NS;
        if (now_ns() > next) {
            late++;
            next = now_ns();
        }
        sleep_until(next);
    }
    ssmb_engine_destroy(eng);

    printf("exit code: %d\n", exit_code);
    printf("frames: %d (%.2f s), late: %d\n", frames, frames / 60.0, late);
    printf("tick: max %.1f us, avg %.1f us (frame budget %.0f us)\n", (double)tick_max / 1000.0,
           frames ? (double)tick_sum / 1000.0 / frames : 0.0, FRAME_NS / 1000.0);
    return closed && result == SSMB_CLOSED ? 0 : 1;
}
