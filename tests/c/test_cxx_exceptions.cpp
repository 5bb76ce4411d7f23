// C++ exception state per task (issue 11, item 9): the C++ runtime keeps the
// stack of caught exceptions (what `throw;` and std::current_exception() read,
// what the end of every catch block pops) and std::uncaught_exceptions() per
// OS thread. Tasks on one worker share the thread, so ivy swaps that state on
// every switch (src/task/thread_state.rs). Every test here runs its tasks on ONE
// worker and interleaves catch blocks in a non-nested order, many times.
//
// Built and run by tests/c/run.sh with g++ and clang++ (-std=c++17 -Wall -Wextra
// -Werror -pedantic), against libivy.so and libivy.a, under valgrind and under
// ASan+UBSan. Uses the C API directly (the C++ binding has tests of its own).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>

#include "ivy.h"

static int passed, failed;
static std::atomic<int> check_failures{0};

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)
#define OK(call) CHECK((call) == 0)

template <class F> static void run_test(const char *name, F f) {
    int before = check_failures;
    f();
    if (check_failures == before) {
        passed++;
        std::printf("ok   %s\n", name);
    } else {
        failed++;
        std::printf("FAIL %s\n", name);
    }
    std::fflush(stdout);
}

static const int ROUNDS = 200;

struct Err {
    int id;
};

// The id of the exception currently handled, read through
// std::current_exception(); -1 if there is none.
static int current_id() {
    std::exception_ptr p = std::current_exception();
    if (!p) return -1;
    try {
        std::rethrow_exception(p);
    } catch (const Err &e) {
        return e.id;
    } catch (...) {
        return -2;
    }
}

// `throw;` inside a nested try: the id of the exception it rethrows.
static int rethrow_id() {
    try {
        throw;
    } catch (const Err &e) {
        return e.id;
    } catch (...) {
        return -2;
    }
}

// Runs `entry(arg)` as the main task of a one-worker runtime.
static void run_on_one_worker(ivy_task_fn_t entry, void *arg) {
    ivy_config_t cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    void *result = nullptr;
    OK(ivy_runtime_run(&cfg, entry, arg, &result));
}

// ---- two tasks, each parked inside its own catch block ------------------------------
//
// A catches Err{a}, parks; B catches Err{b} (on top of A's on an unswapped
// thread), wakes A and parks in its catch; A must see its own exception, rethrow
// it, and end its catch (which must pop A's, not B's); then B sees its own.

struct Pair {
    ivy_queue_t to_a, to_b;
    int round;
};

static void *catcher_a(void *arg) {
    Pair *p = static_cast<Pair *>(arg);
    void *item;
    const int mine = 1000 + p->round;
    try {
        throw Err{mine};
    } catch (const Err &e) {
        CHECK(e.id == mine);
        OK(ivy_queue_put(p->to_b, nullptr, IVY_FOREVER));
        OK(ivy_queue_get(p->to_a, &item, IVY_FOREVER)); // B throws and catches meanwhile
        CHECK(current_id() == mine);
        CHECK(rethrow_id() == mine);
        CHECK(std::uncaught_exceptions() == 0);
        CHECK(e.id == mine);
    }
    CHECK(current_id() == -1);
    OK(ivy_queue_put(p->to_b, nullptr, IVY_FOREVER));
    return nullptr;
}

static void *catcher_b(void *arg) {
    Pair *p = static_cast<Pair *>(arg);
    void *item;
    const int mine = 2000 + p->round;
    OK(ivy_queue_get(p->to_b, &item, IVY_FOREVER)); // A is inside its catch
    CHECK(current_id() == -1);                       // nothing caught in this task
    try {
        throw Err{mine};
    } catch (const Err &) {
        CHECK(current_id() == mine);
        OK(ivy_queue_put(p->to_a, nullptr, IVY_FOREVER));
        OK(ivy_queue_get(p->to_b, &item, IVY_FOREVER)); // A rethrows and ends its catch
        CHECK(current_id() == mine);
        CHECK(rethrow_id() == mine);
    }
    CHECK(current_id() == -1);
    return nullptr;
}

static void *pair_main(void *) {
    for (int round = 0; round < ROUNDS; round++) {
        Pair p;
        p.round = round;
        OK(ivy_queue_new(1, &p.to_a));
        OK(ivy_queue_new(1, &p.to_b));
        ivy_task_t a, b;
        OK(ivy_task_spawn(catcher_a, &p, nullptr, &a));
        OK(ivy_task_spawn(catcher_b, &p, nullptr, &b));
        OK(ivy_task_join(a, nullptr, IVY_FOREVER));
        OK(ivy_task_join(b, nullptr, IVY_FOREVER));
        OK(ivy_queue_free(p.to_a));
        OK(ivy_queue_free(p.to_b));
    }
    return nullptr;
}

// ---- std::uncaught_exceptions() across a switch during unwinding --------------------
//
// A's destructor runs while Err unwinds A's frame (uncaught_exceptions() == 1)
// and yields; B runs meanwhile and must see 0 (and nothing caught); A must see
// 1 again after every switch.

static std::atomic<bool> in_destructor{false};
static std::atomic<bool> unwinder_done{false};
static std::atomic<int> seen_during_unwind{0};

struct YieldsInDestructor {
    ~YieldsInDestructor() {
        CHECK(std::uncaught_exceptions() == 1);
        in_destructor = true;
        for (int i = 0; i < 3; i++) {
            OK(ivy_task_yield());
            CHECK(std::uncaught_exceptions() == 1);
        }
        in_destructor = false;
    }
};

static void *unwinder(void *arg) {
    ivy_queue_t *started = static_cast<ivy_queue_t *>(arg);
    void *item;
    OK(ivy_queue_get(*started, &item, IVY_FOREVER)); // the observer runs
    try {
        YieldsInDestructor guard;
        throw Err{7};
    } catch (const Err &e) {
        CHECK(e.id == 7);
        CHECK(std::uncaught_exceptions() == 0);
    }
    return nullptr;
}

static void *observer(void *arg) {
    ivy_queue_t *started = static_cast<ivy_queue_t *>(arg);
    OK(ivy_queue_put(*started, nullptr, IVY_FOREVER));
    while (!unwinder_done) {
        CHECK(std::uncaught_exceptions() == 0);
        CHECK(current_id() == -1);
        if (in_destructor) seen_during_unwind++;
        OK(ivy_task_yield());
    }
    return nullptr;
}

static void *uncaught_main(void *) {
    for (int round = 0; round < ROUNDS; round++) {
        ivy_queue_t started;
        ivy_task_t a, b;
        int before = seen_during_unwind;
        unwinder_done = false;
        OK(ivy_queue_new(1, &started));
        OK(ivy_task_spawn(unwinder, &started, nullptr, &a));
        OK(ivy_task_spawn(observer, &started, nullptr, &b));
        OK(ivy_task_join(a, nullptr, IVY_FOREVER));
        unwinder_done = true;
        OK(ivy_task_join(b, nullptr, IVY_FOREVER));
        OK(ivy_queue_free(started));
        CHECK(seen_during_unwind > before); // the switch did happen mid-unwind
    }
    return nullptr;
}

// ---- a generator body that yields inside its catch ----------------------------------
//
// The caller, inside its own catch, resumes a body that catches and yields inside
// its catch; the caller's catch then ends (it must pop the caller's exception,
// not the body's), and the body, resumed again, must still see its own.

static void catching_body(ivy_yielder_t y, void *arg) {
    const int mine = static_cast<int>(reinterpret_cast<intptr_t>(arg));
    try {
        throw Err{mine};
    } catch (const Err &) {
        if (ivy_generator_yield(y, nullptr) != 0) return;
        CHECK(current_id() == mine);
        CHECK(rethrow_id() == mine);
        if (ivy_generator_yield(y, nullptr) != 0) return;
        CHECK(current_id() == mine);
    }
    CHECK(current_id() == -1);
}

static void iterate_catching(int round) {
    const int body_id = 3000 + round, caller_id = 4000 + round;
    ivy_generator_t g;
    void *v;
    OK(ivy_generator_new(catching_body, reinterpret_cast<void *>(static_cast<intptr_t>(body_id)), 0, &g));
    try {
        throw Err{caller_id};
    } catch (const Err &) {
        OK(ivy_generator_next(g, &v)); // the body is inside its catch now
        CHECK(current_id() == caller_id);
        CHECK(rethrow_id() == caller_id);
    }
    CHECK(current_id() == -1);
    OK(ivy_generator_next(g, &v));
    CHECK(current_id() == -1);
    CHECK(ivy_generator_next(g, &v) == IVY_ECLOSED);
    OK(ivy_generator_free(g));
}

static void *generator_main(void *) {
    for (int round = 0; round < ROUNDS; round++) iterate_catching(round);
    return nullptr;
}

// ---- ivy calls on a stack a C++ exception unwound -----------------------------------
//
// An exception thrown deep in a task and caught near its top leaves the
// unwound frames' ASan redzones behind unless ASan knows the task's stack (ivy
// tells it on every switch: task::thread_state). Then ivy's own (uninstrumented)
// code runs on that memory and copies through the intercepted memcpy: under
// ASan that was a false stack-buffer-overflow. Without ASan, an exact-count test
// of throws, catches and ivy calls after them.

static int deep_throw(int n) {
    volatile char frame[512];
    frame[0] = static_cast<char>(n);
    if (n == 0) throw Err{n};
    return deep_throw(n - 1) + frame[0];
}

static void *noop_task(void *arg) { return arg; }

static void *throw_then_call_ivy(void *) {
    int caught = 0;
    for (int round = 0; round < ROUNDS; round++) {
        try {
            deep_throw(64);
        } catch (const Err &e) {
            CHECK(e.id == 0);
            caught++;
        }
        ivy_queue_t q;
        void *item = nullptr;
        OK(ivy_queue_new(4, &q));
        for (intptr_t i = 0; i < 4; i++) OK(ivy_queue_put(q, reinterpret_cast<void *>(i), IVY_FOREVER));
        for (intptr_t i = 0; i < 4; i++) {
            OK(ivy_queue_get(q, &item, IVY_FOREVER));
            CHECK(item == reinterpret_cast<void *>(i));
        }
        OK(ivy_queue_free(q));
        ivy_task_t t;
        void *result = nullptr;
        OK(ivy_task_spawn(noop_task, reinterpret_cast<void *>(static_cast<intptr_t>(round)), nullptr, &t));
        OK(ivy_task_yield());
        OK(ivy_task_join(t, &result, IVY_FOREVER));
        CHECK(result == reinterpret_cast<void *>(static_cast<intptr_t>(round)));
    }
    CHECK(caught == ROUNDS);
    return nullptr;
}

// The same inside a generator body that parks its task: the task is resumed
// onto the body's stack, and ASan must be told that stack, not the task's.
static void throwing_body(ivy_yielder_t y, void *) {
    for (intptr_t i = 0; i < 8; i++) {
        OK(ivy_task_yield()); // parks the iterating task inside the body
        try {
            deep_throw(32);
        } catch (const Err &e) {
            CHECK(e.id == 0);
        }
        ivy_queue_t q;
        void *item = nullptr;
        OK(ivy_queue_new(1, &q));
        OK(ivy_queue_put(q, reinterpret_cast<void *>(i), IVY_FOREVER));
        OK(ivy_queue_get(q, &item, IVY_FOREVER));
        CHECK(item == reinterpret_cast<void *>(i));
        OK(ivy_queue_free(q));
        if (ivy_generator_yield(y, reinterpret_cast<void *>(i)) != 0) return;
    }
}

static void *throw_in_generator(void *) {
    for (int round = 0; round < ROUNDS / 4; round++) {
        ivy_generator_t g;
        void *v = nullptr;
        intptr_t want = 0;
        OK(ivy_generator_new(throwing_body, nullptr, 0, &g));
        int rc;
        while ((rc = ivy_generator_next(g, &v)) == 0) {
            CHECK(v == reinterpret_cast<void *>(want));
            want++;
        }
        CHECK(rc == IVY_ECLOSED);
        CHECK(want == 8);
        OK(ivy_generator_free(g));
    }
    return nullptr;
}

int main() {
    run_test("test_tasks_interleave_catch_blocks", [] { run_on_one_worker(pair_main, nullptr); });
    run_test("test_uncaught_exceptions_per_task", [] { run_on_one_worker(uncaught_main, nullptr); });
    run_test("test_generator_catch_in_task", [] { run_on_one_worker(generator_main, nullptr); });
    run_test("test_generator_catch_on_plain_thread", [] {
        for (int round = 0; round < ROUNDS; round++) iterate_catching(round);
    });
    run_test("test_ivy_calls_after_a_deep_throw", [] { run_on_one_worker(throw_then_call_ivy, nullptr); });
    run_test("test_deep_throw_in_a_parking_generator", [] { run_on_one_worker(throw_in_generator, nullptr); });
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
