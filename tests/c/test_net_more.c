/* Sockets, round 2: a passed deadline is a non-blocking try for every net call
 * (in a task and on a plain thread), port and zero-length rules, ivy_strerror
 * for every socket errno, UDP receive that checks its address buffer first and
 * reports truncation, ivy_tcp_read_exact, sockets from and to fds, peer and
 * local addresses, and the sockaddr variants. Loopback only. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "net_helpers.h"

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static struct sockaddr_in loopback(uint16_t port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A blocking POSIX client socket connected to 127.0.0.1:port. */
static int raw_connect(uint16_t port) {
    struct sockaddr_in a = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* ---- a passed deadline is a non-blocking try ---------------------------------------------
 * Each case first makes the call time out with deadline 0 (so ivy has seen the
 * socket would block and cleared its readiness), then makes data (room, a
 * connection) available without the caller parking, so no readiness event can
 * have been dispatched to ivy yet; the call with deadline 0 must look. */

static void deadline_zero_suite(void) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c, s, t;
    ivy_udp_socket_t u1, u2;
    uint16_t port;
    char addr[32], buf[256];
    static char chunk[1 << 16];
    size_t n, full;
    int fd, rc, round;
    int before = settled_fds();

    /* accept */
    OK(ivy_tcp_listen("127.0.0.1:0", &l));
    OK(ivy_tcp_listener_port(l, &port));
    CHECK_EQ(ivy_tcp_accept(l, &s, 0), IVY_ETIMEDOUT);
    fd = raw_connect(port); /* the kernel queues the connection */
    OK(ivy_tcp_accept(l, &s, 0));
    OK(ivy_tcp_close(s));
    close(fd);

    /* connect: starts, looks once; on loopback it has usually completed */
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    rc = ivy_tcp_connect(addr, &c, 0);
    CHECK(rc == 0 || rc == IVY_ETIMEDOUT);
    if (rc == 0) OK(ivy_tcp_close(c));
    OK(ivy_tcp_listener_close(l));

    /* read */
    tcp_pair(&c, &s);
    CHECK_EQ(ivy_tcp_read(c, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT);
    OK(ivy_tcp_write(s, "abc", 3, &n, 0));
    CHECK_EQ(n, 3);
    n = 0;
    OK(ivy_tcp_read(c, buf, sizeof buf, &n, 0));
    CHECK_EQ(n, 3);

    /* read_exact */
    CHECK_EQ(ivy_tcp_read(c, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT);
    OK(ivy_tcp_write_all(s, "0123456789", 10, 0));
    n = 0;
    OK(ivy_tcp_read_exact(c, buf, 10, &n, 0));
    CHECK_EQ(n, 10);
    CHECK(memcmp(buf, "0123456789", 10) == 0);
    /* read_exact with a passed deadline and too little data: what is there */
    OK(ivy_tcp_write_all(s, "xy", 2, 0));
    CHECK_EQ(ivy_tcp_read_exact(c, buf, 5, &n, 0), IVY_ETIMEDOUT);
    CHECK_EQ(n, 2);

    /* write and write_all: fill the buffers until a write times out, drain
     * the peer, then a write with deadline 0 must find the room. */
    for (round = 0; round < 2; round++) {
        int filled = 0, i;
        for (i = 0; i < 100000 && !filled; i++) {
            rc = ivy_tcp_write(c, chunk, sizeof chunk, &n, 0);
            if (rc == IVY_ETIMEDOUT) filled = 1;
            else CHECK_EQ(rc, 0);
        }
        CHECK(filled);
        while (ivy_tcp_read(s, chunk, sizeof chunk, &n, 0) == 0 && n > 0) {}
        if (round == 0) {
            OK(ivy_tcp_write(c, "w", 1, &n, 0));
            CHECK_EQ(n, 1);
        } else {
            OK(ivy_tcp_write_all(c, "w", 1, 0));
        }
        while (ivy_tcp_read(s, chunk, sizeof chunk, &n, 0) == 0 && n > 0) {}
    }
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));

    /* UDP receive and send */
    udp_pair(&u1, &u2, addr, sizeof addr);
    CHECK_EQ(ivy_udp_recv_from(u2, buf, sizeof buf, &n, NULL, NULL, 0, 0), IVY_ETIMEDOUT);
    OK(ivy_udp_send_to(u1, "dgram", 5, addr, &n, 0));
    CHECK_EQ(n, 5);
    n = 0;
    OK(ivy_udp_recv_from(u2, buf, sizeof buf, &n, &full, NULL, 0, 0));
    CHECK_EQ(n, 5);
    CHECK_EQ(full, 5);
    OK(ivy_udp_close(u1));
    OK(ivy_udp_close(u2));

    /* accepted and connected stream from the same suite on fresh sockets */
    tcp_pair(&c, &t);
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(t));
    check_fds_back_to(before);
}

static void *deadline_zero_task(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 10; i++) deadline_zero_suite();
    return NULL;
}

static void test_deadline_zero_in_task(void) { h_run(1, deadline_zero_task, NULL); }

static void *deadline_zero_thread(void *arg) {
    (void)arg;
    deadline_zero_suite();
    return NULL;
}

static void test_deadline_zero_on_thread(void) {
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, deadline_zero_thread, NULL), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
}

/* ---- ports, zero-length writes, strerror ------------------------------------------------- */

static void *ports_main(void *arg) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c, s;
    ivy_udp_socket_t u1, u2;
    char addr[32], buf[8];
    size_t n;
    (void)arg;
    CHECK_EQ(ivy_tcp_connect("127.0.0.1:70000", &c, ivy_time_now() + 5000), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_connect("localhost:70000", &c, ivy_time_now() + 5000), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen(":-1", &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen("127.0.0.1:-1", &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen("127.0.0.1:65536", &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen("127.0.0.1:http", &l), IVY_EINVAL);
    CHECK_EQ(ivy_udp_bind("[::1]:99999", &u1), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_connect("no-such-host.invalid:80", &c, ivy_time_now() + 5000), IVY_ENOENT);

    /* zero-length writes succeed with n = 0, like write(2) */
    tcp_pair(&c, &s);
    n = 99;
    OK(ivy_tcp_write(c, NULL, 0, &n, 0));
    CHECK_EQ(n, 0);
    n = 99;
    OK(ivy_tcp_write(c, "x", 0, &n, IVY_FOREVER));
    CHECK_EQ(n, 0);
    OK(ivy_tcp_write_all(c, NULL, 0, 0));
    OK(ivy_tcp_read_exact(c, NULL, 0, NULL, 0));
    CHECK_EQ(ivy_tcp_read(s, buf, sizeof buf, &n, 0), IVY_ETIMEDOUT); /* nothing was sent */
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));

    /* an empty datagram is a datagram */
    udp_pair(&u1, &u2, addr, sizeof addr);
    n = 99;
    OK(ivy_udp_send_to(u1, NULL, 0, addr, &n, IVY_FOREVER));
    CHECK_EQ(n, 0);
    CHECK_EQ(ivy_udp_send_to(u1, "x", 1, "127.0.0.1:70000", &n, IVY_FOREVER), IVY_EINVAL);
    n = 99;
    OK(ivy_udp_recv_from(u2, buf, sizeof buf, &n, NULL, NULL, 0, ivy_time_now() + 5000));
    CHECK_EQ(n, 0);
    OK(ivy_udp_close(u1));
    OK(ivy_udp_close(u2));
    return NULL;
}

static void test_ports_and_zero_lengths(void) { h_run(1, ports_main, NULL); }

static void test_strerror_covers_socket_errnos(void) {
    const int codes[] = {ECONNREFUSED, ECONNRESET,   EPIPE,      EADDRINUSE, EADDRNOTAVAIL,
                         ENETUNREACH,  EHOSTUNREACH, ECONNABORTED, ENOTCONN, EMFILE,
                         ENFILE,       EACCES,       EAFNOSUPPORT, EMSGSIZE, ENOTSOCK,
                         EINPROGRESS,  EALREADY,     EISCONN,    ENOBUFS,    ENETDOWN,
                         EHOSTDOWN,    ENOPROTOOPT,  EOPNOTSUPP, EPROTONOSUPPORT, EDESTADDRREQ,
                         ESHUTDOWN,    EINTR,        ENOSPC,     EEXIST,     ENOTDIR,
                         EISDIR,       ENAMETOOLONG, ELOOP,      EROFS,      EFAULT};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *text = ivy_strerror(-codes[i]);
        CHECK(text != NULL);
        if (strcmp(text, "unknown ivy error") == 0) {
            fprintf(stderr, "  no text for -%d\n", codes[i]);
            CHECK(0);
        }
    }
    CHECK(strcmp(ivy_strerror(-ECONNREFUSED), ivy_strerror(-ECONNRESET)) != 0);
    CHECK(strcmp(ivy_strerror(-4000), "unknown ivy error") == 0);
}

/* ---- UDP: address buffer checked first, truncation reported ------------------------------ */

static void *udp_recv_main(void *arg) {
    ivy_udp_socket_t a, b;
    uint16_t pa, pb;
    char addr[32], from[IVY_ADDRSTRLEN], tiny[8], buf[16], big[100];
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    socklen_t slen;
    size_t n, full;
    (void)arg;
    memset(big, 'z', sizeof big);
    OK(ivy_udp_bind("127.0.0.1:0", &a));
    OK(ivy_udp_bind("127.0.0.1:0", &b));
    OK(ivy_udp_port(a, &pa));
    OK(ivy_udp_port(b, &pb));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)pb);

    /* too small an address buffer: refused before anything is received */
    OK(ivy_udp_send_to(a, "one", 3, addr, NULL, IVY_FOREVER));
    n = 99;
    CHECK_EQ(ivy_udp_recv_from(b, buf, sizeof buf, &n, NULL, tiny, sizeof tiny, IVY_FOREVER), IVY_ERANGE);
    CHECK_EQ(n, 99);
    slen = 4;
    CHECK_EQ(ivy_udp_recv_from_sockaddr(b, buf, sizeof buf, &n, NULL, (struct sockaddr *)&sin, &slen, IVY_FOREVER),
             IVY_ERANGE);
    CHECK_EQ(slen, sizeof(struct sockaddr_in));
    CHECK_EQ(n, 99);
    /* 22 bytes hold any IPv4 address with its port */
    OK(ivy_udp_recv_from(b, buf, sizeof buf, &n, &full, from, 22, ivy_time_now() + 5000));
    CHECK_EQ(n, 3);
    CHECK_EQ(full, 3);
    CHECK(memcmp(buf, "one", 3) == 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)pa);
    CHECK(strcmp(from, addr) == 0);

    /* truncation: n is what was stored, full the datagram's length */
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)pb);
    OK(ivy_udp_send_to(a, big, sizeof big, addr, &n, IVY_FOREVER));
    CHECK_EQ(n, sizeof big);
    OK(ivy_udp_recv_from(b, buf, sizeof buf, &n, &full, from, sizeof from, ivy_time_now() + 5000));
    CHECK_EQ(n, sizeof buf);
    CHECK_EQ(full, sizeof big);
    CHECK(buf[0] == 'z' && buf[sizeof buf - 1] == 'z');

    /* the sockaddr form, with truncation */
    OK(ivy_udp_send_to(a, big, 20, addr, NULL, IVY_FOREVER));
    slen = sizeof ss;
    OK(ivy_udp_recv_from_sockaddr(b, buf, sizeof buf, &n, &full, (struct sockaddr *)&ss, &slen, ivy_time_now() + 5000));
    CHECK_EQ(n, sizeof buf);
    CHECK_EQ(full, 20);
    CHECK_EQ(slen, sizeof(struct sockaddr_in));
    CHECK_EQ(((struct sockaddr_in *)&ss)->sin_family, AF_INET);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&ss)->sin_port), pa);
    CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    /* from without from_len */
    CHECK_EQ(ivy_udp_recv_from_sockaddr(b, buf, sizeof buf, &n, NULL, (struct sockaddr *)&ss, NULL, 0), IVY_EINVAL);
    OK(ivy_udp_close(a));
    OK(ivy_udp_close(b));
    return NULL;
}

static void test_udp_recv_checks_and_truncation(void) { h_run(1, udp_recv_main, NULL); }

/* ---- read_exact -------------------------------------------------------------------------- */

static void *slow_writer(void *arg) {
    ivy_tcp_stream_t s;
    int i;
    s.id = (uint64_t)(uintptr_t)arg;
    for (i = 0; i < 10; i++) {
        OK(ivy_tcp_write_all(s, "ab", 2, IVY_FOREVER));
        OK(ivy_task_yield());
    }
    OK(ivy_tcp_write_all(s, "tail", 3, IVY_FOREVER)); /* 3 of 5 bytes, then EOF */
    OK(ivy_tcp_shutdown(s, IVY_SHUT_WR));
    return NULL;
}

static void *read_exact_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 20; i++) {
        ivy_tcp_stream_t c, s;
        ivy_task_t w;
        char buf[32];
        size_t n = 0;
        tcp_pair(&c, &s);
        OK(ivy_task_spawn(slow_writer, (void *)(uintptr_t)s.id, NULL, &w));
        OK(ivy_tcp_read_exact(c, buf, 20, &n, ivy_time_now() + 5000));
        CHECK_EQ(n, 20);
        CHECK(memcmp(buf, "abababababababababab", 20) == 0);
        n = 0;
        CHECK_EQ(ivy_tcp_read_exact(c, buf, 5, &n, ivy_time_now() + 5000), IVY_ECLOSED);
        CHECK_EQ(n, 3);
        CHECK(memcmp(buf, "tai", 3) == 0);
        OK(ivy_task_join(w, NULL, IVY_FOREVER));
        CHECK_EQ(ivy_tcp_read_exact(c, NULL, 1, &n, 0), IVY_EINVAL);
        CHECK_EQ(ivy_tcp_read_exact(c, buf, 1, NULL, 0), IVY_ECLOSED); /* n is optional */
        OK(ivy_tcp_close(c));
        OK(ivy_tcp_close(s));
        CHECK_EQ(ivy_tcp_read_exact(c, buf, 1, &n, 0), IVY_EBADF);
    }
    return NULL;
}

static void test_read_exact(void) { h_run(2, read_exact_main, NULL); }

/* ---- sockets from and to fds ------------------------------------------------------------- */

static void *from_fd_main(void *arg) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c, s;
    ivy_udp_socket_t u;
    struct sockaddr_in a = loopback(0);
    socklen_t alen = sizeof a;
    int lfd, cfd, ufd, ufd2, got, flags, one = 1, nodelay = 0, pfd[2], before = settled_fds();
    socklen_t optlen = sizeof nodelay;
    uint16_t port;
    char buf[8];
    size_t n;
    (void)arg;

    /* a listener made with POSIX calls */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ(setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    CHECK_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    /* not listening yet: neither a listener nor a stream */
    CHECK_EQ(ivy_tcp_listener_from_fd(lfd, &l), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_stream_from_fd(lfd, &c), IVY_EINVAL); /* not connected */
    CHECK_EQ(listen(lfd, 16), 0);
    CHECK_EQ(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    CHECK_EQ(ivy_tcp_stream_from_fd(lfd, &c), IVY_EINVAL);  /* a listener */
    CHECK_EQ(ivy_udp_socket_from_fd(lfd, &u), IVY_EINVAL);  /* not UDP */
    CHECK(fd_is_open(lfd));                                 /* refusals leave the fd alone */
    CHECK_EQ(ivy_tcp_listener_from_fd(lfd, NULL), IVY_EINVAL);
    OK(ivy_tcp_listener_from_fd(lfd, &l));
    flags = fcntl(lfd, F_GETFL);
    CHECK(flags & O_NONBLOCK);
    OK(ivy_tcp_listener_fd(l, &got));
    CHECK_EQ(got, lfd);
    {
        uint16_t p2;
        OK(ivy_tcp_listener_port(l, &p2));
        CHECK_EQ(p2, port);
    }

    /* a connected stream made with POSIX calls */
    cfd = raw_connect(port);
    OK(ivy_tcp_stream_from_fd(cfd, &c));
    CHECK(fcntl(cfd, F_GETFL) & O_NONBLOCK);
    OK(ivy_tcp_accept(l, &s, ivy_time_now() + 5000));
    OK(ivy_tcp_write_all(c, "hi", 2, ivy_time_now() + 5000));
    OK(ivy_tcp_read_exact(s, buf, 2, &n, ivy_time_now() + 5000));
    CHECK(memcmp(buf, "hi", 2) == 0);
    /* borrow the fd for setsockopt */
    OK(ivy_tcp_stream_fd(c, &got));
    CHECK_EQ(got, cfd);
    CHECK_EQ(setsockopt(got, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    CHECK_EQ(getsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &optlen), 0);
    CHECK(nodelay != 0);
    CHECK_EQ(ivy_tcp_stream_fd(c, NULL), IVY_EINVAL);
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));
    OK(ivy_tcp_listener_close(l));
    CHECK_EQ(ivy_tcp_stream_fd(c, &got), IVY_EBADF);
    CHECK_EQ(ivy_tcp_listener_fd(l, &got), IVY_EBADF);

    /* UDP */
    ufd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_EQ(ivy_tcp_stream_from_fd(ufd, &c), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listener_from_fd(ufd, &l), IVY_EINVAL);
    OK(ivy_udp_socket_from_fd(ufd, &u));
    OK(ivy_udp_socket_fd(u, &got));
    CHECK_EQ(got, ufd);
    OK(ivy_udp_close(u));
    CHECK_EQ(ivy_udp_socket_fd(u, &got), IVY_EBADF);

    /* not sockets, not open, not IP */
    CHECK_EQ(pipe(pfd), 0);
    CHECK_EQ(ivy_tcp_stream_from_fd(pfd[0], &c), IVY_EINVAL);
    CHECK_EQ(ivy_udp_socket_from_fd(pfd[1], &u), IVY_EINVAL);
    CHECK(fd_is_open(pfd[0]) && fd_is_open(pfd[1]));
    close(pfd[0]);
    close(pfd[1]);
    CHECK_EQ(ivy_tcp_stream_from_fd(-1, &c), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listener_from_fd(pfd[0], &l), IVY_EBADF); /* closed just above */
    ufd2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_EQ(ivy_udp_socket_from_fd(ufd2, &u), IVY_EINVAL);
    close(ufd2);
    check_fds_back_to(before);
    return NULL;
}

static void test_sockets_from_and_to_fds(void) { h_run(2, from_fd_main, NULL); }

/* ---- addresses: peer and local, text and sockaddr; the sockaddr variants ------------------ */

static void *addr_main(void *arg) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c, s;
    ivy_udp_socket_t u1, u2;
    struct sockaddr_in a = loopback(0), got;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
    socklen_t len;
    uint16_t port, cport;
    char text[IVY_ADDRSTRLEN], want[32], tiny[4], buf[8];
    size_t n;
    (void)arg;

    OK(ivy_tcp_listen_sockaddr((struct sockaddr *)&a, sizeof a, &l));
    len = sizeof got;
    OK(ivy_tcp_listener_local_sockaddr(l, (struct sockaddr *)&got, &len));
    CHECK_EQ(len, sizeof got);
    port = ntohs(got.sin_port);
    CHECK(port != 0);
    OK(ivy_tcp_listener_local_addr(l, text, sizeof text));
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    CHECK(strcmp(text, want) == 0);
    CHECK_EQ(ivy_tcp_listener_local_addr(l, tiny, sizeof tiny), IVY_ERANGE);
    len = 4;
    CHECK_EQ(ivy_tcp_listener_local_sockaddr(l, (struct sockaddr *)&got, &len), IVY_ERANGE);
    CHECK_EQ(len, sizeof(struct sockaddr_in)); /* the size needed */

    a = loopback(port);
    OK(ivy_tcp_connect_sockaddr((struct sockaddr *)&a, sizeof a, &c, ivy_time_now() + 5000));
    OK(ivy_tcp_accept(l, &s, ivy_time_now() + 5000));
    /* the accepted stream's peer is the client's local address, and back */
    len = sizeof got;
    OK(ivy_tcp_stream_local_sockaddr(c, (struct sockaddr *)&got, &len));
    cport = ntohs(got.sin_port);
    len = sizeof ss;
    OK(ivy_tcp_stream_peer_sockaddr(s, (struct sockaddr *)&ss, &len));
    CHECK_EQ(len, sizeof(struct sockaddr_in));
    CHECK_EQ(((struct sockaddr_in *)&ss)->sin_family, AF_INET);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&ss)->sin_port), cport);
    OK(ivy_tcp_stream_peer_addr(s, text, sizeof text));
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)cport);
    CHECK(strcmp(text, want) == 0);
    OK(ivy_tcp_stream_local_addr(c, text, sizeof text));
    CHECK(strcmp(text, want) == 0);
    OK(ivy_tcp_stream_peer_addr(c, text, sizeof text));
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    CHECK(strcmp(text, want) == 0);
    CHECK_EQ(ivy_tcp_stream_peer_addr(c, NULL, 10), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_stream_peer_sockaddr(c, (struct sockaddr *)&ss, NULL), IVY_EINVAL);
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));
    CHECK_EQ(ivy_tcp_stream_peer_addr(s, text, sizeof text), IVY_EBADF);

    /* bad sockaddrs */
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    CHECK_EQ(ivy_tcp_connect_sockaddr((struct sockaddr *)&un, sizeof un, &c, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_connect_sockaddr((struct sockaddr *)&a, 8, &c, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_connect_sockaddr(NULL, sizeof a, &c, 0), IVY_EINVAL);
    CHECK_EQ(ivy_tcp_listen_sockaddr((struct sockaddr *)&a, sizeof a, NULL), IVY_EINVAL);
    /* the port is taken: -EADDRINUSE, as -errno */
    CHECK_EQ(ivy_tcp_listen_sockaddr((struct sockaddr *)&a, sizeof a, &l), -EADDRINUSE);
    OK(ivy_tcp_listener_close(l));
    CHECK_EQ(ivy_tcp_connect_sockaddr((struct sockaddr *)&a, sizeof a, &c, ivy_time_now() + 5000), -ECONNREFUSED);

    /* UDP with sockaddrs */
    a = loopback(0);
    OK(ivy_udp_bind_sockaddr((struct sockaddr *)&a, sizeof a, &u1));
    OK(ivy_udp_bind_sockaddr((struct sockaddr *)&a, sizeof a, &u2));
    OK(ivy_udp_port(u2, &port));
    len = sizeof got;
    OK(ivy_udp_socket_local_sockaddr(u2, (struct sockaddr *)&got, &len));
    CHECK_EQ(len, sizeof got);
    CHECK_EQ(ntohs(got.sin_port), port);
    OK(ivy_udp_socket_local_addr(u2, text, sizeof text));
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    CHECK(strcmp(text, want) == 0);
    CHECK_EQ(ivy_udp_socket_local_addr(u2, tiny, sizeof tiny), IVY_ERANGE);
    a = loopback(port);
    OK(ivy_udp_send_to_sockaddr(u1, "sa", 2, (struct sockaddr *)&a, sizeof a, &n, IVY_FOREVER));
    CHECK_EQ(n, 2);
    OK(ivy_udp_send_to_sockaddr(u1, NULL, 0, (struct sockaddr *)&a, sizeof a, NULL, IVY_FOREVER));
    CHECK_EQ(ivy_udp_send_to_sockaddr(u1, "x", 1, (struct sockaddr *)&un, sizeof un, NULL, 0), IVY_EINVAL);
    OK(ivy_udp_recv_from_sockaddr(u2, buf, sizeof buf, &n, NULL, NULL, NULL, ivy_time_now() + 5000));
    CHECK_EQ(n, 2);
    CHECK(memcmp(buf, "sa", 2) == 0);
    n = 99;
    OK(ivy_udp_recv_from_sockaddr(u2, buf, sizeof buf, &n, NULL, NULL, NULL, ivy_time_now() + 5000));
    CHECK_EQ(n, 0);
    OK(ivy_udp_close(u1));
    OK(ivy_udp_close(u2));
    CHECK_EQ(ivy_udp_socket_local_addr(u2, text, sizeof text), IVY_EBADF);
    return NULL;
}

static void test_addresses_and_sockaddr_variants(void) { h_run(2, addr_main, NULL); }

/* IPv6, where the machine has ::1 */
static void *ipv6_main(void *arg) {
    ivy_tcp_listener_t l;
    ivy_tcp_stream_t c, s;
    struct sockaddr_in6 a6, got;
    socklen_t len = sizeof got;
    char text[IVY_ADDRSTRLEN], want[64];
    uint16_t port;
    int rc;
    (void)arg;
    rc = ivy_tcp_listen("[::1]:0", &l);
    if (rc != 0) {
        printf("     (no IPv6 loopback here: %s)\n", ivy_strerror(rc));
        return NULL;
    }
    OK(ivy_tcp_listener_local_sockaddr(l, (struct sockaddr *)&got, &len));
    CHECK_EQ(len, sizeof(struct sockaddr_in6));
    CHECK_EQ(got.sin6_family, AF_INET6);
    port = ntohs(got.sin6_port);
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(port);
    a6.sin6_addr = in6addr_loopback;
    OK(ivy_tcp_connect_sockaddr((struct sockaddr *)&a6, sizeof a6, &c, ivy_time_now() + 5000));
    OK(ivy_tcp_accept(l, &s, ivy_time_now() + 5000));
    OK(ivy_tcp_stream_peer_addr(c, text, sizeof text));
    snprintf(want, sizeof want, "[::1]:%u", (unsigned)port);
    CHECK(strcmp(text, want) == 0);
    len = sizeof(struct sockaddr_in); /* too small for IPv6 */
    CHECK_EQ(ivy_tcp_stream_peer_sockaddr(c, (struct sockaddr *)&got, &len), IVY_ERANGE);
    CHECK_EQ(len, sizeof(struct sockaddr_in6));
    OK(ivy_tcp_close(c));
    OK(ivy_tcp_close(s));
    OK(ivy_tcp_listener_close(l));
    return NULL;
}

static void test_ipv6(void) { h_run(1, ipv6_main, NULL); }

int main(void) {
    RUN(test_deadline_zero_in_task);
    RUN(test_deadline_zero_on_thread);
    RUN(test_ports_and_zero_lengths);
    RUN(test_strerror_covers_socket_errnos);
    RUN(test_udp_recv_checks_and_truncation);
    RUN(test_read_exact);
    RUN(test_sockets_from_and_to_fds);
    RUN(test_addresses_and_sockaddr_variants);
    RUN(test_ipv6);
    H_REPORT();
}
