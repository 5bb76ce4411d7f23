/* Tasks, generators, per-task storage and deadline scopes (issue 11, round 2):
 * an interrupted ivy_runtime_block_on reaps its task, a generator does not
 * outlive its owner task, ivy_task_local_*, ivy_deadline_push/pop. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

/* ---- ivy_runtime_block_on interrupted: its task is cancelled and reaped ----- */

struct block_on_state {
    ivy_runtime_t rt;
    ivy_event_t started;
    int inner_cancelled;
    int inner_done;
    int rc;
    int done_when_returned;
};

static void *block_on_inner(void *arg) {
    struct block_on_state *st = arg;
    int rc;
    OK(ivy_event_set(st->started));
    do {
        rc = ivy_time_sleep(100000);
    } while (rc == 0);
    if (rc == IVY_ECANCELED) H_ATOMIC_STORE(&st->inner_cancelled, 1);
    H_ATOMIC_STORE(&st->inner_done, 1);
    return NULL;
}

static void *block_on_caller(void *arg) {
    struct block_on_state *st = arg;
    void *res = (void *)1;
    st->rc = ivy_runtime_block_on(st->rt, block_on_inner, st, &res);
    /* Before the fix the inner task was still sleeping here, with no handle. */
    st->done_when_returned = H_ATOMIC_LOAD(&st->inner_done);
    return NULL;
}

static void *block_on_cancel_main(void *arg) {
    struct block_on_state *st = arg;
    int i;
    for (i = 0; i < 20; i++) {
        ivy_task_t t;
        st->inner_cancelled = st->inner_done = st->done_when_returned = 0;
        st->rc = 1;
        OK(ivy_event_new(&st->started));
        OK(ivy_task_spawn(block_on_caller, st, NULL, &t));
        OK(ivy_event_wait(st->started, IVY_FOREVER));
        OK(ivy_task_cancel(t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(st->rc, IVY_ECANCELED);
        CHECK_EQ(st->done_when_returned, 1);
        CHECK_EQ(H_ATOMIC_LOAD(&st->inner_cancelled), 1);
        OK(ivy_event_free(st->started));
    }
    return NULL;
}

static void test_block_on_cancelled_reaps_its_task(void) {
    struct block_on_state st;
    ivy_config_t cfg;
    memset(&st, 0, sizeof st);
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    OK(ivy_runtime_new(&cfg, &st.rt));
    h_run(2, block_on_cancel_main, &st);
    OK(ivy_runtime_free(st.rt));
}

/* ---- a generator does not outlive its owner task ---------------------------- */

struct gen_state {
    int closed;   /* bodies that saw IVY_ECLOSED and returned */
    int finished; /* bodies that returned */
    ivy_generator_t gen;
};

static void counting_body(ivy_yielder_t y, void *arg) {
    struct gen_state *st = arg;
    /* Freed on the way out: valgrind reports a leak if the body is never closed. */
    char *scratch = malloc(64);
    uintptr_t i;
    for (i = 1;; i++) {
        int rc = ivy_generator_yield(y, (void *)i);
        if (rc != 0) {
            CHECK_EQ(rc, IVY_ECLOSED);
            H_ATOMIC_ADD(&st->closed, 1);
            break;
        }
    }
    free(scratch);
    H_ATOMIC_ADD(&st->finished, 1);
}

/* Makes a generator, takes one value (the body is suspended), and returns
 * without freeing it. */
static void *abandoning_owner(void *arg) {
    struct gen_state *st = arg;
    void *v = NULL;
    OK(ivy_generator_new(counting_body, st, 0, &st->gen));
    OK(ivy_generator_next(st->gen, &v));
    CHECK_EQ((uintptr_t)v, 1);
    return NULL;
}

/* Makes one generator it never starts, one it frees itself. */
static void *tidy_owner(void *arg) {
    struct gen_state *st = arg;
    ivy_generator_t unstarted, freed;
    void *v = NULL;
    OK(ivy_generator_new(counting_body, st, 0, &unstarted));
    OK(ivy_generator_new(counting_body, st, 0, &freed));
    OK(ivy_generator_next(freed, &v));
    OK(ivy_generator_free(freed));
    st->gen = unstarted;
    return NULL;
}

/* An outer generator whose body made an inner one and iterated it. */
static void outer_body(ivy_yielder_t y, void *arg) {
    struct gen_state *st = arg;
    ivy_generator_t inner;
    void *v = NULL;
    OK(ivy_generator_new(counting_body, st, 0, &inner));
    OK(ivy_generator_next(inner, &v));
    if (ivy_generator_yield(y, v) == IVY_ECLOSED) H_ATOMIC_ADD(&st->closed, 1);
    /* The inner one went first, with the task. */
    CHECK_EQ(ivy_generator_free(inner), IVY_EBADF);
    H_ATOMIC_ADD(&st->finished, 1);
}

static void *nesting_owner(void *arg) {
    struct gen_state *st = arg;
    void *v = NULL;
    OK(ivy_generator_new(outer_body, st, 0, &st->gen));
    OK(ivy_generator_next(st->gen, &v));
    return NULL;
}

static void *generator_owner_main(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < 20; i++) {
        struct gen_state st;
        ivy_task_t t;
        memset(&st, 0, sizeof st);
        OK(ivy_task_spawn(abandoning_owner, &st, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(st.closed, 1);
        CHECK_EQ(st.finished, 1);
        /* Freed with its owner (before: IVY_EPERM forever, body and stack leaked). */
        CHECK_EQ(ivy_generator_free(st.gen), IVY_EBADF);

        memset(&st, 0, sizeof st);
        OK(ivy_task_spawn(tidy_owner, &st, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        /* the one it freed, and the unstarted one: closing runs a body to its
         * first yield, which returns IVY_ECLOSED (ivy_generator_free's rule) */
        CHECK_EQ(st.closed, 2);
        CHECK_EQ(st.finished, 2);
        CHECK_EQ(ivy_generator_free(st.gen), IVY_EBADF);

        memset(&st, 0, sizeof st);
        OK(ivy_task_spawn(nesting_owner, &st, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(st.closed, 2);
        CHECK_EQ(st.finished, 2);
        CHECK_EQ(ivy_generator_free(st.gen), IVY_EBADF);
    }
    return NULL;
}

static void test_generator_freed_with_its_owner(void) { h_run(2, generator_owner_main, NULL); }

/* A plain thread still owns its generators: another thread may not free them. */
static void *other_thread_free(void *arg) {
    ivy_generator_t *g = arg;
    CHECK_EQ(ivy_generator_free(*g), IVY_EPERM);
    return NULL;
}

static void test_generator_of_plain_thread(void) {
    struct gen_state st;
    pthread_t th;
    void *v = NULL;
    memset(&st, 0, sizeof st);
    OK(ivy_generator_new(counting_body, &st, 0, &st.gen));
    OK(ivy_generator_next(st.gen, &v));
    CHECK(pthread_create(&th, NULL, other_thread_free, &st.gen) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    OK(ivy_generator_free(st.gen));
    CHECK_EQ(st.closed, 1);
}

/* ---- per-task storage -------------------------------------------------------- */

#define LOCAL_TASKS 50

struct local_value {
    uintptr_t n;
    uint64_t task_id;
    int entry_returned;
};

static ivy_task_local_key_t local_key;
static ivy_waitgroup_t local_sleeping;
static int local_dtor_calls;
static uintptr_t local_dtor_sum;

static void local_dtor(void *p) {
    struct local_value *v = p;
    uint64_t me = 0;
    /* On the task's own stack, after its entry returned. */
    OK(ivy_task_current_id(&me));
    CHECK_EQ(me, v->task_id);
    CHECK_EQ(v->entry_returned, 1);
    H_ATOMIC_ADD(&local_dtor_calls, 1);
    H_ATOMIC_ADD(&local_dtor_sum, v->n);
    free(v);
}

static void *local_task(void *arg) {
    struct local_value *v = malloc(sizeof *v);
    void *got = (void *)1;
    int i;
    v->n = (uintptr_t)arg;
    v->entry_returned = 0;
    OK(ivy_task_current_id(&v->task_id));
    OK(ivy_task_local_get(local_key, &got));
    CHECK(got == NULL); /* starts NULL in every task */
    OK(ivy_task_local_set(local_key, v));
    for (i = 0; i < 5; i++) {
        OK(ivy_task_yield()); /* the other tasks of this worker run and set theirs */
        OK(ivy_task_local_get(local_key, &got));
        CHECK(got == v);
    }
    v->entry_returned = 1;
    return NULL;
}

/* Sets its value, then sleeps until cancelled and returns. */
static void *local_cancelled_task(void *arg) {
    struct local_value *v = malloc(sizeof *v);
    v->n = (uintptr_t)arg;
    v->entry_returned = 0;
    OK(ivy_task_current_id(&v->task_id));
    OK(ivy_task_local_set(local_key, v));
    OK(ivy_waitgroup_done(local_sleeping));
    CHECK_EQ(ivy_time_sleep(100000), IVY_ECANCELED);
    v->entry_returned = 1;
    return NULL;
}

static void *local_main(void *arg) {
    ivy_task_t tasks[LOCAL_TASKS];
    uintptr_t i, want = 0;
    (void)arg;
    local_dtor_calls = 0;
    local_dtor_sum = 0;
    OK(ivy_waitgroup_new(&local_sleeping));
    OK(ivy_waitgroup_add(local_sleeping, LOCAL_TASKS / 2));
    for (i = 0; i < LOCAL_TASKS; i++) {
        OK(ivy_task_spawn(i % 2 ? local_task : local_cancelled_task, (void *)(i + 1), NULL,
                          &tasks[i]));
        want += i + 1;
    }
    OK(ivy_waitgroup_wait(local_sleeping, IVY_FOREVER)); /* every sleeper set its value */
    for (i = 0; i < LOCAL_TASKS; i += 2) OK(ivy_task_cancel(tasks[i]));
    for (i = 0; i < LOCAL_TASKS; i++) OK(ivy_task_join(tasks[i], NULL, IVY_FOREVER));
    CHECK_EQ(H_ATOMIC_LOAD(&local_dtor_calls), LOCAL_TASKS);
    CHECK_EQ(H_ATOMIC_LOAD(&local_dtor_sum), want);
    OK(ivy_waitgroup_free(local_sleeping));
    return NULL;
}

static void test_task_local_values_and_destructors(void) {
    int round;
    OK(ivy_task_local_key_new(local_dtor, &local_key));
    /* one worker: the tasks interleave on one thread */
    for (round = 0; round < 10; round++) h_run(1, local_main, NULL);
    OK(ivy_task_local_key_free(local_key));
}

/* A destructor that sets a value again is called again, for a bounded number of
 * rounds; in the last one the set fails. */
static ivy_task_local_key_t again_key;
static int again_calls, again_refused;

static void again_dtor(void *p) {
    void *next = malloc(16);
    int rc;
    free(p);
    H_ATOMIC_ADD(&again_calls, 1);
    rc = ivy_task_local_set(again_key, next);
    if (rc != 0) {
        CHECK_EQ(rc, IVY_ECLOSED);
        H_ATOMIC_ADD(&again_refused, 1);
        free(next);
    }
}

static void *again_task(void *arg) {
    (void)arg;
    OK(ivy_task_local_set(again_key, malloc(16)));
    return NULL;
}

/* A key freed while a task holds a value: no destructor for it. */
static ivy_task_local_key_t freed_key;
static int freed_dtor_calls;
static void freed_dtor(void *p) {
    (void)p;
    H_ATOMIC_ADD(&freed_dtor_calls, 1);
}

static void *freed_key_task(void *arg) {
    static int value;
    void *got = NULL;
    (void)arg;
    OK(ivy_task_local_set(freed_key, &value));
    OK(ivy_task_local_key_free(freed_key));
    CHECK_EQ(ivy_task_local_get(freed_key, &got), IVY_EBADF);
    CHECK_EQ(ivy_task_local_set(freed_key, &value), IVY_EBADF);
    CHECK_EQ(ivy_task_local_key_free(freed_key), IVY_EBADF);
    return NULL;
}

static void *nothing(void *arg) { return arg; }

static void *local_edges_main(void *arg) {
    ivy_task_t t;
    ivy_task_local_key_t null_dtor_key, wrong_kind;
    void *got = NULL;
    int i;
    (void)arg;
    OK(ivy_task_local_key_new(again_dtor, &again_key));
    for (i = 0; i < 10; i++) {
        again_calls = again_refused = 0;
        OK(ivy_task_spawn(again_task, NULL, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        CHECK_EQ(again_calls, 5); /* 4 rounds, then the last, closed one */
        CHECK_EQ(again_refused, 1);
    }
    OK(ivy_task_local_key_free(again_key));

    OK(ivy_task_local_key_new(freed_dtor, &freed_key));
    freed_dtor_calls = 0;
    OK(ivy_task_spawn(freed_key_task, NULL, NULL, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK_EQ(freed_dtor_calls, 0);

    /* A NULL destructor: values are simply dropped. */
    OK(ivy_task_local_key_new(NULL, &null_dtor_key));
    OK(ivy_task_local_set(null_dtor_key, &got));
    OK(ivy_task_local_get(null_dtor_key, &got));
    CHECK(got == (void *)&got);
    OK(ivy_task_local_key_free(null_dtor_key));

    /* Errors: NULL out-params, zeroed and foreign handles. */
    CHECK_EQ(ivy_task_local_key_new(NULL, NULL), IVY_EINVAL);
    OK(ivy_task_local_key_new(NULL, &null_dtor_key));
    CHECK_EQ(ivy_task_local_get(null_dtor_key, NULL), IVY_EINVAL);
    OK(ivy_task_local_key_free(null_dtor_key));
    memset(&wrong_kind, 0, sizeof wrong_kind);
    CHECK_EQ(ivy_task_local_get(wrong_kind, &got), IVY_EBADF);
    OK(ivy_task_spawn(nothing, NULL, NULL, &t));
    wrong_kind.id = t.id; /* a task handle is not a key */
    CHECK_EQ(ivy_task_local_set(wrong_kind, NULL), IVY_EBADF);
    CHECK_EQ(ivy_task_local_key_free(wrong_kind), IVY_EBADF);
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    return NULL;
}

static void test_task_local_edges(void) { h_run(2, local_edges_main, NULL); }

/* On a plain thread the values are per thread, destroyed when it exits. */
static ivy_task_local_key_t thread_key;
static int thread_dtor_calls;
static void thread_dtor(void *p) {
    CHECK_EQ(*(int *)p, 42);
    H_ATOMIC_ADD(&thread_dtor_calls, 1);
    free(p);
}

static void *plain_thread_body(void *arg) {
    int *v = malloc(sizeof *v);
    void *got = NULL;
    (void)arg;
    *v = 42;
    OK(ivy_task_local_get(thread_key, &got));
    CHECK(got == NULL);
    OK(ivy_task_local_set(thread_key, v));
    OK(ivy_task_local_get(thread_key, &got));
    CHECK(got == v);
    return NULL;
}

static void test_task_local_on_plain_threads(void) {
    pthread_t th[4];
    int i;
    thread_dtor_calls = 0;
    OK(ivy_task_local_key_new(thread_dtor, &thread_key));
    for (i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, plain_thread_body, NULL) == 0);
    for (i = 0; i < 4; i++) CHECK(pthread_join(th[i], NULL) == 0);
    CHECK_EQ(thread_dtor_calls, 4);
    OK(ivy_task_local_key_free(thread_key));
}

int main(void) {
    RUN(test_block_on_cancelled_reaps_its_task);
    RUN(test_generator_freed_with_its_owner);
    RUN(test_generator_of_plain_thread);
    RUN(test_task_local_values_and_destructors);
    RUN(test_task_local_edges);
    RUN(test_task_local_on_plain_threads);
    H_REPORT();
}
