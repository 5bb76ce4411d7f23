/* Closing a socket wakes every call blocked on it (libdill's hclose): a task (or
 * plain thread) parked in ivy_tcp_read / write_all / accept / ivy_udp_recv_from on
 * a handle that another task or thread closes returns IVY_ECLOSED at once, the
 * peer sees EOF, a closed listener's port refuses new connects, and no fd leaks.
 *
 * Handshake: the runtimes here have ONE worker, so a task that sets `entered`
 * and then calls a blocking function keeps the worker until it parks inside that
 * call (after it has looked the handle up). The closer spins with ivy_task_yield
 * until it sees `entered`: it can only run again once the blocked task gave the
 * worker up, i.e. from inside the call. So the outcome is exact: IVY_ECLOSED. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "net_helpers.h"

enum { ITERS = 50 };

struct blocked {
    ivy_tcp_stream_t s;
    ivy_tcp_listener_t l;
    ivy_udp_socket_t u;
    int entered;
    int rc;
    size_t n;
    const char *buf;
    size_t len;
};

/* ---- close during read ----------------------------------------------------------------- */

static void *reader(void *arg) {
    struct blocked *b = arg;
    char buf[64];
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_tcp_read(b->s, buf, sizeof buf, &b->n, IVY_FOREVER);
    return NULL;
}

static void *close_read_main(void *arg) {
    int i, before = settled_fds();
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b;
        ivy_tcp_stream_t peer;
        ivy_task_t t;
        char buf[8];
        size_t n = 99;
        int64_t t0;
        memset(&b, 0, sizeof b);
        tcp_pair(&b.s, &peer);
        OK(ivy_task_spawn(reader, &b, NULL, &t));
        yield_until(&b.entered);
        t0 = ivy_time_now();
        OK(ivy_tcp_close(b.s));
        OK(ivy_task_join(t, NULL, ivy_time_now() + 5000));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        CHECK(ivy_time_now() - t0 < 2000);
        /* The peer sees EOF although the reader held the socket while closing. */
        OK(ivy_tcp_read(peer, buf, sizeof buf, &n, ivy_time_now() + 5000));
        CHECK_EQ(n, 0);
        /* The handle is gone. */
        CHECK_EQ(ivy_tcp_read(b.s, buf, sizeof buf, &n, 0), IVY_EBADF);
        CHECK_EQ(ivy_tcp_close(b.s), IVY_EBADF);
        OK(ivy_tcp_close(peer));
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_read(void) { h_run(1, close_read_main, NULL); }

/* ---- close during write_all (the peer does not read) ------------------------------------ */

enum { BIG = 64 << 20 };

static void *writer(void *arg) {
    struct blocked *b = arg;
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_tcp_write_all(b->s, b->buf, b->len, IVY_FOREVER);
    return NULL;
}

static void *single_writer(void *arg) {
    struct blocked *b = arg;
    size_t total = 0;
    H_ATOMIC_STORE(&b->entered, 1);
    /* Fill the buffers with single writes, until one blocks and is closed. */
    while ((b->rc = ivy_tcp_write(b->s, b->buf, 1 << 16, &b->n, IVY_FOREVER)) == 0) {
        total += b->n;
        if (total > (size_t)BIG) break;
    }
    return NULL;
}

static void *close_write_main(void *arg) {
    int i, before = settled_fds();
    char *big = calloc(BIG, 1);
    (void)arg;
    CHECK(big != NULL);
    for (i = 0; i < 10; i++) {
        struct blocked b;
        ivy_tcp_stream_t peer;
        ivy_task_t t;
        char buf[4096];
        size_t n, got = 0;
        int rc;
        memset(&b, 0, sizeof b);
        tcp_pair(&b.s, &peer);
        b.buf = big;
        b.len = BIG;
        OK(ivy_task_spawn(i % 2 ? single_writer : writer, &b, NULL, &t));
        yield_until(&b.entered);
        OK(ivy_tcp_close(b.s));
        OK(ivy_task_join(t, NULL, ivy_time_now() + 5000));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        /* The peer drains what was sent, then sees EOF (or a reset: the closed
         * side may have discarded unsent data). Never more than was written. */
        while ((rc = ivy_tcp_read(peer, buf, sizeof buf, &n, ivy_time_now() + 5000)) == 0 && n > 0)
            got += n;
        CHECK(rc == 0 || rc == -ECONNRESET);
        CHECK(got < (size_t)BIG);
        OK(ivy_tcp_close(peer));
    }
    free(big);
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_write(void) { h_run(1, close_write_main, NULL); }

/* ---- close during accept: the port then refuses connects -------------------------------- */

static void *acceptor(void *arg) {
    struct blocked *b = arg;
    ivy_tcp_stream_t s;
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_tcp_accept(b->l, &s, IVY_FOREVER);
    return NULL;
}

static void *close_accept_main(void *arg) {
    int i, before = settled_fds();
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b[3];
        ivy_task_t t[3];
        ivy_tcp_stream_t c;
        uint16_t port;
        char addr[32];
        int k;
        memset(b, 0, sizeof b);
        OK(ivy_tcp_listen("127.0.0.1:0", &b[0].l));
        OK(ivy_tcp_listener_port(b[0].l, &port));
        snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
        /* Three acceptors parked on the same listener: every one wakes. */
        for (k = 0; k < 3; k++) {
            b[k].l = b[0].l;
            OK(ivy_task_spawn(acceptor, &b[k], NULL, &t[k]));
            yield_until(&b[k].entered);
        }
        OK(ivy_tcp_listener_close(b[0].l));
        for (k = 0; k < 3; k++) {
            OK(ivy_task_join(t[k], NULL, ivy_time_now() + 5000));
            CHECK_EQ(b[k].rc, IVY_ECLOSED);
        }
        CHECK_EQ(ivy_tcp_connect(addr, &c, ivy_time_now() + 5000), -ECONNREFUSED);
        CHECK_EQ(ivy_tcp_listener_close(b[0].l), IVY_EBADF);
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_accept(void) { h_run(1, close_accept_main, NULL); }

/* A listener closed with connections queued but never accepted: they are reset. */
static void *close_backlog_main(void *arg) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c;
    uint16_t port;
    char addr[32], buf[8];
    size_t n = 99;
    int rc, before = settled_fds();
    (void)arg;
    OK(ivy_tcp_listen("127.0.0.1:0", &l));
    OK(ivy_tcp_listener_port(l, &port));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    OK(ivy_tcp_connect(addr, &c, ivy_time_now() + 5000));
    OK(ivy_tcp_listener_close(l));
    rc = ivy_tcp_read(c, buf, sizeof buf, &n, ivy_time_now() + 5000);
    CHECK(rc == -ECONNRESET || (rc == 0 && n == 0));
    OK(ivy_tcp_close(c));
    check_fds_back_to(before);
    return NULL;
}

static void test_close_listener_resets_backlog(void) { h_run(1, close_backlog_main, NULL); }

/* ---- close during UDP receive ------------------------------------------------------------ */

static void *udp_receiver(void *arg) {
    struct blocked *b = arg;
    char buf[64];
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_udp_recv_from(b->u, buf, sizeof buf, &b->n, NULL, NULL, 0, IVY_FOREVER);
    return NULL;
}

static void *close_udp_main(void *arg) {
    int i, before = settled_fds();
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b;
        ivy_task_t t;
        memset(&b, 0, sizeof b);
        OK(ivy_udp_bind("127.0.0.1:0", &b.u));
        OK(ivy_task_spawn(udp_receiver, &b, NULL, &t));
        yield_until(&b.entered);
        OK(ivy_udp_close(b.u));
        OK(ivy_task_join(t, NULL, ivy_time_now() + 5000));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        CHECK_EQ(ivy_udp_close(b.u), IVY_EBADF);
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_udp_recv(void) { h_run(1, close_udp_main, NULL); }

/* ---- read and write blocked at once, on one stream --------------------------------------- */

static void *both_main(void *arg) {
    int i, before = settled_fds();
    char *big = calloc(BIG, 1);
    (void)arg;
    for (i = 0; i < 10; i++) {
        struct blocked r, w;
        ivy_tcp_stream_t peer;
        ivy_task_t tr, tw;
        memset(&r, 0, sizeof r);
        memset(&w, 0, sizeof w);
        tcp_pair(&r.s, &peer);
        w.s = r.s;
        w.buf = big;
        w.len = BIG;
        OK(ivy_task_spawn(reader, &r, NULL, &tr));
        yield_until(&r.entered);
        OK(ivy_task_spawn(writer, &w, NULL, &tw));
        yield_until(&w.entered);
        OK(ivy_tcp_close(r.s));
        OK(ivy_task_join(tr, NULL, ivy_time_now() + 5000));
        OK(ivy_task_join(tw, NULL, ivy_time_now() + 5000));
        CHECK_EQ(r.rc, IVY_ECLOSED);
        CHECK_EQ(w.rc, IVY_ECLOSED);
        OK(ivy_tcp_close(peer));
    }
    free(big);
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_reader_and_writer(void) { h_run(1, both_main, NULL); }

/* ---- close from a plain pthread ---------------------------------------------------------- */

struct from_thread {
    ivy_tcp_stream_t s;
    ivy_event_t go;
};

static void *thread_closer(void *arg) {
    struct from_thread *f = arg;
    OK(ivy_event_wait(f->go, IVY_FOREVER)); /* ivy_event_wait works on plain threads */
    OK(ivy_tcp_close(f->s));
    return NULL;
}

static void *pthread_close_main(void *arg) {
    int i, before = settled_fds();
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b;
        struct from_thread f;
        ivy_tcp_stream_t peer;
        ivy_task_t t;
        pthread_t th;
        char buf[8];
        size_t n = 99;
        memset(&b, 0, sizeof b);
        tcp_pair(&b.s, &peer);
        f.s = b.s;
        OK(ivy_event_new(&f.go));
        CHECK_EQ(pthread_create(&th, NULL, thread_closer, &f), 0);
        OK(ivy_task_spawn(reader, &b, NULL, &t));
        yield_until(&b.entered); /* the reader is parked inside ivy_tcp_read */
        OK(ivy_event_set(f.go));
        OK(ivy_task_join(t, NULL, ivy_time_now() + 5000));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        CHECK_EQ(pthread_join(th, NULL), 0);
        OK(ivy_tcp_read(peer, buf, sizeof buf, &n, ivy_time_now() + 5000));
        CHECK_EQ(n, 0);
        OK(ivy_tcp_close(peer));
        OK(ivy_event_free(f.go));
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_from_pthread(void) { h_run(1, pthread_close_main, NULL); }

/* ---- a plain thread blocked in poll(2) on the socket, closed by a task ------------------- */

static void *thread_reader(void *arg) {
    reader(arg);
    return NULL;
}

static void *thread_acceptor(void *arg) {
    acceptor(arg);
    return NULL;
}

static void *thread_udp_receiver(void *arg) {
    udp_receiver(arg);
    return NULL;
}

static void *thread_blocked_main(void *arg) {
    int i, before = settled_fds();
    (void)arg;
    for (i = 0; i < 5; i++) {
        struct blocked r, a, u;
        ivy_tcp_stream_t peer;
        pthread_t th[3];
        int64_t t0;
        memset(&r, 0, sizeof r);
        memset(&a, 0, sizeof a);
        memset(&u, 0, sizeof u);
        tcp_pair(&r.s, &peer);
        OK(ivy_tcp_listen("127.0.0.1:0", &a.l));
        OK(ivy_udp_bind("127.0.0.1:0", &u.u));
        CHECK_EQ(pthread_create(&th[0], NULL, thread_reader, &r), 0);
        CHECK_EQ(pthread_create(&th[1], NULL, thread_acceptor, &a), 0);
        CHECK_EQ(pthread_create(&th[2], NULL, thread_udp_receiver, &u), 0);
        /* No handshake can tell that a thread sits in poll(2); `entered` says it
         * passed the handle lookup's doorstep, and 50 ms is a wide margin for
         * the few instructions left. */
        yield_until(&r.entered);
        yield_until(&a.entered);
        yield_until(&u.entered);
        OK(ivy_time_sleep(50));
        t0 = ivy_time_now();
        OK(ivy_tcp_close(r.s));
        OK(ivy_tcp_listener_close(a.l));
        OK(ivy_udp_close(u.u));
        CHECK_EQ(pthread_join(th[0], NULL), 0);
        CHECK_EQ(pthread_join(th[1], NULL), 0);
        CHECK_EQ(pthread_join(th[2], NULL), 0);
        CHECK(ivy_time_now() - t0 < 2000);
        CHECK_EQ(r.rc, IVY_ECLOSED);
        CHECK_EQ(a.rc, IVY_ECLOSED);
        CHECK_EQ(u.rc, IVY_ECLOSED);
        OK(ivy_tcp_close(peer));
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_wakes_plain_threads(void) { h_run(1, thread_blocked_main, NULL); }

/* ---- many workers, many sockets: every blocked call returns ------------------------------ */

static void *many_main(void *arg) {
    enum { N = 64 };
    struct blocked b[N];
    ivy_tcp_stream_t peers[N];
    ivy_task_t t[N];
    int i, before = settled_fds();
    (void)arg;
    memset(b, 0, sizeof b);
    for (i = 0; i < N; i++) {
        tcp_pair(&b[i].s, &peers[i]);
        OK(ivy_task_spawn(reader, &b[i], NULL, &t[i]));
    }
    for (i = 0; i < N; i++) yield_until(&b[i].entered);
    /* Readers on other workers may not have looked their handle up yet: give
     * them a wide margin, then every one must be parked and woken by close. */
    OK(ivy_time_sleep(100));
    for (i = 0; i < N; i++) OK(ivy_tcp_close(b[i].s));
    for (i = 0; i < N; i++) {
        char buf[8];
        size_t n = 99;
        OK(ivy_task_join(t[i], NULL, ivy_time_now() + 5000));
        CHECK_EQ(b[i].rc, IVY_ECLOSED);
        OK(ivy_tcp_read(peers[i], buf, sizeof buf, &n, ivy_time_now() + 5000));
        CHECK_EQ(n, 0);
        OK(ivy_tcp_close(peers[i]));
    }
    check_fds_back_to(before);
    return NULL;
}

static void test_close_many_workers(void) { h_run(4, many_main, NULL); }

int main(void) {
    RUN(test_close_wakes_read);
    RUN(test_close_wakes_write);
    RUN(test_close_wakes_accept);
    RUN(test_close_listener_resets_backlog);
    RUN(test_close_wakes_udp_recv);
    RUN(test_close_wakes_reader_and_writer);
    RUN(test_close_from_pthread);
    RUN(test_close_wakes_plain_threads);
    RUN(test_close_many_workers);
    H_REPORT();
}
