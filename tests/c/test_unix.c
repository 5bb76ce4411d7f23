/* Unix-domain stream sockets (ivy_unix_*): echo over a path and over an abstract
 * name, the socket file's life, close waking every waiter (IVY_ECLOSED), a passed
 * deadline as a non-blocking try, zero-length writes, read_exact, sockets from and
 * to fds, invalid arguments, no fd leak. Socket files live in a mkdtemp directory
 * removed at the end.
 *
 * Handshake for "blocked in a call": the runtimes of those tests have ONE worker,
 * so a task that sets `entered` and then calls a blocking function keeps the
 * worker until it parks inside that call; the closer yields until it sees
 * `entered`, so it runs again only once the other task is parked in the call. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* mkdtemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "net_helpers.h"

static char dir[64];
static int path_counter;

/* A fresh socket path in the test directory. */
static void new_path(char *buf, size_t cap) {
    snprintf(buf, cap, "%s/s%d", dir, H_ATOMIC_ADD(&path_counter, 1));
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- echo -------------------------------------------------------------------------------- */

enum { CLIENTS = 40, MSG = 3000 };

static void *echo_conn(void *arg) {
    ivy_unix_stream_t s;
    char buf[512];
    size_t n;
    int rc;
    s.id = (uint64_t)(uintptr_t)arg;
    while ((rc = ivy_unix_read(s, buf, sizeof buf, &n, ivy_time_now() + 10000)) == 0 && n > 0)
        OK(ivy_unix_write_all(s, buf, n, ivy_time_now() + 10000));
    CHECK_EQ(rc, 0); /* ended by EOF */
    OK(ivy_unix_close(s));
    return NULL;
}

struct server {
    ivy_unix_listener_t l;
    int conns;
};

static void *echo_server(void *arg) {
    struct server *srv = arg;
    int i;
    for (i = 0; i < srv->conns; i++) {
        ivy_unix_stream_t s;
        ivy_task_t t;
        OK(ivy_unix_accept(srv->l, &s, ivy_time_now() + 10000));
        OK(ivy_task_spawn(echo_conn, (void *)(uintptr_t)s.id, NULL, &t));
        OK(ivy_task_detach(t));
    }
    return NULL;
}

struct client {
    const char *path;
    int index;
};

static void *echo_client(void *arg) {
    struct client *c = arg;
    char msg[MSG], back[MSG];
    ivy_unix_stream_t s;
    size_t n = 0;
    int i;
    for (i = 0; i < MSG; i++) msg[i] = (char)(c->index * 31 + i);
    OK(ivy_unix_connect(c->path, &s, ivy_time_now() + 10000));
    OK(ivy_unix_write_all(s, msg, MSG, ivy_time_now() + 10000));
    OK(ivy_unix_read_exact(s, back, MSG, &n, ivy_time_now() + 10000));
    CHECK_EQ(n, MSG);
    CHECK(memcmp(msg, back, MSG) == 0);
    OK(ivy_unix_shutdown(s, IVY_SHUT_WR));
    OK(ivy_unix_read(s, back, sizeof back, &n, ivy_time_now() + 10000));
    CHECK_EQ(n, 0); /* the server closed after our EOF */
    OK(ivy_unix_close(s));
    return NULL;
}

static void *echo_main(void *arg) {
    const char *path = arg;
    struct server srv;
    struct client cs[CLIENTS];
    ivy_task_t server, clients[CLIENTS];
    int i;
    OK(ivy_unix_listen(path, &srv.l));
    srv.conns = CLIENTS;
    OK(ivy_task_spawn(echo_server, &srv, NULL, &server));
    for (i = 0; i < CLIENTS; i++) {
        cs[i].path = path;
        cs[i].index = i;
        OK(ivy_task_spawn(echo_client, &cs[i], NULL, &clients[i]));
    }
    OK(ivy_task_join_all(clients, CLIENTS, NULL, NULL, IVY_FOREVER));
    OK(ivy_task_join(server, NULL, IVY_FOREVER));
    OK(ivy_unix_listener_close(srv.l));
    return NULL;
}

static void test_unix_echo_path(void) {
    char path[96];
    new_path(path, sizeof path);
    h_run(1, echo_main, path);
    CHECK(exists(path)); /* the socket file is the caller's */
    CHECK_EQ(unlink(path), 0);
    new_path(path, sizeof path);
    h_run(2, echo_main, path);
    CHECK_EQ(unlink(path), 0);
}

static void test_unix_echo_abstract(void) {
    char name[96];
    snprintf(name, sizeof name, "@ivy-test-%ld-%d", (long)getpid(), H_ATOMIC_ADD(&path_counter, 1));
    h_run(2, echo_main, name);
    CHECK(!exists(name + 1)); /* no file, anywhere */
}

/* ---- the socket file, addresses and connect errors -------------------------------------- */

static void *file_main(void *arg) {
    char path[96], name[96];
    ivy_unix_listener_t l, l2;
    ivy_unix_stream_t s;
    (void)arg;
    new_path(path, sizeof path);
    CHECK_EQ(ivy_unix_connect(path, &s, ivy_time_now() + 1000), -ENOENT);
    OK(ivy_unix_listen(path, &l));
    CHECK(exists(path));
    CHECK_EQ(ivy_unix_listen(path, &l2), -EADDRINUSE); /* the path exists */
    OK(ivy_unix_listener_close(l));
    CHECK(exists(path)); /* ivy never removes it */
    CHECK_EQ(ivy_unix_connect(path, &s, ivy_time_now() + 1000), -ECONNREFUSED);
    CHECK_EQ(unlink(path), 0);
    OK(ivy_unix_listen(path, &l)); /* once unlinked, the path can be bound again */
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(unlink(path), 0);

    snprintf(name, sizeof name, "@ivy-test-file-%ld", (long)getpid());
    OK(ivy_unix_listen(name, &l));
    CHECK_EQ(ivy_unix_listen(name, &l2), -EADDRINUSE);
    OK(ivy_unix_listener_close(l));
    /* the abstract name is free again once the listener's fd is gone */
    CHECK_EQ(ivy_unix_connect(name, &s, ivy_time_now() + 1000), -ECONNREFUSED);
    OK(ivy_unix_listen(name, &l));
    OK(ivy_unix_listener_close(l));
    return NULL;
}

static void test_unix_socket_file_and_errors(void) { h_run(1, file_main, NULL); }

/* ---- close wakes every waiter ------------------------------------------------------------ */

enum { ITERS = 50 };

struct blocked {
    ivy_unix_stream_t s;
    ivy_unix_listener_t l;
    int entered;
    int rc;
    size_t n;
    char *buf;
    size_t len;
};

static void *read_blocked(void *arg) {
    struct blocked *b = arg;
    char buf[64];
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_unix_read(b->s, buf, sizeof buf, &b->n, IVY_FOREVER);
    return NULL;
}

static void *read_exact_blocked(void *arg) {
    struct blocked *b = arg;
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_unix_read_exact(b->s, b->buf, b->len, &b->n, IVY_FOREVER);
    return NULL;
}

static void *write_all_blocked(void *arg) {
    struct blocked *b = arg;
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_unix_write_all(b->s, b->buf, b->len, IVY_FOREVER);
    return NULL;
}

static void *accept_blocked(void *arg) {
    struct blocked *b = arg;
    ivy_unix_stream_t s;
    H_ATOMIC_STORE(&b->entered, 1);
    b->rc = ivy_unix_accept(b->l, &s, IVY_FOREVER);
    return NULL;
}

static void *close_read_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b;
        ivy_unix_stream_t peer;
        ivy_task_t t;
        char c;
        size_t n = 99;
        memset(&b, 0, sizeof b);
        b.rc = 1;
        OK(ivy_unix_pair(&b.s, &peer));
        OK(ivy_task_spawn(i % 2 ? read_blocked : read_exact_blocked, &b, NULL, &t));
        b.buf = &c;
        b.len = 1;
        yield_until(&b.entered);
        OK(ivy_unix_close(b.s));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        /* the peer sees EOF at once */
        OK(ivy_unix_read(peer, &c, 1, &n, ivy_time_now() + 5000));
        CHECK_EQ(n, 0);
        CHECK_EQ(ivy_unix_close(b.s), IVY_EBADF);
        OK(ivy_unix_close(peer));
    }
    return NULL;
}

static void test_unix_close_wakes_reader(void) {
    h_run_no_leak(1, close_read_main, NULL);
}

static void *close_write_main(void *arg) {
    enum { BIG = 8 << 20 };
    char *big = malloc(BIG);
    int i;
    (void)arg;
    CHECK(big != NULL);
    memset(big, 'w', BIG);
    for (i = 0; i < 10; i++) {
        struct blocked b;
        ivy_unix_stream_t peer;
        ivy_task_t t;
        memset(&b, 0, sizeof b);
        b.rc = 1;
        b.buf = big;
        b.len = BIG; /* more than the socket buffers hold: the writer parks */
        OK(ivy_unix_pair(&b.s, &peer));
        OK(ivy_task_spawn(write_all_blocked, &b, NULL, &t));
        yield_until(&b.entered);
        OK(ivy_unix_close(b.s));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(b.rc, IVY_ECLOSED);
        OK(ivy_unix_close(peer));
    }
    free(big);
    return NULL;
}

static void test_unix_close_wakes_writer(void) {
    h_run_no_leak(1, close_write_main, NULL);
}

static void *close_accept_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b[3];
        ivy_task_t t[3];
        ivy_unix_stream_t s;
        char path[96];
        int k;
        new_path(path, sizeof path);
        memset(b, 0, sizeof b);
        OK(ivy_unix_listen(path, &b[0].l));
        for (k = 0; k < 3; k++) {
            b[k].l = b[0].l;
            b[k].rc = 1;
            OK(ivy_task_spawn(accept_blocked, &b[k], NULL, &t[k]));
        }
        for (k = 0; k < 3; k++) yield_until(&b[k].entered);
        OK(ivy_unix_listener_close(b[0].l));
        for (k = 0; k < 3; k++) {
            OK(ivy_task_join(t[k], NULL, IVY_FOREVER));
            CHECK_EQ(b[k].rc, IVY_ECLOSED);
        }
        /* the closed listener accepts nothing more */
        CHECK_EQ(ivy_unix_connect(path, &s, ivy_time_now() + 1000), -ECONNREFUSED);
        CHECK_EQ(unlink(path), 0);
    }
    return NULL;
}

static void test_unix_close_wakes_acceptors(void) {
    h_run_no_leak(1, close_accept_main, NULL);
}

/* Closed from a plain thread (a pthread) while a task is parked in the read. */
static void *closer_thread(void *arg) {
    OK(ivy_unix_close(*(ivy_unix_stream_t *)arg));
    return NULL;
}

static void *close_from_thread_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < ITERS; i++) {
        struct blocked b;
        ivy_unix_stream_t peer;
        ivy_task_t t;
        pthread_t th;
        memset(&b, 0, sizeof b);
        b.rc = 1;
        OK(ivy_unix_pair(&b.s, &peer));
        OK(ivy_task_spawn(read_blocked, &b, NULL, &t));
        yield_until(&b.entered); /* the reader is parked in its read now */
        CHECK_EQ(pthread_create(&th, NULL, closer_thread, &b.s), 0);
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(pthread_join(th, NULL), 0);
        CHECK_EQ(b.rc, IVY_ECLOSED);
        OK(ivy_unix_close(peer));
    }
    return NULL;
}

static void test_unix_close_from_thread(void) { h_run(1, close_from_thread_main, NULL); }

/* ---- a passed deadline is a non-blocking try --------------------------------------------- */

static void passed_deadline_body(void) {
    char path[96], buf[16];
    ivy_unix_listener_t l;
    ivy_unix_stream_t a, b;
    size_t n = 0;
    new_path(path, sizeof path);
    OK(ivy_unix_listen(path, &l));
    CHECK_EQ(ivy_unix_accept(l, &b, 0), IVY_ETIMEDOUT); /* nobody there */
    OK(ivy_unix_connect(path, &a, 0)); /* the backlog has room: done at once */
    OK(ivy_unix_accept(l, &b, 0));     /* pending: taken at once */
    CHECK_EQ(ivy_unix_read(b, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT);
    OK(ivy_unix_write(a, "abc", 3, &n, 0));
    CHECK_EQ(n, 3);
    OK(ivy_unix_read(b, buf, sizeof buf, &n, 0));
    CHECK_EQ(n, 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    OK(ivy_unix_write_all(a, "defg", 4, ivy_time_now()));
    OK(ivy_unix_read_exact(b, buf, 4, &n, 0));
    CHECK_EQ(n, 4);
    CHECK(memcmp(buf, "defg", 4) == 0);
    /* a second try after a miss still sees data that came since */
    CHECK_EQ(ivy_unix_read(b, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT);
    OK(ivy_unix_write(a, "h", 1, &n, 0));
    OK(ivy_unix_read(b, buf, sizeof buf, &n, 0));
    CHECK_EQ(n, 1);
    CHECK_EQ(ivy_unix_read_exact(b, buf, 2, &n, 0), IVY_ETIMEDOUT);
    CHECK_EQ(n, 0);
    OK(ivy_unix_close(a));
    OK(ivy_unix_close(b));
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(unlink(path), 0);
}

static void *passed_deadline_task(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 20; i++) passed_deadline_body();
    return NULL;
}

static void test_unix_passed_deadline_in_task(void) { h_run(2, passed_deadline_task, NULL); }

static void test_unix_passed_deadline_on_thread(void) { passed_deadline_task(NULL); }

/* ---- a full backlog: a passed deadline tries once, a later one retries ------------------ */

struct connector {
    const char *path;
    ivy_unix_stream_t s;
    int entered;
    int rc;
};

static void *connect_forever(void *arg) {
    struct connector *c = arg;
    H_ATOMIC_STORE(&c->entered, 1);
    c->rc = ivy_unix_connect(c->path, &c->s, IVY_FOREVER);
    return NULL;
}

static void *backlog_main(void *arg) {
    enum { MAX = 64 };
    char path[96];
    struct sockaddr_un addr;
    ivy_unix_listener_t l;
    ivy_unix_stream_t c[MAX], acc;
    struct connector late;
    ivy_task_t t;
    int raw, k, rc = 0, queued;
    int64_t start;
    (void)arg;
    new_path(path, sizeof path);
    raw = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(raw >= 0);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    CHECK_EQ(bind(raw, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(listen(raw, 1), 0); /* a tiny backlog, kept by the adoption */
    OK(ivy_unix_listener_from_fd(raw, &l));
    for (k = 0; k < MAX; k++)
        if ((rc = ivy_unix_connect(path, &c[k], 0)) != 0) break;
    queued = k;
    CHECK_EQ(rc, IVY_ETIMEDOUT); /* full: one try, no wait */
    CHECK(queued >= 1 && queued < MAX);
    start = ivy_time_now();
    CHECK_EQ(ivy_unix_connect(path, &acc, start + 100), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() >= start + 100);
    /* A connect waiting on the full backlog succeeds once an accept makes room. */
    memset(&late, 0, sizeof late);
    late.path = path;
    late.rc = 1;
    OK(ivy_task_spawn(connect_forever, &late, NULL, &t));
    yield_until(&late.entered);
    OK(ivy_unix_accept(l, &acc, ivy_time_now() + 5000));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK_EQ(late.rc, 0);
    OK(ivy_unix_close(late.s));
    OK(ivy_unix_close(acc));
    for (k = 0; k < queued; k++) OK(ivy_unix_close(c[k]));
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(unlink(path), 0);
    return NULL;
}

static void test_unix_connect_full_backlog(void) { h_run(1, backlog_main, NULL); }

/* ---- zero-length writes, read_exact at EOF ----------------------------------------------- */

static void zero_and_eof_body(void) {
    ivy_unix_stream_t a, b;
    char buf[16];
    size_t n = 77;
    OK(ivy_unix_pair(&a, &b));
    OK(ivy_unix_write(a, NULL, 0, &n, IVY_FOREVER));
    CHECK_EQ(n, 0);
    OK(ivy_unix_write(a, "x", 0, &n, 0));
    CHECK_EQ(n, 0);
    OK(ivy_unix_write_all(a, NULL, 0, IVY_FOREVER));
    n = 77;
    OK(ivy_unix_read_exact(b, NULL, 0, &n, IVY_FOREVER));
    CHECK_EQ(n, 0);
    /* nothing was sent by the empty writes */
    CHECK_EQ(ivy_unix_read(b, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT);
    /* three bytes, then EOF: read_exact of ten reports IVY_ECLOSED and the three */
    OK(ivy_unix_write_all(a, "xyz", 3, IVY_FOREVER));
    OK(ivy_unix_shutdown(a, IVY_SHUT_WR));
    memset(buf, 0, sizeof buf);
    CHECK_EQ(ivy_unix_read_exact(b, buf, 10, &n, ivy_time_now() + 5000), IVY_ECLOSED);
    CHECK_EQ(n, 3);
    CHECK(memcmp(buf, "xyz", 3) == 0);
    CHECK_EQ(ivy_unix_read_exact(b, buf, 1, NULL, ivy_time_now() + 5000), IVY_ECLOSED);
    /* writing into a peer that is gone */
    OK(ivy_unix_close(b));
    CHECK_EQ(ivy_unix_write_all(a, "q", 1, ivy_time_now() + 5000), -EPIPE);
    OK(ivy_unix_close(a));
}

static void *zero_and_eof_task(void *arg) {
    (void)arg;
    zero_and_eof_body();
    return NULL;
}

static void test_unix_zero_length_and_eof(void) {
    h_run(1, zero_and_eof_task, NULL);
    zero_and_eof_body();
}

/* ---- fds in and out ---------------------------------------------------------------------- */

static void test_unix_from_fd_and_fd(void) {
    int sv[2], p[2], fd = -1, dg[2], tcp, raw, flags;
    ivy_unix_stream_t a, b;
    ivy_unix_listener_t l;
    struct sockaddr_un addr;
    char path[96], buf[8];
    size_t n;
    int before = settled_fds();

    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    OK(ivy_unix_stream_from_fd(sv[0], &a));
    OK(ivy_unix_stream_from_fd(sv[1], &b));
    OK(ivy_unix_stream_fd(a, &fd));
    CHECK_EQ(fd, sv[0]);
    flags = fcntl(sv[0], F_GETFL);
    CHECK(flags >= 0 && (flags & O_NONBLOCK) != 0);
    OK(ivy_unix_write_all(a, "hi", 2, ivy_time_now() + 5000));
    OK(ivy_unix_read_exact(b, buf, 2, &n, ivy_time_now() + 5000));
    CHECK(memcmp(buf, "hi", 2) == 0);
    OK(ivy_unix_close(a));
    OK(ivy_unix_close(b));
    CHECK_EQ(fcntl(sv[0], F_GETFD), -1); /* ivy owned and closed them */
    CHECK_EQ(fcntl(sv[1], F_GETFD), -1);

    /* A listener made by hand. */
    new_path(path, sizeof path);
    raw = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(raw >= 0);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    CHECK_EQ(bind(raw, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(ivy_unix_listener_from_fd(raw, &l), IVY_EINVAL); /* not listening yet */
    CHECK_EQ(listen(raw, 16), 0);
    CHECK_EQ(ivy_unix_stream_from_fd(raw, &a), IVY_EINVAL); /* a listener is no stream */
    OK(ivy_unix_listener_from_fd(raw, &l));
    OK(ivy_unix_listener_fd(l, &fd));
    CHECK_EQ(fd, raw);
    OK(ivy_unix_connect(path, &a, ivy_time_now() + 5000));
    OK(ivy_unix_accept(l, &b, ivy_time_now() + 5000));
    OK(ivy_unix_write_all(b, "ok", 2, ivy_time_now() + 5000));
    OK(ivy_unix_read_exact(a, buf, 2, &n, ivy_time_now() + 5000));
    CHECK(memcmp(buf, "ok", 2) == 0);
    OK(ivy_unix_close(a));
    OK(ivy_unix_close(b));
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(unlink(path), 0);

    /* Wrong kinds are refused and stay the caller's, untouched. */
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(ivy_unix_stream_from_fd(p[0], &a), IVY_EINVAL);
    CHECK_EQ(ivy_unix_listener_from_fd(p[0], &l), IVY_EINVAL);
    CHECK(fcntl(p[0], F_GETFD) >= 0);
    CHECK_EQ(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), 0);
    CHECK_EQ(ivy_unix_stream_from_fd(dg[0], &a), IVY_EINVAL);
    tcp = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(tcp >= 0);
    CHECK_EQ(ivy_unix_stream_from_fd(tcp, &a), IVY_EINVAL);
    CHECK_EQ(ivy_unix_stream_from_fd(-1, &a), IVY_EINVAL);
    CHECK_EQ(ivy_unix_listener_from_fd(-1, &l), IVY_EINVAL);
    {
        /* a Unix stream socket that is neither connected nor listening */
        int lone = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(lone >= 0);
        CHECK_EQ(ivy_unix_stream_from_fd(lone, &a), IVY_EINVAL);
        CHECK_EQ(ivy_unix_listener_from_fd(lone, &l), IVY_EINVAL);
        CHECK_EQ(close(lone), 0);
    }
    CHECK_EQ(close(p[1]), 0);
    CHECK_EQ(ivy_unix_stream_from_fd(p[1], &a), IVY_EBADF); /* closed */
    CHECK_EQ(ivy_unix_stream_from_fd(dg[1], NULL), IVY_EINVAL);
    CHECK(fcntl(dg[1], F_GETFD) >= 0);
    CHECK_EQ(close(p[0]), 0);
    CHECK_EQ(close(dg[0]), 0);
    CHECK_EQ(close(dg[1]), 0);
    CHECK_EQ(close(tcp), 0);
    check_fds_back_to(before);
}

/* ---- invalid arguments, stale and foreign handles ---------------------------------------- */

static void test_unix_invalid_arguments(void) {
    char path[96], longp[200], buf[4];
    ivy_unix_listener_t l, bogus_l;
    ivy_unix_stream_t a, b, bogus_s;
    ivy_tcp_listener_t tl;
    size_t n;
    int fd;
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    CHECK_EQ(ivy_unix_listen(NULL, &l), IVY_EINVAL);
    CHECK_EQ(ivy_unix_listen("", &l), IVY_EINVAL);
    CHECK_EQ(ivy_unix_listen("@", &l), IVY_EINVAL);
    CHECK_EQ(ivy_unix_listen(longp, &l), IVY_EINVAL);
    new_path(path, sizeof path);
    CHECK_EQ(ivy_unix_listen(path, NULL), IVY_EINVAL);
    CHECK(!exists(path)); /* no side effect */
    CHECK_EQ(ivy_unix_connect(NULL, &a, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_connect(longp, &a, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_connect(path, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_connect(path, &a, -2), IVY_EINVAL);
    CHECK_EQ(ivy_unix_pair(&a, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_unix_pair(NULL, &b), IVY_EINVAL);

    OK(ivy_unix_pair(&a, &b));
    CHECK_EQ(ivy_unix_read(a, NULL, 4, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_read(a, buf, 0, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_read(a, buf, 4, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_read_exact(a, NULL, 4, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_write(a, NULL, 4, &n, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_write(a, "x", 1, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_write_all(a, NULL, 4, 0), IVY_EINVAL);
    CHECK_EQ(ivy_unix_shutdown(a, 7), IVY_EINVAL);
    CHECK_EQ(ivy_unix_stream_fd(a, NULL), IVY_EINVAL);
    OK(ivy_unix_close(a));
    OK(ivy_unix_close(b));

    /* stale handles */
    CHECK_EQ(ivy_unix_read(a, buf, 4, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_unix_write(a, "x", 1, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_unix_write(a, NULL, 0, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_unix_write_all(a, "x", 1, 0), IVY_EBADF);
    CHECK_EQ(ivy_unix_read_exact(a, buf, 1, &n, 0), IVY_EBADF);
    CHECK_EQ(ivy_unix_shutdown(a, IVY_SHUT_RDWR), IVY_EBADF);
    CHECK_EQ(ivy_unix_stream_fd(a, &fd), IVY_EBADF);
    CHECK_EQ(ivy_unix_close(a), IVY_EBADF);
    memset(&bogus_s, 0, sizeof bogus_s);
    memset(&bogus_l, 0, sizeof bogus_l);
    CHECK_EQ(ivy_unix_close(bogus_s), IVY_EBADF);
    CHECK_EQ(ivy_unix_listener_close(bogus_l), IVY_EBADF);
    CHECK_EQ(ivy_unix_accept(bogus_l, &a, 0), IVY_EBADF);

    /* handles of another kind name nothing here */
    OK(ivy_unix_listen(path, &l));
    bogus_s.id = l.id;
    CHECK_EQ(ivy_unix_close(bogus_s), IVY_EBADF);
    CHECK_EQ(ivy_unix_stream_fd(bogus_s, &fd), IVY_EBADF);
    OK(ivy_tcp_listen("127.0.0.1:0", &tl));
    bogus_l.id = tl.id;
    CHECK_EQ(ivy_unix_listener_close(bogus_l), IVY_EBADF);
    CHECK_EQ(ivy_unix_listener_fd(bogus_l, &fd), IVY_EBADF);
    OK(ivy_tcp_listener_close(tl));
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(ivy_unix_listener_close(l), IVY_EBADF);
    CHECK_EQ(unlink(path), 0);
}

/* ---- no fd leaks ------------------------------------------------------------------------- */

static void *churn_main(void *arg) {
    char path[96];
    ivy_unix_listener_t l;
    int i;
    (void)arg;
    new_path(path, sizeof path);
    OK(ivy_unix_listen(path, &l));
    for (i = 0; i < 500; i++) {
        ivy_unix_stream_t a, b;
        char c = 0;
        size_t n;
        OK(ivy_unix_connect(path, &a, ivy_time_now() + 5000));
        OK(ivy_unix_accept(l, &b, ivy_time_now() + 5000));
        OK(ivy_unix_write_all(a, "z", 1, ivy_time_now() + 5000));
        OK(ivy_unix_read_exact(b, &c, 1, &n, ivy_time_now() + 5000));
        CHECK_EQ(c, 'z');
        OK(ivy_unix_close(a));
        OK(ivy_unix_close(b));
    }
    OK(ivy_unix_listener_close(l));
    CHECK_EQ(unlink(path), 0);
    return NULL;
}

static void test_unix_no_fd_leak(void) {
    h_run_no_leak(2, churn_main, NULL);
}

int main(void) {
    DIR *d;
    struct dirent *e;
    strcpy(dir, "/tmp/ivy-unix-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_unix_echo_path);
    RUN(test_unix_echo_abstract);
    RUN(test_unix_socket_file_and_errors);
    RUN(test_unix_close_wakes_reader);
    RUN(test_unix_close_wakes_writer);
    RUN(test_unix_close_wakes_acceptors);
    RUN(test_unix_close_from_thread);
    RUN(test_unix_passed_deadline_in_task);
    RUN(test_unix_passed_deadline_on_thread);
    RUN(test_unix_connect_full_backlog);
    RUN(test_unix_zero_length_and_eof);
    RUN(test_unix_from_fd_and_fd);
    RUN(test_unix_invalid_arguments);
    RUN(test_unix_no_fd_leak);
    /* Remove whatever a failed test left, then the directory. */
    d = opendir(dir);
    if (d != NULL) {
        char p[sizeof dir + 260];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    CHECK_EQ(rmdir(dir), 0);
    H_REPORT();
}
