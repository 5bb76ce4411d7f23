/* Sets of tasks (ivy_task_wait_any, ivy_task_join_all) and generators. */
#include "harness.h"

static void *sleep_then_return(void *arg) {
    int rc = ivy_time_sleep((int64_t)(intptr_t)arg);
    return (void *)(intptr_t)(rc == 0 ? (intptr_t)arg : rc);
}

/* ---- wait_any -------------------------------------------------------------------------- */

static void *wait_any_main(void *arg) {
    ivy_task_t t[3];
    size_t idx = 99;
    void *r;
    int64_t t0;
    (void)arg;
    OK(ivy_task_spawn(sleep_then_return, (void *)300, NULL, &t[0]));
    OK(ivy_task_spawn(sleep_then_return, (void *)20, NULL, &t[1]));
    OK(ivy_task_spawn(sleep_then_return, (void *)200, NULL, &t[2]));
    t0 = ivy_time_now();
    CHECK_EQ(ivy_task_wait_any(t, 3, &idx, ivy_time_now() + 5), IVY_ETIMEDOUT);
    CHECK_EQ(idx, 99);
    OK(ivy_task_wait_any(t, 3, &idx, IVY_FOREVER));
    CHECK_EQ(idx, 1); /* the shortest sleeper finishes first */
    CHECK(ivy_time_now() - t0 >= 20);
    /* nothing was joined: every handle is valid; the finished one joins at once */
    OK(ivy_task_join(t[1], &r, 0));
    CHECK_EQ((intptr_t)r, 20);
    /* errors */
    CHECK_EQ(ivy_task_wait_any(NULL, 3, &idx, IVY_FOREVER), IVY_EINVAL);
    CHECK_EQ(ivy_task_wait_any(t, 0, &idx, IVY_FOREVER), IVY_EINVAL);
    CHECK_EQ(ivy_task_wait_any(t, 3, NULL, IVY_FOREVER), IVY_EINVAL);
    CHECK_EQ(ivy_task_wait_any(t, 3, &idx, IVY_FOREVER), IVY_EBADF); /* t[1] was joined */
    {
        ivy_task_t dup[2];
        dup[0] = t[0];
        dup[1] = t[0];
        CHECK_EQ(ivy_task_wait_any(dup, 2, &idx, IVY_FOREVER), IVY_EINVAL);
    }
    OK(ivy_task_cancel(t[0]));
    OK(ivy_task_cancel(t[2]));
    OK(ivy_task_join(t[0], &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED);
    OK(ivy_task_join(t[2], &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED);
    return NULL;
}

static void test_wait_any(void) { h_run(2, wait_any_main, NULL); }

/* ---- join_all --------------------------------------------------------------------------- */

static void *join_all_main(void *arg) {
    enum { N = 50 };
    ivy_task_t t[N];
    void *results[N];
    int codes[N];
    int i;
    (void)arg;
    for (i = 0; i < N; i++) OK(ivy_task_spawn(sleep_then_return, (void *)(intptr_t)(N - i), NULL, &t[i]));
    /* a deadline before they finish: nothing freed, all still running */
    CHECK_EQ(ivy_task_join_all(t, N, results, codes, ivy_time_now() + 2), IVY_ETIMEDOUT);
    OK(ivy_task_join_all(t, N, results, codes, IVY_FOREVER));
    for (i = 0; i < N; i++) {
        CHECK_EQ((intptr_t)results[i], N - i); /* in the order of the array */
        CHECK_EQ(codes[i], 0);
    }
    /* every handle was freed */
    CHECK_EQ(ivy_task_join(t[0], NULL, IVY_FOREVER), IVY_EBADF);
    CHECK_EQ(ivy_task_join_all(t, N, results, codes, IVY_FOREVER), IVY_EBADF);

    /* results and codes are optional */
    OK(ivy_task_spawn(sleep_then_return, (void *)1, NULL, &t[0]));
    OK(ivy_task_join_all(t, 1, NULL, NULL, IVY_FOREVER));
    CHECK_EQ(ivy_task_join_all(NULL, 1, NULL, NULL, IVY_FOREVER), IVY_EINVAL);
    CHECK_EQ(ivy_task_join_all(t, 0, NULL, NULL, IVY_FOREVER), IVY_EINVAL);
    return NULL;
}

static void *join_all_cancelled_main(void *arg) {
    ivy_task_t t[2];
    void *results[2];
    int codes[2];
    (void)arg;
    /* One worker, and no blocking call between spawn and cancel: t[1] cannot
     * have started, so it never runs. Its code, and the first error, returned. */
    OK(ivy_task_spawn(sleep_then_return, (void *)1, NULL, &t[0]));
    OK(ivy_task_spawn(sleep_then_return, (void *)2, NULL, &t[1]));
    OK(ivy_task_cancel(t[1]));
    CHECK_EQ(ivy_task_join_all(t, 2, results, codes, IVY_FOREVER), IVY_ECANCELED);
    CHECK_EQ(codes[0], 0);
    CHECK_EQ((intptr_t)results[0], 1);
    CHECK_EQ(codes[1], IVY_ECANCELED);
    CHECK(results[1] == NULL);
    CHECK_EQ(ivy_task_join(t[0], NULL, IVY_FOREVER), IVY_EBADF);
    return NULL;
}

static void test_join_all(void) {
    int i;
    for (i = 0; i < 5; i++) h_run(2, join_all_main, NULL);
    h_run(1, join_all_cancelled_main, NULL);
}

/* ---- generators ----------------------------------------------------------------------------- */

static void count_to(ivy_yielder_t y, void *arg) {
    uintptr_t n = (uintptr_t)arg, i;
    for (i = 1; i <= n; i++) {
        if (i % 3 == 0) OK(ivy_time_sleep(1)); /* a body may block: it parks the iterating task */
        if (ivy_generator_yield(y, (void *)i) != 0) return;
    }
}

struct close_probe {
    int yield_rc;
    int cleaned_up;
};

static void endless(ivy_yielder_t y, void *arg) {
    struct close_probe *p = arg;
    uintptr_t i = 0;
    for (;;) {
        int rc = ivy_generator_yield(y, (void *)++i);
        if (rc != 0) {
            p->yield_rc = rc;
            break;
        }
    }
    p->cleaned_up = 1;
    /* every further yield fails at once too */
    CHECK_EQ(ivy_generator_yield(y, NULL), IVY_ECLOSED);
}

static void yield_other(ivy_yielder_t y, void *arg) {
    ivy_yielder_t outer = *(ivy_yielder_t *)arg;
    (void)y;
    /* a nested generator may not suspend the outer one */
    CHECK_EQ(ivy_generator_yield(outer, NULL), IVY_EPERM);
}

static void nests(ivy_yielder_t y, void *arg) {
    ivy_generator_t inner;
    void *v;
    (void)arg;
    OK(ivy_generator_new(yield_other, &y, 0, &inner));
    CHECK_EQ(ivy_generator_next(inner, &v), IVY_ECLOSED);
    OK(ivy_generator_free(inner));
    OK(ivy_generator_yield(y, (void *)5));
}

static void *generator_main(void *arg) {
    ivy_generator_t g, zero;
    ivy_yielder_t ybad;
    struct close_probe probe;
    void *v = NULL;
    uintptr_t sum = 0, count = 0;
    (void)arg;
    memset(&zero, 0, sizeof zero);
    OK(ivy_generator_new(count_to, (void *)10, 0, &g));
    while (ivy_generator_next(g, &v) == 0) {
        count++;
        sum += (uintptr_t)v;
        CHECK_EQ((uintptr_t)v, count); /* values in order */
    }
    CHECK_EQ(count, 10);
    CHECK_EQ(sum, 55);
    CHECK_EQ(ivy_generator_next(g, &v), IVY_ECLOSED); /* stays exhausted */
    CHECK_EQ(ivy_generator_next(g, NULL), IVY_ECLOSED); /* NULL skips the value */
    OK(ivy_generator_free(g));
    CHECK_EQ(ivy_generator_next(g, &v), IVY_EBADF);
    CHECK_EQ(ivy_generator_free(g), IVY_EBADF);
    CHECK_EQ(ivy_generator_free(zero), IVY_EBADF);

    /* freeing an unfinished generator closes it: the body sees IVY_ECLOSED */
    memset(&probe, 0, sizeof probe);
    OK(ivy_generator_new(endless, &probe, 64 * 1024, &g));
    OK(ivy_generator_next(g, &v));
    OK(ivy_generator_next(g, &v));
    CHECK_EQ((uintptr_t)v, 2);
    OK(ivy_generator_free(g));
    CHECK_EQ(probe.yield_rc, IVY_ECLOSED);
    CHECK_EQ(probe.cleaned_up, 1);

    /* never started: free still runs the body, whose first yield fails */
    memset(&probe, 0, sizeof probe);
    OK(ivy_generator_new(endless, &probe, 0, &g));
    OK(ivy_generator_free(g));
    CHECK_EQ(probe.yield_rc, IVY_ECLOSED);

    /* nested generators */
    OK(ivy_generator_new(nests, NULL, 0, &g));
    OK(ivy_generator_next(g, &v));
    CHECK_EQ((uintptr_t)v, 5);
    CHECK_EQ(ivy_generator_next(g, &v), IVY_ECLOSED);
    OK(ivy_generator_free(g));

    /* yield outside any body */
    ybad.id = 12345;
    CHECK_EQ(ivy_generator_yield(ybad, NULL), IVY_EBADF);
    /* errors of new */
    CHECK_EQ(ivy_generator_new(NULL, NULL, 0, &g), IVY_EINVAL);
    CHECK_EQ(ivy_generator_new(count_to, NULL, 0, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_generator_new(count_to, NULL, (size_t)1 << 31, &g), IVY_EINVAL);
    return NULL;
}

static void test_generators(void) { h_run(2, generator_main, NULL); }

struct foreign_gen {
    ivy_generator_t g;
    int next_rc, free_rc;
};

static void *use_foreign(void *arg) {
    struct foreign_gen *f = arg;
    void *v;
    f->next_rc = ivy_generator_next(f->g, &v);
    f->free_rc = ivy_generator_free(f->g);
    return NULL;
}

static void *generator_owner_main(void *arg) {
    struct foreign_gen f;
    ivy_task_t t;
    void *v;
    (void)arg;
    OK(ivy_generator_new(count_to, (void *)3, 0, &f.g));
    OK(ivy_task_spawn(use_foreign, &f, NULL, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK_EQ(f.next_rc, IVY_EPERM); /* a generator stays with the task that made it */
    CHECK_EQ(f.free_rc, IVY_EPERM);
    OK(ivy_generator_next(f.g, &v));
    CHECK_EQ((uintptr_t)v, 1);
    OK(ivy_generator_free(f.g));
    return NULL;
}

static void test_generator_owner(void) { h_run(2, generator_owner_main, NULL); }

static void test_generator_on_plain_thread(void) {
    ivy_generator_t g;
    void *v;
    uintptr_t sum = 0;
    OK(ivy_generator_new(count_to, (void *)4, 0, &g));
    while (ivy_generator_next(g, &v) == 0) sum += (uintptr_t)v;
    CHECK_EQ(sum, 10);
    OK(ivy_generator_free(g));
}

int main(void) {
    RUN(test_wait_any);
    RUN(test_join_all);
    RUN(test_generators);
    RUN(test_generator_owner);
    RUN(test_generator_on_plain_thread);
    H_REPORT();
}
