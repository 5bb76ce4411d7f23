/* What one hooked read(2) costs in user-space instructions: measured with
 * callgrind (tests/hook/measure.sh), which counts instructions exactly and
 * repeatably (wall-clock is noise at this scale; the kernel's part is the same
 * with and without the hook and is not counted).
 *   read_cost plain    reads on the main thread, no runtime
 *   read_cost outside  a runtime exists (the hook attached), reads on the main thread
 *   read_cost inside   reads in a task (the fd is a socket with data: no park)
 * Each mode reads N one-byte messages from a socketpair filled beforehand, in
 * do_reads (callgrind --toggle-collect=do_reads). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ivy.h"

#define N 10000
static int sv[2];

__attribute__((noinline)) static int do_reads(void) {
    char c;
    int got = 0;
    for (int i = 0; i < N; i++) {
        got += (int)read(sv[0], &c, 1);
    }
    return got;
}

static void *task(void *arg) {
    (void)arg;
    char c;
    (void)!read(sv[0], &c, 1); /* first use: adoption, outside the count */
    return (void *)(long)do_reads();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "plain";
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        return 2;
    }
    static char buf[N + 1];
    memset(buf, 'x', sizeof buf);
    if (write(sv[1], buf, sizeof buf) != (ssize_t)sizeof buf) {
        return 2;
    }
    int got;
    if (strcmp(mode, "inside") == 0) {
        void *r = NULL;
        ivy_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.workers = 1;
        if (ivy_runtime_run(&cfg, task, NULL, &r) != 0) {
            return 2;
        }
        got = (int)(long)r;
    } else {
        ivy_runtime_t rt;
        int with_rt = strcmp(mode, "outside") == 0;
        if (with_rt && ivy_runtime_new(NULL, &rt) != 0) {
            return 2;
        }
        got = do_reads();
        if (with_rt) {
            ivy_runtime_free(rt);
        }
    }
    printf("%s: %d reads\n", mode, got);
    return got == N ? 0 : 1;
}
