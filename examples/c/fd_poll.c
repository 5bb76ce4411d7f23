/* fd_poll: one task waits on several file descriptors at once. Three plain OS
 * threads (standing in for C libraries with threads of their own) write into
 * three pipes at different rates; one ivy task multiplexes them with ivy_fd_poll,
 * which parks only the task, and reads whichever are ready, until every writer
 * has hung up (IVY_HANGUP).
 *
 *   cc fd_poll.c $(pkg-config --cflags --libs ivy) -pthread && ./a.out
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ivy.h"

enum { SOURCES = 3, MESSAGES = 4 };

static int pipes[SOURCES][2];

static void *source(void *arg) {
    int id = (int)(intptr_t)arg, i;
    struct timespec pause = {0, (long)(id + 1) * 7 * 1000000L};
    for (i = 0; i < MESSAGES; i++) {
        char c = (char)('a' + id);
        nanosleep(&pause, NULL);
        if (write(pipes[id][1], &c, 1) != 1) return (void *)1;
    }
    close(pipes[id][1]); /* the reader sees a hang-up */
    return NULL;
}

static void *multiplexer(void *arg) {
    ivy_pollfd_t fds[SOURCES]; /* the first `open` entries are live */
    int source_of[SOURCES], got[SOURCES] = {0}, open = SOURCES, i;
    (void)arg;
    for (i = 0; i < SOURCES; i++) {
        fds[i].fd = pipes[i][0];
        fds[i].events = IVY_READABLE;
        source_of[i] = i;
    }
    while (open > 0) {
        size_t nready = 0;
        int rc = ivy_fd_poll(fds, (size_t)open, &nready, ivy_time_now() + 5000);
        if (rc != 0) {
            fprintf(stderr, "fd_poll: %s\n", ivy_strerror(rc));
            return (void *)1;
        }
        for (i = open - 1; i >= 0; i--) { /* backwards: entry i may be replaced */
            int id = source_of[i];
            char buf[16];
            ssize_t n;
            if (!(fds[i].revents & IVY_READABLE)) continue;
            n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                got[id] += (int)n;
                printf("source %d: %.*s\n", id, (int)n, buf);
            } else if (n == 0) {
                printf("source %d hung up\n", id);
                close(fds[i].fd);
                open--;
                fds[i] = fds[open]; /* the last live entry takes its place */
                source_of[i] = source_of[open];
            }
        }
    }
    for (i = 0; i < SOURCES; i++)
        if (got[i] != MESSAGES) return (void *)1;
    return NULL;
}

int main(void) {
    pthread_t threads[SOURCES];
    ivy_config_t cfg;
    void *result = (void *)1;
    int i, rc;
    for (i = 0; i < SOURCES; i++)
        if (pipe(pipes[i]) != 0) return 1;
    for (i = 0; i < SOURCES; i++) pthread_create(&threads[i], NULL, source, (void *)(intptr_t)i);
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    rc = ivy_runtime_run(&cfg, multiplexer, NULL, &result);
    for (i = 0; i < SOURCES; i++) pthread_join(threads[i], NULL);
    if (rc != 0 || result != NULL) {
        fprintf(stderr, "fd_poll example failed\n");
        return 1;
    }
    printf("every source delivered %d messages\n", MESSAGES);
    return 0;
}
