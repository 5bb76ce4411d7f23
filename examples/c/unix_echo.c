/* unix_echo: an echo server on a Unix-domain socket, one task per connection,
 * and clients in the same process. The server listens on a Linux abstract
 * name ("@..."; a path such as "/tmp/echo.sock" works the same, and the socket
 * file is then the caller's to unlink). The acceptor runs until the listener is
 * closed: ivy_unix_listener_close wakes its pending accept with IVY_ECLOSED.
 *
 *   cc unix_echo.c $(pkg-config --cflags --libs ivy) && ./a.out
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ivy.h"

enum { CLIENTS = 10 };

static char name[64];

static void *serve(void *arg) {
    ivy_unix_stream_t s;
    char buf[256];
    size_t n;
    s.id = (uint64_t)(uintptr_t)arg;
    while (ivy_unix_read(s, buf, sizeof buf, &n, ivy_time_now() + 5000) == 0 && n > 0)
        if (ivy_unix_write_all(s, buf, n, ivy_time_now() + 5000) != 0) break;
    ivy_unix_close(s);
    return NULL;
}

static void *acceptor(void *arg) {
    ivy_unix_listener_t l;
    int served = 0, rc;
    l.id = (uint64_t)(uintptr_t)arg;
    for (;;) {
        ivy_unix_stream_t s;
        ivy_task_t t;
        rc = ivy_unix_accept(l, &s, IVY_FOREVER);
        if (rc != 0) break;
        ivy_task_spawn(serve, (void *)(uintptr_t)s.id, NULL, &t);
        ivy_task_detach(t);
        served++;
    }
    printf("acceptor: %d connections, then %s\n", served, ivy_strerror(rc));
    return (void *)(intptr_t)(rc == IVY_ECLOSED && served == CLIENTS ? 0 : 1);
}

static void *client(void *arg) {
    int id = (int)(intptr_t)arg, len;
    char msg[64], back[64];
    ivy_unix_stream_t s;
    size_t n = 0;
    len = snprintf(msg, sizeof msg, "hello from client %d", id);
    if (ivy_unix_connect(name, &s, ivy_time_now() + 5000) != 0) return (void *)1;
    if (ivy_unix_write_all(s, msg, (size_t)len, ivy_time_now() + 5000) != 0 ||
        ivy_unix_read_exact(s, back, (size_t)len, &n, ivy_time_now() + 5000) != 0 ||
        memcmp(msg, back, (size_t)len) != 0) {
        ivy_unix_close(s);
        return (void *)1;
    }
    printf("%.*s\n", len, back);
    ivy_unix_close(s);
    return NULL;
}

static void *main_task(void *arg) {
    ivy_unix_listener_t l;
    ivy_task_t server, clients[CLIENTS];
    void *result = (void *)1;
    size_t failed = 0;
    int i;
    (void)arg;
    if (ivy_unix_listen(name, &l) != 0) return (void *)1;
    ivy_task_spawn(acceptor, (void *)(uintptr_t)l.id, NULL, &server);
    for (i = 0; i < CLIENTS; i++) ivy_task_spawn(client, (void *)(intptr_t)i, NULL, &clients[i]);
    for (i = 0; i < CLIENTS; i++) {
        void *r = (void *)1;
        ivy_task_join(clients[i], &r, IVY_FOREVER);
        failed += r != NULL;
    }
    ivy_unix_listener_close(l); /* wakes the acceptor */
    ivy_task_join(server, &result, IVY_FOREVER);
    return (void *)(uintptr_t)(failed == 0 && result == NULL ? 0 : 1);
}

int main(void) {
    void *result = (void *)1;
    snprintf(name, sizeof name, "@ivy-unix-echo-%ld", (long)getpid());
    if (ivy_runtime_run(NULL, main_task, NULL, &result) != 0 || result != NULL) {
        fprintf(stderr, "unix_echo failed\n");
        return 1;
    }
    return 0;
}
