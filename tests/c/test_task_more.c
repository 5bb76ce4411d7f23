/* Tasks, generators, per-task storage and deadline scopes (issue 11, round 2):
 * an interrupted ivy_runtime_block_on reaps its task, a generator does not
 * outlive its owner task, ivy_task_local_*, ivy_deadline_push/pop. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ---- deadline scopes ---------------------------------------------------------- */

static void *scope_sleep_main(void *arg) {
    ivy_deadline_scope_t outer, inner;
    int64_t t0;
    (void)arg;
    /* A sleep in a scope ends at the scope's deadline. */
    t0 = ivy_time_now();
    OK(ivy_deadline_push(t0 + 40, &outer));
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 40);
    CHECK(ivy_time_now() - t0 < 5000);
    /* every later blocking call too, at once, until the pop */
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    OK(ivy_deadline_pop(outer));
    OK(ivy_time_sleep(5)); /* unbounded again */

    /* Nested: the earliest deadline wins, whichever scope set it. */
    t0 = ivy_time_now();
    OK(ivy_deadline_push(t0 + 5000, &outer));
    OK(ivy_deadline_push(t0 + 40, &inner));
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 40 && ivy_time_now() - t0 < 4000);
    OK(ivy_deadline_pop(inner));
    OK(ivy_time_sleep(5)); /* the outer one has not passed */
    OK(ivy_deadline_pop(outer));

    t0 = ivy_time_now();
    OK(ivy_deadline_push(t0 + 40, &outer));
    OK(ivy_deadline_push(t0 + 100000, &inner)); /* cannot extend the outer one */
    OK(ivy_deadline_push(IVY_FOREVER, &inner)); /* nor can no deadline */
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 40 && ivy_time_now() - t0 < 5000);
    OK(ivy_deadline_pop(inner));
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    return NULL;
}

static void test_deadline_scope_sleep(void) { h_run(2, scope_sleep_main, NULL); }

/* A queue get deep in a call tree, bounded by a scope its caller opened. */
static int deep_get(ivy_queue_t q, int depth, void **item) {
    if (depth > 0) return deep_get(q, depth - 1, item);
    return ivy_queue_get(q, item, IVY_FOREVER);
}

static void *scope_queue_main(void *arg) {
    ivy_queue_t q;
    ivy_deadline_scope_t s;
    void *item = NULL;
    int i;
    (void)arg;
    OK(ivy_queue_new(4, &q));
    for (i = 0; i < 10; i++) {
        int64_t t0 = ivy_time_now();
        OK(ivy_deadline_push(t0 + 20, &s));
        CHECK_EQ(deep_get(q, 50, &item), IVY_ETIMEDOUT);
        CHECK(ivy_time_now() - t0 >= 20);
        OK(ivy_deadline_pop(s));
    }
    /* A passed scope deadline: blocking calls become non-blocking tries. */
    OK(ivy_queue_put(q, (void *)7, IVY_FOREVER));
    OK(ivy_deadline_push(0, &s));
    OK(deep_get(q, 50, &item));
    CHECK_EQ((uintptr_t)item, 7);
    CHECK_EQ(deep_get(q, 50, &item), IVY_ETIMEDOUT);
    OK(ivy_deadline_pop(s));
    OK(ivy_queue_free(q));
    return NULL;
}

static void test_deadline_scope_queue_deep(void) { h_run(2, scope_queue_main, NULL); }

static void *nothing_task(void *arg) { return arg; }

static void *scope_errors_main(void *arg) {
    ivy_deadline_scope_t a, b, zero, wrong_kind;
    ivy_task_t t;
    (void)arg;
    CHECK_EQ(ivy_deadline_push(ivy_time_now() + 1000, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_deadline_push(-2, &a), IVY_EINVAL);
    OK(ivy_deadline_push(ivy_time_now() + 1000, &a));
    OK(ivy_deadline_push(ivy_time_now() + 2000, &b));
    CHECK_EQ(ivy_deadline_pop(a), IVY_EINVAL); /* out of order: nothing changes */
    OK(ivy_deadline_pop(b));
    CHECK_EQ(ivy_deadline_pop(b), IVY_EBADF); /* popped already */
    OK(ivy_deadline_pop(a));
    CHECK_EQ(ivy_deadline_pop(a), IVY_EBADF);
    memset(&zero, 0, sizeof zero);
    CHECK_EQ(ivy_deadline_pop(zero), IVY_EBADF);
    OK(ivy_task_spawn(nothing_task, NULL, NULL, &t));
    wrong_kind.id = t.id;
    CHECK_EQ(ivy_deadline_pop(wrong_kind), IVY_EBADF);
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    return NULL;
}

static void test_deadline_scope_pop_errors(void) { h_run(2, scope_errors_main, NULL); }

/* A scope left open when its task ends dies with the task: the next task on the
 * same worker, and its joiner, are not bounded by it. */
static ivy_deadline_scope_t leaked_scope;

static void *leaves_scope_open(void *arg) {
    (void)arg;
    OK(ivy_deadline_push(ivy_time_now() + 10, &leaked_scope));
    return NULL;
}

static void *sleeps_30(void *arg) {
    (void)arg;
    OK(ivy_time_sleep(30));
    return NULL;
}

static void *scope_left_open_main(void *arg) {
    ivy_task_t t;
    int i;
    (void)arg;
    for (i = 0; i < 5; i++) {
        OK(ivy_task_spawn(leaves_scope_open, NULL, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        OK(ivy_task_spawn(sleeps_30, NULL, NULL, &t));
        OK(ivy_task_join(t, NULL, IVY_FOREVER));
        OK(ivy_time_sleep(30));
        /* it is no scope of this task */
        CHECK_EQ(ivy_deadline_pop(leaked_scope), IVY_EBADF);
    }
    return NULL;
}

static void test_deadline_scope_left_open(void) { h_run(1, scope_left_open_main, NULL); }

/* A scope bounds ivy_runtime_block_on: the task it started is cancelled and
 * reaped, and the call returns IVY_ETIMEDOUT. */
static void *scope_block_on_main(void *arg) {
    struct block_on_state *st = arg;
    ivy_deadline_scope_t s;
    void *res = NULL;
    st->inner_cancelled = st->inner_done = 0;
    OK(ivy_event_new(&st->started));
    OK(ivy_deadline_push(ivy_time_now() + 30, &s));
    CHECK_EQ(ivy_runtime_block_on(st->rt, block_on_inner, st, &res), IVY_ETIMEDOUT);
    CHECK_EQ(H_ATOMIC_LOAD(&st->inner_done), 1);
    CHECK_EQ(H_ATOMIC_LOAD(&st->inner_cancelled), 1);
    OK(ivy_deadline_pop(s));
    OK(ivy_event_free(st->started));
    return NULL;
}

static void test_deadline_scope_bounds_block_on(void) {
    struct block_on_state st;
    memset(&st, 0, sizeof st);
    OK(ivy_runtime_new(NULL, &st.rt));
    h_run(1, scope_block_on_main, &st);
    OK(ivy_runtime_free(st.rt));
}

/* Plain threads have scopes too. */
static void test_deadline_scope_plain_thread(void) {
    ivy_deadline_scope_t s;
    int64_t t0 = ivy_time_now();
    OK(ivy_deadline_push(t0 + 30, &s));
    CHECK_EQ(ivy_time_sleep(100000), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 30 && ivy_time_now() - t0 < 5000);
    OK(ivy_deadline_pop(s));
    OK(ivy_time_sleep(1));
}

/* A scope opened in a generator body belongs to the body's layer: its caller
 * cannot pop it, and it does not bound the caller while the body is suspended. */
static void scope_body(ivy_yielder_t y, void *arg) {
    ivy_deadline_scope_t s;
    (void)arg;
    OK(ivy_deadline_push(ivy_time_now() + 10, &s));
    if (ivy_generator_yield(y, &s) != 0) return;
    OK(ivy_deadline_pop(s));
}

static void *scope_generator_main(void *arg) {
    ivy_generator_t g;
    void *v = NULL;
    (void)arg;
    OK(ivy_generator_new(scope_body, NULL, 0, &g));
    OK(ivy_generator_next(g, &v));
    CHECK_EQ(ivy_deadline_pop(*(ivy_deadline_scope_t *)v), IVY_EINVAL);
    OK(ivy_time_sleep(30)); /* the body's scope does not bound the caller */
    CHECK_EQ(ivy_generator_next(g, &v), IVY_ECLOSED);
    OK(ivy_generator_free(g));
    return NULL;
}

static void test_deadline_scope_in_generator(void) { h_run(1, scope_generator_main, NULL); }

/* The callback form: ivy_deadline_run. */
static void *sleep_and_report(void *arg) {
    (void)arg;
    return (void *)(intptr_t)ivy_time_sleep(100000);
}

static void *leave_a_scope_open(void *arg) {
    ivy_deadline_scope_t s;
    (void)arg;
    OK(ivy_deadline_push(ivy_time_now() + 5, &s));
    return (void *)5;
}

static void *scope_run_main(void *arg) {
    void *res = NULL;
    ivy_deadline_scope_t outer;
    int64_t t0 = ivy_time_now();
    (void)arg;
    CHECK_EQ(ivy_deadline_run(sleep_and_report, NULL, &res, t0 + 30), IVY_ETIMEDOUT);
    CHECK_EQ((intptr_t)res, IVY_ETIMEDOUT); /* f ran to its end; its value is kept */
    CHECK(ivy_time_now() - t0 >= 30 && ivy_time_now() - t0 < 5000);
    OK(ivy_time_sleep(5)); /* the scope is closed */

    OK(ivy_deadline_run(nothing_task, (void *)3, &res, ivy_time_now() + 5000));
    CHECK_EQ((uintptr_t)res, 3);
    OK(ivy_deadline_run(nothing_task, (void *)4, NULL, IVY_FOREVER));
    CHECK_EQ(ivy_deadline_run(NULL, NULL, &res, IVY_FOREVER), IVY_EINVAL);
    CHECK_EQ(ivy_deadline_run(nothing_task, NULL, &res, -7), IVY_EINVAL);

    /* Scopes f leaves open are closed with it. */
    OK(ivy_deadline_run(leave_a_scope_open, NULL, &res, ivy_time_now() + 5000));
    CHECK_EQ((uintptr_t)res, 5);
    OK(ivy_time_sleep(30));

    /* An outer scope's deadline interrupts f, but it is not this scope's. */
    t0 = ivy_time_now();
    OK(ivy_deadline_push(t0 + 30, &outer));
    OK(ivy_deadline_run(sleep_and_report, NULL, &res, t0 + 100000));
    CHECK_EQ((intptr_t)res, IVY_ETIMEDOUT);
    OK(ivy_deadline_pop(outer));
    return NULL;
}

static void test_deadline_run(void) { h_run(1, scope_run_main, NULL); }

/* ---- stack overflow reports name the C way to raise a stack ------------------- */

static volatile int keep_recursing = 1;

static int recurse_forever(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    if (!keep_recursing) return frame[0];
    return recurse_forever(depth + 1) + frame[0];
}

static void *overflowing_task(void *arg) {
    (void)arg;
    return (void *)(intptr_t)recurse_forever(0);
}

static void overflowing_body(ivy_yielder_t y, void *arg) {
    (void)arg;
    ivy_generator_yield(y, (void *)(intptr_t)recurse_forever(0));
}

static void *overflow_child_main(void *arg) {
    const char *which = arg;
    if (strcmp(which, "task") == 0) {
        ivy_spawn_opts_t opts;
        ivy_task_t t;
        memset(&opts, 0, sizeof opts);
        opts.name = "deep-c";
        opts.stack_size = 64 * 1024;
        OK(ivy_task_spawn(overflowing_task, NULL, &opts, &t));
        ivy_task_join(t, NULL, IVY_FOREVER);
    } else {
        ivy_generator_t g;
        void *v;
        OK(ivy_generator_new(overflowing_body, NULL, 64 * 1024, &g));
        ivy_generator_next(g, &v);
    }
    return NULL;
}

/* Runs this program again as `self overflow-CASE` (natively: valgrind does not
 * follow an exec unless told to) and checks how it died and what it said. */
static void check_overflow_child(const char *self, const char *which, const char *want) {
    int fds[2], status = 0;
    pid_t pid;
    static char out[4096];
    size_t len = 0;
    ssize_t n;
    char arg[64];
    snprintf(arg, sizeof arg, "overflow-%s", which);
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, arg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (len + 1 < sizeof out && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(out, "overflowed its stack of 65536 bytes") != NULL);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "Builder") == NULL); /* not the Rust way */
    if (h_check_failures) fprintf(stderr, "  child's stderr: %s\n", out);
}

static const char *self_path;

static void test_overflow_report_names_c_stack_size(void) {
    check_overflow_child(self_path, "task",
                         "task 'deep-c' (id ");
    check_overflow_child(self_path, "task",
                         "raise the stack size with the stack_size field of ivy_spawn_opts_t");
    check_overflow_child(self_path, "generator",
                         "raise the stack size with the stack_size argument of ivy_generator_new");
}

int main(int argc, char **argv) {
    if (argc > 1 && strncmp(argv[1], "overflow-", 9) == 0) {
        ivy_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.workers = 1;
        ivy_runtime_run(&cfg, overflow_child_main, argv[1] + 9, NULL);
        return 3; /* the overflow must have stopped the process */
    }
    self_path = argv[0];
    RUN(test_block_on_cancelled_reaps_its_task);
    RUN(test_generator_freed_with_its_owner);
    RUN(test_generator_of_plain_thread);
    RUN(test_task_local_values_and_destructors);
    RUN(test_task_local_edges);
    RUN(test_task_local_on_plain_threads);
    RUN(test_deadline_scope_sleep);
    RUN(test_deadline_scope_queue_deep);
    RUN(test_deadline_scope_pop_errors);
    RUN(test_deadline_scope_left_open);
    RUN(test_deadline_scope_bounds_block_on);
    RUN(test_deadline_scope_plain_thread);
    RUN(test_deadline_scope_in_generator);
    RUN(test_deadline_run);
    RUN(test_overflow_report_names_c_stack_size);
    H_REPORT();
}
