/* echo_server: a TCP echo server, one task per connection.
 *
 *   cc echo_server.c $(pkg-config --cflags --libs ivy)
 *   ./a.out 7000        serve on 127.0.0.1:7000 until killed
 *   ./a.out             demo: serve on a free port, run 20 clients against it, exit
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ivy.h"

static void *serve_connection(void *arg) {
    ivy_tcp_stream_t s = {(uint64_t)(uintptr_t)arg};
    char buf[4096];
    size_t n;
    /* Read until EOF; a peer silent for 30 s is dropped. */
    while (ivy_tcp_read(s, buf, sizeof buf, &n, ivy_time_now() + 30000) == 0 && n > 0)
        if (ivy_tcp_write_all(s, buf, n, ivy_time_now() + 30000) != 0) break;
    ivy_tcp_close(s);
    return NULL;
}

struct server {
    ivy_tcp_listener_t listener;
    long max_connections; /* < 0: forever */
};

static void *accept_loop(void *arg) {
    struct server *srv = arg;
    long served = 0;
    while (srv->max_connections < 0 || served < srv->max_connections) {
        ivy_tcp_stream_t s;
        ivy_task_t t;
        int rc = ivy_tcp_accept(srv->listener, &s, IVY_FOREVER);
        if (rc != 0) {
            fprintf(stderr, "accept: %s\n", ivy_strerror(rc));
            return (void *)1;
        }
        if (ivy_task_spawn(serve_connection, (void *)(uintptr_t)s.id, NULL, &t) == 0) ivy_task_detach(t);
        served++;
    }
    return NULL;
}

static void *client(void *arg) {
    char addr[32], msg[64], back[64];
    ivy_tcp_stream_t s;
    size_t got = 0, n;
    int len = snprintf(msg, sizeof msg, "hello from client %u\n", (unsigned)((uintptr_t)arg & 0xffff));
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)((uintptr_t)arg >> 16));
    if (ivy_tcp_connect(addr, &s, ivy_time_now() + 5000) != 0) return (void *)1;
    if (ivy_tcp_write_all(s, msg, (size_t)len, ivy_time_now() + 5000) != 0) return (void *)1;
    while (got < (size_t)len && ivy_tcp_read(s, back + got, sizeof back - got, &n, ivy_time_now() + 5000) == 0 && n > 0)
        got += n;
    ivy_tcp_close(s);
    return (void *)(uintptr_t)(got == (size_t)len && memcmp(msg, back, got) == 0 ? 0 : 1);
}

static void *main_task(void *arg) {
    const char *port_arg = arg;
    enum { CLIENTS = 20 };
    struct server srv;
    ivy_task_t server, clients[CLIENTS];
    void *results[CLIENTS];
    char addr[32];
    uint16_t port;
    int i, failures = 0;
    snprintf(addr, sizeof addr, "127.0.0.1:%s", port_arg ? port_arg : "0");
    int rc = ivy_tcp_listen(addr, &srv.listener);
    if (rc != 0) {
        fprintf(stderr, "listen %s: %s\n", addr, ivy_strerror(rc));
        return (void *)1;
    }
    ivy_tcp_listener_port(srv.listener, &port);
    printf("echo server on 127.0.0.1:%u\n", (unsigned)port);
    fflush(stdout);
    srv.max_connections = port_arg ? -1 : CLIENTS;
    if (port_arg) return accept_loop(&srv); /* serve forever */

    ivy_task_spawn(accept_loop, &srv, NULL, &server);
    for (i = 0; i < CLIENTS; i++)
        ivy_task_spawn(client, (void *)(((uintptr_t)port << 16) | (uintptr_t)i), NULL, &clients[i]);
    ivy_task_join_all(clients, CLIENTS, results, NULL, IVY_FOREVER);
    for (i = 0; i < CLIENTS; i++) failures += results[i] != NULL;
    ivy_task_join(server, NULL, IVY_FOREVER);
    ivy_tcp_listener_close(srv.listener);
    printf("%d clients echoed, %d failed\n", CLIENTS - failures, failures);
    return (void *)(uintptr_t)(failures == 0 ? 0 : 1);
}

int main(int argc, char **argv) {
    void *status;
    int rc = ivy_runtime_run(NULL, main_task, argc > 1 ? argv[1] : NULL, &status);
    if (rc != 0) {
        fprintf(stderr, "ivy_runtime_run: %s\n", ivy_strerror(rc));
        return 1;
    }
    return (int)(uintptr_t)status;
}
