/*
 * curl_tasks.c -- libcurl's easy API, unmodified, from many ivy tasks.
 *
 *   curl_tasks PORT [--n N] [--limit L] [--delay-ms D] [--workers W]
 *                   [--threads] [--expect concurrent|serial|any] [--bench]
 *
 * N transfers (default 200), each one curl_easy_perform() of /item/<k> from
 * tests/real/delayed_http.py on 127.0.0.1:PORT (every 20th through
 * "localhost", so that name resolution runs too), at most L (default 50) in
 * flight at once (an ivy semaphore; a POSIX one in --threads mode). Every body
 * is checked byte for byte against real_body.h. The server's /stats then gives
 * the peak number of requests it held at once.
 *
 * Modes:
 *  - default: N ivy tasks on W workers (default 2). curl's blocking calls
 *    (connect, poll, recv, send, getaddrinfo) park the task only when the hook
 *    library is in (LD_PRELOAD=libivy_hook.so, or linked -livy_hook); without
 *    it each transfer holds a whole worker for its delay.
 *  - --threads: the same transfers on N plain pthreads (the baseline).
 *
 * --expect concurrent: fail unless the peak reached L/2 and the run took less
 *   than 3x the ideal D x ceil(N/L) and less than a quarter of the serial
 *   time N x D / W (what a worker-blocking run costs).
 * --expect serial: fail unless the peak stayed at most W: the negative control
 *   that shows the concurrent check can fail (run without the hook).
 * --bench: also print the comparison suite's RESULT line (wall time).
 *
 * Exit status 0 when every body was byte-exact and the expectation held.
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <errno.h>
#include <ivy.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "real_body.h"

typedef struct {
    unsigned k;
    int ok;
    char error[160];
} transfer;

static struct {
    unsigned port, n, limit, workers;
    double delay_ms;
    int threads, bench;
    const char *expect;
    transfer *transfers;
    ivy_semaphore_t ivy_limit;
    sem_t thread_limit;
    unsigned peak;
    int stats_ok;
} g;

static size_t on_data(char *p, size_t size, size_t nmemb, void *user) {
    real_buf *b = user;
    return real_buf_append(b, p, size * nmemb) == 0 ? size * nmemb : 0;
}

/* GET http://HOST:port/PATH into *out; 0, or -1 with a message in err. */
static int fetch(const char *host, const char *path, real_buf *out, char *err, size_t errcap) {
    char url[128];
    snprintf(url, sizeof url, "http://%s:%u%s", host, g.port, path);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errcap, "curl_easy_init failed");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(err, errcap, "%s: %s", url, curl_easy_strerror(rc));
        return -1;
    }
    if (status != 200 || out->oom) {
        snprintf(err, errcap, "%s: HTTP status %ld%s", url, status, out->oom ? ", out of memory" : "");
        return -1;
    }
    return 0;
}

/* One transfer: item t->k, checked byte for byte. */
static void transfer_run(transfer *t) {
    real_buf got = {0};
    char path[32];
    snprintf(path, sizeof path, "/item/%u", t->k);
    const char *host = t->k % 20 == 0 ? "localhost" : "127.0.0.1";
    if (fetch(host, path, &got, t->error, sizeof t->error) == 0) {
        size_t len;
        char *want = real_body(t->k, &len);
        if (want == NULL) {
            snprintf(t->error, sizeof t->error, "out of memory");
        } else if (got.len != len || memcmp(got.data, want, len) != 0) {
            snprintf(t->error, sizeof t->error, "item %u: body differs (%zu bytes, want %zu)", t->k,
                     got.len, len);
        } else {
            t->ok = 1;
        }
        free(want);
    }
    real_buf_free(&got);
}

/* GET /reset (before) or /stats (after: sets g.peak). */
static int server_stats(int reset) {
    real_buf got = {0};
    char err[160];
    int rc = fetch("127.0.0.1", reset ? "/reset" : "/stats", &got, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "curl_tasks: %s\n", err);
    } else if (!reset) {
        char text[64] = {0};
        memcpy(text, got.data, got.len < sizeof text - 1 ? got.len : sizeof text - 1);
        if (sscanf(text, "peak %u", &g.peak) != 1) rc = -1;
    }
    real_buf_free(&got);
    return rc;
}

static void *ivy_transfer(void *arg) {
    transfer *t = arg;
    int rc = ivy_semaphore_acquire(g.ivy_limit, IVY_FOREVER);
    if (rc != IVY_OK) {
        snprintf(t->error, sizeof t->error, "semaphore: %s", ivy_strerror(rc));
        return NULL;
    }
    transfer_run(t);
    ivy_semaphore_release(g.ivy_limit);
    return NULL;
}

static void *ivy_main(void *arg) {
    (void)arg;
    ivy_task_t *tasks = calloc(g.n, sizeof *tasks);
    if (tasks == NULL) return (void *)1;
    if (ivy_semaphore_new(g.limit, &g.ivy_limit) != IVY_OK || server_stats(1) != 0) {
        free(tasks);
        return (void *)1;
    }
    unsigned spawned = 0;
    for (; spawned < g.n; spawned++) {
        int rc = ivy_task_spawn(ivy_transfer, &g.transfers[spawned], NULL, &tasks[spawned]);
        if (rc != IVY_OK) {
            fprintf(stderr, "curl_tasks: spawn %u: %s\n", spawned, ivy_strerror(rc));
            break;
        }
    }
    for (unsigned i = 0; i < spawned; i++) ivy_task_join(tasks[i], NULL, IVY_FOREVER);
    free(tasks);
    ivy_semaphore_free(g.ivy_limit);
    g.stats_ok = server_stats(0) == 0;
    return NULL;
}

static void *thread_transfer(void *arg) {
    transfer *t = arg;
    while (sem_wait(&g.thread_limit) != 0 && errno == EINTR) {
    }
    transfer_run(t);
    sem_post(&g.thread_limit);
    return NULL;
}

static int run_threads(void) {
    pthread_t *threads = calloc(g.n, sizeof *threads);
    if (threads == NULL || sem_init(&g.thread_limit, 0, g.limit) != 0 || server_stats(1) != 0) {
        free(threads);
        return -1;
    }
    unsigned started = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (; started < g.n; started++) {
        int rc = pthread_create(&threads[started], &attr, thread_transfer, &g.transfers[started]);
        if (rc != 0) {
            fprintf(stderr, "curl_tasks: pthread_create %u: %s\n", started, strerror(rc));
            break;
        }
    }
    pthread_attr_destroy(&attr);
    for (unsigned i = 0; i < started; i++) pthread_join(threads[i], NULL);
    free(threads);
    sem_destroy(&g.thread_limit);
    g.stats_ok = server_stats(0) == 0;
    return 0;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int usage(void) {
    fprintf(stderr,
            "usage: curl_tasks PORT [--n N] [--limit L] [--delay-ms D] [--workers W] [--threads]\n"
            "                  [--expect concurrent|serial|any] [--bench]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    g.port = (unsigned)atoi(argv[1]);
    g.n = 200;
    g.limit = 50;
    g.workers = 2;
    g.delay_ms = 200;
    g.expect = "any";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--threads") == 0) g.threads = 1;
        else if (strcmp(a, "--bench") == 0) g.bench = 1;
        else if (v == NULL) return usage();
        else if (strcmp(a, "--n") == 0) g.n = (unsigned)atoi(v), i++;
        else if (strcmp(a, "--limit") == 0) g.limit = (unsigned)atoi(v), i++;
        else if (strcmp(a, "--delay-ms") == 0) g.delay_ms = atof(v), i++;
        else if (strcmp(a, "--workers") == 0) g.workers = (unsigned)atoi(v), i++;
        else if (strcmp(a, "--expect") == 0) g.expect = v, i++;
        else return usage();
    }
    if (g.port == 0 || g.n == 0 || g.limit == 0 || g.workers == 0) return usage();

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_tasks: curl_global_init failed\n");
        return 1;
    }
    g.transfers = calloc(g.n, sizeof *g.transfers);
    if (g.transfers == NULL) return 1;
    for (unsigned i = 0; i < g.n; i++) g.transfers[i].k = i;

    double t0 = now_ms();
    int rc;
    if (g.threads) {
        rc = run_threads();
    } else {
        ivy_config_t cfg = {0};
        cfg.workers = g.workers;
        void *res = NULL;
        rc = ivy_runtime_run(&cfg, ivy_main, NULL, &res);
        if (rc == IVY_OK && res != NULL) rc = -1;
        if (rc != IVY_OK) fprintf(stderr, "curl_tasks: runtime: %s\n", ivy_strerror(rc));
    }
    double elapsed = now_ms() - t0;

    unsigned ok = 0, reported = 0;
    for (unsigned i = 0; i < g.n; i++) {
        if (g.transfers[i].ok) ok++;
        else if (reported++ < 10) fprintf(stderr, "curl_tasks: transfer %u: %s\n", i, g.transfers[i].error);
    }
    unsigned rounds = (g.n + g.limit - 1) / g.limit;
    double ideal = g.delay_ms * rounds;
    double serial = g.delay_ms * g.n / g.workers;
    const char *mode = g.threads ? "threads" : "ivy";
    printf("curl_tasks mode=%s n=%u limit=%u workers=%u ok=%u elapsed_ms=%.0f peak=%u ideal_ms=%.0f "
           "serial_ms=%.0f\n",
           mode, g.n, g.limit, g.workers, ok, elapsed, g.peak, ideal, serial);
    if (g.bench) {
        printf("RESULT workload=hook_curl system=%s metric=wall_ms value=%.3f unit=ms n=%u workers=%u "
               "check=ok%u/peak%u\n",
               mode, elapsed, g.n, g.threads ? g.n : g.workers, ok, g.peak);
    }
    curl_global_cleanup();
    free(g.transfers);

    int failed = rc != 0 || ok != g.n || !g.stats_ok;
    if (strcmp(g.expect, "concurrent") == 0) {
        if (g.peak * 2 < g.limit) {
            fprintf(stderr, "curl_tasks: peak %u requests in flight, want at least %u (limit %u)\n",
                    g.peak, g.limit / 2, g.limit);
            failed = 1;
        }
        if (elapsed > 3 * ideal || elapsed > serial / 4) {
            fprintf(stderr, "curl_tasks: took %.0f ms, want under %.0f (3 x ideal) and %.0f (serial / 4)\n",
                    elapsed, 3 * ideal, serial / 4);
            failed = 1;
        }
    } else if (strcmp(g.expect, "serial") == 0) {
        if (g.peak > g.workers) {
            fprintf(stderr, "curl_tasks: peak %u in flight with %u workers and no hook\n", g.peak, g.workers);
            failed = 1;
        }
    } else if (strcmp(g.expect, "any") != 0) {
        return usage();
    }
    return failed;
}
