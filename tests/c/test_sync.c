/* Locks, semaphores, events, conditions, queues and select. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

/* ---- mutex ------------------------------------------------------------------------------ */

struct counter {
    ivy_mutex_t m;
    long value;
    int iterations;
};

static void *increment(void *arg) {
    struct counter *c = arg;
    int i;
    for (i = 0; i < c->iterations; i++) {
        OK(ivy_mutex_lock(c->m, IVY_FOREVER));
        {
            long v = c->value; /* a read-yield-write race without the lock */
            if (i % 7 == 0) OK(ivy_task_yield());
            c->value = v + 1;
        }
        OK(ivy_mutex_unlock(c->m));
    }
    return NULL;
}

static void *mutex_main(void *arg) {
    enum { N = 20 };
    struct counter c;
    ivy_task_t t[N];
    ivy_mutex_t zero;
    int i;
    (void)arg;
    memset(&zero, 0, sizeof zero);
    c.value = 0;
    c.iterations = 200;
    OK(ivy_mutex_new(&c.m));
    for (i = 0; i < N; i++) OK(ivy_task_spawn(increment, &c, NULL, &t[i]));
    OK(ivy_task_join_all(t, N, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(c.value, N * 200);

    /* errors */
    CHECK_EQ(ivy_mutex_unlock(c.m), IVY_EPERM); /* not held */
    OK(ivy_mutex_lock(c.m, 0));                 /* a try that succeeds */
    CHECK_EQ(ivy_mutex_lock(c.m, IVY_FOREVER), IVY_EDEADLK);
    OK(ivy_mutex_unlock(c.m));
    OK(ivy_mutex_free(c.m));
    CHECK_EQ(ivy_mutex_lock(c.m, IVY_FOREVER), IVY_EBADF);
    CHECK_EQ(ivy_mutex_unlock(c.m), IVY_EBADF);
    CHECK_EQ(ivy_mutex_free(c.m), IVY_EBADF);
    CHECK_EQ(ivy_mutex_lock(zero, IVY_FOREVER), IVY_EBADF);
    CHECK_EQ(ivy_mutex_new(NULL), IVY_EINVAL);
    return NULL;
}

static void test_mutex(void) {
    int i;
    for (i = 0; i < 5; i++) h_run(2, mutex_main, NULL);
}

struct lock_waiter {
    ivy_mutex_t m;
    ivy_event_t started;
};

static void *lock_and_record(void *arg) {
    struct lock_waiter *w = arg;
    OK(ivy_event_set(w->started));
    return (void *)(intptr_t)ivy_mutex_lock(w->m, IVY_FOREVER);
}

static void *mutex_cancel_main(void *arg) {
    struct lock_waiter w;
    ivy_mutex_t m;
    ivy_task_t waiter;
    void *r = NULL;
    (void)arg;
    OK(ivy_mutex_new(&m));
    OK(ivy_event_new(&w.started));
    w.m = m;
    OK(ivy_mutex_lock(m, IVY_FOREVER));
    OK(ivy_task_spawn(lock_and_record, &w, NULL, &waiter));
    /* Started for sure (a cancel before its start would skip the lock call
     * altogether), then most likely parked in the lock. Either way the lock
     * reports the cancellation. */
    OK(ivy_event_wait(w.started, IVY_FOREVER));
    OK(ivy_time_sleep(10));
    /* cancelled while waiting: the waiter gets ECANCELED and does not hold it */
    OK(ivy_task_cancel(waiter));
    OK(ivy_task_join(waiter, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED);
    OK(ivy_mutex_unlock(m));
    /* the lock is free: the cancelled waiter was not handed it */
    OK(ivy_mutex_lock(m, 0));
    OK(ivy_mutex_unlock(m));
    OK(ivy_mutex_free(m));
    OK(ivy_event_free(w.started));
    return NULL;
}

static void test_mutex_cancel(void) { h_run(2, mutex_cancel_main, NULL); }

struct plain_lock {
    ivy_mutex_t m;
    int rc_timeout;
};

static void *thread_lock_timeout(void *arg) {
    struct plain_lock *p = arg;
    int64_t t0 = ivy_time_now();
    p->rc_timeout = ivy_mutex_lock(p->m, ivy_time_now() + 20);
    CHECK(ivy_time_now() - t0 >= 20);
    return NULL;
}

static void test_mutex_shared_with_threads(void) {
    struct plain_lock p;
    pthread_t th;
    OK(ivy_mutex_new(&p.m));
    OK(ivy_mutex_lock(p.m, IVY_FOREVER)); /* held by this plain thread */
    CHECK_EQ(pthread_create(&th, NULL, thread_lock_timeout, &p), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(p.rc_timeout, IVY_ETIMEDOUT);
    OK(ivy_mutex_unlock(p.m));
    OK(ivy_mutex_free(p.m));
}

/* ---- rwlock ---------------------------------------------------------------------------------- */

struct rw_shared {
    ivy_rwlock_t l;
    int readers_inside, max_readers, writer_inside, violations;
};

static void *reader(void *arg) {
    struct rw_shared *s = arg;
    int i;
    for (i = 0; i < 20; i++) {
        int n;
        OK(ivy_rwlock_rdlock(s->l, IVY_FOREVER));
        n = H_ATOMIC_ADD(&s->readers_inside, 1);
        if (H_ATOMIC_LOAD(&s->writer_inside)) H_ATOMIC_ADD(&s->violations, 1);
        if (n > H_ATOMIC_LOAD(&s->max_readers)) H_ATOMIC_STORE(&s->max_readers, n);
        OK(ivy_time_sleep(1));
        H_ATOMIC_ADD(&s->readers_inside, -1);
        OK(ivy_rwlock_unlock(s->l));
    }
    return NULL;
}

static void *writer(void *arg) {
    struct rw_shared *s = arg;
    int i;
    for (i = 0; i < 10; i++) {
        OK(ivy_rwlock_wrlock(s->l, IVY_FOREVER));
        if (H_ATOMIC_ADD(&s->writer_inside, 1) != 1 || H_ATOMIC_LOAD(&s->readers_inside) != 0)
            H_ATOMIC_ADD(&s->violations, 1);
        OK(ivy_task_yield());
        H_ATOMIC_ADD(&s->writer_inside, -1);
        OK(ivy_rwlock_unlock(s->l));
    }
    return NULL;
}

static void *rwlock_main(void *arg) {
    struct rw_shared s;
    ivy_task_t t[8];
    int i;
    (void)arg;
    memset(&s, 0, sizeof s);
    OK(ivy_rwlock_new(&s.l));
    for (i = 0; i < 6; i++) OK(ivy_task_spawn(reader, &s, NULL, &t[i]));
    for (i = 6; i < 8; i++) OK(ivy_task_spawn(writer, &s, NULL, &t[i]));
    OK(ivy_task_join_all(t, 8, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(s.violations, 0);
    CHECK(s.max_readers >= 2); /* readers do share */

    CHECK_EQ(ivy_rwlock_unlock(s.l), IVY_EPERM);
    OK(ivy_rwlock_rdlock(s.l, 0));
    CHECK_EQ(ivy_rwlock_rdlock(s.l, 0), IVY_EDEADLK);
    OK(ivy_rwlock_unlock(s.l));
    OK(ivy_rwlock_wrlock(s.l, 0));
    OK(ivy_rwlock_unlock(s.l));
    OK(ivy_rwlock_free(s.l));
    CHECK_EQ(ivy_rwlock_rdlock(s.l, 0), IVY_EBADF);
    CHECK_EQ(ivy_rwlock_new(NULL), IVY_EINVAL);
    return NULL;
}

static void test_rwlock(void) { h_run(2, rwlock_main, NULL); }

/* ---- semaphore -------------------------------------------------------------------------------- */

struct limited {
    ivy_semaphore_t s;
    int inside, max_inside;
};

static void *limited_worker(void *arg) {
    struct limited *l = arg;
    int n;
    OK(ivy_semaphore_acquire(l->s, IVY_FOREVER));
    n = H_ATOMIC_ADD(&l->inside, 1);
    if (n > H_ATOMIC_LOAD(&l->max_inside)) H_ATOMIC_STORE(&l->max_inside, n);
    OK(ivy_time_sleep(2));
    H_ATOMIC_ADD(&l->inside, -1);
    OK(ivy_semaphore_release(l->s));
    return NULL;
}

static void *semaphore_main(void *arg) {
    enum { N = 30 };
    struct limited l;
    ivy_task_t t[N];
    size_t avail = 0;
    int i;
    (void)arg;
    memset(&l, 0, sizeof l);
    OK(ivy_semaphore_new(3, &l.s));
    for (i = 0; i < N; i++) OK(ivy_task_spawn(limited_worker, &l, NULL, &t[i]));
    OK(ivy_task_join_all(t, N, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(l.max_inside, 3);
    OK(ivy_semaphore_available(l.s, &avail));
    CHECK_EQ(avail, 3);
    OK(ivy_semaphore_acquire(l.s, 0));
    OK(ivy_semaphore_acquire(l.s, 0));
    OK(ivy_semaphore_acquire(l.s, 0));
    CHECK_EQ(ivy_semaphore_acquire(l.s, 0), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_semaphore_acquire(l.s, ivy_time_now() + 10), IVY_ETIMEDOUT);
    OK(ivy_semaphore_release(l.s));
    OK(ivy_semaphore_available(l.s, &avail));
    CHECK_EQ(avail, 1);
    CHECK_EQ(ivy_semaphore_available(l.s, NULL), IVY_EINVAL);
    OK(ivy_semaphore_free(l.s));
    CHECK_EQ(ivy_semaphore_acquire(l.s, 0), IVY_EBADF);
    CHECK_EQ(ivy_semaphore_release(l.s), IVY_EBADF);
    CHECK_EQ(ivy_semaphore_new(1, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_semaphore_new((size_t)-1, &l.s), IVY_EINVAL);
    return NULL;
}

static void test_semaphore(void) { h_run(2, semaphore_main, NULL); }

/* ---- event ------------------------------------------------------------------------------------- */

static void *event_waiter(void *arg) {
    ivy_event_t e = *(ivy_event_t *)arg;
    return (void *)(intptr_t)ivy_event_wait(e, ivy_time_now() + 5000);
}

static void *event_main(void *arg) {
    enum { N = 10 };
    ivy_event_t e;
    ivy_task_t t[N];
    void *results[N];
    int set = -1, i;
    (void)arg;
    OK(ivy_event_new(&e));
    OK(ivy_event_is_set(e, &set));
    CHECK_EQ(set, 0);
    CHECK_EQ(ivy_event_wait(e, ivy_time_now() + 10), IVY_ETIMEDOUT);
    for (i = 0; i < N; i++) OK(ivy_task_spawn(event_waiter, &e, NULL, &t[i]));
    OK(ivy_time_sleep(10));
    OK(ivy_event_set(e));
    OK(ivy_task_join_all(t, N, results, NULL, IVY_FOREVER));
    for (i = 0; i < N; i++) CHECK_EQ((intptr_t)results[i], 0);
    OK(ivy_event_wait(e, 0)); /* set: returns at once */
    OK(ivy_event_clear(e));
    CHECK_EQ(ivy_event_wait(e, 0), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_event_is_set(e, NULL), IVY_EINVAL);
    OK(ivy_event_free(e));
    CHECK_EQ(ivy_event_set(e), IVY_EBADF);
    CHECK_EQ(ivy_event_wait(e, 0), IVY_EBADF);
    CHECK_EQ(ivy_event_free(e), IVY_EBADF);
    return NULL;
}

static void test_event(void) { h_run(2, event_main, NULL); }

/* ---- condition ------------------------------------------------------------------------------------ */

struct box {
    ivy_mutex_t m;
    ivy_cond_t c;
    int ready;
    int consumed;
};

static void *cond_consumer(void *arg) {
    struct box *b = arg;
    OK(ivy_mutex_lock(b->m, IVY_FOREVER));
    while (!b->ready) OK(ivy_cond_wait(b->c, b->m, IVY_FOREVER));
    b->consumed++;
    OK(ivy_mutex_unlock(b->m));
    return NULL;
}

static void *cond_main(void *arg) {
    enum { N = 8 };
    struct box b;
    ivy_task_t t[N];
    int i;
    (void)arg;
    memset(&b, 0, sizeof b);
    OK(ivy_mutex_new(&b.m));
    OK(ivy_cond_new(&b.c));
    for (i = 0; i < N; i++) OK(ivy_task_spawn(cond_consumer, &b, NULL, &t[i]));
    OK(ivy_time_sleep(10));
    OK(ivy_mutex_lock(b.m, IVY_FOREVER));
    b.ready = 1;
    OK(ivy_cond_notify_all(b.c));
    OK(ivy_mutex_unlock(b.m));
    OK(ivy_task_join_all(t, N, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(b.consumed, N);

    /* a timed wait re-takes the mutex even when it times out */
    OK(ivy_mutex_lock(b.m, IVY_FOREVER));
    CHECK_EQ(ivy_cond_wait(b.c, b.m, ivy_time_now() + 10), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_mutex_lock(b.m, 0), IVY_EDEADLK); /* still ours */
    OK(ivy_cond_notify_one(b.c));
    OK(ivy_mutex_unlock(b.m));
    CHECK_EQ(ivy_cond_wait(b.c, b.m, IVY_FOREVER), IVY_EPERM); /* not holding the mutex */
    OK(ivy_cond_free(b.c));
    CHECK_EQ(ivy_cond_notify_one(b.c), IVY_EBADF);
    CHECK_EQ(ivy_cond_notify_all(b.c), IVY_EBADF);
    CHECK_EQ(ivy_cond_free(b.c), IVY_EBADF);
    CHECK_EQ(ivy_cond_new(NULL), IVY_EINVAL);
    OK(ivy_mutex_free(b.m));
    return NULL;
}

static void test_condition(void) { h_run(2, cond_main, NULL); }

/* ---- wait group and barrier ------------------------------------------------------------------------ */

struct wg_job {
    ivy_waitgroup_t wg;
    int done;
};

static void *wg_worker(void *arg) {
    struct wg_job *j = arg;
    OK(ivy_time_sleep(2));
    H_ATOMIC_ADD(&j->done, 1);
    OK(ivy_waitgroup_done(j->wg));
    return NULL;
}

struct barrier_party {
    ivy_barrier_t b;
    int arrived, passed_early, leaders;
};

static void *barrier_party(void *arg) {
    struct barrier_party *p = arg;
    int leader = -1, round;
    for (round = 0; round < 3; round++) { /* the barrier resets after each trip */
        H_ATOMIC_ADD(&p->arrived, 1);
        OK(ivy_barrier_wait(p->b, &leader, ivy_time_now() + 5000));
        if (H_ATOMIC_LOAD(&p->arrived) < 4 * (round + 1)) H_ATOMIC_ADD(&p->passed_early, 1);
        if (leader) H_ATOMIC_ADD(&p->leaders, 1);
    }
    return NULL;
}

static void *wg_barrier_main(void *arg) {
    enum { N = 16 };
    struct wg_job j;
    struct barrier_party p;
    ivy_task_t t[N];
    int i;
    (void)arg;
    j.done = 0;
    OK(ivy_waitgroup_new(&j.wg));
    OK(ivy_waitgroup_wait(j.wg, 0)); /* count 0: returns at once */
    OK(ivy_waitgroup_add(j.wg, N));
    for (i = 0; i < N; i++) OK(ivy_task_spawn(wg_worker, &j, NULL, &t[i]));
    CHECK_EQ(ivy_waitgroup_wait(j.wg, 0), IVY_ETIMEDOUT);
    OK(ivy_waitgroup_wait(j.wg, ivy_time_now() + 5000));
    CHECK_EQ(H_ATOMIC_LOAD(&j.done), N);
    OK(ivy_task_join_all(t, N, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(ivy_waitgroup_done(j.wg), IVY_EINVAL); /* already 0 */
    CHECK_EQ(ivy_waitgroup_add(j.wg, (size_t)-1), 0);
    CHECK_EQ(ivy_waitgroup_add(j.wg, 1), IVY_EINVAL); /* would overflow */
    OK(ivy_waitgroup_free(j.wg));
    CHECK_EQ(ivy_waitgroup_add(j.wg, 1), IVY_EBADF);
    CHECK_EQ(ivy_waitgroup_wait(j.wg, 0), IVY_EBADF);
    CHECK_EQ(ivy_waitgroup_free(j.wg), IVY_EBADF);
    CHECK_EQ(ivy_waitgroup_new(NULL), IVY_EINVAL);

    memset(&p, 0, sizeof p);
    OK(ivy_barrier_new(4, &p.b));
    for (i = 0; i < 4; i++) OK(ivy_task_spawn(barrier_party, &p, NULL, &t[i]));
    OK(ivy_task_join_all(t, 4, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(p.passed_early, 0);
    CHECK_EQ(p.leaders, 3); /* one per trip */
    /* alone at a barrier for 2: times out, and the arrival is withdrawn */
    OK(ivy_barrier_free(p.b));
    OK(ivy_barrier_new(2, &p.b));
    CHECK_EQ(ivy_barrier_wait(p.b, NULL, ivy_time_now() + 10), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_barrier_wait(p.b, NULL, 0), IVY_ETIMEDOUT); /* still needs two */
    OK(ivy_barrier_free(p.b));
    CHECK_EQ(ivy_barrier_wait(p.b, NULL, 0), IVY_EBADF);
    CHECK_EQ(ivy_barrier_free(p.b), IVY_EBADF);
    CHECK_EQ(ivy_barrier_new(0, &p.b), IVY_EINVAL);
    CHECK_EQ(ivy_barrier_new(2, NULL), IVY_EINVAL);
    return NULL;
}

static void test_waitgroup_barrier(void) { h_run(2, wg_barrier_main, NULL); }

/* ---- queue ------------------------------------------------------------------------------------------ */

struct pc {
    ivy_queue_t q;
    long sum;
    int items;
};

static void *producer(void *arg) {
    struct pc *p = arg;
    uintptr_t i;
    for (i = 1; i <= (uintptr_t)p->items; i++) OK(ivy_queue_put(p->q, (void *)i, IVY_FOREVER));
    return NULL;
}

static void *consumer(void *arg) {
    struct pc *p = arg;
    long sum = 0;
    void *item;
    int rc;
    while ((rc = ivy_queue_get(p->q, &item, IVY_FOREVER)) == 0) {
        sum += (long)(uintptr_t)item;
        OK(ivy_queue_task_done(p->q));
    }
    CHECK_EQ(rc, IVY_ECLOSED);
    return (void *)sum;
}

static void *queue_main(void *arg) {
    enum { P = 4, C = 3 };
    struct pc p;
    ivy_task_t prod[P], cons[C];
    void *sums[C];
    long total = 0;
    size_t len = 99;
    int i;
    (void)arg;
    p.items = 500;
    OK(ivy_queue_new(8, &p.q)); /* bounded: producers wait for room */
    for (i = 0; i < C; i++) OK(ivy_task_spawn(consumer, &p, NULL, &cons[i]));
    for (i = 0; i < P; i++) OK(ivy_task_spawn(producer, &p, NULL, &prod[i]));
    OK(ivy_task_join_all(prod, P, NULL, NULL, IVY_FOREVER));
    OK(ivy_queue_join(p.q, IVY_FOREVER)); /* every item was marked done */
    OK(ivy_queue_len(p.q, &len));
    CHECK_EQ(len, 0);
    OK(ivy_queue_close(p.q));
    OK(ivy_task_join_all(cons, C, sums, NULL, IVY_FOREVER));
    for (i = 0; i < C; i++) total += (long)(intptr_t)sums[i];
    CHECK_EQ(total, (long)P * 500 * 501 / 2);
    CHECK_EQ(ivy_queue_put(p.q, NULL, IVY_FOREVER), IVY_ECLOSED);
    CHECK_EQ(ivy_queue_task_done(p.q), IVY_EINVAL); /* more done than put */
    OK(ivy_queue_free(p.q));
    CHECK_EQ(ivy_queue_put(p.q, NULL, 0), IVY_EBADF);
    return NULL;
}

static void test_queue_producer_consumer(void) {
    int i;
    for (i = 0; i < 5; i++) h_run(2, queue_main, NULL);
}

static void *queue_edges_main(void *arg) {
    ivy_queue_t q, u;
    void *item = (void *)1;
    int64_t t0;
    int i;
    (void)arg;
    CHECK_EQ(ivy_queue_new(0, &q), IVY_EINVAL);
    CHECK_EQ(ivy_queue_new(4, NULL), IVY_EINVAL);
    OK(ivy_queue_new(2, &q));
    OK(ivy_queue_put(q, NULL, 0)); /* NULL is an item like any other */
    OK(ivy_queue_put(q, (void *)2, 0));
    t0 = ivy_time_now();
    CHECK_EQ(ivy_queue_put(q, (void *)3, ivy_time_now() + 15), IVY_ETIMEDOUT); /* full */
    CHECK(ivy_time_now() - t0 >= 15);
    OK(ivy_queue_get(q, &item, 0));
    CHECK(item == NULL);
    OK(ivy_queue_get(q, &item, 0));
    CHECK_EQ((uintptr_t)item, 2);
    CHECK_EQ(ivy_queue_get(q, &item, 0), IVY_ETIMEDOUT); /* empty */
    CHECK_EQ(ivy_queue_get(q, NULL, 0), IVY_EINVAL);
    CHECK_EQ(ivy_queue_len(q, NULL), IVY_EINVAL);
    /* close: the rest drains, then ECLOSED */
    OK(ivy_queue_put(q, (void *)7, 0));
    OK(ivy_queue_close(q));
    OK(ivy_queue_close(q));
    OK(ivy_queue_get(q, &item, 0));
    CHECK_EQ((uintptr_t)item, 7);
    CHECK_EQ(ivy_queue_get(q, &item, IVY_FOREVER), IVY_ECLOSED);
    OK(ivy_queue_free(q));
    CHECK_EQ(ivy_queue_free(q), IVY_EBADF);
    CHECK_EQ(ivy_queue_get(q, &item, 0), IVY_EBADF);
    CHECK_EQ(ivy_queue_close(q), IVY_EBADF);
    CHECK_EQ(ivy_queue_join(q, 0), IVY_EBADF);
    /* unbounded */
    OK(ivy_queue_new(IVY_UNBOUNDED, &u));
    for (i = 0; i < 10000; i++) OK(ivy_queue_put(u, (void *)(uintptr_t)i, 0));
    for (i = 0; i < 10000; i++) {
        OK(ivy_queue_get(u, &item, 0));
        CHECK_EQ((uintptr_t)item, (uintptr_t)i); /* FIFO */
    }
    CHECK_EQ(ivy_queue_join(u, ivy_time_now() + 5), IVY_ETIMEDOUT); /* none marked done */
    OK(ivy_queue_free(u));
    return NULL;
}

static void test_queue_edges(void) { h_run(1, queue_edges_main, NULL); }

static void *get_blocked(void *arg) {
    ivy_queue_t q = *(ivy_queue_t *)arg;
    void *item;
    return (void *)(intptr_t)ivy_queue_get(q, &item, IVY_FOREVER);
}

static void *queue_wakeups_main(void *arg) {
    ivy_queue_t q;
    ivy_task_t a, b;
    void *r = NULL;
    (void)arg;
    OK(ivy_queue_new(1, &q));
    OK(ivy_task_spawn(get_blocked, &q, NULL, &a));
    OK(ivy_task_spawn(get_blocked, &q, NULL, &b));
    OK(ivy_time_sleep(10));
    OK(ivy_task_cancel(a)); /* a cancelled getter gets ECANCELED and takes nothing */
    OK(ivy_task_join(a, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED);
    OK(ivy_queue_free(q)); /* free closes: b wakes with ECLOSED */
    OK(ivy_task_join(b, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECLOSED);
    return NULL;
}

static void test_queue_wakeups(void) { h_run(2, queue_wakeups_main, NULL); }

/* ---- select ---------------------------------------------------------------------------------------------- */

static void *put_later(void *arg) {
    ivy_queue_t q = *(ivy_queue_t *)arg;
    OK(ivy_time_sleep(10));
    OK(ivy_queue_put(q, (void *)77, IVY_FOREVER));
    return NULL;
}

static void *select_main(void *arg) {
    ivy_queue_t a, b, full;
    ivy_queue_select_op_t ops[3];
    ivy_task_t t;
    size_t fired = 99;
    void *item;
    (void)arg;
    OK(ivy_queue_new(4, &a));
    OK(ivy_queue_new(4, &b));
    OK(ivy_queue_new(1, &full));
    OK(ivy_queue_put(full, NULL, 0));
    memset(ops, 0, sizeof ops);
    ops[0].queue = a;
    ops[0].kind = IVY_SELECT_GET;
    ops[1].queue = b;
    ops[1].kind = IVY_SELECT_GET;
    ops[2].queue = full;
    ops[2].kind = IVY_SELECT_PUT;
    ops[2].item = (void *)5;
    /* nothing ready: times out, nothing happens */
    CHECK_EQ(ivy_queue_select(ops, 3, &fired, ivy_time_now() + 10), IVY_ETIMEDOUT);
    CHECK_EQ(fired, 99);
    /* b gets an item later: the GET on b fires */
    OK(ivy_task_spawn(put_later, &b, NULL, &t));
    OK(ivy_queue_select(ops, 3, &fired, IVY_FOREVER));
    CHECK_EQ(fired, 1);
    CHECK_EQ((uintptr_t)ops[1].item, 77);
    CHECK_EQ(ops[1].result, 0);
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    /* make room in `full`: the PUT fires */
    OK(ivy_queue_get(full, &item, 0));
    OK(ivy_queue_select(ops, 3, &fired, IVY_FOREVER));
    CHECK_EQ(fired, 2);
    OK(ivy_queue_get(full, &item, 0));
    CHECK_EQ((uintptr_t)item, 5);
    /* a closed queue makes its arm fire with IVY_ECLOSED */
    OK(ivy_queue_close(a));
    OK(ivy_queue_select(ops, 2, &fired, IVY_FOREVER));
    CHECK_EQ(fired, 0);
    CHECK_EQ(ops[0].result, IVY_ECLOSED);
    /* errors */
    CHECK_EQ(ivy_queue_select(NULL, 1, &fired, 0), IVY_EINVAL);
    CHECK_EQ(ivy_queue_select(ops, 0, &fired, 0), IVY_EINVAL);
    CHECK_EQ(ivy_queue_select(ops, 1, NULL, 0), IVY_EINVAL);
    ops[1].kind = 42;
    CHECK_EQ(ivy_queue_select(ops + 1, 1, &fired, 0), IVY_EINVAL);
    OK(ivy_queue_free(a));
    CHECK_EQ(ivy_queue_select(ops, 1, &fired, 0), IVY_EBADF);
    OK(ivy_queue_free(b));
    OK(ivy_queue_free(full));
    return NULL;
}

static void test_select(void) { h_run(2, select_main, NULL); }

int main(void) {
    RUN(test_mutex);
    RUN(test_mutex_cancel);
    RUN(test_mutex_shared_with_threads);
    RUN(test_rwlock);
    RUN(test_semaphore);
    RUN(test_event);
    RUN(test_condition);
    RUN(test_waitgroup_barrier);
    RUN(test_queue_producer_consumer);
    RUN(test_queue_edges);
    RUN(test_queue_wakeups);
    RUN(test_select);
    H_REPORT();
}
