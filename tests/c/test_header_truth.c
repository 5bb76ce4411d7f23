/* What include/ivy.h promises, where it used to say otherwise: the mutex's Go-style
 * fairness (barging, not strict hand-off), ivy_generator_next with a NULL value,
 * the semaphore's and the wait group's bounds. */
#include "harness.h"

/* ---- mutex: an unlock wakes the first waiter, it does not hand the lock over ------------- */

struct barge {
    ivy_mutex_t m;
    int got; /* the waiter got the lock */
};

static void *barge_waiter(void *arg) {
    struct barge *b = arg;
    OK(ivy_mutex_lock(b->m, IVY_FOREVER));
    H_ATOMIC_STORE(&b->got, 1);
    OK(ivy_mutex_unlock(b->m));
    return NULL;
}

static void *barge_main(void *arg) {
    struct barge b;
    ivy_task_t t;
    int it;
    (void)arg;
    for (it = 0; it < 100; it++) {
        memset(&b, 0, sizeof b);
        OK(ivy_mutex_new(&b.m));
        OK(ivy_mutex_lock(b.m, IVY_FOREVER));
        OK(ivy_task_spawn(barge_waiter, &b, NULL, &t));
        /* One worker: the waiter runs until it parks in ivy_mutex_lock, then we resume. */
        OK(ivy_task_yield());
        CHECK_EQ(H_ATOMIC_LOAD(&b.got), 0);
        OK(ivy_mutex_unlock(b.m));
        /* The lock was released, not handed to the waiter: a running task takes it
         * (with strict FIFO hand-off this try would time out). */
        OK(ivy_mutex_lock(b.m, 0));
        CHECK_EQ(H_ATOMIC_LOAD(&b.got), 0);
        OK(ivy_mutex_unlock(b.m));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(b.got, 1); /* and the woken waiter still gets it */
        OK(ivy_mutex_free(b.m));
    }
    return NULL;
}

static void test_mutex_unlock_releases_and_wakes(void) { h_run(1, barge_main, NULL); }

/* ---- generator: a NULL value skips the value ---------------------------------------------- */

static int values[3] = {10, 20, 30};

static void count_body(ivy_yielder_t y, void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 3; i++)
        if (ivy_generator_yield(y, &values[i]) != 0) return;
}

static void *generator_main(void *arg) {
    ivy_generator_t g;
    void *v = NULL;
    (void)arg;
    OK(ivy_generator_new(count_body, NULL, 0, &g));
    OK(ivy_generator_next(g, NULL)); /* 10, skipped */
    OK(ivy_generator_next(g, &v));
    CHECK(v == &values[1]);
    OK(ivy_generator_next(g, NULL)); /* 30, skipped */
    v = NULL;
    CHECK_EQ(ivy_generator_next(g, NULL), IVY_ECLOSED);
    CHECK_EQ(ivy_generator_next(g, &v), IVY_ECLOSED);
    CHECK(v == NULL); /* untouched when nothing was yielded */
    OK(ivy_generator_free(g));
    CHECK_EQ(ivy_generator_next(g, NULL), IVY_EBADF);
    return NULL;
}

static void test_generator_next_null_value(void) { h_run(1, generator_main, NULL); }

/* ---- bounds: errors instead of a silent no-op or a panic ---------------------------------- */

static void test_semaphore_release_at_maximum(void) {
    ivy_semaphore_t s;
    size_t max = (~(size_t)0) >> 2, n = 0;
    CHECK_EQ(ivy_semaphore_new(max + 1, &s), IVY_EINVAL);
    OK(ivy_semaphore_new(max, &s));
    CHECK_EQ(ivy_semaphore_release(s), IVY_EINVAL); /* not silently dropped */
    OK(ivy_semaphore_available(s, &n));
    CHECK_EQ(n == max, 1);
    OK(ivy_semaphore_acquire(s, 0));
    OK(ivy_semaphore_release(s)); /* back at the maximum */
    OK(ivy_semaphore_available(s, &n));
    CHECK_EQ(n == max, 1);
    OK(ivy_semaphore_free(s));
}

static void test_waitgroup_add_overflow(void) {
    ivy_waitgroup_t wg;
    OK(ivy_waitgroup_new(&wg));
    OK(ivy_waitgroup_add(wg, ~(size_t)0));
    CHECK_EQ(ivy_waitgroup_add(wg, 1), IVY_EINVAL); /* nothing changed */
    CHECK_EQ(ivy_waitgroup_wait(wg, 0), IVY_ETIMEDOUT);
    OK(ivy_waitgroup_free(wg));
}

int main(void) {
    RUN(test_mutex_unlock_releases_and_wakes);
    RUN(test_generator_next_null_value);
    RUN(test_semaphore_release_at_maximum);
    RUN(test_waitgroup_add_overflow);
    H_REPORT();
}
