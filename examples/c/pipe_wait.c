/* pipe_wait: waiting on a file descriptor ivy does not own. A plain OS thread
 * (standing in for a C library with its own thread) writes messages into a
 * pipe; an ivy task waits for them with ivy_fd_wait, which parks only the task:
 * another task keeps ticking on the same single worker meanwhile.
 *
 *   cc pipe_wait.c $(pkg-config --cflags --libs ivy) -pthread && ./a.out
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ivy.h"

enum { MESSAGES = 5 };

static int fds[2];
static int ticks;

static void *foreign_writer(void *arg) {
    struct timespec pause = {0, 20 * 1000000L};
    int i;
    (void)arg;
    for (i = 0; i < MESSAGES; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "message %d\n", i);
        nanosleep(&pause, NULL);
        if (write(fds[1], msg, (size_t)len) != len) return (void *)1;
    }
    close(fds[1]); /* the reader sees EOF */
    return NULL;
}

static void *ticker(void *arg) {
    (void)arg;
    while (ivy_time_sleep(5) == 0) ticks++; /* until cancelled */
    return NULL;
}

static void *reader(void *arg) {
    char buf[256];
    int lines = 0;
    (void)arg;
    for (;;) {
        int revents = 0;
        ssize_t n;
        int rc = ivy_fd_wait(fds[0], IVY_READABLE, &revents, ivy_time_now() + 5000);
        if (rc != 0) {
            fprintf(stderr, "fd_wait: %s\n", ivy_strerror(rc));
            return (void *)-1;
        }
        n = read(fds[0], buf, sizeof buf);
        if (n <= 0) break; /* EOF */
        fwrite(buf, 1, (size_t)n, stdout);
        for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
    }
    return (void *)(intptr_t)lines;
}

static void *main_task(void *arg) {
    ivy_task_t r, t;
    pthread_t writer;
    void *lines = NULL;
    (void)arg;
    if (pipe(fds) != 0) return (void *)1;
    ivy_task_spawn(ticker, NULL, NULL, &t);
    ivy_task_spawn(reader, NULL, NULL, &r);
    pthread_create(&writer, NULL, foreign_writer, NULL);
    ivy_task_join(r, &lines, IVY_FOREVER);
    ivy_task_cancel(t);
    ivy_task_join(t, NULL, IVY_FOREVER);
    pthread_join(writer, NULL);
    close(fds[0]);
    printf("%d lines read; the ticker ticked %d times meanwhile\n", (int)(intptr_t)lines, ticks);
    return (void *)(uintptr_t)((intptr_t)lines == MESSAGES && ticks > MESSAGES ? 0 : 1);
}

int main(void) {
    ivy_config_t cfg;
    void *status;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1; /* one worker: the waits really do not block it */
    int rc = ivy_runtime_run(&cfg, main_task, NULL, &status);
    if (rc != 0) {
        fprintf(stderr, "ivy_runtime_run: %s\n", ivy_strerror(rc));
        return 1;
    }
    return (int)(uintptr_t)status;
}
