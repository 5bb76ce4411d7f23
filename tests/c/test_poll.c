/* Waiting on foreign fds: ivy_fd_wait with a passed deadline (a non-blocking try)
 * and ivy_fd_poll (many fds, one deadline), in tasks and on plain threads. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

/* ---- ivy_fd_wait: a passed deadline looks once ------------------------------------------ */

/* Run both in a task and on a plain thread: a passed deadline (0, or now) reports
 * what is ready at once, and IVY_ETIMEDOUT only when nothing is. */
static void fd_wait_passed_body(void) {
    int i;
    for (i = 0; i < 200; i++) {
        int p[2], rev = -1;
        CHECK_EQ(pipe(p), 0);
        CHECK_EQ(ivy_fd_wait(p[0], IVY_READABLE, &rev, 0), IVY_ETIMEDOUT);
        CHECK_EQ(write(p[1], "x", 1), 1);
        rev = 0;
        OK(ivy_fd_wait(p[0], IVY_READABLE, &rev, 0));
        CHECK_EQ(rev, IVY_READABLE);
        rev = 0;
        OK(ivy_fd_wait(p[0], IVY_READABLE, &rev, ivy_time_now()));
        CHECK_EQ(rev, IVY_READABLE);
        rev = 0;
        OK(ivy_fd_wait(p[1], IVY_WRITABLE, &rev, 0));
        CHECK_EQ(rev, IVY_WRITABLE);
        rev = 0;
        OK(ivy_fd_wait(p[1], IVY_READABLE | IVY_WRITABLE, &rev, 0));
        CHECK_EQ(rev, IVY_WRITABLE);
        CHECK_EQ(close(p[1]), 0);
        /* the data, then EOF: still readable */
        rev = 0;
        OK(ivy_fd_wait(p[0], IVY_READABLE, &rev, 0));
        CHECK_EQ(rev, IVY_READABLE);
        CHECK_EQ(close(p[0]), 0);
    }
}

static void *fd_wait_passed_task(void *arg) {
    (void)arg;
    fd_wait_passed_body();
    return NULL;
}

static void test_fd_wait_passed_deadline_in_task(void) { h_run(2, fd_wait_passed_task, NULL); }

static void test_fd_wait_passed_deadline_on_thread(void) { fd_wait_passed_body(); }

int main(void) {
    RUN(test_fd_wait_passed_deadline_in_task);
    RUN(test_fd_wait_passed_deadline_on_thread);
    H_REPORT();
}
