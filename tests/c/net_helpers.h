/* Helpers shared by the socket and fd tests (test_net_close.c, test_net_more.c,
 * test_unix.c, test_poll.c): fd counting for leak checks, the one-worker
 * "blocked in a call" handshake, a connected TCP pair and a UDP pair. Include
 * after harness.h, with _POSIX_C_SOURCE defined (dirent, snprintf). */
#ifndef IVY_TEST_NET_HELPERS_H
#define IVY_TEST_NET_HELPERS_H

#include <dirent.h>
#include <stdio.h>

#include "harness.h"

/* The number of open fds (entries of /proc/self/fd), for "no fd leaked"
 * checks: compare a count before with one after. */
static inline int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* The fd count to compare against later: the smallest of a few readings 5 ms
 * apart. Threads of a runtime that just ended may still be closing theirs (a
 * joined thread can outlive pthread_join by a moment), so one reading can be
 * one too high, and the check after would then see "fewer than before". */
static inline int settled_fds(void) {
    int i, n, least = count_fds();
    for (i = 0; i < 3; i++) {
        (void)ivy_time_sleep(5);
        n = count_fds();
        if (n < least) least = n;
    }
    return least;
}

/* Checks that no fd leaked: the count comes back to at most `before` within
 * 2 s (a leak stays; a transient fd of another thread goes). Usable in a task
 * or on a plain thread. */
static inline void check_fds_back_to(int before) {
    int waited, n = count_fds();
    for (waited = 0; n > before && waited < 200; waited++) {
        (void)ivy_time_sleep(10);
        n = count_fds();
    }
    if (n > before) fprintf(stderr, "  fds: %d open, %d before\n", n, before);
    CHECK(n <= before);
}

/* h_run, checking that no fd leaked: as many are open after as before. */
static inline void h_run_no_leak(size_t workers, ivy_task_fn_t entry, void *arg) {
    int before = settled_fds();
    h_run(workers, entry, arg);
    check_fds_back_to(before);
}

/* Yields the worker until `*flag` is set (by a task that then blocks in a call:
 * with one worker, it gave the worker up only from inside that call). */
static inline void yield_until(int *flag) {
    while (!H_ATOMIC_LOAD(flag)) OK(ivy_task_yield());
}

/* A connected pair over loopback: *client from ivy_tcp_connect, *server accepted. */
static inline void tcp_pair(ivy_tcp_stream_t *client, ivy_tcp_stream_t *server) {
    ivy_tcp_listener_t l;
    uint16_t port;
    char addr[32];
    OK(ivy_tcp_listen("127.0.0.1:0", &l));
    OK(ivy_tcp_listener_port(l, &port));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    OK(ivy_tcp_connect(addr, client, ivy_time_now() + 5000));
    OK(ivy_tcp_accept(l, server, ivy_time_now() + 5000));
    OK(ivy_tcp_listener_close(l));
}

/* Two UDP sockets bound on loopback; `addr` (`cap` bytes) gets b's address,
 * "127.0.0.1:port", for ivy_udp_send_to. */
static inline void udp_pair(ivy_udp_socket_t *a, ivy_udp_socket_t *b, char *addr, size_t cap) {
    uint16_t port;
    OK(ivy_udp_bind("127.0.0.1:0", a));
    OK(ivy_udp_bind("127.0.0.1:0", b));
    OK(ivy_udp_port(*b, &port));
    snprintf(addr, cap, "127.0.0.1:%u", (unsigned)port);
}

#endif
