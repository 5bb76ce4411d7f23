/* Waiting on foreign fds: ivy_fd_wait with a passed deadline (a non-blocking try)
 * and ivy_fd_poll (many fds, one deadline), in tasks and on plain threads. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "net_helpers.h"

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

/* ---- ivy_fd_poll ------------------------------------------------------------------------ */

enum { NPIPES = 100 };

struct pipes {
    int r[NPIPES], w[NPIPES];
};

static void pipes_open(struct pipes *p) {
    int i, fds[2];
    for (i = 0; i < NPIPES; i++) {
        CHECK_EQ(pipe(fds), 0);
        p->r[i] = fds[0];
        p->w[i] = fds[1];
    }
}

static void pipes_close(struct pipes *p) {
    int i;
    for (i = 0; i < NPIPES; i++) {
        CHECK_EQ(close(p->r[i]), 0);
        CHECK_EQ(close(p->w[i]), 0);
    }
}

static void poll_set(ivy_pollfd_t *fds, const struct pipes *p) {
    int i;
    for (i = 0; i < NPIPES; i++) {
        fds[i].fd = p->r[i];
        fds[i].events = IVY_READABLE;
        fds[i].revents = -1; /* overwritten by every call that gets that far */
    }
}

static void drain(int fd) {
    char c;
    CHECK_EQ(read(fd, &c, 1), 1);
}

struct writer {
    const int *fds; /* write one byte to each */
    int n;
};

static void *write_task(void *arg) {
    struct writer *w = arg;
    int i;
    for (i = 0; i < w->n; i++) CHECK_EQ(write(w->fds[i], "x", 1), 1);
    return NULL;
}

/* Spawns a task that writes one byte to each of the `n` fds; on a single worker it
 * runs only once the caller parks, so the caller's poll really waits. */
static ivy_task_t spawn_writer(struct writer *w, const int *fds, int n) {
    ivy_task_t t;
    w->fds = fds;
    w->n = n;
    OK(ivy_task_spawn(write_task, w, NULL, &t));
    return t;
}

/* 100 pipes, one written while the task waits: exactly that one is reported. */
static void *poll_one_of_100_task(void *arg) {
    struct pipes p;
    ivy_pollfd_t fds[NPIPES];
    struct writer w;
    int k, i;
    (void)arg;
    pipes_open(&p);
    for (k = 0; k < NPIPES; k++) {
        size_t nready = 12345;
        ivy_task_t t = spawn_writer(&w, &p.w[k], 1);
        poll_set(fds, &p);
        OK(ivy_fd_poll(fds, NPIPES, &nready, ivy_time_now() + 10000));
        CHECK_EQ(nready, 1);
        for (i = 0; i < NPIPES; i++) CHECK_EQ(fds[i].revents, i == k ? IVY_READABLE : 0);
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        drain(p.r[k]);
    }
    pipes_close(&p);
    return NULL;
}

static void test_poll_one_of_100_pipes(void) {
    h_run(1, poll_one_of_100_task, NULL);
    h_run(2, poll_one_of_100_task, NULL);
}

/* Several ready at once: before the call (the first look), and written together
 * while the task waits (one wake-up collects them all); readable and writable
 * entries mixed. */
static void *poll_several_task(void *arg) {
    struct pipes p;
    ivy_pollfd_t fds[NPIPES + 2];
    struct writer w;
    static const int picks[3] = {3, 50, 99};
    int targets[3], round, i;
    (void)arg;
    pipes_open(&p);
    for (round = 0; round < 50; round++) {
        size_t nready = 0;
        ivy_task_t t;
        for (i = 0; i < 3; i++) targets[i] = p.w[(picks[i] + round) % NPIPES];
        poll_set(fds, &p);
        if (round % 2 == 0) {
            for (i = 0; i < 3; i++) CHECK_EQ(write(targets[i], "x", 1), 1);
            OK(ivy_fd_poll(fds, NPIPES, &nready, 0)); /* a passed deadline: a try */
        } else {
            t = spawn_writer(&w, targets, 3);
            OK(ivy_fd_poll(fds, NPIPES, &nready, IVY_FOREVER));
            OK(ivy_task_join(t, NULL, IVY_FOREVER));
        }
        CHECK_EQ(nready, 3);
        for (i = 0; i < NPIPES; i++) {
            int want = (i == (3 + round) % NPIPES || i == (50 + round) % NPIPES ||
                        i == (99 + round) % NPIPES)
                           ? IVY_READABLE
                           : 0;
            CHECK_EQ(fds[i].revents, want);
        }
        for (i = 0; i < 3; i++) drain(p.r[(picks[i] + round) % NPIPES]);
    }
    /* Write ends are writable at once; the same fd twice gets its own subsets. */
    poll_set(fds, &p);
    fds[NPIPES].fd = p.w[7];
    fds[NPIPES].events = IVY_WRITABLE;
    fds[NPIPES + 1].fd = p.w[7];
    fds[NPIPES + 1].events = IVY_READABLE | IVY_WRITABLE;
    {
        size_t nready = 0;
        OK(ivy_fd_poll(fds, NPIPES + 2, &nready, IVY_FOREVER));
        CHECK_EQ(nready, 2);
        CHECK_EQ(fds[NPIPES].revents, IVY_WRITABLE);
        CHECK_EQ(fds[NPIPES + 1].revents, IVY_WRITABLE);
        for (i = 0; i < NPIPES; i++) CHECK_EQ(fds[i].revents, 0);
    }
    pipes_close(&p);
    return NULL;
}

/* One worker: the writer runs only once the poll has parked, and writes all three
 * before the poll runs again, so the exact count is known. */
static void test_poll_several_ready(void) { h_run(1, poll_several_task, NULL); }

/* A duplicate fd in two entries while the task waits: one set entry, both report. */
static void *poll_duplicate_wait_task(void *arg) {
    int p[2], i;
    struct writer w;
    (void)arg;
    CHECK_EQ(pipe(p), 0);
    for (i = 0; i < 20; i++) {
        ivy_pollfd_t fds[3];
        size_t nready = 0;
        ivy_task_t t = spawn_writer(&w, &p[1], 1);
        fds[0].fd = p[0];
        fds[0].events = IVY_READABLE;
        fds[1].fd = p[0];
        fds[1].events = IVY_READABLE;
        fds[2].fd = p[1];
        fds[2].events = IVY_READABLE; /* a write end never becomes readable */
        OK(ivy_fd_poll(fds, 3, &nready, ivy_time_now() + 10000));
        CHECK_EQ(nready, 2);
        CHECK_EQ(fds[0].revents, IVY_READABLE);
        CHECK_EQ(fds[1].revents, IVY_READABLE);
        CHECK_EQ(fds[2].revents, 0);
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        drain(p[0]);
    }
    CHECK_EQ(close(p[0]), 0);
    CHECK_EQ(close(p[1]), 0);
    return NULL;
}

static void test_poll_duplicate_fd_while_waiting(void) { h_run(1, poll_duplicate_wait_task, NULL); }

/* Hang-up: the write end closed (while waiting, and before). */
static void *poll_hangup_task(void *arg) {
    int p[2], round;
    (void)arg;
    for (round = 0; round < 2; round++) {
        ivy_pollfd_t fd;
        size_t nready = 0;
        struct writer w;
        ivy_task_t t;
        int dummy[2];
        CHECK_EQ(pipe(p), 0);
        fd.fd = p[0];
        fd.events = IVY_READABLE;
        if (round == 0) {
            CHECK_EQ(close(p[1]), 0);
            OK(ivy_fd_poll(&fd, 1, &nready, 0));
        } else {
            /* the writer closes the write end: EOF while we wait */
            CHECK_EQ(pipe(dummy), 0);
            t = spawn_writer(&w, &dummy[1], 1);
            CHECK_EQ(close(p[1]), 0);
            OK(ivy_fd_poll(&fd, 1, &nready, ivy_time_now() + 10000));
            OK(ivy_task_join(t, NULL, IVY_FOREVER));
            CHECK_EQ(close(dummy[0]), 0);
            CHECK_EQ(close(dummy[1]), 0);
        }
        CHECK_EQ(nready, 1);
        CHECK_EQ(fd.revents, IVY_READABLE | IVY_HANGUP);
        CHECK_EQ(close(p[0]), 0);
    }
    /* A write end whose reader is gone: writable and in error. */
    {
        ivy_pollfd_t fd;
        size_t nready = 0;
        CHECK_EQ(pipe(p), 0);
        CHECK_EQ(close(p[0]), 0);
        fd.fd = p[1];
        fd.events = IVY_WRITABLE;
        OK(ivy_fd_poll(&fd, 1, &nready, 0));
        CHECK_EQ(nready, 1);
        CHECK_EQ(fd.revents, IVY_WRITABLE | IVY_ERROR);
        CHECK_EQ(close(p[1]), 0);
    }
    return NULL;
}

static void test_poll_hangup_and_error(void) {
    h_run(1, poll_hangup_task, NULL);
}

/* Nothing ready: IVY_ETIMEDOUT with nready 0 and every revents 0, not before the
 * deadline; a passed deadline answers at once. In a task and on a plain thread. */
static void poll_timeout_body(void) {
    struct pipes p;
    ivy_pollfd_t fds[NPIPES];
    size_t nready = 999;
    int64_t start;
    int i;
    pipes_open(&p);
    poll_set(fds, &p);
    start = ivy_time_now();
    CHECK_EQ(ivy_fd_poll(fds, NPIPES, &nready, start + 50), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() >= start + 50);
    CHECK(ivy_time_now() < start + 5000);
    CHECK_EQ(nready, 0);
    for (i = 0; i < NPIPES; i++) CHECK_EQ(fds[i].revents, 0);
    poll_set(fds, &p);
    nready = 999;
    start = ivy_time_now();
    CHECK_EQ(ivy_fd_poll(fds, NPIPES, &nready, 0), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() < start + 1000);
    CHECK_EQ(nready, 0);
    for (i = 0; i < NPIPES; i++) CHECK_EQ(fds[i].revents, 0);
    /* n == 0: waits for the deadline, like poll(2) with no fds */
    nready = 999;
    start = ivy_time_now();
    CHECK_EQ(ivy_fd_poll(NULL, 0, &nready, start + 30), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() >= start + 30);
    CHECK_EQ(nready, 0);
    pipes_close(&p);
}

static void *poll_timeout_task(void *arg) {
    (void)arg;
    poll_timeout_body();
    return NULL;
}

static void test_poll_timeout_in_task(void) { h_run(2, poll_timeout_task, NULL); }

static void test_poll_timeout_on_thread(void) { poll_timeout_body(); }

/* On a plain thread: data written by another thread wakes poll(2). */
static void *thread_writer(void *arg) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL); /* not synchronisation: the result is the same either way */
    CHECK_EQ(write(*(int *)arg, "x", 1), 1);
    return NULL;
}

static void test_poll_on_thread(void) {
    struct pipes p;
    ivy_pollfd_t fds[NPIPES];
    pthread_t th;
    size_t nready = 0;
    int i;
    pipes_open(&p);
    poll_set(fds, &p);
    CHECK_EQ(pthread_create(&th, NULL, thread_writer, &p.w[42]), 0);
    OK(ivy_fd_poll(fds, NPIPES, &nready, ivy_time_now() + 10000));
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(nready, 1);
    for (i = 0; i < NPIPES; i++) CHECK_EQ(fds[i].revents, i == 42 ? IVY_READABLE : 0);
    pipes_close(&p);
}

/* Invalid arguments give IVY_EINVAL and write nothing; an fd that is not open
 * gives IVY_EBADF. */
static void poll_invalid_body(void) {
    int p[2];
    ivy_pollfd_t fd;
    size_t nready = 77;
    CHECK_EQ(pipe(p), 0);
    fd.fd = p[0];
    fd.events = IVY_READABLE;
    fd.revents = 77;
    CHECK_EQ(ivy_fd_poll(&fd, 1, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_fd_poll(NULL, 1, &nready, 0), IVY_EINVAL);
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, -2), IVY_EINVAL);
    fd.fd = -1;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, 0), IVY_EINVAL);
    fd.fd = p[0];
    fd.events = 0;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, 0), IVY_EINVAL);
    fd.events = IVY_READABLE | IVY_HANGUP;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, 0), IVY_EINVAL);
    fd.events = IVY_READABLE | 64;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, 0), IVY_EINVAL);
    fd.events = -1;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, 0), IVY_EINVAL);
    CHECK_EQ(nready, 77);
    CHECK_EQ(fd.revents, 77);
    CHECK_EQ(close(p[0]), 0);
    CHECK_EQ(close(p[1]), 0);
    fd.fd = p[0]; /* closed now */
    fd.events = IVY_READABLE;
    CHECK_EQ(ivy_fd_poll(&fd, 1, &nready, ivy_time_now() + 1000), IVY_EBADF);
    CHECK_EQ(nready, 0);
    CHECK_EQ(fd.revents, 0);
}

/* More entries than the fd limit: IVY_EINVAL, as poll(2) says, and nothing written. */
static void test_poll_over_fd_limit(void) {
    struct rlimit old, low;
    ivy_pollfd_t fds[65];
    size_t nready = 77;
    int p[2], i;
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 64;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (i = 0; i < 65; i++) {
        fds[i].fd = p[0];
        fds[i].events = IVY_READABLE;
        fds[i].revents = 77;
    }
    {
        /* What poll(2) itself says (valgrind keeps a limit of its own, which its
         * poll does not apply: then there is nothing to compare). */
        struct pollfd pfds[65];
        int rc;
        for (i = 0; i < 65; i++) {
            pfds[i].fd = p[0];
            pfds[i].events = POLLIN;
        }
        rc = poll(pfds, 65, 0);
        if (rc < 0 && errno == EINVAL) {
            CHECK_EQ(ivy_fd_poll(fds, 65, &nready, 0), IVY_EINVAL);
            CHECK_EQ(nready, 77);
            CHECK_EQ(fds[0].revents, 77);
        }
    }
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* within the limit, the same fd many times is fine */
    CHECK_EQ(ivy_fd_poll(fds, 65, &nready, 0), IVY_ETIMEDOUT);
    CHECK_EQ(close(p[0]), 0);
    CHECK_EQ(close(p[1]), 0);
}

static void *poll_invalid_task(void *arg) {
    (void)arg;
    poll_invalid_body();
    return NULL;
}

static void test_poll_invalid_arguments(void) {
    poll_invalid_body();
    h_run(1, poll_invalid_task, NULL);
}

/* Cancelled while waiting: IVY_ECANCELED, nready 0. */
struct cancel_arg {
    int fd;
    int rc;
    int started;
    size_t nready;
};

static void *poll_forever_task(void *arg) {
    struct cancel_arg *c = arg;
    ivy_pollfd_t fd;
    fd.fd = c->fd;
    fd.events = IVY_READABLE;
    c->nready = 55;
    H_ATOMIC_STORE(&c->started, 1);
    c->rc = ivy_fd_poll(&fd, 1, &c->nready, IVY_FOREVER);
    return NULL;
}

static void *poll_cancel_task(void *arg) {
    int p[2], i;
    (void)arg;
    CHECK_EQ(pipe(p), 0);
    for (i = 0; i < 50; i++) {
        struct cancel_arg c;
        ivy_task_t t;
        c.fd = p[0];
        c.rc = 1;
        c.started = 0;
        OK(ivy_task_spawn(poll_forever_task, &c, NULL, &t));
        /* Single worker: once the poller has started, it runs into its poll before
         * this task runs again. */
        while (!H_ATOMIC_LOAD(&c.started)) OK(ivy_task_yield());
        OK(ivy_task_cancel(t));
        (void)ivy_task_join(t, NULL, IVY_FOREVER);
        CHECK_EQ(c.rc, IVY_ECANCELED);
        CHECK_EQ(c.nready, 0);
    }
    CHECK_EQ(close(p[0]), 0);
    CHECK_EQ(close(p[1]), 0);
    return NULL;
}

static void test_poll_cancelled(void) { h_run(1, poll_cancel_task, NULL); }

/* An fd closed by another task while the poll waits: a file closed for good leaves
 * the wait (a new file under the same number is not watched, and the worker's
 * reactor is undisturbed); a file kept open by a dup is still watched. */
struct closer {
    int close_fd;   /* closed */
    int new_pipe[2]; /* then opened (likely reusing close_fd's number) and written */
    int then_write; /* then written: wakes the poll */
};

static void *closer_task(void *arg) {
    struct closer *c = arg;
    CHECK_EQ(close(c->close_fd), 0);
    CHECK_EQ(pipe(c->new_pipe), 0);
    CHECK_EQ(write(c->new_pipe[1], "y", 1), 1);
    CHECK_EQ(write(c->then_write, "x", 1), 1);
    return NULL;
}

static void *poll_closed_mid_wait_task(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 100; i++) {
        int a[2], b[2], keep, rev = 0;
        ivy_pollfd_t fds[2];
        size_t nready = 0;
        struct closer c;
        ivy_task_t t;
        CHECK_EQ(pipe(a), 0);
        CHECK_EQ(pipe(b), 0);
        fds[0].fd = a[0];
        fds[0].events = IVY_READABLE;
        fds[1].fd = b[0];
        fds[1].events = IVY_READABLE;
        c.close_fd = a[0];
        c.then_write = b[1];
        OK(ivy_task_spawn(closer_task, &c, NULL, &t));
        OK(ivy_fd_poll(fds, 2, &nready, ivy_time_now() + 10000));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(nready, 1);
        CHECK_EQ(fds[0].revents, 0);
        CHECK_EQ(fds[1].revents, IVY_READABLE);
        /* The reactor still works on the reused number. */
        OK(ivy_fd_wait(c.new_pipe[0], IVY_READABLE, &rev, ivy_time_now() + 10000));
        CHECK_EQ(rev, IVY_READABLE);
        CHECK_EQ(close(c.new_pipe[0]), 0);
        CHECK_EQ(close(c.new_pipe[1]), 0);
        drain(b[0]);

        /* Now the closed number's file stays open through a dup: still watched. */
        keep = dup(a[1]);
        CHECK(keep >= 0);
        CHECK_EQ(close(a[1]), 0);
        CHECK_EQ(pipe(a), 0); /* fresh pipe: a[0] read end to close mid-wait */
        {
            int dupped = dup(a[0]);
            int w = a[1];
            CHECK(dupped >= 0);
            fds[0].fd = a[0];
            fds[1].fd = b[0];
            c.close_fd = a[0];
            c.then_write = w; /* writes into the file a[0] named, now only `dupped` */
            OK(ivy_task_spawn(closer_task, &c, NULL, &t));
            OK(ivy_fd_poll(fds, 2, &nready, ivy_time_now() + 10000));
            OK(ivy_task_join(t, NULL, IVY_FOREVER));
            CHECK_EQ(nready, 1);
            CHECK_EQ(fds[0].revents, IVY_READABLE);
            CHECK_EQ(fds[1].revents, 0);
            drain(dupped);
            CHECK_EQ(close(dupped), 0);
            CHECK_EQ(close(w), 0);
            CHECK_EQ(close(c.new_pipe[0]), 0);
            CHECK_EQ(close(c.new_pipe[1]), 0);
        }
        CHECK_EQ(close(keep), 0);
        CHECK_EQ(close(b[0]), 0);
        CHECK_EQ(close(b[1]), 0);
    }
    return NULL;
}

static void test_poll_fd_closed_mid_wait(void) {
    h_run(1, poll_closed_mid_wait_task, NULL);
}

/* No fd is left behind: /proc/self/fd has as many entries after 1000 calls (half
 * answered by the first look, half parked and woken) as before. */
static void *poll_no_leak_task(void *arg) {
    struct pipes p;
    ivy_pollfd_t fds[NPIPES];
    struct writer w;
    int i, before;
    (void)arg;
    pipes_open(&p);
    before = settled_fds();
    for (i = 0; i < 1000; i++) {
        size_t nready = 0;
        int k = (i * 7) % NPIPES;
        poll_set(fds, &p);
        if (i % 2 == 0) {
            CHECK_EQ(write(p.w[k], "x", 1), 1);
            OK(ivy_fd_poll(fds, NPIPES, &nready, IVY_FOREVER));
        } else {
            ivy_task_t t = spawn_writer(&w, &p.w[k], 1);
            OK(ivy_fd_poll(fds, NPIPES, &nready, IVY_FOREVER));
            OK(ivy_task_join(t, NULL, IVY_FOREVER));
        }
        CHECK_EQ(nready, 1);
        CHECK_EQ(fds[k].revents, IVY_READABLE);
        drain(p.r[k]);
    }
    CHECK(before > 0);
    check_fds_back_to(before);
    pipes_close(&p);
    return NULL;
}

static void test_poll_leaves_no_fd(void) { h_run(1, poll_no_leak_task, NULL); }

int main(void) {
    RUN(test_fd_wait_passed_deadline_in_task);
    RUN(test_fd_wait_passed_deadline_on_thread);
    RUN(test_poll_one_of_100_pipes);
    RUN(test_poll_several_ready);
    RUN(test_poll_duplicate_fd_while_waiting);
    RUN(test_poll_hangup_and_error);
    RUN(test_poll_timeout_in_task);
    RUN(test_poll_timeout_on_thread);
    RUN(test_poll_on_thread);
    RUN(test_poll_invalid_arguments);
    RUN(test_poll_over_fd_limit);
    RUN(test_poll_cancelled);
    RUN(test_poll_fd_closed_mid_wait);
    RUN(test_poll_leaves_no_fd);
    H_REPORT();
}
