/* poll_shell.c - an interactive shell on a managed node, driven by poll().

   The program owns the loop: it asks the engine for its descriptors, adds
   stdin, polls them all in one call, and hands the engine what was ready.
   Keystrokes go to ssmb_session_send, the remote terminal's output comes
   back as SESSION_OUTPUT events, and a window resize (SIGWINCH) becomes
   ssmb_session_resize. When stdin is a terminal it is put in raw mode, so
   Ctrl-C, arrows and tab completion reach the remote shell; the terminal is
   restored on exit. Leave with `exit` (or Ctrl-D).

   Usage: poll_shell [--endpoint-url URL] TARGET     (the AWS environment
   gives credentials, region, AWS_ENDPOINT_URL_SSM, AWS_CA_BUNDLE)
   Build: make (or cc -std=c99 -D_POSIX_C_SOURCE=200809L poll_shell.c -lbearssl). */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct termios saved;
static int raw_on;
static volatile sig_atomic_t winch = 1; /* 1: send our size once ready */

static void raw_restore(void) {
    if (raw_on) tcsetattr(0, TCSAFLUSH, &saved);
}

/* Raw mode by hand (cfmakeraw is not POSIX): no echo, no line editing, no
   signals from keys, no output processing; the remote PTY does all that. */
static void raw_enter(void) {
    struct termios t;
    if (!isatty(0) || tcgetattr(0, &saved) != 0) return;
    t = saved;
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag = (t.c_cflag & ~(tcflag_t)(CSIZE | PARENB)) | CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(0, TCSAFLUSH, &t) == 0) raw_on = 1;
    atexit(raw_restore);
}

static void on_winch(int sig) { winch = sig != 0; } /* poll() returns (EINTR): the loop sends the size */

/* All of it, also when a resize interrupts the write. */
static void write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    ssmb_desc d;
    ssmb_session_desc sd;
    ssmb_engine *eng = NULL;
    ssmb_session s;
    ssmb_event ev;
    ssmb_pollfd efd[64];
    struct pollfd p[65];
    uint8_t in[4096];
    size_t in_len = 0, in_off = 0, n, i;   /* keystrokes read, not yet sent: in[in_off..in_len) */
    const char *endpoint = getenv("AWS_ENDPOINT_URL_SSM");
    int ready = 0, closed = 0, stdin_open = 1, status = 0;
    struct sigaction sa;

    if (!endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (argc == 4 && strcmp(argv[1], "--endpoint-url") == 0) endpoint = argv[2];
    else if (argc != 2) {
        fprintf(stderr, "usage: poll_shell [--endpoint-url URL] TARGET\n");
        return 2;
    }
    memset(&d, 0, sizeof d);
    d.ca_file = getenv("AWS_CA_BUNDLE");
    memset(&sd, 0, sizeof sd);
    sd.target = argv[argc - 1];         /* no document: the default shell */
    if (endpoint && *endpoint) {
        sd.endpoint_url = endpoint;
        sd.allow_custom_stream_host = 1;
    }
    if (ssmb_engine_create(&d, &eng) != SSMB_OK || ssmb_session_start(eng, &sd, now_ms(), &s) != SSMB_OK) {
        fprintf(stderr, "poll_shell: cannot start the session (region, credentials, endpoint?)\n");
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, NULL);
    raw_enter();

    while (!closed) {
        /* 1. What to wait for: the engine's descriptors, plus stdin when the
           session is ready and the last keystrokes are all sent. */
        if (ssmb_engine_fds(eng, efd, 64, &n) != SSMB_OK) n = 0;
        for (i = 0; i < n; i++) {
            p[i].fd = efd[i].fd;
            p[i].events = (short)((efd[i].events & SSMB_POLLIN ? POLLIN : 0) |
                                  (efd[i].events & SSMB_POLLOUT ? POLLOUT : 0));
        }
        p[n].fd = ready && stdin_open && in_off == in_len ? 0 : -1; /* -1: poll skips it */
        p[n].events = POLLIN;
        poll(p, (nfds_t)(n + 1), ssmb_engine_timeout_ms(eng, now_ms(), 1000));

        /* 2. The engine's share of the result, then its events. */
        for (i = 0; i < n; i++)
            efd[i].revents = (uint16_t)((p[i].revents & POLLIN ? SSMB_POLLIN : 0) |
                                        (p[i].revents & POLLOUT ? SSMB_POLLOUT : 0) |
                                        (p[i].revents & POLLERR ? SSMB_POLLERR : 0) |
                                        (p[i].revents & POLLHUP ? SSMB_POLLHUP : 0));
        ssmb_engine_process(eng, efd, n, now_ms());
        while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
            if (ev.type == SSMB_EVENT_SESSION_STATE) ready = ev.state == SSMB_SESSION_READY;
            if (ev.type == SSMB_EVENT_SESSION_OUTPUT) write_all(1, ev.data, ev.len);
            if (ev.type == SSMB_EVENT_SESSION_CLOSED) closed = 1;
            if (ev.type == SSMB_EVENT_SESSION_CLOSED && ev.result != SSMB_CLOSED) {
                raw_restore();
                fprintf(stderr, "\npoll_shell: %s %.*s\n", ssmb_result_str(ev.result), (int)ev.message.len,
                        ev.message.len ? ev.message.ptr : "");
                status = 1;
            }
        }

        /* 3. The terminal's size first (once ready, then after each SIGWINCH),
           so the first command already sees it. */
        if (ready && winch) {
            struct winsize ws;
            winch = 0;
            if (isatty(0) && ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                ssmb_session_resize(eng, s, ws.ws_col, ws.ws_row);
        }

        /* 4. Keystrokes: read a batch, send what the session takes now; the
           rest waits (stdin is not polled) until a later turn takes it. At
           the end of a piped stdin, Ctrl-D ends the remote shell as it would
           end a local one. */
        if (p[n].fd == 0 && (p[n].revents & (POLLIN | POLLHUP))) {
            ssize_t r = read(0, in, sizeof in);
            in_off = 0;
            in_len = r > 0 ? (size_t)r : 1;
            if (r <= 0) stdin_open = 0, in[0] = 4; /* Ctrl-D */
        }
        if (ready && in_off < in_len) {
            size_t took = 0;
            if (ssmb_session_send(eng, s, in + in_off, in_len - in_off, &took) >= 0) in_off += took;
        }
    }
    ssmb_engine_destroy(eng);
    return status;
}
