/* TCP, UDP, foreign fds (ivy_fd_wait) and the blocking pool. Loopback only. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- TCP -------------------------------------------------------------------------------- */

static void *echo_conn(void *arg) {
    ivy_tcp_stream_t s;
    char buf[256];
    size_t n;
    int rc;
    s.id = (uint64_t)(uintptr_t)arg;
    while ((rc = ivy_tcp_read(s, buf, sizeof buf, &n, ivy_time_now() + 5000)) == 0 && n > 0)
        OK(ivy_tcp_write_all(s, buf, n, ivy_time_now() + 5000));
    CHECK_EQ(rc, 0); /* ended by EOF */
    OK(ivy_tcp_close(s));
    return NULL;
}

struct server {
    ivy_tcp_listener_t l;
    int conns;
};

static void *echo_server(void *arg) {
    struct server *srv = arg;
    int i;
    for (i = 0; i < srv->conns; i++) {
        ivy_tcp_stream_t s;
        ivy_task_t t;
        OK(ivy_tcp_accept(srv->l, &s, ivy_time_now() + 5000));
        OK(ivy_task_spawn(echo_conn, (void *)(uintptr_t)s.id, NULL, &t));
        OK(ivy_task_detach(t));
    }
    return NULL;
}

static void *echo_client(void *arg) {
    char addr[64], msg[64], back[64];
    ivy_tcp_stream_t s;
    size_t got = 0, n;
    int len;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)(uintptr_t)arg >> 16);
    len = snprintf(msg, sizeof msg, "hello %u", (unsigned)(uintptr_t)arg & 0xffff);
    OK(ivy_tcp_connect(addr, &s, ivy_time_now() + 5000));
    OK(ivy_tcp_write_all(s, msg, (size_t)len, ivy_time_now() + 5000));
    while (got < (size_t)len) {
        OK(ivy_tcp_read(s, back + got, sizeof back - got, &n, ivy_time_now() + 5000));
        if (n == 0) break;
        got += n;
    }
    CHECK_EQ(got, len);
    CHECK(memcmp(msg, back, (size_t)len) == 0);
    OK(ivy_tcp_shutdown(s, IVY_SHUT_WR));
    OK(ivy_tcp_read(s, back, sizeof back, &n, ivy_time_now() + 5000));
    CHECK_EQ(n, 0); /* the server closed after our EOF */
    OK(ivy_tcp_close(s));
    return NULL;
}

static void *tcp_echo_main(void *arg) {
    enum { N = 50 };
    struct server srv;
    ivy_task_t server, clients[N];
    uint16_t port = 0;
    int i;
    (void)arg;
    OK(ivy_tcp_listen("127.0.0.1:0", &srv.l));
    OK(ivy_tcp_listener_port(srv.l, &port));
    CHECK(port != 0);
    srv.conns = N;
    OK(ivy_task_spawn(echo_server, &srv, NULL, &server));
    for (i = 0; i < N; i++)
        OK(ivy_task_spawn(echo_client, (void *)(uintptr_t)(((uintptr_t)port << 16) | (uintptr_t)i), NULL, &clients[i]));
    OK(ivy_task_join_all(clients, N, NULL, NULL, IVY_FOREVER));
    OK(ivy_task_join(server, NULL, IVY_FOREVER));
    OK(ivy_tcp_listener_close(srv.l));
    return NULL;
}

static void test_tcp_echo(void) {
    int i;
    for (i = 0; i < 3; i++) h_run(2, tcp_echo_main, NULL);
}

static void *blocked_reader(void *arg) {
    ivy_tcp_stream_t s;
    char c;
    size_t n;
    s.id = (uint64_t)(uintptr_t)arg;
    return (void *)(intptr_t)ivy_tcp_read(s, &c, 1, &n, IVY_FOREVER);
}

static void *tcp_errors_main(void *arg) {
    ivy_tcp_listener_t l, zero_l;
    ivy_tcp_stream_t s, c, zero;
    ivy_task_t reader;
    uint16_t port;
    char addr[64], buf[8];
    size_t n;
    void *r;
    int64_t t0;
    (void)arg;
    memset(&zero, 0, sizeof zero);
    memset(&zero_l, 0, sizeof zero_l);
    OK(ivy_tcp_listen("127.0.0.1:0", &l));
    OK(ivy_tcp_listener_port(l, &port));
    /* accept with a deadline */
    t0 = ivy_time_now();
    CHECK_EQ(ivy_tcp_accept(l, &s, ivy_time_now() + 20), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 20);
    /* a read with a deadline, then a read cancelled while blocked */
    snprintf(addr, sizeof addr, "localhost:%u", (unsigned)port); /* a name: resolved on the blocking pool */
    OK(ivy_tcp_connect(addr, &c, ivy_time_now() + 5000));
    OK(ivy_tcp_accept(l, &s, ivy_time_now() + 5000));
    CHECK_EQ(ivy_tcp_read(c, buf, sizeof buf, &n, ivy_time_now() + 20), IVY_ETIMEDOUT);
    OK(ivy_task_spawn(blocked_reader, (void *)(uintptr_t)c.id, NULL, &reader));
    OK(ivy_time_sleep(10));
    OK(ivy_task_cancel(reader));
    OK(ivy_task_join(reader, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED);
    /* the stream still works after the cancelled read */
    OK(ivy_tcp_write_all(s, "x", 1, IVY_FOREVER));
    OK(ivy_tcp_read(c, buf, sizeof buf, &n, ivy_time_now() + 5000));
    CHECK_EQ(n, 1);
    /* argument errors */
    CHECK_EQ(ivy_tcp_read(c, NULL, 1, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_read(c, buf, 0, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_read(c, buf, 1, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_write(c, NULL, 1, &n, 0), IVY_EINVAL);
    OK(ivy_tcp_write_all(c, buf, 0, 0)); /* zero-length: succeeds like write(2) */
    CHECK_EQ(ivy_tcp_shutdown(c, 7), IVY_EINVAL);
    OK(ivy_tcp_write(c, "ab", 2, &n, IVY_FOREVER));
    CHECK(n >= 1 && n <= 2);
    /* closed handles */
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));
    CHECK_EQ(ivy_tcp_close(c), IVY_EBADF);
    CHECK_EQ(ivy_tcp_read(c, buf, 1, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_tcp_write(zero, buf, 1, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_tcp_accept(zero_l, &s, 0), IVY_EBADF);
    OK(ivy_tcp_listener_close(l));
    CHECK_EQ(ivy_tcp_listener_close(l), IVY_EBADF);
    CHECK_EQ(ivy_tcp_listener_port(l, &port), IVY_EBADF);
    /* nobody listens there any more: connection refused, as -errno */
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    CHECK_EQ(ivy_tcp_connect(addr, &c, ivy_time_now() + 5000), -ECONNREFUSED);
    /* bad addresses */
    CHECK_EQ(ivy_tcp_listen(NULL, &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen("not an address", &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen("127.0.0.1:0", NULL), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_connect("no-such-host.invalid:80", &c, ivy_time_now() + 5000), IVY_ENOENT);
    return NULL;
}

static void test_tcp_errors(void) { h_run(2, tcp_errors_main, NULL); }

/* ---- UDP ------------------------------------------------------------------------------------- */

static void *udp_main(void *arg) {
    ivy_udp_socket_t a, b;
    uint16_t pa, pb;
    char addr[64], from[64], buf[16], tiny[4];
    size_t n;
    (void)arg;
    OK(ivy_udp_bind("127.0.0.1:0", &a));
    OK(ivy_udp_bind("127.0.0.1:0", &b));
    OK(ivy_udp_port(a, &pa));
    OK(ivy_udp_port(b, &pb));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)pb);
    OK(ivy_udp_send_to(a, "ping", 4, addr, &n, IVY_FOREVER));
    CHECK_EQ(n, 4);
    OK(ivy_udp_recv_from(b, buf, sizeof buf, &n, NULL, from, sizeof from, ivy_time_now() + 5000));
    CHECK_EQ(n, 4);
    CHECK(memcmp(buf, "ping", 4) == 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)pa);
    CHECK(strcmp(from, addr) == 0);
    OK(ivy_udp_send_to(b, "pong", 4, from, NULL, IVY_FOREVER)); /* reply to the sender */
    OK(ivy_udp_recv_from(a, buf, sizeof buf, &n, NULL, NULL, 0, ivy_time_now() + 5000));
    CHECK(memcmp(buf, "pong", 4) == 0);
    /* timeouts, a too-small address buffer, errors */
    CHECK_EQ(ivy_udp_recv_from(a, buf, sizeof buf, &n, NULL, NULL, 0, ivy_time_now() + 10), IVY_ETIMEDOUT);
    OK(ivy_udp_send_to(b, "x", 1, from, NULL, IVY_FOREVER));
    n = 99;
    CHECK_EQ(ivy_udp_recv_from(a, buf, sizeof buf, &n, NULL, tiny, sizeof tiny, ivy_time_now() + 5000), IVY_ERANGE);
    CHECK_EQ(n, 99); /* refused before receiving: the datagram is still queued */
    OK(ivy_udp_recv_from(a, buf, sizeof buf, &n, NULL, NULL, 0, ivy_time_now() + 5000));
    CHECK_EQ(n, 1);
    CHECK_EQ(ivy_udp_recv_from(a, NULL, 1, &n, NULL, NULL, 0, 0), IVY_EINVAL);
    CHECK_EQ(ivy_udp_send_to(a, "x", 1, NULL, NULL, 0), IVY_EINVAL);
    OK(ivy_udp_close(a));
    OK(ivy_udp_close(b));
    CHECK_EQ(ivy_udp_close(a), IVY_EBADF);
    CHECK_EQ(ivy_udp_port(a, &pa), IVY_EBADF);
    CHECK_EQ(ivy_udp_send_to(a, "x", 1, addr, NULL, 0), IVY_EBADF);
    return NULL;
}

static void test_udp(void) { h_run(2, udp_main, NULL); }

/* ---- foreign fds ---------------------------------------------------------------------------- */

static void *write_pipe_later(void *arg) {
    int fd = (int)(intptr_t)arg;
    OK(ivy_time_sleep(15));
    CHECK_EQ(write(fd, "z", 1), 1);
    return NULL;
}

static void *fd_wait_main(void *arg) {
    int p[2], revents = -1;
    ivy_task_t writer;
    char c;
    int64_t t0;
    (void)arg;
    CHECK_EQ(pipe(p), 0);
    /* empty pipe: not readable before the deadline; the write end is writable */
    t0 = ivy_time_now();
    CHECK_EQ(ivy_fd_wait(p[0], IVY_READABLE, &revents, ivy_time_now() + 20), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 20);
    OK(ivy_fd_wait(p[1], IVY_WRITABLE, &revents, IVY_FOREVER));
    CHECK_EQ(revents, IVY_WRITABLE);
    /* another task writes: this one parks until the pipe is readable */
    OK(ivy_task_spawn(write_pipe_later, (void *)(intptr_t)p[1], NULL, &writer));
    OK(ivy_fd_wait(p[0], IVY_READABLE | IVY_WRITABLE, &revents, ivy_time_now() + 5000));
    CHECK(revents & IVY_READABLE);
    CHECK_EQ(read(p[0], &c, 1), 1);
    CHECK_EQ(c, 'z');
    OK(ivy_task_join(writer, NULL, IVY_FOREVER));
    /* EOF reports readable */
    close(p[1]);
    OK(ivy_fd_wait(p[0], IVY_READABLE, &revents, ivy_time_now() + 5000));
    CHECK(revents & IVY_READABLE);
    /* errors */
    CHECK_EQ(ivy_fd_wait(p[0], 0, &revents, 0), IVY_EINVAL);
    CHECK_EQ(ivy_fd_wait(p[0], 8, &revents, 0), IVY_EINVAL);
    CHECK_EQ(ivy_fd_wait(-1, IVY_READABLE, &revents, 0), IVY_EINVAL);
    CHECK_EQ(ivy_fd_wait(p[0], IVY_READABLE, NULL, 0), IVY_EINVAL);
    close(p[0]);
    CHECK_EQ(ivy_fd_wait(p[0], IVY_READABLE, &revents, ivy_time_now() + 100), IVY_EBADF);
    return NULL;
}

static void test_fd_wait(void) {
    int p[2], revents = 0;
    h_run(2, fd_wait_main, NULL);
    /* a plain thread blocks in poll(2) */
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(write(p[1], "a", 1), 1);
    OK(ivy_fd_wait(p[0], IVY_READABLE, &revents, ivy_time_now() + 5000));
    CHECK_EQ(revents, IVY_READABLE);
    close(p[0]);
    close(p[1]);
}

/* A task waits on a pipe; another task closes the fd it waits on while a dup keeps the pipe open
 * (so the kernel keeps any epoll entry for it), then the pipe becomes readable again and again.
 * The waiter wakes once, readable; the later events must touch nothing (valgrind checks). */
static volatile int fd_waiter_started; /* one worker: tasks share its thread */

static void *fd_waiter(void *arg) {
    int fd = (int)(intptr_t)arg, revents = 0;
    /* Runs on into ivy_fd_wait and parks there without giving up the worker. */
    fd_waiter_started = 1;
    OK(ivy_fd_wait(fd, IVY_READABLE, &revents, ivy_time_now() + 10000));
    CHECK_EQ(revents, IVY_READABLE);
    return NULL;
}

static void *fd_wait_closed_main(void *arg) {
    int round, i;
    (void)arg;
    for (round = 0; round < 20; round++) {
        int p[2], keep;
        char c;
        ivy_task_t waiter;
        CHECK_EQ(pipe(p), 0);
        keep = dup(p[0]);
        CHECK(keep >= 0);
        fd_waiter_started = 0;
        OK(ivy_task_spawn(fd_waiter, (void *)(intptr_t)p[0], NULL, &waiter));
        while (!fd_waiter_started) OK(ivy_task_yield()); /* then it is parked in ivy_fd_wait */
        CHECK_EQ(close(p[0]), 0);
        CHECK_EQ(write(p[1], "a", 1), 1);
        OK(ivy_task_join(waiter, NULL, IVY_FOREVER));
        for (i = 0; i < 3; i++) {
            CHECK_EQ(read(keep, &c, 1), 1);
            CHECK_EQ(write(p[1], "b", 1), 1);
            OK(ivy_time_sleep(2)); /* the worker goes idle and collects the event */
        }
        close(keep);
        close(p[1]);
    }
    return NULL;
}

static void test_fd_wait_closed_while_waiting(void) { h_run(1, fd_wait_closed_main, NULL); }

/* ---- blocking pool ------------------------------------------------------------------------------ */

static void *blocking_sleep(void *arg) {
    struct timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)((uintptr_t)arg * 1000000);
    nanosleep(&ts, NULL); /* really blocks its OS thread */
    return (void *)((uintptr_t)arg + 1);
}

static void *ticker(void *arg) {
    int *ticks = arg;
    int i;
    for (i = 0; i < 5; i++) {
        OK(ivy_time_sleep(2));
        H_ATOMIC_ADD(ticks, 1);
    }
    return NULL;
}

static void *blocking_main(void *arg) {
    ivy_blocking_t b, jobs[8];
    ivy_task_t tick;
    void *r = NULL;
    int ticks = 0, i;
    (void)arg;
    /* one worker: while the job blocks a pool thread, the worker keeps running tasks */
    OK(ivy_task_spawn(ticker, &ticks, NULL, &tick));
    OK(ivy_blocking_spawn(blocking_sleep, (void *)60, &b));
    OK(ivy_blocking_join(b, &r, ivy_time_now() + 5000));
    CHECK_EQ((uintptr_t)r, 61);
    OK(ivy_task_join(tick, NULL, IVY_FOREVER));
    CHECK_EQ(ticks, 5);
    CHECK_EQ(ivy_blocking_join(b, &r, 0), IVY_EBADF);
    /* several at once */
    for (i = 0; i < 8; i++) OK(ivy_blocking_spawn(blocking_sleep, (void *)(uintptr_t)(10 + i), &jobs[i]));
    for (i = 0; i < 8; i++) {
        OK(ivy_blocking_join(jobs[i], &r, IVY_FOREVER));
        CHECK_EQ((uintptr_t)r, (uintptr_t)(11 + i));
    }
    /* a join deadline leaves the job running and the handle valid */
    OK(ivy_blocking_spawn(blocking_sleep, (void *)100, &b));
    CHECK_EQ(ivy_blocking_join(b, &r, ivy_time_now() + 5), IVY_ETIMEDOUT);
    OK(ivy_blocking_join(b, &r, IVY_FOREVER));
    CHECK_EQ((uintptr_t)r, 101);
    /* detach */
    OK(ivy_blocking_spawn(blocking_sleep, (void *)1, &b));
    OK(ivy_blocking_detach(b));
    CHECK_EQ(ivy_blocking_detach(b), IVY_EBADF);
    CHECK_EQ(ivy_blocking_spawn(NULL, NULL, &b), IVY_EINVAL);
    CHECK_EQ(ivy_blocking_spawn(blocking_sleep, NULL, NULL), IVY_EINVAL);
    return NULL;
}

static void test_blocking_pool(void) {
    ivy_blocking_t b;
    void *r;
    h_run(1, blocking_main, NULL);
    /* from a plain thread too */
    OK(ivy_blocking_spawn(blocking_sleep, (void *)1, &b));
    OK(ivy_blocking_join(b, &r, IVY_FOREVER));
    CHECK_EQ((uintptr_t)r, 2);
}

int main(void) {
    RUN(test_tcp_echo);
    RUN(test_tcp_errors);
    RUN(test_udp);
    RUN(test_fd_wait);
    RUN(test_fd_wait_closed_while_waiting);
    RUN(test_blocking_pool);
    H_REPORT();
}
