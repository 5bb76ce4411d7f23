/* A passed deadline is a non-blocking try, for every blocking call: with deadline 0
 * and with one in the past, what can be done at once is done, and what cannot
 * returns IVY_ETIMEDOUT without waiting.
 *
 * Every case runs in a task and on a plain thread. In the task the runtime has ONE
 * worker and a sibling task sits in its queue during the calls: had any call parked
 * (suspended the calling task, if only until an already expired timer), the sibling
 * would have run. So "sibling did not run" proves "did not park". On the plain
 * thread the calls must return at once (a generous bound). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "harness.h"

static void nap_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- a plain thread holding locks, so that lock attempts cannot succeed ------------------- */

struct holder {
    ivy_mutex_t m;  /* locked by the holder */
    ivy_rwlock_t w; /* write-locked by the holder */
    ivy_rwlock_t r; /* read-locked by the holder */
    int state;      /* 1: holding; set to 2 to release */
    pthread_t thread;
};

static void *holder_thread(void *arg) {
    struct holder *h = arg;
    OK(ivy_mutex_lock(h->m, IVY_FOREVER));
    OK(ivy_rwlock_wrlock(h->w, IVY_FOREVER));
    OK(ivy_rwlock_rdlock(h->r, IVY_FOREVER));
    H_ATOMIC_STORE(&h->state, 1);
    while (H_ATOMIC_LOAD(&h->state) != 2) nap_ms(1);
    OK(ivy_mutex_unlock(h->m));
    OK(ivy_rwlock_unlock(h->w));
    OK(ivy_rwlock_unlock(h->r));
    return NULL;
}

/* ---- the fixtures every case uses ------------------------------------------------------------ */

struct fixtures {
    struct holder h;
    ivy_event_t gate;          /* the blocked task waits for it */
    ivy_task_t blocked;        /* unfinished */
    ivy_task_t finished[3];    /* finished, not joined */
    int job_gate;              /* the blocked job waits for it */
    ivy_blocking_t job_blocked; /* unfinished */
    ivy_blocking_t job_quick;   /* finishes at once */
};

static int quick_value;

static void *finish_at_once(void *arg) { return arg; }

static void *wait_gate(void *arg) {
    struct fixtures *f = arg;
    OK(ivy_event_wait(f->gate, IVY_FOREVER));
    return NULL;
}

static void *job_wait_gate(void *arg) {
    struct fixtures *f = arg;
    while (!H_ATOMIC_LOAD(&f->job_gate)) nap_ms(1);
    return NULL;
}

static void setup(struct fixtures *f) {
    size_t index = 99;
    int i;
    memset(f, 0, sizeof *f);
    OK(ivy_mutex_new(&f->h.m));
    OK(ivy_rwlock_new(&f->h.w));
    OK(ivy_rwlock_new(&f->h.r));
    CHECK_EQ(pthread_create(&f->h.thread, NULL, holder_thread, &f->h), 0);
    while (H_ATOMIC_LOAD(&f->h.state) != 1) nap_ms(1);
    OK(ivy_event_new(&f->gate));
    OK(ivy_task_spawn(wait_gate, f, NULL, &f->blocked));
    for (i = 0; i < 3; i++) {
        OK(ivy_task_spawn(finish_at_once, &quick_value, NULL, &f->finished[i]));
        OK(ivy_task_wait_any(&f->finished[i], 1, &index, IVY_FOREVER));
        CHECK_EQ(index, 0);
    }
    OK(ivy_blocking_spawn(job_wait_gate, f, &f->job_blocked));
    OK(ivy_blocking_spawn(finish_at_once, &quick_value, &f->job_quick));
}

static void teardown(struct fixtures *f) {
    void *result = NULL;
    H_ATOMIC_STORE(&f->h.state, 2);
    CHECK_EQ(pthread_join(f->h.thread, NULL), 0);
    OK(ivy_event_set(f->gate));
    OK(ivy_task_join(f->blocked, NULL, IVY_FOREVER));
    H_ATOMIC_STORE(&f->job_gate, 1);
    OK(ivy_blocking_join(f->job_blocked, &result, IVY_FOREVER));
    OK(ivy_mutex_free(f->h.m));
    OK(ivy_rwlock_free(f->h.w));
    OK(ivy_rwlock_free(f->h.r));
    OK(ivy_event_free(f->gate));
}

/* ---- the cases ------------------------------------------------------------------------------- */

/* Runs every blocking call with the passed deadline `d`. */
static void cases(struct fixtures *f, int64_t d) {
    ivy_mutex_t m;
    ivy_rwlock_t l;
    ivy_semaphore_t s;
    ivy_event_t e;
    ivy_cond_t c;
    ivy_waitgroup_t wg;
    ivy_barrier_t b1, b2;
    ivy_queue_t q;
    ivy_queue_select_op_t op;
    ivy_task_t pair[2];
    void *item = NULL, *result = NULL;
    size_t index = 99, fired = 99;
    int leader = -1, codes[2] = {-1, -1}, rc;

    /* mutex */
    OK(ivy_mutex_new(&m));
    OK(ivy_mutex_lock(m, d)); /* free: taken */
    OK(ivy_mutex_unlock(m));
    CHECK_EQ(ivy_mutex_lock(f->h.m, d), IVY_ETIMEDOUT); /* held by the holder */

    /* rwlock */
    OK(ivy_rwlock_new(&l));
    OK(ivy_rwlock_wrlock(l, d));
    OK(ivy_rwlock_unlock(l));
    OK(ivy_rwlock_rdlock(f->h.r, d)); /* shared with the holder's read lock */
    OK(ivy_rwlock_unlock(f->h.r));
    CHECK_EQ(ivy_rwlock_wrlock(f->h.r, d), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_rwlock_rdlock(f->h.w, d), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_rwlock_wrlock(f->h.w, d), IVY_ETIMEDOUT);

    /* semaphore */
    OK(ivy_semaphore_new(1, &s));
    OK(ivy_semaphore_acquire(s, d));
    CHECK_EQ(ivy_semaphore_acquire(s, d), IVY_ETIMEDOUT);
    OK(ivy_semaphore_release(s));
    OK(ivy_semaphore_acquire(s, d));

    /* event */
    OK(ivy_event_new(&e));
    CHECK_EQ(ivy_event_wait(e, d), IVY_ETIMEDOUT);
    OK(ivy_event_set(e));
    OK(ivy_event_wait(e, d));

    /* cond: nothing to wait for can have come; the mutex is held again */
    OK(ivy_cond_new(&c));
    OK(ivy_mutex_lock(m, d));
    CHECK_EQ(ivy_cond_wait(c, m, d), IVY_ETIMEDOUT);
    OK(ivy_mutex_unlock(m));

    /* waitgroup */
    OK(ivy_waitgroup_new(&wg));
    OK(ivy_waitgroup_wait(wg, d));
    OK(ivy_waitgroup_add(wg, 1));
    CHECK_EQ(ivy_waitgroup_wait(wg, d), IVY_ETIMEDOUT);
    OK(ivy_waitgroup_done(wg));
    OK(ivy_waitgroup_wait(wg, d));

    /* barrier: the last party passes; an earlier one gives up and withdraws */
    OK(ivy_barrier_new(1, &b1));
    OK(ivy_barrier_wait(b1, &leader, d));
    CHECK_EQ(leader, 1);
    OK(ivy_barrier_new(2, &b2));
    CHECK_EQ(ivy_barrier_wait(b2, NULL, d), IVY_ETIMEDOUT);
    CHECK_EQ(ivy_barrier_wait(b2, NULL, d), IVY_ETIMEDOUT); /* not the 2nd party */

    /* queue put / get / join / select */
    OK(ivy_queue_new(1, &q));
    CHECK_EQ(ivy_queue_get(q, &item, d), IVY_ETIMEDOUT);
    OK(ivy_queue_join(q, d));
    memset(&op, 0, sizeof op);
    op.queue = q;
    op.kind = IVY_SELECT_GET;
    CHECK_EQ(ivy_queue_select(&op, 1, &fired, d), IVY_ETIMEDOUT);
    CHECK_EQ(fired, 99);
    OK(ivy_queue_put(q, &quick_value, d));
    CHECK_EQ(ivy_queue_put(q, NULL, d), IVY_ETIMEDOUT); /* full */
    CHECK_EQ(ivy_queue_join(q, d), IVY_ETIMEDOUT);      /* one unfinished */
    OK(ivy_queue_select(&op, 1, &fired, d));
    CHECK_EQ(fired, 0);
    CHECK_EQ(op.result, 0);
    CHECK(op.item == &quick_value);
    OK(ivy_queue_put(q, &quick_value, d));
    OK(ivy_queue_get(q, &item, d));
    CHECK(item == &quick_value);
    OK(ivy_queue_task_done(q));
    CHECK_EQ(ivy_queue_join(q, d), IVY_ETIMEDOUT);
    OK(ivy_queue_task_done(q));
    OK(ivy_queue_join(q, d));

    /* task join / wait_any / join_all */
    CHECK_EQ(ivy_task_join(f->blocked, NULL, d), IVY_ETIMEDOUT);
    OK(ivy_task_join(f->finished[0], &result, d));
    CHECK(result == &quick_value);
    pair[0] = f->blocked;
    pair[1] = f->finished[1];
    CHECK_EQ(ivy_task_wait_any(pair, 1, &index, d), IVY_ETIMEDOUT);
    OK(ivy_task_wait_any(pair, 2, &index, d));
    CHECK_EQ(index, 1);
    CHECK_EQ(ivy_task_join_all(pair, 2, NULL, codes, d), IVY_ETIMEDOUT);
    OK(ivy_task_join_all(&pair[1], 1, NULL, codes, d));
    CHECK_EQ(codes[0], 0);
    pair[0] = f->finished[2];
    OK(ivy_task_join_all(pair, 1, NULL, NULL, d));

    /* blocking join: the quick job is done once the pool says so; no wait either way */
    CHECK_EQ(ivy_blocking_join(f->job_blocked, NULL, d), IVY_ETIMEDOUT);
    while ((rc = ivy_blocking_join(f->job_quick, &result, d)) == IVY_ETIMEDOUT) nap_ms(1);
    CHECK_EQ(rc, 0);
    CHECK(result == &quick_value);

    /* sleep until a passed deadline: returns at once */
    OK(ivy_time_sleep_until(d));

    OK(ivy_mutex_free(m));
    OK(ivy_rwlock_free(l));
    OK(ivy_semaphore_free(s));
    OK(ivy_event_free(e));
    OK(ivy_cond_free(c));
    OK(ivy_waitgroup_free(wg));
    OK(ivy_barrier_free(b1));
    OK(ivy_barrier_free(b2));
    OK(ivy_queue_free(q));
}

/* A deadline already passed, other than 0 (the clock is started in main). */
static int64_t past(void) {
    int64_t now = ivy_time_now();
    return now > 1000 ? now - 1000 : 1;
}

static int sibling_ran;

static void *sibling(void *arg) {
    (void)arg;
    H_ATOMIC_STORE(&sibling_ran, 1);
    return NULL;
}

/* In a task, on the only worker, with a sibling queued: no call may park. */
static void in_task(int64_t d) {
    struct fixtures f;
    ivy_task_t s;
    setup(&f);
    H_ATOMIC_STORE(&sibling_ran, 0);
    OK(ivy_task_spawn(sibling, NULL, NULL, &s));
    cases(&f, d);
    CHECK_EQ(H_ATOMIC_LOAD(&sibling_ran), 0); /* nothing above parked */
    OK(ivy_task_join(s, NULL, IVY_FOREVER));
    CHECK_EQ(H_ATOMIC_LOAD(&sibling_ran), 1);
    teardown(&f);
}

struct on_thread {
    struct fixtures *f;
    int64_t d;
    int64_t took;
};

static void *thread_cases(void *arg) {
    struct on_thread *t = arg;
    int64_t start = ivy_time_now();
    cases(t->f, t->d);
    t->took = ivy_time_now() - start;
    return NULL;
}

/* On a plain thread (the fixtures made by a task): every call returns at once. */
static void on_thread(int64_t d) {
    struct fixtures f;
    struct on_thread t;
    pthread_t th;
    setup(&f);
    t.f = &f;
    t.d = d;
    t.took = -1;
    CHECK_EQ(pthread_create(&th, NULL, thread_cases, &t), 0);
    CHECK_EQ(pthread_join(th, NULL), 0); /* blocks the worker: nothing to run meanwhile */
    CHECK(t.took >= 0 && t.took < 2000);  /* no call waited (generous: valgrind) */
    teardown(&f);
}

static void *deadline_main(void *arg) {
    int it;
    (void)arg;
    for (it = 0; it < 10; it++) {
        in_task(0);
        in_task(past());
        on_thread(0);
        on_thread(past());
    }
    return NULL;
}

static void test_passed_deadline_is_a_try(void) { h_run(1, deadline_main, NULL); }

/* The same on a runtime with several workers (the waits take other paths when
 * the holder runs elsewhere); "did not park" is not observable there, the
 * outcomes are. */
static void *deadline_main_2(void *arg) {
    (void)arg;
    on_thread(0);
    on_thread(past());
    return NULL;
}

static void test_passed_deadline_two_workers(void) { h_run(2, deadline_main_2, NULL); }

int main(void) {
    /* Start the clock, and let it pass 1 ms so that deadline 1 is in the past. */
    (void)ivy_time_now();
    while (ivy_time_now() < 2) nap_ms(1);
    RUN(test_passed_deadline_is_a_try);
    RUN(test_passed_deadline_two_workers);
    H_REPORT();
}
