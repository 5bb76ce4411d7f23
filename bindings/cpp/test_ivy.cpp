// Tests of bindings/cpp/ivy.hpp, built and run by tests/c/run.sh with g++ and
// clang++ (-std=c++17 -Wall -Wextra -Werror).
#include <atomic>
#include <mutex>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "ivy.hpp"

using namespace std::chrono_literals;

static int passed, failed;
static std::atomic<int> check_failures{0};

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            std::fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                           \
        }                                                                               \
    } while (0)

template <class F> static void run_test(const char *name, F f) {
    int before = check_failures;
    try {
        f();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
        check_failures++;
    }
    if (check_failures == before) {
        passed++;
        std::printf("ok   %s\n", name);
    } else {
        failed++;
        std::printf("FAIL %s\n", name);
    }
}

template <class E, class F> static bool throws(F f) {
    try {
        f();
    } catch (const E &) {
        return true;
    } catch (...) {
    }
    return false;
}

int main() {
    run_test("block_on and spawn/join with values", [] {
        ivy::runtime rt(2);
        CHECK(rt.workers() == 2);
        int v = rt.block_on([] {
            std::vector<ivy::task<int>> ts;
            for (int i = 0; i < 100; i++) ts.push_back(ivy::spawn([i] {
                ivy::this_task::sleep_for(1ms);
                return i;
            }));
            int sum = 0;
            for (auto &t : ts) sum += t.join();
            return sum;
        });
        CHECK(v == 4950);
    });

    run_test("exceptions travel to join", [] {
        ivy::runtime rt(1);
        auto t = rt.spawn([]() -> int { throw std::runtime_error("boom"); });
        bool caught = false;
        try {
            t.join();
        } catch (const std::runtime_error &e) {
            caught = std::string(e.what()) == "boom";
        }
        CHECK(caught);
        CHECK(!t.joinable());
        CHECK(throws<ivy::error>([&] { t.join(); }));
    });

    run_test("cancel: sleep throws cancelled_error in the task", [] {
        ivy::runtime rt(2);
        std::atomic<bool> started{false};
        auto t = rt.spawn([&] {
            started = true;
            try {
                ivy::this_task::sleep_for(std::chrono::hours(1));
            } catch (const ivy::cancelled_error &) {
                return std::string("cancelled");
            }
            return std::string("slept");
        });
        while (!started) ivy::this_task::sleep_for(1ms); // a plain thread sleeps
        t.cancel();
        CHECK(t.join() == "cancelled");
    });

    run_test("join timeout keeps the task joinable", [] {
        ivy::runtime rt(1);
        auto t = rt.spawn([] { ivy::this_task::sleep_for(100ms); });
        CHECK(throws<ivy::timeout_error>([&] { t.join(ivy::deadline_after(5ms)); }));
        CHECK(t.joinable());
        t.join();
        CHECK(!t.joinable());
    });

    run_test("destructor cancels and joins", [] {
        ivy::runtime rt(1);
        std::atomic<int> cleaned{0};
        {
            auto t = rt.spawn([&] {
                try {
                    ivy::this_task::sleep_for(std::chrono::hours(1));
                } catch (const ivy::cancelled_error &) {
                    cleaned++;
                }
            });
            ivy::this_task::sleep_for(5ms);
        }
        CHECK(cleaned == 1);
    });

    run_test("names, ids, errors outside a task", [] {
        ivy::runtime rt(1);
        auto t = rt.spawn([] { return ivy::this_task::name(); }, {"cpp-worker", 0});
        std::uint64_t id = t.id();
        CHECK(id != 0);
        CHECK(t.join() == "cpp-worker");
        auto long_name = std::string(200, 'n');
        CHECK(rt.spawn([] { return ivy::this_task::name(); }, {long_name, 0}).join() == long_name);
        CHECK(throws<ivy::error>([] { ivy::this_task::id(); }));
        CHECK(throws<ivy::error>([] { ivy::spawn([] { return 1; }); }));
    });

    run_test("mutex works with std::lock_guard across tasks", [] {
        ivy::runtime rt(2);
        long total = rt.block_on([] {
            ivy::mutex m;
            long value = 0;
            std::vector<ivy::task<void>> ts;
            for (int i = 0; i < 10; i++) ts.push_back(ivy::spawn([&] {
                for (int k = 0; k < 100; k++) {
                    std::lock_guard<ivy::mutex> g(m);
                    long v = value;
                    ivy::this_task::yield();
                    value = v + 1;
                }
            }));
            for (auto &t : ts) t.join();
            CHECK(m.try_lock());
            CHECK(!ivy::spawn([&] { return m.lock_until(ivy::deadline_after(5ms)); }).join());
            m.unlock();
            return value;
        });
        CHECK(total == 1000);
    });

    run_test("queue of pointers: producer/consumer, close", [] {
        ivy::runtime rt(2);
        long sum = rt.block_on([] {
            ivy::queue<int> q(4);
            static int items[100];
            auto producer = ivy::spawn([&] {
                for (int i = 0; i < 100; i++) {
                    items[i] = i;
                    q.put(&items[i]);
                }
                q.close();
            });
            long s = 0;
            for (;;) {
                try {
                    s += *q.get();
                } catch (const ivy::closed_error &) {
                    break;
                }
            }
            producer.join();
            CHECK(!q.try_get().has_value());
            return s;
        });
        CHECK(sum == 4950);
    });

    run_test("shield lets a cancelled task block during cleanup", [] {
        ivy::runtime rt(2);
        std::atomic<bool> started{false};
        auto t = rt.spawn([&] {
            started = true;
            try {
                ivy::this_task::sleep_for(std::chrono::hours(1));
            } catch (const ivy::cancelled_error &) {
                // cleanup that blocks: fine inside a shield, refused outside
                int v = ivy::this_task::shield([] {
                    ivy::this_task::sleep_for(2ms);
                    return 7;
                });
                bool after = throws<ivy::cancelled_error>([] { ivy::this_task::sleep_for(1ms); });
                return v * (after ? 1 : 0);
            }
            return 0;
        });
        while (!started) ivy::this_task::sleep_for(1ms);
        t.cancel();
        CHECK(t.join() == 7);
        CHECK(throws<std::runtime_error>([] { ivy::this_task::shield([]() -> int { throw std::runtime_error("x"); }); }));
    });

    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
