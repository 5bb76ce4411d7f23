/* The ABI's own promises: handles carry their kind (a handle of one kind is
 * IVY_EBADF everywhere another kind is expected), and the version macros agree
 * with the loaded library. */
#include "harness.h"

/* Returns 1 if its sleep was cut short by cancellation. */
static void *idle_task(void *arg) {
    (void)arg;
    return (void *)(uintptr_t)(ivy_time_sleep(10000) == IVY_ECANCELED);
}

/* The first object of every kind sits in slot 0 of its table with generation 1;
 * before handles carried a kind these were all the same number, and a mutex
 * handle given to ivy_task_cancel cancelled the first task. */
static void *kinds_main(void *arg) {
    ivy_task_t t;
    ivy_mutex_t m;
    ivy_queue_t q;
    ivy_event_t e;
    ivy_semaphore_t s;
    int finished = -1;
    (void)arg;
    OK(ivy_task_spawn(idle_task, NULL, NULL, &t));
    OK(ivy_mutex_new(&m));
    OK(ivy_queue_new(4, &q));
    OK(ivy_event_new(&e));
    OK(ivy_semaphore_new(1, &s));
    CHECK(t.id != m.id && m.id != q.id && q.id != e.id && e.id != s.id && t.id != q.id);

    /* Each handle, reinterpreted as every other kind, names nothing. */
    {
        ivy_task_t as_task;
        ivy_mutex_t as_mutex;
        ivy_queue_t as_queue;
        ivy_event_t as_event;
        uint64_t ids[4];
        size_t i, len = 0;
        ids[0] = m.id;
        ids[1] = q.id;
        ids[2] = e.id;
        ids[3] = s.id;
        for (i = 0; i < 4; i++) {
            as_task.id = ids[i];
            CHECK_EQ(ivy_task_cancel(as_task), IVY_EBADF);
            CHECK_EQ(ivy_task_is_finished(as_task, &finished), IVY_EBADF);
        }
        as_mutex.id = q.id;
        CHECK_EQ(ivy_mutex_lock(as_mutex, 0), IVY_EBADF);
        as_mutex.id = t.id;
        CHECK_EQ(ivy_mutex_free(as_mutex), IVY_EBADF);
        as_queue.id = m.id;
        CHECK_EQ(ivy_queue_len(as_queue, &len), IVY_EBADF);
        CHECK_EQ(ivy_queue_free(as_queue), IVY_EBADF);
        as_event.id = s.id;
        CHECK_EQ(ivy_event_set(as_event), IVY_EBADF);
    }

    /* ... and the task is untouched: still running, cancellable by its own handle. */
    OK(ivy_task_is_finished(t, &finished));
    CHECK_EQ(finished, 0);
    OK(ivy_task_cancel(t));
    {
        /* Cancelled in its sleep (result 1), or before it first ran. */
        void *result = NULL;
        int rc = ivy_task_join(t, &result, IVY_FOREVER);
        CHECK((rc == 0 && result == (void *)1) || rc == IVY_ECANCELED);
    }
    OK(ivy_mutex_lock(m, 0));
    OK(ivy_mutex_unlock(m));
    OK(ivy_mutex_free(m));
    OK(ivy_queue_free(q));
    OK(ivy_event_free(e));
    OK(ivy_semaphore_free(s));
    return NULL;
}

static void test_handles_carry_their_kind(void) { h_run(2, kinds_main, NULL); }

/* A generator and the yielder its body gets name the same object under two
 * kinds: neither handle is valid as the other. */
static uint64_t yielder_seen;

static void kinds_body(ivy_yielder_t y, void *arg) {
    ivy_yielder_t as_yielder;
    ivy_generator_t self = *(ivy_generator_t *)arg;
    void *v = NULL;
    ivy_generator_t as_gen;
    yielder_seen = y.id;
    as_yielder.id = self.id;
    CHECK_EQ(ivy_generator_yield(as_yielder, NULL), IVY_EBADF);
    as_gen.id = y.id;
    CHECK_EQ(ivy_generator_next(as_gen, &v), IVY_EBADF);
    OK(ivy_generator_yield(y, (void *)7));
}

static void test_yielder_is_its_own_kind(void) {
    ivy_generator_t g;
    void *v = NULL;
    ivy_generator_t as_gen;
    OK(ivy_generator_new(kinds_body, &g, 0, &g));
    OK(ivy_generator_next(g, &v));
    CHECK(v == (void *)7);
    CHECK(yielder_seen != 0 && yielder_seen != g.id);
    as_gen.id = yielder_seen;
    CHECK_EQ(ivy_generator_free(as_gen), IVY_EBADF);
    CHECK_EQ(ivy_generator_next(g, &v), IVY_ECLOSED);
    OK(ivy_generator_free(g));
}

static void test_version(void) {
    char expected[32];
    CHECK_EQ(ivy_version(), IVY_VERSION);
    CHECK_EQ(IVY_VERSION, (IVY_VERSION_MAJOR << 16) | (IVY_VERSION_MINOR << 8) | IVY_VERSION_PATCH);
    snprintf(expected, sizeof expected, "%d.%d.%d", IVY_VERSION_MAJOR, IVY_VERSION_MINOR,
             IVY_VERSION_PATCH);
    CHECK(ivy_version_string() != NULL);
    CHECK(strcmp(ivy_version_string(), expected) == 0);
}

int main(void) {
    RUN(test_handles_carry_their_kind);
    RUN(test_yielder_is_its_own_kind);
    RUN(test_version);
    H_REPORT();
}
