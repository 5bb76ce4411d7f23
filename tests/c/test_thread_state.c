/* Per-task thread state: errno belongs to the task (and to a generator's body),
 * as it belongs to a thread, although the tasks of a worker share one OS thread.
 * Every test runs its tasks on ONE worker, so they really interleave on one
 * thread, and asserts exact values after every switch. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>

#include "harness.h"

#define ROUNDS 500

/* ---- errno across yields ----------------------------------------------------- */

static int yield_mismatches;
static int yield_rounds;

/* Each task stamps errno with its own values and yields between stamp and check:
 * the siblings stamp theirs meanwhile. */
static void *stamp_and_yield(void *arg) {
    int base = (int)(intptr_t)arg, i;
    for (i = 0; i < ROUNDS; i++) {
        errno = base + i;
        if (ivy_task_yield() != 0) H_ATOMIC_ADD(&yield_mismatches, 1000000);
        if (errno != base + i) H_ATOMIC_ADD(&yield_mismatches, 1);
        H_ATOMIC_ADD(&yield_rounds, 1);
    }
    return NULL;
}

static void *yield_main(void *arg) {
    ivy_task_t tasks[4];
    int i;
    (void)arg;
    for (i = 0; i < 4; i++) OK(ivy_task_spawn(stamp_and_yield, (void *)(intptr_t)((i + 1) * 10000), NULL, &tasks[i]));
    for (i = 0; i < 4; i++) OK(ivy_task_join(tasks[i], NULL, IVY_FOREVER));
    return NULL;
}

static void test_errno_across_yield(void) {
    H_ATOMIC_STORE(&yield_mismatches, 0);
    H_ATOMIC_STORE(&yield_rounds, 0);
    h_run(1, yield_main, NULL);
    CHECK_EQ(H_ATOMIC_LOAD(&yield_mismatches), 0);
    CHECK_EQ(H_ATOMIC_LOAD(&yield_rounds), 4 * ROUNDS);
}

/* ---- errno across a park (the case) ------------------------------------ */

/* A: errno = 1111, then parks (sleep, or a queue get) while B, on the same worker,
 * sets errno = 9999 and wakes A. A must still read 1111, and B 9999. */
struct park_case {
    ivy_queue_t to_b, to_a;
    int use_sleep;
    int a_saw, b_saw;
};

static void *park_a(void *arg) {
    struct park_case *c = arg;
    void *item;
    OK(ivy_queue_put(c->to_b, NULL, IVY_FOREVER)); /* B may run now */
    errno = 1111;
    if (c->use_sleep) {
        OK(ivy_time_sleep(2));
    } else {
        OK(ivy_queue_get(c->to_a, &item, IVY_FOREVER));
    }
    c->a_saw = errno;
    return NULL;
}

static void *park_b(void *arg) {
    struct park_case *c = arg;
    void *item;
    OK(ivy_queue_get(c->to_b, &item, IVY_FOREVER));
    errno = 9999;
    if (!c->use_sleep) OK(ivy_queue_put(c->to_a, NULL, IVY_FOREVER));
    OK(ivy_task_yield());
    c->b_saw = errno;
    return NULL;
}

static void *park_main(void *arg) {
    int use_sleep = (int)(intptr_t)arg, round;
    for (round = 0; round < 20; round++) {
        struct park_case c;
        ivy_task_t a, b;
        memset(&c, 0, sizeof c);
        c.use_sleep = use_sleep;
        OK(ivy_queue_new(1, &c.to_b));
        OK(ivy_queue_new(1, &c.to_a));
        OK(ivy_task_spawn(park_b, &c, NULL, &b));
        OK(ivy_task_spawn(park_a, &c, NULL, &a));
        OK(ivy_task_join(a, NULL, IVY_FOREVER));
        OK(ivy_task_join(b, NULL, IVY_FOREVER));
        CHECK_EQ(c.a_saw, 1111);
        CHECK_EQ(c.b_saw, 9999);
        OK(ivy_queue_free(c.to_b));
        OK(ivy_queue_free(c.to_a));
    }
    return NULL;
}

static void test_errno_across_sleep(void) { h_run(1, park_main, (void *)1); }
static void test_errno_across_queue_get(void) { h_run(1, park_main, (void *)0); }

/* ---- a new task starts with errno 0, as a new thread does ------------------------ */

static void *report_errno(void *arg) {
    (void)arg;
    return (void *)(intptr_t)errno;
}

static void *fresh_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 50; i++) {
        ivy_task_t t;
        void *seen = (void *)1;
        errno = 4242; /* the spawner's, on the same worker */
        OK(ivy_task_spawn(report_errno, NULL, NULL, &t));
        errno = 4343;
        OK(ivy_task_join(t, &seen, IVY_FOREVER));
        CHECK_EQ((intptr_t)seen, 0);
        CHECK_EQ(errno, 4343);
    }
    return NULL;
}

static void test_new_task_starts_with_zero_errno(void) { h_run(1, fresh_main, NULL); }

/* ---- generators: the body's errno is its own ------------------------------------ */

static int gen_body_mismatches;

/* arg non-NULL: the body runs in a task and parks it between stamp and check (on
 * a plain thread a sleep is the thread's own call, which may set errno). */
static void stamp_body(ivy_yielder_t y, void *arg) {
    intptr_t i;
    if (errno != 0) H_ATOMIC_ADD(&gen_body_mismatches, 1); /* fresh, like a task */
    for (i = 0; i < 100; i++) {
        errno = (int)(7000 + i);
        if (ivy_generator_yield(y, (void *)i) != 0) return;
        if (errno != 7000 + i) H_ATOMIC_ADD(&gen_body_mismatches, 1);
        /* park the iterating task with errno set: a sibling changes its own */
        if (arg == NULL) continue;
        errno = (int)(8000 + i);
        if (i % 10 == 0 && ivy_time_sleep(1) != 0) H_ATOMIC_ADD(&gen_body_mismatches, 1000);
        if (i % 10 != 0 && ivy_task_yield() != 0) H_ATOMIC_ADD(&gen_body_mismatches, 1000);
        if (errno != 8000 + i) H_ATOMIC_ADD(&gen_body_mismatches, 1);
    }
}

static int gen_sibling_stop;

static void *errno_sibling(void *arg) {
    int i = 0;
    (void)arg;
    while (!H_ATOMIC_LOAD(&gen_sibling_stop)) {
        errno = 9999 + (i++ % 7);
        OK(ivy_task_yield());
    }
    return NULL;
}

static void iterate_stamping(void *in_task) {
    ivy_generator_t g;
    void *v = NULL;
    intptr_t want = 0;
    int rc;
    OK(ivy_generator_new(stamp_body, in_task, 0, &g));
    for (;;) {
        errno = (int)(100 + want);
        rc = ivy_generator_next(g, &v);
        if (rc == IVY_ECLOSED) break;
        OK(rc);
        CHECK_EQ((intptr_t)v, want);
        CHECK_EQ(errno, 100 + want); /* the caller's, not the body's */
        want++;
    }
    CHECK_EQ(want, 100);
    OK(ivy_generator_free(g));
}

static void *gen_main(void *arg) {
    ivy_task_t sibling;
    (void)arg;
    H_ATOMIC_STORE(&gen_sibling_stop, 0);
    OK(ivy_task_spawn(errno_sibling, NULL, NULL, &sibling));
    iterate_stamping((void *)1);
    H_ATOMIC_STORE(&gen_sibling_stop, 1);
    OK(ivy_task_join(sibling, NULL, IVY_FOREVER));
    return NULL;
}

static void test_generator_errno_in_task(void) {
    H_ATOMIC_STORE(&gen_body_mismatches, 0);
    h_run(1, gen_main, NULL);
    CHECK_EQ(H_ATOMIC_LOAD(&gen_body_mismatches), 0);
}

static void test_generator_errno_on_plain_thread(void) {
    H_ATOMIC_STORE(&gen_body_mismatches, 0);
    iterate_stamping(NULL);
    CHECK_EQ(H_ATOMIC_LOAD(&gen_body_mismatches), 0);
}

int main(void) {
    RUN(test_errno_across_yield);
    RUN(test_errno_across_sleep);
    RUN(test_errno_across_queue_get);
    RUN(test_new_task_starts_with_zero_errno);
    RUN(test_generator_errno_in_task);
    RUN(test_generator_errno_on_plain_thread);
    H_REPORT();
}
