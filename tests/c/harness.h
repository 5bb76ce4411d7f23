/* A tiny test harness for the C suite: CHECK records a failure (from any thread
 * or task) and carries on; RUN runs one test and counts it passed when no CHECK
 * failed during it. main() ends with H_REPORT(), which prints "N passed, N failed"
 * and returns non-zero on failure. */
#ifndef IVY_TEST_HARNESS_H
#define IVY_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ivy.h"

static int h_check_failures;
static int h_passed;
static int h_failed;

#define H_ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define H_ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define H_ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            H_ATOMIC_ADD(&h_check_failures, 1);                                      \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                \
    do {                                                                              \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);                       \
        if (h_a_ != h_b_) {                                                           \
            fprintf(stderr, "  %s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n",    \
                    __FILE__, __LINE__, #a, #b, h_a_, h_b_);                          \
            H_ATOMIC_ADD(&h_check_failures, 1);                                       \
        }                                                                             \
    } while (0)

/* An ivy call that must succeed. */
#define OK(call) CHECK_EQ((call), 0)

#define RUN(test)                                                   \
    do {                                                            \
        int h_before_ = H_ATOMIC_LOAD(&h_check_failures);           \
        test();                                                     \
        if (H_ATOMIC_LOAD(&h_check_failures) == h_before_) {        \
            h_passed++;                                             \
            printf("ok   %s\n", #test);                             \
        } else {                                                    \
            h_failed++;                                             \
            printf("FAIL %s\n", #test);                             \
        }                                                           \
        fflush(stdout);                                             \
    } while (0)

#define H_REPORT()                                                  \
    do {                                                            \
        printf("%d passed, %d failed\n", h_passed, h_failed);       \
        return h_failed == 0 ? 0 : 1;                               \
    } while (0)

/* Runs `entry(arg)` as the main task of a fresh runtime with `workers` workers
 * and checks that ivy_runtime_run succeeded; returns the main task's result. */
static inline void *h_run(size_t workers, ivy_task_fn_t entry, void *arg) {
    ivy_config_t cfg;
    void *result = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = workers;
    OK(ivy_runtime_run(&cfg, entry, arg, &result));
    return result;
}

#endif
