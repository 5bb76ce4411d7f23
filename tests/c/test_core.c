/* The C ABI core: errors, runtimes, tasks, time. Every function and its error
 * paths (bad handles, NULL, timeouts, cancellation). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

static void *return_arg_plus_one(void *arg) { return (void *)((uintptr_t)arg + 1); }

/* ---- errors ---------------------------------------------------------------- */

static void test_strerror(void) {
    const int codes[] = {IVY_OK,     IVY_EPERM,  IVY_ENOENT,  IVY_EIO,       IVY_EBADF,
                         IVY_EAGAIN, IVY_ENOMEM, IVY_EBUSY,   IVY_EINVAL,    IVY_ERANGE,
                         IVY_EDEADLK, IVY_ETIMEDOUT, IVY_ECANCELED, IVY_ECLOSED, IVY_EPANIC};
    const char *unknown = ivy_strerror(12345);
    size_t i, j;
    CHECK(unknown != NULL && strcmp(unknown, "unknown ivy error") == 0);
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = ivy_strerror(codes[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, unknown) != 0);
        for (j = 0; j < i; j++) CHECK(strcmp(s, ivy_strerror(codes[j])) != 0);
    }
    /* errno-aligned, and safe to negate (enum constants, not macros) */
    CHECK_EQ(-IVY_EINVAL, 22);
    CHECK_EQ(-IVY_ETIMEDOUT, 110);
    CHECK_EQ(-IVY_ECANCELED, 125);
}

/* ---- time ------------------------------------------------------------------ */

static void test_now_is_monotonic(void) {
    int64_t a = ivy_time_now(), b;
    int i;
    CHECK(a >= 0);
    for (i = 0; i < 1000; i++) {
        b = ivy_time_now();
        CHECK(b >= a);
        a = b;
    }
}

static void test_sleep_on_plain_thread(void) {
    int64_t t0 = ivy_time_now();
    OK(ivy_time_sleep(20));
    CHECK(ivy_time_now() - t0 >= 20);
    t0 = ivy_time_now();
    OK(ivy_time_sleep_until(ivy_time_now() + 15));
    CHECK(ivy_time_now() - t0 >= 15);
    OK(ivy_time_sleep_until(0)); /* passed: returns at once */
    OK(ivy_time_sleep(0));
    CHECK_EQ(ivy_time_sleep(-5), IVY_EINVAL);
    CHECK_EQ(ivy_time_sleep_until(-2), IVY_EINVAL);
    OK(ivy_task_yield());
}

static void *sleeper_body(void *arg) {
    int64_t ms = (int64_t)(intptr_t)arg;
    int64_t t0 = ivy_time_now();
    int rc = ivy_time_sleep(ms);
    int64_t dt = ivy_time_now() - t0;
    CHECK_EQ(rc, 0);
    CHECK(dt >= ms);
    CHECK(dt < ms + 2000);
    return (void *)(intptr_t)dt;
}

static void *sleep_main(void *arg) {
    enum { N = 200 };
    ivy_task_t tasks[N];
    int i;
    (void)arg;
    /* Many tasks sleep concurrently: they overlap, so the whole takes ~max. */
    int64_t t0 = ivy_time_now();
    for (i = 0; i < N; i++) OK(ivy_task_spawn(sleeper_body, (void *)(intptr_t)(10 + i % 40), NULL, &tasks[i]));
    for (i = 0; i < N; i++) {
        void *r = NULL;
        OK(ivy_task_join(tasks[i], &r, IVY_FOREVER));
        CHECK((intptr_t)r >= 10 + i % 40);
    }
    CHECK(ivy_time_now() - t0 < 2000);
    /* sleep_until a past deadline returns at once; sleep(0) too. */
    OK(ivy_time_sleep_until(0));
    OK(ivy_time_sleep(0));
    OK(ivy_task_yield());
    CHECK_EQ(ivy_time_sleep(-1), IVY_EINVAL);
    return NULL;
}

static void test_sleep_in_tasks(void) { h_run(2, sleep_main, NULL); }

/* ---- ivy_runtime_run ----------------------------------------------------------------- */

static void *nested_run(void *arg) {
    void *r;
    (void)arg;
    CHECK_EQ(ivy_runtime_run(NULL, return_arg_plus_one, NULL, &r), IVY_EPERM);
    return (void *)7;
}

static void test_run(void) {
    void *r = NULL;
    ivy_config_t cfg;
    OK(ivy_runtime_run(NULL, return_arg_plus_one, (void *)41, &r));
    CHECK_EQ((uintptr_t)r, 42);
    OK(ivy_runtime_run(NULL, return_arg_plus_one, NULL, NULL)); /* result is optional */
    CHECK_EQ(ivy_runtime_run(NULL, NULL, NULL, &r), IVY_EINVAL);
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 5000;
    CHECK_EQ(ivy_runtime_run(&cfg, return_arg_plus_one, NULL, &r), IVY_EINVAL);
    cfg.workers = 1;
    cfg.stack_size = (size_t)1 << 31;
    CHECK_EQ(ivy_runtime_run(&cfg, return_arg_plus_one, NULL, &r), IVY_EINVAL);
    cfg.stack_size = 64 * 1024;
    OK(ivy_runtime_run(&cfg, return_arg_plus_one, (void *)1, &r));
    CHECK_EQ((uintptr_t)r, 2);
    CHECK_EQ((uintptr_t)h_run(1, nested_run, NULL), 7);
}

/* ---- spawn / join -------------------------------------------------------------- */

static void *spawn_join_main(void *arg) {
    enum { N = 1000 };
    static ivy_task_t tasks[N];
    uintptr_t sum = 0;
    int i;
    (void)arg;
    for (i = 0; i < N; i++) OK(ivy_task_spawn(return_arg_plus_one, (void *)(uintptr_t)i, NULL, &tasks[i]));
    for (i = 0; i < N; i++) {
        void *r = NULL;
        OK(ivy_task_join(tasks[i], &r, IVY_FOREVER));
        sum += (uintptr_t)r;
    }
    CHECK_EQ(sum, (uintptr_t)N * (N + 1) / 2);
    return NULL;
}

static void test_spawn_join_many(void) {
    int iter;
    for (iter = 0; iter < 10; iter++) h_run(iter % 2 + 1, spawn_join_main, NULL);
}

static void *bad_spawn_main(void *arg) {
    ivy_task_t t;
    ivy_spawn_opts_t opts;
    const char bad_utf8[] = {(char)0xff, (char)0xfe, 0};
    (void)arg;
    CHECK_EQ(ivy_task_spawn(NULL, NULL, NULL, &t), IVY_EINVAL);
    CHECK_EQ(ivy_task_spawn(return_arg_plus_one, NULL, NULL, NULL), IVY_EINVAL);
    memset(&opts, 0, sizeof opts);
    opts.name = bad_utf8;
    CHECK_EQ(ivy_task_spawn(return_arg_plus_one, NULL, &opts, &t), IVY_EINVAL);
    opts.name = NULL;
    opts.stack_size = (size_t)1 << 31;
    CHECK_EQ(ivy_task_spawn(return_arg_plus_one, NULL, &opts, &t), IVY_EINVAL);
    return NULL;
}

static void test_spawn_errors(void) {
    ivy_task_t t;
    CHECK_EQ(ivy_task_spawn(return_arg_plus_one, NULL, NULL, &t), IVY_EPERM); /* no runtime */
    h_run(1, bad_spawn_main, NULL);
}

static void *stale_handles_main(void *arg) {
    ivy_task_t t, zero;
    void *r = NULL;
    int finished;
    uint64_t id;
    (void)arg;
    memset(&zero, 0, sizeof zero);
    CHECK_EQ(ivy_task_join(zero, &r, IVY_FOREVER), IVY_EBADF);
    CHECK_EQ(ivy_task_cancel(zero), IVY_EBADF);
    CHECK_EQ(ivy_task_detach(zero), IVY_EBADF);
    CHECK_EQ(ivy_task_is_finished(zero, &finished), IVY_EBADF);
    CHECK_EQ(ivy_task_id(zero, &id), IVY_EBADF);

    OK(ivy_task_spawn(return_arg_plus_one, (void *)1, NULL, &t));
    OK(ivy_task_join(t, &r, IVY_FOREVER));
    CHECK_EQ((uintptr_t)r, 2);
    /* Joined: every use of the handle is now EBADF, never a crash. */
    CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_EBADF);
    CHECK_EQ(ivy_task_cancel(t), IVY_EBADF);
    CHECK_EQ(ivy_task_detach(t), IVY_EBADF);
    CHECK_EQ(ivy_task_is_finished(t, &finished), IVY_EBADF);
    CHECK_EQ(ivy_task_id(t, &id), IVY_EBADF);

    /* A reused slot gets a new generation: the old handle stays dead. */
    {
        ivy_task_t t2;
        OK(ivy_task_spawn(return_arg_plus_one, (void *)5, NULL, &t2));
        CHECK(t2.id != t.id);
        CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_EBADF);
        OK(ivy_task_join(t2, &r, IVY_FOREVER));
        CHECK_EQ((uintptr_t)r, 6);
    }

    /* Detached: the handle is gone, the task runs on. */
    OK(ivy_task_spawn(return_arg_plus_one, NULL, NULL, &t));
    OK(ivy_task_detach(t));
    CHECK_EQ(ivy_task_detach(t), IVY_EBADF);
    CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_EBADF);

    /* Forged handle */
    t.id = 0xdeadbeef12345678ull;
    CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_EBADF);

    /* NULL out-parameters */
    OK(ivy_task_spawn(return_arg_plus_one, NULL, NULL, &t));
    CHECK_EQ(ivy_task_is_finished(t, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_task_id(t, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_task_join(t, NULL, -7), IVY_EINVAL); /* bad deadline */
    OK(ivy_task_join(t, NULL, IVY_FOREVER));         /* result is optional */
    return NULL;
}

static void test_stale_handles(void) { h_run(2, stale_handles_main, NULL); }

static void *sleep_ms_then_return(void *arg) {
    int rc = ivy_time_sleep((int64_t)(intptr_t)arg);
    return (void *)(intptr_t)(rc == 0 ? 100 : rc);
}

static void *join_timeout_main(void *arg) {
    ivy_task_t t;
    void *r = (void *)1;
    int finished = -1;
    int64_t t0;
    (void)arg;
    OK(ivy_task_spawn(sleep_ms_then_return, (void *)300, NULL, &t));
    OK(ivy_task_is_finished(t, &finished));
    CHECK_EQ(finished, 0);
    t0 = ivy_time_now();
    CHECK_EQ(ivy_task_join(t, &r, ivy_time_now() + 30), IVY_ETIMEDOUT);
    CHECK(ivy_time_now() - t0 >= 30);
    CHECK(ivy_time_now() - t0 < 2000);
    CHECK_EQ((uintptr_t)r, 1); /* untouched on error */
    CHECK_EQ(ivy_task_join(t, &r, 0), IVY_ETIMEDOUT); /* passed deadline: a try */
    /* the handle is still valid after a timeout */
    OK(ivy_task_join(t, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, 100);

    OK(ivy_task_spawn(return_arg_plus_one, NULL, NULL, &t));
    while (ivy_task_is_finished(t, &finished) == 0 && !finished) OK(ivy_time_sleep(1));
    CHECK_EQ(finished, 1);
    OK(ivy_task_join(t, &r, 0)); /* finished: a try succeeds */
    CHECK_EQ((uintptr_t)r, 1);
    return NULL;
}

static void test_join_timeout(void) { h_run(2, join_timeout_main, NULL); }

static void *join_forever_body(void *arg) {
    ivy_task_t t = *(ivy_task_t *)arg;
    void *r = NULL;
    OK(ivy_task_join(t, &r, IVY_FOREVER));
    return r;
}

static void *concurrent_join_main(void *arg) {
    ivy_task_t target, joiner;
    void *r = NULL;
    int rc = 0, tries;
    (void)arg;
    OK(ivy_task_spawn(sleep_ms_then_return, (void *)200, NULL, &target));
    OK(ivy_task_spawn(join_forever_body, &target, NULL, &joiner));
    /* Once the joiner waits, a second join is EBUSY (not a lost wake-up). */
    for (tries = 0; tries < 1000; tries++) {
        rc = ivy_task_join(target, &r, 0);
        if (rc == IVY_EBUSY) break;
        CHECK_EQ(rc, IVY_ETIMEDOUT);
        OK(ivy_time_sleep(1));
    }
    CHECK_EQ(rc, IVY_EBUSY);
    CHECK_EQ(ivy_task_detach(target), IVY_EBUSY);
    OK(ivy_task_join(joiner, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, 100);
    CHECK_EQ(ivy_task_join(target, &r, IVY_FOREVER), IVY_EBADF);
    return NULL;
}

static void test_concurrent_join_is_busy(void) { h_run(2, concurrent_join_main, NULL); }

struct self_join {
    ivy_task_t self;
    int ready;
};

static void *self_join_body(void *arg) {
    struct self_join *s = arg;
    void *r;
    while (!H_ATOMIC_LOAD(&s->ready)) OK(ivy_time_sleep(1));
    CHECK_EQ(ivy_task_join(s->self, &r, IVY_FOREVER), IVY_EDEADLK);
    return (void *)3;
}

static void *self_join_main(void *arg) {
    struct self_join s;
    void *r = NULL;
    (void)arg;
    s.ready = 0;
    OK(ivy_task_spawn(self_join_body, &s, NULL, &s.self));
    H_ATOMIC_STORE(&s.ready, 1);
    OK(ivy_task_join(s.self, &r, IVY_FOREVER));
    CHECK_EQ((uintptr_t)r, 3);
    return NULL;
}

static void test_self_join_deadlocks(void) { h_run(2, self_join_main, NULL); }

/* ---- cancellation -------------------------------------------------------------- */

struct cancel_probe {
    int started;
    int sleep_rc;
    int later_rc[3];
    int cancelled_flag;
};

static void *cancellable_sleeper(void *arg) {
    struct cancel_probe *p = arg;
    H_ATOMIC_STORE(&p->started, 1);
    p->sleep_rc = ivy_time_sleep_until(IVY_FOREVER);
    /* Cancellation is sticky: every later blocking call sees it too. */
    p->later_rc[0] = ivy_time_sleep(0);
    p->later_rc[1] = ivy_task_yield();
    p->later_rc[2] = ivy_time_sleep(10);
    OK(ivy_task_is_cancelled(&p->cancelled_flag));
    /* A task that handles the cancellation and returns normally reports its value. */
    return (void *)42;
}

static void *cancel_main(void *arg) {
    struct cancel_probe p;
    ivy_task_t t;
    void *r = NULL;
    int c = -1;
    (void)arg;
    memset(&p, 0, sizeof p);
    OK(ivy_task_is_cancelled(&c));
    CHECK_EQ(c, 0);
    CHECK_EQ(ivy_task_is_cancelled(NULL), IVY_EINVAL);
    OK(ivy_task_spawn(cancellable_sleeper, &p, NULL, &t));
    while (!H_ATOMIC_LOAD(&p.started)) OK(ivy_time_sleep(1));
    OK(ivy_time_sleep(5));
    OK(ivy_task_cancel(t));
    OK(ivy_task_cancel(t)); /* idempotent */
    OK(ivy_task_join(t, &r, ivy_time_now() + 5000));
    CHECK_EQ((uintptr_t)r, 42);
    CHECK_EQ(p.sleep_rc, IVY_ECANCELED);
    CHECK_EQ(p.later_rc[0], IVY_ECANCELED);
    CHECK_EQ(p.later_rc[1], IVY_ECANCELED);
    CHECK_EQ(p.later_rc[2], IVY_ECANCELED);
    CHECK_EQ(p.cancelled_flag, 1);
    return NULL;
}

static void test_cancel_sleeping_task(void) {
    int i;
    for (i = 0; i < 20; i++) h_run(i % 2 + 1, cancel_main, NULL);
}

static void *cancel_before_start_main(void *arg) {
    struct cancel_probe p;
    ivy_task_t t;
    void *r = (void *)1;
    (void)arg;
    memset(&p, 0, sizeof p);
    /* One worker, and this task does not block between spawn and cancel: the
     * child cannot have started, so it never runs at all. */
    OK(ivy_task_spawn(cancellable_sleeper, &p, NULL, &t));
    OK(ivy_task_cancel(t));
    CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_ECANCELED);
    CHECK(r == NULL);
    CHECK_EQ(H_ATOMIC_LOAD(&p.started), 0);
    CHECK_EQ(ivy_task_join(t, &r, IVY_FOREVER), IVY_EBADF); /* the handle was freed */
    return NULL;
}

static void test_cancel_before_start(void) { h_run(1, cancel_before_start_main, NULL); }

struct joiner_arg {
    ivy_task_t target;
    int rc;
};

static void *join_and_record(void *arg) {
    struct joiner_arg *j = arg;
    void *r;
    j->rc = ivy_task_join(j->target, &r, IVY_FOREVER);
    return NULL;
}

static void *cancel_joiner_main(void *arg) {
    struct joiner_arg j;
    ivy_task_t joiner;
    void *r = NULL;
    (void)arg;
    j.rc = 1;
    OK(ivy_task_spawn(sleep_ms_then_return, (void *)100000, NULL, &j.target));
    OK(ivy_task_spawn(join_and_record, &j, NULL, &joiner));
    OK(ivy_time_sleep(20));
    OK(ivy_task_cancel(joiner));
    OK(ivy_task_join(joiner, NULL, IVY_FOREVER));
    CHECK_EQ(j.rc, IVY_ECANCELED); /* the joiner was cancelled while waiting */
    /* the target's handle is still valid and joinable */
    OK(ivy_task_cancel(j.target));
    OK(ivy_task_join(j.target, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, IVY_ECANCELED); /* its sleep returned ECANCELED */
    return NULL;
}

static void test_cancel_joiner(void) { h_run(2, cancel_joiner_main, NULL); }

struct shield_probe {
    int started;
    int before, inside, after;
};

static void *shielded_cleanup(void *arg) {
    struct shield_probe *p = arg;
    p->inside = ivy_time_sleep(5); /* blocks normally although the task is cancelled */
    return (void *)55;
}

static void *cancelled_then_cleans_up(void *arg) {
    struct shield_probe *p = arg;
    void *r = NULL;
    H_ATOMIC_STORE(&p->started, 1);
    p->before = ivy_time_sleep_until(IVY_FOREVER);
    OK(ivy_task_shield(shielded_cleanup, p, &r));
    CHECK_EQ((uintptr_t)r, 55);
    p->after = ivy_time_sleep(0); /* still cancelled after the shield */
    return NULL;
}

static void *shield_main(void *arg) {
    struct shield_probe p;
    ivy_task_t t;
    void *r;
    (void)arg;
    memset(&p, 0, sizeof p);
    p.inside = 1;
    OK(ivy_task_spawn(cancelled_then_cleans_up, &p, NULL, &t));
    while (!H_ATOMIC_LOAD(&p.started)) OK(ivy_time_sleep(1));
    OK(ivy_task_cancel(t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK_EQ(p.before, IVY_ECANCELED);
    CHECK_EQ(p.inside, 0);
    CHECK_EQ(p.after, IVY_ECANCELED);
    CHECK_EQ(ivy_task_shield(NULL, NULL, &r), IVY_EINVAL);
    OK(ivy_task_shield(shielded_cleanup, &p, NULL)); /* not cancelled: just runs */
    return NULL;
}

static void test_shield(void) {
    struct shield_probe p;
    void *r = NULL;
    h_run(2, shield_main, NULL);
    OK(ivy_task_shield(shielded_cleanup, &p, &r)); /* a plain thread */
    CHECK_EQ((uintptr_t)r, 55);
    CHECK_EQ(p.inside, 0);
}

/* ---- identity -------------------------------------------------------------------- */

static void *identity_body(void *arg) {
    uint64_t *id = arg;
    char buf[32];
    size_t len = 99;
    OK(ivy_task_current_id(id));
    OK(ivy_task_current_name(buf, sizeof buf, &len));
    CHECK(strcmp(buf, "worker-7") == 0);
    CHECK_EQ(len, 8);
    CHECK_EQ(ivy_task_current_name(buf, 8, &len), IVY_ERANGE); /* no room for the NUL */
    CHECK_EQ(len, 8);
    OK(ivy_task_current_name(buf, 9, NULL));
    CHECK_EQ(ivy_task_current_name(buf, 0, &len), IVY_EINVAL);
    CHECK_EQ(ivy_task_current_name(NULL, 10, &len), IVY_EINVAL);
    CHECK_EQ(ivy_task_current_id(NULL), IVY_EINVAL);
    return NULL;
}

static void *unnamed_body(void *arg) {
    char buf[4] = "xyz";
    size_t len = 99;
    (void)arg;
    OK(ivy_task_current_name(buf, sizeof buf, &len));
    CHECK_EQ(len, 0);
    CHECK_EQ(buf[0], 0);
    return NULL;
}

static void *identity_main(void *arg) {
    ivy_spawn_opts_t opts;
    ivy_task_t t;
    uint64_t inside = 0, outside = 0, me = 0;
    char buf[16];
    (void)arg;
    OK(ivy_task_current_name(buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "main") == 0);
    OK(ivy_task_current_id(&me));
    memset(&opts, 0, sizeof opts);
    opts.name = "worker-7";
    OK(ivy_task_spawn(identity_body, &inside, &opts, &t));
    OK(ivy_task_id(t, &outside));
    {
        char name[16];
        size_t len = 0;
        OK(ivy_task_name(t, name, sizeof name, &len));
        CHECK(strcmp(name, "worker-7") == 0);
        CHECK_EQ(len, 8);
        CHECK_EQ(ivy_task_name(t, name, 4, &len), IVY_ERANGE);
        CHECK_EQ(len, 8);
        CHECK_EQ(ivy_task_name(t, NULL, 4, &len), IVY_EINVAL);
        CHECK_EQ(ivy_task_name(t, name, 0, NULL), IVY_EINVAL);
    }
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK(inside != 0);
    CHECK_EQ(inside, outside);
    CHECK(inside != me);
    OK(ivy_task_spawn(unnamed_body, NULL, NULL, &t));
    {
        char name[4] = "xyz";
        OK(ivy_task_name(t, name, sizeof name, NULL));
        CHECK_EQ(name[0], 0);
    }
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK_EQ(ivy_task_name(t, buf, sizeof buf, NULL), IVY_EBADF);
    return NULL;
}

static void test_identity(void) {
    uint64_t id;
    char buf[8];
    int c;
    CHECK_EQ(ivy_task_current_id(&id), IVY_EPERM);
    CHECK_EQ(ivy_task_current_name(buf, sizeof buf, NULL), IVY_EPERM);
    CHECK_EQ(ivy_task_is_cancelled(&c), IVY_EPERM);
    h_run(2, identity_main, NULL);
}

/* ---- stacks and hooks -------------------------------------------------------------- */

static void *big_frame(void *arg) {
    /* C code may need far more stack than Rust code: the default for C tasks is
     * IVY_DEFAULT_STACK_SIZE (1 MiB), so a 600 KiB frame fits. */
    volatile char buf[600 * 1024];
    size_t i, sum = 0;
    (void)arg;
    for (i = 0; i < sizeof buf; i += 4096) buf[i] = (char)i;
    for (i = 0; i < sizeof buf; i += 4096) sum += (unsigned char)buf[i];
    return (void *)sum;
}

static void *stack_main(void *arg) {
    ivy_task_t t;
    ivy_spawn_opts_t opts;
    (void)arg;
    OK(ivy_task_spawn(big_frame, NULL, NULL, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    memset(&opts, 0, sizeof opts);
    opts.stack_size = 2 << 20; /* an explicit size works too */
    OK(ivy_task_spawn(big_frame, NULL, &opts, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    return NULL;
}

static void test_c_default_stack(void) {
    CHECK_EQ(IVY_DEFAULT_STACK_SIZE, 1 << 20);
    h_run(1, stack_main, NULL);
}

struct hook_log {
    char events[8];
    int n;
};

static void hook_start(void *arg) {
    struct hook_log *l = arg;
    l->events[l->n++] = 's';
}
static void hook_exit(void *arg) {
    struct hook_log *l = arg;
    l->events[l->n++] = 'x';
}
static void *hooked_entry(void *arg) {
    struct hook_log *l = arg;
    l->events[l->n++] = 'e';
    OK(ivy_time_sleep(1)); /* hooks bracket the whole task, blocking calls included */
    return NULL;
}

static void *hooks_main(void *arg) {
    struct hook_log log;
    ivy_spawn_opts_t opts;
    ivy_task_t t;
    (void)arg;
    memset(&log, 0, sizeof log);
    memset(&opts, 0, sizeof opts);
    opts.on_start = hook_start;
    opts.on_start_arg = &log;
    opts.on_exit = hook_exit;
    opts.on_exit_arg = &log;
    OK(ivy_task_spawn(hooked_entry, &log, &opts, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    CHECK(strcmp(log.events, "sex") == 0);
    /* cancelled before it starts: no hook runs */
    memset(&log, 0, sizeof log);
    OK(ivy_task_spawn(hooked_entry, &log, &opts, &t));
    OK(ivy_task_cancel(t));
    CHECK_EQ(ivy_task_join(t, NULL, IVY_FOREVER), IVY_ECANCELED);
    CHECK_EQ(log.n, 0);
    return NULL;
}

static void test_hooks(void) { h_run(1, hooks_main, NULL); }

/* ---- explicit runtimes ---------------------------------------------------------------- */

static void *free_own_runtime(void *arg) {
    ivy_runtime_t rt = *(ivy_runtime_t *)arg;
    CHECK_EQ(ivy_runtime_free(rt), IVY_EPERM);
    return (void *)9;
}

struct spawner {
    ivy_runtime_t rt;
    int sum;
};

static void *thread_spawner(void *arg) {
    struct spawner *s = arg;
    int i;
    for (i = 0; i < 100; i++) {
        ivy_task_t t;
        void *r = NULL;
        OK(ivy_runtime_spawn(s->rt, return_arg_plus_one, (void *)(uintptr_t)i, NULL, &t));
        OK(ivy_task_join(t, &r, IVY_FOREVER));
        s->sum += (int)(uintptr_t)r;
    }
    return NULL;
}

static void test_explicit_runtime(void) {
    ivy_runtime_t rt, zero;
    ivy_config_t cfg;
    ivy_task_t t, leftover;
    void *r = NULL;
    size_t workers = 0;
    struct spawner sp[2];
    struct cancel_probe probe;
    pthread_t threads[2];
    int i;

    memset(&zero, 0, sizeof zero);
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 2;
    CHECK_EQ(ivy_runtime_new(&cfg, NULL), IVY_EINVAL);
    cfg.workers = 9999;
    CHECK_EQ(ivy_runtime_new(&cfg, &rt), IVY_EINVAL);
    cfg.workers = 2;
    OK(ivy_runtime_new(&cfg, &rt));
    OK(ivy_runtime_workers(rt, &workers));
    CHECK_EQ(workers, 2);
    CHECK_EQ(ivy_runtime_workers(rt, NULL), IVY_EINVAL);
    CHECK_EQ(ivy_runtime_workers(zero, &workers), IVY_EBADF);

    /* spawn from a plain thread, join from a plain thread with a deadline */
    OK(ivy_runtime_spawn(rt, sleep_ms_then_return, (void *)200, NULL, &t));
    CHECK_EQ(ivy_task_join(t, &r, ivy_time_now() + 10), IVY_ETIMEDOUT);
    OK(ivy_task_join(t, &r, IVY_FOREVER));
    CHECK_EQ((intptr_t)r, 100);

    OK(ivy_runtime_block_on(rt, return_arg_plus_one, (void *)10, &r));
    CHECK_EQ((uintptr_t)r, 11);
    CHECK_EQ(ivy_runtime_block_on(rt, NULL, NULL, &r), IVY_EINVAL);
    OK(ivy_runtime_block_on(rt, free_own_runtime, &rt, &r));
    CHECK_EQ((uintptr_t)r, 9);

    /* several OS threads spawning onto one runtime */
    for (i = 0; i < 2; i++) {
        sp[i].rt = rt;
        sp[i].sum = 0;
        CHECK_EQ(pthread_create(&threads[i], NULL, thread_spawner, &sp[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        CHECK_EQ(pthread_join(threads[i], NULL), 0);
        CHECK_EQ(sp[i].sum, 100 * 101 / 2);
    }

    CHECK_EQ(ivy_runtime_spawn(rt, NULL, NULL, NULL, &t), IVY_EINVAL);
    CHECK_EQ(ivy_runtime_spawn(rt, return_arg_plus_one, NULL, NULL, NULL), IVY_EINVAL);

    /* free cancels leftover tasks and waits for them; their handles still report */
    memset(&probe, 0, sizeof probe);
    OK(ivy_runtime_spawn(rt, cancellable_sleeper, &probe, NULL, &leftover));
    while (!H_ATOMIC_LOAD(&probe.started)) OK(ivy_time_sleep(1));
    OK(ivy_runtime_spawn(rt, return_arg_plus_one, NULL, NULL, &t)); /* may never start */
    OK(ivy_runtime_free(rt));
    OK(ivy_task_join(leftover, &r, IVY_FOREVER));
    CHECK_EQ((uintptr_t)r, 42);
    CHECK_EQ(probe.sleep_rc, IVY_ECANCELED);
    {
        int rc = ivy_task_join(t, &r, IVY_FOREVER); /* ran, or was cancelled before it started */
        CHECK(rc == 0 || rc == IVY_ECANCELED);
    }

    CHECK_EQ(ivy_runtime_free(rt), IVY_EBADF);
    CHECK_EQ(ivy_runtime_spawn(rt, return_arg_plus_one, NULL, NULL, &t), IVY_EBADF);
    CHECK_EQ(ivy_runtime_block_on(rt, return_arg_plus_one, NULL, &r), IVY_EBADF);
    CHECK_EQ(ivy_runtime_free(zero), IVY_EBADF);
}

/* ---- stress: many short sleeps over two workers ------------------------------------------ */

static void *tiny_sleeper(void *arg) {
    OK(ivy_time_sleep((int64_t)((uintptr_t)arg % 3)));
    OK(ivy_task_yield());
    return arg;
}

static void *stress_main(void *arg) {
    enum { N = 3000 };
    static ivy_task_t tasks[N];
    uintptr_t sum = 0;
    int i;
    (void)arg;
    for (i = 0; i < N; i++) OK(ivy_task_spawn(tiny_sleeper, (void *)(uintptr_t)i, NULL, &tasks[i]));
    for (i = N - 1; i >= 0; i--) {
        void *r = NULL;
        OK(ivy_task_join(tasks[i], &r, IVY_FOREVER));
        sum += (uintptr_t)r;
    }
    CHECK_EQ(sum, (uintptr_t)N * (N - 1) / 2);
    return NULL;
}

static void test_stress(void) {
    int i;
    for (i = 0; i < 3; i++) h_run(2, stress_main, NULL);
}

int main(void) {
    RUN(test_strerror);
    RUN(test_now_is_monotonic);
    RUN(test_sleep_on_plain_thread);
    RUN(test_sleep_in_tasks);
    RUN(test_run);
    RUN(test_spawn_join_many);
    RUN(test_spawn_errors);
    RUN(test_stale_handles);
    RUN(test_join_timeout);
    RUN(test_concurrent_join_is_busy);
    RUN(test_self_join_deadlocks);
    RUN(test_cancel_sleeping_task);
    RUN(test_cancel_before_start);
    RUN(test_cancel_joiner);
    RUN(test_shield);
    RUN(test_identity);
    RUN(test_c_default_stack);
    RUN(test_hooks);
    RUN(test_explicit_runtime);
    RUN(test_stress);
    H_REPORT();
}
