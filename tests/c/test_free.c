/* Freeing a primitive wakes everyone blocked on it: one rule for every ivy_*_free.
 *
 * For each primitive, N waiters (tasks spread over 2 workers AND plain pthreads)
 * block on it; a task frees it; every waiter must return IVY_ECLOSED (exact count),
 * later calls with the handle IVY_EBADF. Many iterations.
 *
 * The C API cannot show that a waiter is parked, only that it is about to call: each
 * waiter announces itself right before its blocking call, and the freer waits for all
 * announcements, then gives them a generous margin to get into the call (a waiter
 * that is inside the call when the free comes returns IVY_ECLOSED whether or not it
 * had parked yet; only one that had not even looked up its handle would see
 * IVY_EBADF). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

enum { TASKS = 6, THREADS = 3, WAITERS = TASKS + THREADS, ITERATIONS = 20, MARGIN_MS = 30 };

enum kind {
    K_MUTEX,
    K_RWLOCK_RD,
    K_RWLOCK_WR,
    K_SEMAPHORE,
    K_EVENT,
    K_COND,
    K_WAITGROUP,
    K_BARRIER,
    K_QUEUE_GET,
    K_QUEUE_PUT,
    K_QUEUE_JOIN,
    K_QUEUE_SELECT,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "mutex",     "rwlock rdlock", "rwlock wrlock", "semaphore",  "event",      "cond",
    "waitgroup", "barrier",       "queue get",     "queue put",  "queue join", "queue select"};

struct object {
    enum kind kind;
    ivy_mutex_t m;
    ivy_rwlock_t l;
    ivy_semaphore_t s;
    ivy_event_t e;
    ivy_cond_t c;
    ivy_mutex_t cm; /* the condition's mutex */
    ivy_waitgroup_t wg;
    ivy_barrier_t b;
    ivy_queue_t q;
    ivy_queue_t other; /* a second, never ready select arm */
    int announced;
    int closed;    /* waiters that returned IVY_ECLOSED */
    int unexpected; /* any other outcome */
};

static void make(struct object *o) {
    switch (o->kind) {
    case K_MUTEX:
        OK(ivy_mutex_new(&o->m));
        OK(ivy_mutex_lock(o->m, IVY_FOREVER)); /* held by the freer */
        break;
    case K_RWLOCK_RD:
    case K_RWLOCK_WR:
        OK(ivy_rwlock_new(&o->l));
        OK(ivy_rwlock_wrlock(o->l, IVY_FOREVER)); /* held by the freer */
        break;
    case K_SEMAPHORE:
        OK(ivy_semaphore_new(0, &o->s));
        break;
    case K_EVENT:
        OK(ivy_event_new(&o->e));
        break;
    case K_COND:
        OK(ivy_cond_new(&o->c));
        OK(ivy_mutex_new(&o->cm));
        break;
    case K_WAITGROUP:
        OK(ivy_waitgroup_new(&o->wg));
        OK(ivy_waitgroup_add(o->wg, 1));
        break;
    case K_BARRIER:
        OK(ivy_barrier_new(WAITERS + 1, &o->b));
        break;
    case K_QUEUE_GET:
    case K_QUEUE_SELECT:
        OK(ivy_queue_new(IVY_UNBOUNDED, &o->q));
        OK(ivy_queue_new(1, &o->other));
        OK(ivy_queue_put(o->other, o, IVY_FOREVER)); /* full: a PUT arm never fires */
        break;
    case K_QUEUE_PUT:
        OK(ivy_queue_new(1, &o->q));
        OK(ivy_queue_put(o->q, o, IVY_FOREVER)); /* full */
        break;
    case K_QUEUE_JOIN:
        OK(ivy_queue_new(IVY_UNBOUNDED, &o->q));
        OK(ivy_queue_put(o->q, o, IVY_FOREVER)); /* one unfinished item */
        break;
    default:
        CHECK(0);
    }
}

/* One waiter: blocks on the object, returns what the call returned. */
static int block(struct object *o) {
    int rc;
    H_ATOMIC_ADD(&o->announced, 1);
    switch (o->kind) {
    case K_MUTEX:
        return ivy_mutex_lock(o->m, IVY_FOREVER);
    case K_RWLOCK_RD:
        return ivy_rwlock_rdlock(o->l, IVY_FOREVER);
    case K_RWLOCK_WR:
        return ivy_rwlock_wrlock(o->l, IVY_FOREVER);
    case K_SEMAPHORE:
        return ivy_semaphore_acquire(o->s, IVY_FOREVER);
    case K_EVENT:
        return ivy_event_wait(o->e, IVY_FOREVER);
    case K_COND:
        /* The announcement above came before the lock: count it only once we
         * hold the mutex, which the freer takes before freeing. */
        H_ATOMIC_ADD(&o->announced, -1);
        OK(ivy_mutex_lock(o->cm, IVY_FOREVER));
        H_ATOMIC_ADD(&o->announced, 1);
        rc = ivy_cond_wait(o->c, o->cm, IVY_FOREVER);
        /* Woken by the free, the waiter holds the mutex again, as pthread's. */
        OK(ivy_mutex_unlock(o->cm));
        return rc;
    case K_WAITGROUP:
        return ivy_waitgroup_wait(o->wg, IVY_FOREVER);
    case K_BARRIER:
        return ivy_barrier_wait(o->b, NULL, IVY_FOREVER);
    case K_QUEUE_GET: {
        void *item = o;
        rc = ivy_queue_get(o->q, &item, IVY_FOREVER);
        CHECK(item == o); /* nothing stored on failure */
        return rc;
    }
    case K_QUEUE_PUT:
        return ivy_queue_put(o->q, NULL, IVY_FOREVER);
    case K_QUEUE_JOIN:
        return ivy_queue_join(o->q, IVY_FOREVER);
    case K_QUEUE_SELECT: {
        ivy_queue_select_op_t ops[2];
        size_t fired = 99;
        memset(ops, 0, sizeof ops);
        ops[0].queue = o->other;
        ops[0].kind = IVY_SELECT_PUT;
        ops[1].queue = o->q;
        ops[1].kind = IVY_SELECT_GET;
        rc = ivy_queue_select(ops, 2, &fired, IVY_FOREVER);
        if (rc != 0) return rc;
        /* The freed queue's arm fires, with IVY_ECLOSED as its result. */
        CHECK_EQ(fired, 1);
        return fired == 1 ? ops[1].result : -1;
    }
    default:
        return -1;
    }
}

static void tally(struct object *o, int rc) {
    if (rc == IVY_ECLOSED) {
        H_ATOMIC_ADD(&o->closed, 1);
    } else {
        fprintf(stderr, "  %s waiter returned %d (%s)\n", kind_names[o->kind], rc,
                ivy_strerror(rc));
        H_ATOMIC_ADD(&o->unexpected, 1);
    }
}

static void *waiter_task(void *arg) {
    struct object *o = arg;
    tally(o, block(o));
    return NULL;
}

static void *waiter_thread(void *arg) { return waiter_task(arg); }

/* Frees the object (and checks that the handle is dead afterwards). */
static void free_it(struct object *o) {
    switch (o->kind) {
    case K_MUTEX:
        OK(ivy_mutex_free(o->m));
        /* The holder's unlock of a freed mutex: the handle is gone. */
        CHECK_EQ(ivy_mutex_unlock(o->m), IVY_EBADF);
        CHECK_EQ(ivy_mutex_lock(o->m, 0), IVY_EBADF);
        CHECK_EQ(ivy_mutex_free(o->m), IVY_EBADF);
        break;
    case K_RWLOCK_RD:
    case K_RWLOCK_WR:
        OK(ivy_rwlock_free(o->l));
        CHECK_EQ(ivy_rwlock_unlock(o->l), IVY_EBADF);
        CHECK_EQ(ivy_rwlock_rdlock(o->l, 0), IVY_EBADF);
        CHECK_EQ(ivy_rwlock_free(o->l), IVY_EBADF);
        break;
    case K_SEMAPHORE:
        OK(ivy_semaphore_free(o->s));
        CHECK_EQ(ivy_semaphore_release(o->s), IVY_EBADF);
        CHECK_EQ(ivy_semaphore_free(o->s), IVY_EBADF);
        break;
    case K_EVENT:
        OK(ivy_event_free(o->e));
        CHECK_EQ(ivy_event_set(o->e), IVY_EBADF);
        CHECK_EQ(ivy_event_free(o->e), IVY_EBADF);
        break;
    case K_COND:
        /* Every waiter is inside ivy_cond_wait once the freer gets the mutex. */
        OK(ivy_mutex_lock(o->cm, IVY_FOREVER));
        OK(ivy_cond_free(o->c));
        OK(ivy_mutex_unlock(o->cm));
        CHECK_EQ(ivy_cond_notify_all(o->c), IVY_EBADF);
        CHECK_EQ(ivy_cond_free(o->c), IVY_EBADF);
        break;
    case K_WAITGROUP:
        OK(ivy_waitgroup_free(o->wg));
        CHECK_EQ(ivy_waitgroup_done(o->wg), IVY_EBADF);
        CHECK_EQ(ivy_waitgroup_free(o->wg), IVY_EBADF);
        break;
    case K_BARRIER:
        OK(ivy_barrier_free(o->b));
        CHECK_EQ(ivy_barrier_wait(o->b, NULL, 0), IVY_EBADF);
        CHECK_EQ(ivy_barrier_free(o->b), IVY_EBADF);
        break;
    case K_QUEUE_GET:
    case K_QUEUE_PUT:
    case K_QUEUE_JOIN:
    case K_QUEUE_SELECT:
        OK(ivy_queue_free(o->q));
        CHECK_EQ(ivy_queue_task_done(o->q), IVY_EBADF);
        CHECK_EQ(ivy_queue_free(o->q), IVY_EBADF);
        break;
    default:
        CHECK(0);
    }
}

static void cleanup(struct object *o) {
    if (o->kind == K_COND) OK(ivy_mutex_free(o->cm));
    if (o->kind == K_QUEUE_GET || o->kind == K_QUEUE_SELECT) OK(ivy_queue_free(o->other));
}

static void *free_main(void *arg) {
    enum kind kind = *(enum kind *)arg;
    int it, i;
    for (it = 0; it < ITERATIONS; it++) {
        struct object o;
        ivy_task_t tasks[TASKS];
        pthread_t threads[THREADS];
        memset(&o, 0, sizeof o);
        o.kind = kind;
        make(&o);
        for (i = 0; i < TASKS; i++) OK(ivy_task_spawn(waiter_task, &o, NULL, &tasks[i]));
        for (i = 0; i < THREADS; i++)
            CHECK_EQ(pthread_create(&threads[i], NULL, waiter_thread, &o), 0);
        while (H_ATOMIC_LOAD(&o.announced) < WAITERS) OK(ivy_time_sleep(1));
        OK(ivy_time_sleep(MARGIN_MS));
        CHECK_EQ(H_ATOMIC_LOAD(&o.closed), 0); /* nobody got through before the free */
        free_it(&o);
        /* Every waiter wakes (a hang here is the bug this file tests). */
        OK(ivy_task_join_all(tasks, TASKS, NULL, NULL, IVY_FOREVER));
        for (i = 0; i < THREADS; i++) CHECK_EQ(pthread_join(threads[i], NULL), 0);
        CHECK_EQ(o.closed, WAITERS);
        CHECK_EQ(o.unexpected, 0);
        cleanup(&o);
        if (o.closed != WAITERS) {
            fprintf(stderr, "  %s: iteration %d\n", kind_names[kind], it);
            break;
        }
    }
    return NULL;
}

static void run_kind(enum kind kind) { h_run(2, free_main, &kind); }

static void test_free_mutex(void) { run_kind(K_MUTEX); }
static void test_free_rwlock_rdlock(void) { run_kind(K_RWLOCK_RD); }
static void test_free_rwlock_wrlock(void) { run_kind(K_RWLOCK_WR); }
static void test_free_semaphore(void) { run_kind(K_SEMAPHORE); }
static void test_free_event(void) { run_kind(K_EVENT); }
static void test_free_cond(void) { run_kind(K_COND); }
static void test_free_waitgroup(void) { run_kind(K_WAITGROUP); }
static void test_free_barrier(void) { run_kind(K_BARRIER); }
static void test_free_queue_get(void) { run_kind(K_QUEUE_GET); }
static void test_free_queue_put(void) { run_kind(K_QUEUE_PUT); }
static void test_free_queue_join(void) { run_kind(K_QUEUE_JOIN); }
static void test_free_queue_select(void) { run_kind(K_QUEUE_SELECT); }

/* ---- edge cases ------------------------------------------------------------------------------ */

/* A freed primitive has no waiters to wake: free succeeds at once, whatever its state. */
static void *idle_main(void *arg) {
    ivy_mutex_t m;
    ivy_semaphore_t s;
    ivy_rwlock_t l;
    (void)arg;
    OK(ivy_mutex_new(&m));
    OK(ivy_mutex_lock(m, 0));
    OK(ivy_mutex_free(m)); /* held: no longer IVY_EBUSY */
    CHECK_EQ(ivy_mutex_unlock(m), IVY_EBADF);
    OK(ivy_rwlock_new(&l));
    OK(ivy_rwlock_rdlock(l, 0));
    OK(ivy_rwlock_free(l));
    CHECK_EQ(ivy_rwlock_unlock(l), IVY_EBADF);
    OK(ivy_semaphore_new(3, &s));
    OK(ivy_semaphore_acquire(s, 0));
    OK(ivy_semaphore_free(s));
    CHECK_EQ(ivy_semaphore_acquire(s, 0), IVY_EBADF);
    return NULL;
}

static void test_free_held_or_idle(void) { h_run(1, idle_main, NULL); }

/* A cond waiter whose mutex AND condition are freed: it returns IVY_ECLOSED, and the
 * mutex handle is dead (nobody can hold it any more). */
struct both {
    ivy_mutex_t m;
    ivy_cond_t c;
    int ready;
    int rc;
};

static void *both_waiter(void *arg) {
    struct both *b = arg;
    OK(ivy_mutex_lock(b->m, IVY_FOREVER));
    H_ATOMIC_STORE(&b->ready, 1);
    b->rc = ivy_cond_wait(b->c, b->m, IVY_FOREVER);
    CHECK_EQ(ivy_mutex_unlock(b->m), IVY_EBADF);
    return NULL;
}

static void *both_main(void *arg) {
    struct both b;
    ivy_task_t t;
    int it;
    (void)arg;
    for (it = 0; it < ITERATIONS; it++) {
        memset(&b, 0, sizeof b);
        b.rc = 1;
        OK(ivy_mutex_new(&b.m));
        OK(ivy_cond_new(&b.c));
        OK(ivy_task_spawn(both_waiter, &b, NULL, &t));
        while (!H_ATOMIC_LOAD(&b.ready)) OK(ivy_task_yield());
        OK(ivy_mutex_lock(b.m, IVY_FOREVER)); /* the waiter is in ivy_cond_wait */
        OK(ivy_mutex_free(b.m));              /* held by us: the waiter cannot re-take it */
        OK(ivy_cond_free(b.c));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(b.rc, IVY_ECLOSED);
    }
    return NULL;
}

static void test_free_cond_and_mutex(void) { h_run(2, both_main, NULL); }

/* A queue freed with items inside and a joiner waiting: the joiner wakes, and the
 * items are dropped (ivy does not free what they point to). */
static void *queue_items_main(void *arg) {
    ivy_queue_t q;
    size_t len = 99;
    int x = 1;
    (void)arg;
    OK(ivy_queue_new(4, &q));
    OK(ivy_queue_put(q, &x, 0));
    OK(ivy_queue_put(q, &x, 0));
    OK(ivy_queue_len(q, &len));
    CHECK_EQ(len, 2);
    OK(ivy_queue_free(q));
    CHECK_EQ(ivy_queue_len(q, &len), IVY_EBADF);
    CHECK_EQ(x, 1);
    return NULL;
}

static void test_free_queue_with_items(void) { h_run(1, queue_items_main, NULL); }

int main(void) {
    RUN(test_free_mutex);
    RUN(test_free_rwlock_rdlock);
    RUN(test_free_rwlock_wrlock);
    RUN(test_free_semaphore);
    RUN(test_free_event);
    RUN(test_free_cond);
    RUN(test_free_waitgroup);
    RUN(test_free_barrier);
    RUN(test_free_queue_get);
    RUN(test_free_queue_put);
    RUN(test_free_queue_join);
    RUN(test_free_queue_select);
    RUN(test_free_held_or_idle);
    RUN(test_free_cond_and_mutex);
    RUN(test_free_queue_with_items);
    H_REPORT();
}
