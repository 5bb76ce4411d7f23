/*
 * The floor for the server rows: an echo (tcp_echo) or HTTP hello (http_hello)
 * server with no runtime at all.
 *
 * Two threads (the runtimes' two workers), each with its own SO_REUSEPORT
 * listener and its own epoll set (edge-triggered), serving the connections it
 * accepted. Per message it makes the least a readiness-based server can: one
 * recv, one send, and its share of a blocking epoll_wait that returns every
 * ready connection at once (no spin, no zero-timeout polls, no wake-ups between
 * threads, no task switch). It prints "LISTENING port=N" like the benchmark
 * servers, so findings/server_cpu.sh measures it the same way. http_hello handles
 * requests as bench-common's http_requests/http_responses do: every complete
 * request (ending in CRLF CRLF) in the buffer gets the one fixed response, all
 * answered with one send, and an incomplete request is kept for the next read.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -pthread -o /tmp/echo-floor findings/echo_floor.c
 * Run:   /tmp/echo-floor tcp_echo|http_hello --port 0   (other arguments are
 *        ignored, so it takes the benchmark servers' command line)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREADS 2
#define BUF 4096 /* bench-common's ECHO_BUF and HTTP_BUF */

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
static int http; /* serving http_hello, not tcp_echo */

/* A connection: its fd and, for HTTP, the incomplete request kept. */
struct conn {
    int fd;
    size_t filled;
    char buf[BUF];
};

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* http_requests: the complete requests at the start of buf[0..n), and the
 * bytes they take. */
static size_t http_requests(const char *buf, size_t n, size_t *used) {
    size_t count = 0, start = 0;
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            count++;
            start = i + 4;
            i += 3;
        }
    }
    *used = start;
    return count;
}

/* One readable event: read until a short read (drained, as ivy and tokio
 * assume under edge triggering) or EAGAIN; answer each read. Returns -1 when
 * the connection ended. */
static int serve_conn(struct conn *c) {
    static __thread char out[BUF / 4 * (sizeof RESPONSE - 1)];
    for (;;) {
        size_t room = http ? BUF - c->filled : BUF;
        char *at = http ? c->buf + c->filled : c->buf;
        ssize_t r = recv(c->fd, at, room, 0);
        if (r < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        if (r == 0)
            return -1;
        if (!http) {
            if (send_all(c->fd, c->buf, (size_t)r) < 0)
                return -1;
        } else {
            size_t used, count;
            c->filled += (size_t)r;
            count = http_requests(c->buf, c->filled, &used);
            if (count > 0) {
                size_t len = 0;
                for (size_t i = 0; i < count; i++) {
                    memcpy(out + len, RESPONSE, sizeof RESPONSE - 1);
                    len += sizeof RESPONSE - 1;
                }
                if (send_all(c->fd, out, len) < 0)
                    return -1;
                memmove(c->buf, c->buf + used, c->filled - used);
                c->filled -= used;
            } else if (c->filled == BUF) {
                return -1; /* a request larger than the buffer: the benchmark servers stop too */
            }
        }
        if ((size_t)r < room)
            return 0;
    }
}

static int listener(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    struct sockaddr_in a;
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
        perror("bind/listen");
        exit(1);
    }
    return fd;
}

static void *serve(void *arg) {
    int lfd = *(int *)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    struct conn *cn = calloc(1, sizeof *cn);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET};
                    if (cn == NULL) {
                        close(c);
                        continue;
                    }
                    cn->fd = c;
                    cev.data.ptr = cn;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (serve_conn(c) < 0) {
                close(c->fd); /* closing removes it from the epoll set */
                free(c);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int port = 0;
    int fds[THREADS];
    pthread_t t[THREADS];
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    http = argc > 1 && strcmp(argv[1], "http_hello") == 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
    fds[0] = listener(port);
    getsockname(fds[0], (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    for (int i = 1; i < THREADS; i++)
        fds[i] = listener(port);
    printf("LISTENING port=%d\n", port);
    fflush(stdout);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, serve, &fds[i]);
    pthread_join(t[0], NULL);
    return 0;
}
