/* Runtimes for C (issue 11, round 2): ivy_runtime_current and its borrowed
 * handles, the runtime options of ivy_config_t (max blocking threads,
 * blocking keep-alive, thread-name prefix, debug mode, slow-task threshold),
 * and the workers' scheduling policy (SCHED_BATCH unless IVY_SCHED_BATCH=0). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

/* How many threads of this process are named `name` right now. */
static int threads_named(const char *name) {
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int count = 0;
    if (dir == NULL) return -1;
    while ((e = readdir(dir)) != NULL) {
        char path[300], comm[64];
        FILE *f;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (f == NULL) continue; /* the thread exited meanwhile */
        if (fgets(comm, sizeof comm, f) != NULL) {
            comm[strcspn(comm, "\n")] = 0;
            if (strcmp(comm, name) == 0) count++;
        }
        fclose(f);
    }
    closedir(dir);
    return count;
}

static void *return_arg(void *arg) { return arg; }

/* ---- ivy_runtime_current --------------------------------------------------- */

static ivy_runtime_t saved_borrowed;

/* On a plain (blocking-pool) thread: spawn back onto the runtime through the
 * borrowed handle and join. */
static void *spawn_back(void *arg) {
    ivy_runtime_t *rt = arg;
    ivy_task_t t;
    void *res = NULL;
    CHECK_EQ(ivy_runtime_current(rt), IVY_EPERM); /* a plain thread has none */
    OK(ivy_runtime_spawn(*rt, return_arg, (void *)42, NULL, &t));
    OK(ivy_task_join(t, &res, IVY_FOREVER));
    CHECK_EQ((uintptr_t)res, 42);
    CHECK_EQ(ivy_runtime_free(*rt), IVY_EPERM); /* borrowed: not ours to free */
    return (void *)1;
}

static void *current_main(void *arg) {
    ivy_runtime_t a, b;
    ivy_blocking_t job;
    size_t workers = 0;
    void *res = NULL;
    (void)arg;
    CHECK_EQ(ivy_runtime_current(NULL), IVY_EINVAL);
    OK(ivy_runtime_current(&a));
    OK(ivy_runtime_current(&b));
    CHECK(a.id == b.id); /* one borrowed handle per runtime */
    OK(ivy_runtime_workers(a, &workers));
    CHECK_EQ(workers, 3);
    CHECK_EQ(ivy_runtime_free(a), IVY_EPERM);
    OK(ivy_blocking_spawn(spawn_back, &a, &job));
    OK(ivy_blocking_join(job, &res, IVY_FOREVER));
    CHECK_EQ((uintptr_t)res, 1);
    /* block_on through it from a task of the same runtime */
    OK(ivy_runtime_block_on(a, return_arg, (void *)9, &res));
    CHECK_EQ((uintptr_t)res, 9);
    saved_borrowed = a;
    return NULL;
}

static void *current_id_body(void *arg) {
    ivy_runtime_t *out = arg;
    OK(ivy_runtime_current(out));
    return NULL;
}

static void test_runtime_current(void) {
    ivy_runtime_t own, borrowed, again;
    ivy_task_t t;
    size_t workers = 0;
    ivy_config_t cfg;
    int i;
    CHECK_EQ(ivy_runtime_current(&own), IVY_EPERM);
    for (i = 0; i < 5; i++) {
        h_run(3, current_main, NULL);
        /* The runtime of ivy_runtime_run is gone: so is its borrowed handle. */
        CHECK_EQ(ivy_runtime_workers(saved_borrowed, &workers), IVY_EBADF);
        CHECK_EQ(ivy_runtime_spawn(saved_borrowed, return_arg, NULL, NULL, &t), IVY_EBADF);
        CHECK_EQ(ivy_runtime_free(saved_borrowed), IVY_EBADF);
    }

    /* An explicit runtime: its tasks get a borrowed handle, not the owner's. */
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 2;
    OK(ivy_runtime_new(&cfg, &own));
    OK(ivy_runtime_block_on(own, current_id_body, &borrowed, NULL));
    OK(ivy_runtime_block_on(own, current_id_body, &again, NULL));
    CHECK(borrowed.id != own.id);
    CHECK(borrowed.id == again.id);
    CHECK_EQ(ivy_runtime_free(borrowed), IVY_EPERM);
    OK(ivy_runtime_workers(borrowed, &workers));
    CHECK_EQ(workers, 2);
    OK(ivy_runtime_spawn(borrowed, return_arg, NULL, NULL, &t));
    OK(ivy_task_join(t, NULL, IVY_FOREVER));
    OK(ivy_runtime_free(own));
    CHECK_EQ(ivy_runtime_workers(borrowed, &workers), IVY_EBADF);
    CHECK_EQ(ivy_runtime_free(borrowed), IVY_EBADF);
}

/* ---- max_blocking_threads ---------------------------------------------------- */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;
static int jobs_running, jobs_max, jobs_done;

static void *gated_job(void *arg) {
    int now = H_ATOMIC_ADD(&jobs_running, 1);
    int max;
    (void)arg;
    while ((max = H_ATOMIC_LOAD(&jobs_max)) < now &&
           !__atomic_compare_exchange_n(&jobs_max, &max, now, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
    }
    pthread_mutex_lock(&gate_lock);
    while (!gate_open) pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    H_ATOMIC_ADD(&jobs_running, -1);
    H_ATOMIC_ADD(&jobs_done, 1);
    return NULL;
}

#define GATED_JOBS 6

static void *max_blocking_main(void *arg) {
    ivy_blocking_t jobs[GATED_JOBS];
    int i, waited;
    (void)arg;
    gate_open = 0;
    jobs_running = jobs_max = jobs_done = 0;
    for (i = 0; i < GATED_JOBS; i++) OK(ivy_blocking_spawn(gated_job, NULL, &jobs[i]));
    /* Two jobs start and wait at the gate... */
    for (waited = 0; H_ATOMIC_LOAD(&jobs_running) < 2 && waited < 10000; waited++)
        OK(ivy_time_sleep(1));
    CHECK_EQ(H_ATOMIC_LOAD(&jobs_running), 2);
    /* ...and no third one starts while they hold both threads. */
    OK(ivy_time_sleep(100));
    CHECK_EQ(H_ATOMIC_LOAD(&jobs_running), 2);
    CHECK_EQ(threads_named("mbt-blocking"), 2);
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    for (i = 0; i < GATED_JOBS; i++) OK(ivy_blocking_join(jobs[i], NULL, IVY_FOREVER));
    CHECK_EQ(jobs_done, GATED_JOBS);
    CHECK_EQ(jobs_max, 2);
    CHECK(threads_named("mbt-blocking") <= 2);
    return NULL;
}

static void test_max_blocking_threads(void) {
    ivy_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    cfg.max_blocking_threads = 2;
    cfg.thread_name = "mbt";
    OK(ivy_runtime_run(&cfg, max_blocking_main, NULL, NULL));
}

/* ---- thread names and the blocking keep-alive --------------------------------- */

static void *count_pool_threads(void *arg) {
    (void)arg;
    return (void *)(intptr_t)threads_named("tnx-blocking");
}

static void *names_main(void *arg) {
    ivy_blocking_t job;
    void *seen = NULL;
    int waited;
    (void)arg;
    /* a worker names itself when its thread starts: wait for the second one */
    for (waited = 0; threads_named("tnx-0") + threads_named("tnx-1") < 2 && waited < 5000;
         waited++)
        OK(ivy_time_sleep(1));
    CHECK_EQ(threads_named("tnx-0"), 1);
    CHECK_EQ(threads_named("tnx-1"), 1);
    CHECK_EQ(threads_named("tnx-2"), 0);
    CHECK_EQ(threads_named("ivy-worker-0"), 0);
    OK(ivy_blocking_spawn(count_pool_threads, NULL, &job));
    OK(ivy_blocking_join(job, &seen, IVY_FOREVER));
    CHECK_EQ((intptr_t)seen, 1); /* the job ran on a thread named PREFIX-blocking */
    /* keep-alive 50 ms: the idle pool thread exits (the default is 10 s) */
    for (waited = 0; threads_named("tnx-blocking") > 0 && waited < 300; waited++)
        OK(ivy_time_sleep(10));
    CHECK_EQ(threads_named("tnx-blocking"), 0);
    return NULL;
}

static void test_thread_names_and_keep_alive(void) {
    ivy_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 2;
    cfg.thread_name = "tnx";
    cfg.blocking_keep_alive_ms = 50;
    OK(ivy_runtime_run(&cfg, names_main, NULL, NULL));
    {
        /* The workers were joined; a joined thread's /proc entry can outlive
         * pthread_join by a moment (the kernel wakes the joiner before it
         * reaps the thread), so allow it 2 s to go. */
        int waited;
        for (waited = 0; threads_named("tnx-0") > 0 && waited < 200; waited++)
            OK(ivy_time_sleep(10));
        CHECK_EQ(threads_named("tnx-0"), 0);
    }

    /* A prefix must be a non-empty UTF-8 string. */
    cfg.thread_name = "";
    CHECK_EQ(ivy_runtime_run(&cfg, names_main, NULL, NULL), IVY_EINVAL);
    cfg.thread_name = "\xff\xfe";
    CHECK_EQ(ivy_runtime_run(&cfg, names_main, NULL, NULL), IVY_EINVAL);
}

/* ---- debug mode ------------------------------------------------------------------ */

/* Runs `entry` on a runtime made from `cfg` with stderr captured into `buf`. */
static void run_capturing_stderr(const ivy_config_t *cfg, ivy_task_fn_t entry, char *buf,
                                 size_t cap) {
    char path[] = "/tmp/ivy-test-stderr-XXXXXX";
    int fd = mkstemp(path), saved;
    ssize_t n;
    CHECK(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    OK(ivy_runtime_run(cfg, entry, NULL, NULL));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
}

static void *sleep_forever(void *arg) {
    OK(ivy_event_set(*(ivy_event_t *)arg));
    while (ivy_time_sleep(100000) == 0) {
    }
    return NULL;
}

/* Runs 300 ms without suspending, and leaves a task behind at shutdown. */
static void *slow_main(void *arg) {
    int64_t t0 = ivy_time_now();
    ivy_task_t t;
    ivy_event_t started;
    (void)arg;
    OK(ivy_event_new(&started));
    OK(ivy_task_spawn(sleep_forever, &started, NULL, &t));
    OK(ivy_task_detach(t));
    OK(ivy_event_wait(started, IVY_FOREVER)); /* it is parked: a leftover */
    OK(ivy_event_free(started));
    while (ivy_time_now() - t0 < 300) {
    }
    return NULL;
}

static void test_debug_mode(void) {
    ivy_config_t cfg;
    static char out[8192];
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;

    cfg.debug = 1;
    cfg.slow_task_ms = 30;
    run_capturing_stderr(&cfg, slow_main, out, sizeof out);
    CHECK(strstr(out, "ivy debug: task 'main'") != NULL);
    CHECK(strstr(out, "without yielding") != NULL);
    CHECK(strstr(out, "shutdown cancels 1 leftover task") != NULL);

    /* slow_task_ms alone turns it on */
    cfg.debug = 0;
    run_capturing_stderr(&cfg, slow_main, out, sizeof out);
    CHECK(strstr(out, "without yielding") != NULL);

    /* negative: off, even with IVY_DEBUG=1 in the environment */
    setenv("IVY_DEBUG", "1", 1);
    cfg.debug = -1;
    run_capturing_stderr(&cfg, slow_main, out, sizeof out);
    CHECK(strstr(out, "ivy debug") == NULL);
    /* zero: the environment decides */
    cfg.debug = 0;
    cfg.slow_task_ms = 0;
    run_capturing_stderr(&cfg, slow_main, out, sizeof out);
    CHECK(strstr(out, "shutdown cancels 1 leftover task") != NULL);
    unsetenv("IVY_DEBUG");
    run_capturing_stderr(&cfg, slow_main, out, sizeof out);
    CHECK(strstr(out, "ivy debug") == NULL);
}

/* ---- the workers' scheduling policy ---------------------------------------------- */

static void *own_policy(void *arg) {
    (void)arg;
    return (void *)(intptr_t)sched_getscheduler(0);
}

/* Returns the policy of a task on each of the 2 workers, checked equal, and
 * stores the policy of a blocking-pool job in *pool. */
static void *policy_main(void *arg) {
    intptr_t *pool = arg;
    ivy_task_t t[8];
    ivy_blocking_t job;
    void *res = NULL, *first = NULL;
    int i;
    /* They may run on either worker: every one must see the same policy. */
    for (i = 0; i < 8; i++) OK(ivy_task_spawn(own_policy, NULL, NULL, &t[i]));
    for (i = 0; i < 8; i++) {
        OK(ivy_task_join(t[i], &res, IVY_FOREVER));
        if (i == 0) first = res;
        CHECK_EQ((intptr_t)res, (intptr_t)first);
    }
    CHECK_EQ((intptr_t)own_policy(NULL), (intptr_t)first);
    OK(ivy_blocking_spawn(own_policy, NULL, &job));
    OK(ivy_blocking_join(job, &res, IVY_FOREVER));
    *pool = (intptr_t)res;
    return first;
}

static void test_sched_policy(void) {
    ivy_config_t cfg;
    void *res = NULL;
    intptr_t pool = -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 2;

    unsetenv("IVY_SCHED_BATCH");
    OK(ivy_runtime_run(&cfg, policy_main, &pool, &res));
    CHECK_EQ((intptr_t)res, SCHED_BATCH);
    CHECK_EQ(pool, SCHED_OTHER); /* blocking-pool threads keep the caller's */
    CHECK_EQ(sched_getscheduler(0), SCHED_OTHER);

    setenv("IVY_SCHED_BATCH", "0", 1);
    OK(ivy_runtime_run(&cfg, policy_main, &pool, &res));
    CHECK_EQ((intptr_t)res, SCHED_OTHER);
    CHECK_EQ(pool, SCHED_OTHER);

    setenv("IVY_SCHED_BATCH", "perhaps", 1);
    CHECK_EQ(ivy_runtime_run(&cfg, policy_main, &pool, &res), IVY_EINVAL);
    unsetenv("IVY_SCHED_BATCH");
}

int main(void) {
    RUN(test_sched_policy);
    RUN(test_runtime_current);
    RUN(test_max_blocking_threads);
    RUN(test_thread_names_and_keep_alive);
    RUN(test_debug_mode);
    H_REPORT();
}
