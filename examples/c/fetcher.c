/* fetcher: a downloader. Fetches many URLs from an HTTP server with at most
 * LIMIT requests in flight (a semaphore), a deadline per request, retries, and
 * a progress report -- the C twin of the aiohttp downloader. For a self-contained
 * run it starts its own tiny HTTP server on loopback, which fails every 5th
 * request once, to exercise the retries.
 *
 *   cc fetcher.c $(pkg-config --cflags --libs ivy) && ./a.out
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ivy.h"

enum { URLS = 40, LIMIT = 4, RETRIES = 3, BODY_MAX = 8192 };

/* ---- a tiny HTTP server: GET /file/N -> N*100 bytes of 'a' + N % 26 ---------------------- */

static int flaky_failures_left[URLS];
static int in_flight, max_in_flight;

static void *http_conn(void *arg) {
    ivy_tcp_stream_t s = {(uint64_t)(uintptr_t)arg};
    char req[1024], head[128], body[BODY_MAX];
    size_t got = 0, n;
    int file = -1, len;
    while (got < sizeof req - 1 && ivy_tcp_read(s, req + got, sizeof req - 1 - got, &n, ivy_time_now() + 5000) == 0 && n > 0) {
        got += n;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    __atomic_add_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&in_flight, __ATOMIC_SEQ_CST) > __atomic_load_n(&max_in_flight, __ATOMIC_SEQ_CST))
        __atomic_store_n(&max_in_flight, __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    ivy_time_sleep(5); /* "work" */
    if (sscanf(req, "GET /file/%d ", &file) == 1 && file >= 0 && file < URLS) {
        if (file % 5 == 0 && flaky_failures_left[file] > 0) {
            flaky_failures_left[file]--;
            len = snprintf(head, sizeof head, "HTTP/1.0 503 Busy\r\nContent-Length: 0\r\n\r\n");
            ivy_tcp_write_all(s, head, (size_t)len, ivy_time_now() + 5000);
        } else {
            size_t size = (size_t)file * 100 + 1;
            memset(body, 'a' + file % 26, size);
            len = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Length: %u\r\n\r\n", (unsigned)size);
            ivy_tcp_write_all(s, head, (size_t)len, ivy_time_now() + 5000);
            ivy_tcp_write_all(s, body, size, ivy_time_now() + 5000);
        }
    } else {
        len = snprintf(head, sizeof head, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        ivy_tcp_write_all(s, head, (size_t)len, ivy_time_now() + 5000);
    }
    __atomic_sub_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
    ivy_tcp_close(s);
    return NULL;
}

static void *http_server(void *arg) {
    ivy_tcp_listener_t l = *(ivy_tcp_listener_t *)arg;
    for (;;) {
        ivy_tcp_stream_t s;
        ivy_task_t t;
        if (ivy_tcp_accept(l, &s, IVY_FOREVER) != 0) return NULL; /* cancelled at the end */
        if (ivy_task_spawn(http_conn, (void *)(uintptr_t)s.id, NULL, &t) == 0) ivy_task_detach(t);
    }
}

/* ---- the fetcher ----------------------------------------------------------------------------- */

static ivy_semaphore_t limit;
static char server_addr[32];
static int done_count;

struct job {
    int file;
    int attempts;
    size_t bytes;
    int status;
};

/* One GET with a deadline; returns the HTTP status (or a negative ivy error). */
static int http_get(int file, size_t *body_len, int64_t deadline) {
    char req[128], resp[BODY_MAX + 256];
    ivy_tcp_stream_t s;
    size_t got = 0, n;
    int status = 0, rc, len;
    char *body;
    if ((rc = ivy_tcp_connect(server_addr, &s, deadline)) != 0) return rc;
    len = snprintf(req, sizeof req, "GET /file/%d HTTP/1.0\r\nHost: localhost\r\n\r\n", file);
    rc = ivy_tcp_write_all(s, req, (size_t)len, deadline);
    while (rc == 0 && got < sizeof resp - 1) {
        rc = ivy_tcp_read(s, resp + got, sizeof resp - 1 - got, &n, deadline);
        if (rc != 0 || n == 0) break;
        got += n;
    }
    ivy_tcp_close(s);
    if (rc != 0) return rc;
    resp[got] = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return IVY_EIO;
    body = strstr(resp, "\r\n\r\n");
    *body_len = body ? got - (size_t)(body + 4 - resp) : 0;
    return status;
}

static void *fetch(void *arg) {
    struct job *j = arg;
    int rc;
    /* At most LIMIT fetches hold a permit at once. */
    if ((rc = ivy_semaphore_acquire(limit, IVY_FOREVER)) != 0) return (void *)(intptr_t)rc;
    for (j->attempts = 1; j->attempts <= RETRIES; j->attempts++) {
        j->status = http_get(j->file, &j->bytes, ivy_time_now() + 2000);
        if (j->status == 200) break;
        ivy_time_sleep(10 * j->attempts); /* back off, then retry */
    }
    ivy_semaphore_release(limit);
    rc = __atomic_add_fetch(&done_count, 1, __ATOMIC_SEQ_CST);
    if (rc % 10 == 0) printf("progress: %d/%d\n", rc, URLS);
    return NULL;
}

static void *main_task(void *arg) {
    ivy_tcp_listener_t l;
    ivy_task_t server, tasks[URLS];
    struct job jobs[URLS];
    uint16_t port;
    int i, ok = 0, retried = 0;
    int64_t t0 = ivy_time_now();
    (void)arg;
    for (i = 0; i < URLS; i++) flaky_failures_left[i] = 1;
    if (ivy_tcp_listen("127.0.0.1:0", &l) != 0 || ivy_tcp_listener_port(l, &port) != 0) return (void *)1;
    snprintf(server_addr, sizeof server_addr, "127.0.0.1:%u", (unsigned)port);
    ivy_task_spawn(http_server, &l, NULL, &server);

    ivy_semaphore_new(LIMIT, &limit);
    for (i = 0; i < URLS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].file = i;
        ivy_task_spawn(fetch, &jobs[i], NULL, &tasks[i]);
    }
    ivy_task_join_all(tasks, URLS, NULL, NULL, IVY_FOREVER);
    for (i = 0; i < URLS; i++) {
        ok += jobs[i].status == 200 && jobs[i].bytes == (size_t)i * 100 + 1;
        retried += jobs[i].attempts > 1;
    }
    printf("%d/%d fetched (%d after a retry) in %ld ms, at most %d requests in flight (limit %d)\n", ok,
           URLS, retried, (long)(ivy_time_now() - t0), max_in_flight, LIMIT);
    ivy_task_cancel(server);
    ivy_task_join(server, NULL, IVY_FOREVER);
    ivy_tcp_listener_close(l);
    ivy_semaphore_free(limit);
    return (void *)(uintptr_t)(ok == URLS && retried == URLS / 5 && max_in_flight <= LIMIT ? 0 : 1);
}

int main(void) {
    void *status;
    int rc = ivy_runtime_run(NULL, main_task, NULL, &status);
    if (rc != 0) {
        fprintf(stderr, "ivy_runtime_run: %s\n", ivy_strerror(rc));
        return 1;
    }
    return (int)(uintptr_t)status;
}
