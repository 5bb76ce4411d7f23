/*
 * redis_tasks.c -- hiredis's synchronous API, unmodified, from many ivy tasks
 * against a real redis-server (started by tests/real/run.sh).
 *
 *   redis_tasks PORT [--tasks N] [--slow S] [--conns C] [--workers W]
 *                    [--blpop-timeout SECS] [--expect concurrent|serial]
 *
 * First S "slow" tasks (default 4) each open a connection and send
 * `BLPOP ivy:slow:<i> SECS`: a command the server holds until someone pushes to
 * that list. Once the server reports them all blocked (INFO clients), N fast
 * tasks (default 1000, at most C connected at once, default 200) each connect
 * and run SET ivy:key:<k> <value k>, GET ivy:key:<k> (checked byte for byte)
 * and INCR ivy:counter. When every fast task is done the main task pushes
 * "wake-<i>" to each slow list; each slow task checks it got exactly its own
 * value and records how many fast tasks had completed by then.
 *
 * --expect concurrent: every fast task's reply exact, the counter exactly N,
 *   every slow task woken by its push (not its timeout), with all N fast tasks
 *   completed while the slow commands were outstanding. With the hook in,
 *   hiredis's blocking connect/write/read park the task, so S outstanding
 *   BLPOPs cost nothing.
 * --expect serial: the negative control (run without the hook, S >= W): the
 *   BLPOPs hold every worker, so at least one slow command times out before any
 *   fast task ran.
 */
#define _POSIX_C_SOURCE 200809L
#include <hiredis/hiredis.h>
#include <ivy.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    unsigned port, tasks, slow, conns, workers, blpop_timeout;
    const char *expect;
    ivy_semaphore_t conn_limit;
    atomic_uint fast_ok, fast_done;
    unsigned *slow_seen;  /* per slow task: fast_done when its BLPOP returned */
    int *slow_woken;      /* per slow task: 1 when it got its own "wake-<i>" */
    int slow_all_blocked; /* the server reported S blocked clients before the fast tasks */
    long long counter;
    int setup_ok;
} g;

static redisContext *connect_redis(void) {
    redisContext *c = redisConnect("127.0.0.1", (int)g.port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_tasks: connect: %s\n", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

/* Value of key k: distinct per key, length varying with k. */
static int value_of(unsigned k, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "value-%u-", k);
    for (unsigned i = 0; i < k % 50 && (size_t)n + 1 < cap; i++) buf[n++] = (char)('a' + (i + k) % 26);
    buf[n] = 0;
    return n;
}

/* Reports a failed command: hiredis's connection error, or the reply's type. */
static void report(redisContext *c, const char *what, unsigned k, const redisReply *r) {
    if (r == NULL) {
        fprintf(stderr, "redis_tasks: %s (key %u): %s (err %d)\n", what, k, c->errstr, c->err);
    } else {
        fprintf(stderr, "redis_tasks: %s (key %u): unexpected reply type %d%s%s\n", what, k, r->type,
                r->type == REDIS_REPLY_ERROR ? ": " : "", r->type == REDIS_REPLY_ERROR ? r->str : "");
    }
}

static void *fast_task(void *arg) {
    unsigned k = (unsigned)(uintptr_t)arg;
    if (ivy_semaphore_acquire(g.conn_limit, IVY_FOREVER) != IVY_OK) return NULL;
    redisContext *c = connect_redis();
    int ok = 0;
    if (c != NULL) {
        char val[96];
        int len = value_of(k, val, sizeof val);
        redisReply *r = redisCommand(c, "SET ivy:key:%u %b", k, val, (size_t)len);
        ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
        if (!ok) report(c, "SET", k, r);
        freeReplyObject(r);
        if (ok) {
            r = redisCommand(c, "GET ivy:key:%u", k);
            ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == (size_t)len &&
                 memcmp(r->str, val, (size_t)len) == 0;
            if (!ok) report(c, "GET (or a wrong value)", k, r);
            freeReplyObject(r);
        }
        if (ok) {
            r = redisCommand(c, "INCR ivy:counter");
            ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
            if (!ok) report(c, "INCR", k, r);
            freeReplyObject(r);
        }
        redisFree(c);
    }
    ivy_semaphore_release(g.conn_limit);
    if (ok) atomic_fetch_add(&g.fast_ok, 1);
    atomic_fetch_add(&g.fast_done, 1);
    return NULL;
}

static void *slow_task(void *arg) {
    unsigned i = (unsigned)(uintptr_t)arg;
    redisContext *c = connect_redis();
    if (c == NULL) return NULL;
    redisReply *r = redisCommand(c, "BLPOP ivy:slow:%u %u", i, g.blpop_timeout);
    g.slow_seen[i] = atomic_load(&g.fast_done);
    char want[32];
    snprintf(want, sizeof want, "wake-%u", i);
    /* BLPOP answers [list, value], or nil when its timeout passed. */
    g.slow_woken[i] = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                      r->element[1]->type == REDIS_REPLY_STRING && strcmp(r->element[1]->str, want) == 0;
    freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* INFO clients' blocked_clients, or -1. */
static int blocked_clients(redisContext *c) {
    redisReply *r = redisCommand(c, "INFO clients");
    int n = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "blocked_clients:");
        if (p) n = atoi(p + strlen("blocked_clients:"));
    }
    freeReplyObject(r);
    return n;
}

static void *main_task(void *arg) {
    (void)arg;
    redisContext *ctl = connect_redis();
    if (ctl == NULL) return NULL;
    freeReplyObject(redisCommand(ctl, "FLUSHALL"));
    ivy_task_t *slow = calloc(g.slow, sizeof *slow), *fast = calloc(g.tasks, sizeof *fast);
    if (slow == NULL || fast == NULL || ivy_semaphore_new(g.conns, &g.conn_limit) != IVY_OK) goto out;
    for (unsigned i = 0; i < g.slow; i++) {
        int rc = ivy_task_spawn(slow_task, (void *)(uintptr_t)i, NULL, &slow[i]);
        if (rc != IVY_OK) {
            fprintf(stderr, "redis_tasks: spawn slow %u: %s\n", i, ivy_strerror(rc));
            goto out; /* the runtime's shutdown cancels the ones spawned */
        }
    }
    /* Handshake through the server: the fast tasks start once every BLPOP is held. */
    int64_t give_up = ivy_time_now() + 1000 * (int64_t)g.blpop_timeout + 2000;
    while (ivy_time_now() < give_up) {
        if (blocked_clients(ctl) == (int)g.slow) {
            g.slow_all_blocked = 1;
            break;
        }
        ivy_time_sleep_until(ivy_time_now() + 5);
    }
    unsigned spawned = 0;
    for (; spawned < g.tasks; spawned++) {
        int rc = ivy_task_spawn(fast_task, (void *)(uintptr_t)spawned, NULL, &fast[spawned]);
        if (rc != IVY_OK) {
            fprintf(stderr, "redis_tasks: spawn fast %u: %s\n", spawned, ivy_strerror(rc));
            break; /* fast_ok stays below the count: a failure */
        }
    }
    for (unsigned k = 0; k < spawned; k++) ivy_task_join(fast[k], NULL, IVY_FOREVER);
    for (unsigned i = 0; i < g.slow; i++) freeReplyObject(redisCommand(ctl, "RPUSH ivy:slow:%u wake-%u", i, i));
    for (unsigned i = 0; i < g.slow; i++) ivy_task_join(slow[i], NULL, IVY_FOREVER);
    redisReply *r = redisCommand(ctl, "GET ivy:counter");
    if (r != NULL && r->type == REDIS_REPLY_STRING) g.counter = atoll(r->str);
    freeReplyObject(r);
    ivy_semaphore_free(g.conn_limit);
    g.setup_ok = 1;
out:
    free(slow);
    free(fast);
    redisFree(ctl);
    return NULL;
}

static int usage(void) {
    fprintf(stderr, "usage: redis_tasks PORT [--tasks N] [--slow S] [--conns C] [--workers W]\n"
                    "                   [--blpop-timeout SECS] [--expect concurrent|serial]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    g.port = (unsigned)atoi(argv[1]);
    g.tasks = 1000;
    g.slow = 4;
    g.conns = 200;
    g.workers = 2;
    g.blpop_timeout = 20;
    g.expect = "concurrent";
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--tasks") == 0) g.tasks = (unsigned)atoi(v);
        else if (strcmp(a, "--slow") == 0) g.slow = (unsigned)atoi(v);
        else if (strcmp(a, "--conns") == 0) g.conns = (unsigned)atoi(v);
        else if (strcmp(a, "--workers") == 0) g.workers = (unsigned)atoi(v);
        else if (strcmp(a, "--blpop-timeout") == 0) g.blpop_timeout = (unsigned)atoi(v);
        else if (strcmp(a, "--expect") == 0) g.expect = v;
        else return usage();
    }
    if (argc % 2 != 0 || g.port == 0 || g.slow == 0 || g.conns == 0 || g.workers == 0 ||
        g.blpop_timeout == 0)
        return usage();
    g.slow_seen = calloc(g.slow, sizeof *g.slow_seen);
    g.slow_woken = calloc(g.slow, sizeof *g.slow_woken);
    if (g.slow_seen == NULL || g.slow_woken == NULL) return 1;

    ivy_config_t cfg = {0};
    cfg.workers = g.workers;
    int rc = ivy_runtime_run(&cfg, main_task, NULL, NULL);
    if (rc != IVY_OK) fprintf(stderr, "redis_tasks: runtime: %s\n", ivy_strerror(rc));

    unsigned woken = 0, saw_all = 0, saw_none = 0;
    for (unsigned i = 0; i < g.slow; i++) {
        woken += g.slow_woken[i] != 0;
        saw_all += g.slow_seen[i] == g.tasks;
        saw_none += g.slow_seen[i] == 0;
    }
    unsigned fast_ok = atomic_load(&g.fast_ok);
    printf("redis_tasks tasks=%u ok=%u counter=%lld slow=%u slow_blocked_first=%d woken=%u "
           "fast_done_while_slow_outstanding(min)=",
           g.tasks, fast_ok, g.counter, g.slow, g.slow_all_blocked, woken);
    unsigned min = g.tasks;
    for (unsigned i = 0; i < g.slow; i++) min = g.slow_seen[i] < min ? g.slow_seen[i] : min;
    printf("%u\n", min);

    int failed = rc != IVY_OK || !g.setup_ok || fast_ok != g.tasks || g.counter != (long long)g.tasks;
    if (strcmp(g.expect, "concurrent") == 0) {
        if (!g.slow_all_blocked || woken != g.slow || saw_all != g.slow) {
            fprintf(stderr,
                    "redis_tasks: want all %u BLPOPs held by the server before the fast tasks (%d), "
                    "each woken by its push (%u were) after all %u fast tasks completed (%u saw that)\n",
                    g.slow, g.slow_all_blocked, woken, g.tasks, saw_all);
            failed = 1;
        }
    } else if (strcmp(g.expect, "serial") == 0) {
        if (saw_none == 0 || woken == g.slow) {
            fprintf(stderr, "redis_tasks: without the hook a BLPOP should have held the workers until "
                            "its timeout, before any fast task ran\n");
            failed = 1;
        }
    } else {
        return usage();
    }
    free(g.slow_seen);
    free(g.slow_woken);
    return failed;
}
