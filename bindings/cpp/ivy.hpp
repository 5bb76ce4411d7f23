// ivy.hpp -- a thin C++17 RAII layer over ivy's C ABI (include/ivy.h).
//
//   ivy::runtime rt;                               // workers start
//   auto t = rt.spawn([] { return 6 * 7; });       // any callable
//   int v = t.join();                              // 42; exceptions are rethrown
//
// Ownership: every object owns its C handle and frees it in its destructor;
// objects are movable, not copyable. A ivy::task that is still joinable when
// destroyed is cancelled and joined (like std::jthread, which requests stop and
// joins): no task outlives the object that names it unless detach()ed.
//
// Errors become exceptions: ivy::timeout_error (IVY_ETIMEDOUT),
// ivy::cancelled_error (IVY_ECANCELED), ivy::closed_error (IVY_ECLOSED), else
// ivy::error with code(). No exception ever crosses the C ABI: a task's body
// runs inside a try block, and its exception is carried to join().
#ifndef IVY_HPP
#define IVY_HPP

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "ivy.h"

namespace ivy {

class error : public std::runtime_error {
  public:
    error(int code, const std::string &what)
        : std::runtime_error(what + ": " + ivy_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }

  private:
    int code_;
};

struct timeout_error : error {
    using error::error;
};
struct cancelled_error : error {
    using error::error;
};
struct closed_error : error {
    using error::error;
};

inline void check(int rc, const char *what) {
    switch (rc) {
    case 0: return;
    case IVY_ETIMEDOUT: throw timeout_error(rc, what);
    case IVY_ECANCELED: throw cancelled_error(rc, what);
    case IVY_ECLOSED: throw closed_error(rc, what);
    default: throw error(rc, what);
    }
}

/// Deadlines: absolute milliseconds on the ivy_time_now() clock, or forever.
using deadline_t = std::int64_t;
constexpr deadline_t forever = -1;

inline deadline_t deadline_after(std::chrono::milliseconds d) { return ivy_time_now() + d.count(); }

namespace detail {

template <class R> struct task_state {
    template <class F> explicit task_state(F &&f) : body(std::forward<F>(f)) {}
    std::function<R()> body;
    std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
    std::exception_ptr exception;

    static void *entry(void *p) noexcept {
        auto *s = static_cast<task_state *>(p);
        try {
            if constexpr (std::is_void_v<R>) {
                s->body();
                s->value.emplace('\0');
            } else {
                s->value.emplace(s->body());
            }
        } catch (...) {
            s->exception = std::current_exception();
        }
        return p;
    }
};

} // namespace detail

/// Options for spawning: a name and a stack size (0: the runtime's default,
/// IVY_DEFAULT_STACK_SIZE = 1 MiB).
struct spawn_options {
    std::string name;
    std::size_t stack_size = 0;
};

/// A task returning R. join() waits and returns the value (or rethrows the
/// task's exception); the destructor cancels and joins a task still joinable.
template <class R> class task {
  public:
    task() = default;
    task(ivy_task_t h, std::unique_ptr<detail::task_state<R>> s) : handle_(h), state_(std::move(s)) {}
    task(task &&o) noexcept : handle_(std::exchange(o.handle_, ivy_task_t{0})), state_(std::move(o.state_)) {}
    task &operator=(task &&o) noexcept {
        if (this != &o) {
            reset();
            handle_ = std::exchange(o.handle_, ivy_task_t{0});
            state_ = std::move(o.state_);
        }
        return *this;
    }
    task(const task &) = delete;
    task &operator=(const task &) = delete;
    ~task() { reset(); }

    bool joinable() const noexcept { return state_ != nullptr; }

    /// Waits until the task finishes or `deadline` passes (timeout_error; the
    /// task stays joinable). Rethrows the task's exception; cancelled_error if it
    /// was cancelled before it ran.
    R join(deadline_t deadline = forever) {
        if (!state_) throw error(IVY_EBADF, "join");
        void *out = nullptr;
        int rc = ivy_task_join(handle_, &out, deadline);
        if (rc == IVY_ETIMEDOUT || (rc != 0 && !finished_and_freed())) check(rc, "join");
        auto state = std::move(state_);
        handle_ = ivy_task_t{0};
        check(rc, "join");
        if (state->exception) std::rethrow_exception(state->exception);
        if constexpr (!std::is_void_v<R>) return std::move(*state->value);
    }

    /// Requests cancellation: the task's next blocking ivy call fails with
    /// IVY_ECANCELED (a cancelled_error if it uses this header).
    void cancel() {
        if (state_) check(ivy_task_cancel(handle_), "cancel");
    }

    bool finished() const {
        int f = 0;
        check(ivy_task_is_finished(handle_, &f), "finished");
        return f != 0;
    }

    std::uint64_t id() const {
        std::uint64_t v = 0;
        check(ivy_task_id(handle_, &v), "id");
        return v;
    }

  private:
    bool finished_and_freed() const {
        int f = 0;
        return ivy_task_is_finished(handle_, &f) == IVY_EBADF;
    }

    void reset() noexcept {
        if (!state_) return;
        ivy_task_cancel(handle_);
        // A task that ignores cancellation keeps this waiting, as std::jthread would.
        if (ivy_task_join(handle_, nullptr, forever) == 0 || finished_and_freed()) state_.reset();
        else state_.release(); // cannot reclaim safely: the task may still touch it
        handle_ = ivy_task_t{0};
    }

    ivy_task_t handle_{0};
    std::unique_ptr<detail::task_state<R>> state_;
};

namespace detail {

template <class F, class SpawnFn> auto spawn_with(F &&f, const spawn_options &o, SpawnFn &&spawn_fn) {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto state = std::make_unique<task_state<R>>(std::forward<F>(f));
    ivy_spawn_opts_t opts{};
    opts.name = o.name.empty() ? nullptr : o.name.c_str();
    opts.stack_size = o.stack_size;
    ivy_task_t h{0};
    check(spawn_fn(&task_state<R>::entry, state.get(), &opts, &h), "spawn");
    return task<R>(h, std::move(state));
}

} // namespace detail

/// Spawns `f` on the runtime of the calling task (throws error(IVY_EPERM)
/// outside a task).
template <class F> auto spawn(F &&f, const spawn_options &o = {}) {
    return detail::spawn_with(std::forward<F>(f), o, [](auto entry, void *arg, auto *opts, auto *out) {
        return ivy_task_spawn(entry, arg, opts, out);
    });
}

/// A runtime: worker threads. The destructor shuts it down (cancels and waits
/// for every task still running).
class runtime {
  public:
    explicit runtime(std::size_t workers = 0, std::size_t stack_size = 0) {
        ivy_config_t cfg{};
        cfg.workers = workers;
        cfg.stack_size = stack_size;
        check(ivy_runtime_new(&cfg, &handle_), "runtime");
    }
    runtime(const runtime &) = delete;
    runtime &operator=(const runtime &) = delete;
    ~runtime() { ivy_runtime_free(handle_); }

    std::size_t workers() const {
        std::size_t n = 0;
        check(ivy_runtime_workers(handle_, &n), "workers");
        return n;
    }

    /// Spawns `f` on this runtime, from any thread.
    template <class F> auto spawn(F &&f, const spawn_options &o = {}) {
        ivy_runtime_t h = handle_;
        return detail::spawn_with(std::forward<F>(f), o, [h](auto entry, void *arg, auto *opts, auto *out) {
            return ivy_runtime_spawn(h, entry, arg, opts, out);
        });
    }

    /// Runs `f` as a task and waits for its result (asyncio's run_until_complete).
    template <class F> auto block_on(F &&f) { return spawn(std::forward<F>(f), {"main", 0}).join(); }

  private:
    ivy_runtime_t handle_{0};
};

/// A mutex usable with std::lock_guard / std::unique_lock (Lockable): lock(),
/// try_lock(), unlock(). Works from tasks and plain threads. Not recursive.
class mutex {
  public:
    mutex() { check(ivy_mutex_new(&handle_), "mutex"); }
    mutex(const mutex &) = delete;
    mutex &operator=(const mutex &) = delete;
    ~mutex() { ivy_mutex_free(handle_); }

    void lock() { check(ivy_mutex_lock(handle_, forever), "mutex::lock"); }
    bool try_lock() {
        int rc = ivy_mutex_lock(handle_, 0);
        if (rc == IVY_ETIMEDOUT) return false;
        check(rc, "mutex::try_lock");
        return true;
    }
    /// Locks, giving up at `deadline` (returns false).
    bool lock_until(deadline_t deadline) {
        int rc = ivy_mutex_lock(handle_, deadline);
        if (rc == IVY_ETIMEDOUT) return false;
        check(rc, "mutex::lock_until");
        return true;
    }
    void unlock() { check(ivy_mutex_unlock(handle_), "mutex::unlock"); }

  private:
    ivy_mutex_t handle_{0};
};

/// A queue of T* (bounded, or unbounded with capacity 0). The queue never owns
/// the pointees; passing a pointer through it passes ownership by convention.
template <class T> class queue {
  public:
    explicit queue(std::size_t capacity = 0) {
        check(ivy_queue_new(capacity == 0 ? IVY_UNBOUNDED : capacity, &handle_), "queue");
    }
    queue(const queue &) = delete;
    queue &operator=(const queue &) = delete;
    ~queue() { ivy_queue_free(handle_); }

    /// Appends `item`, waiting for room until `deadline` (timeout_error;
    /// closed_error once closed).
    void put(T *item, deadline_t deadline = forever) {
        check(ivy_queue_put(handle_, static_cast<void *>(item), deadline), "queue::put");
    }
    /// Removes the oldest item, waiting until `deadline` (timeout_error;
    /// closed_error once closed and drained).
    T *get(deadline_t deadline = forever) {
        void *item = nullptr;
        check(ivy_queue_get(handle_, &item, deadline), "queue::get");
        return static_cast<T *>(item);
    }
    /// The oldest item if there is one now; std::nullopt if empty (or closed and drained).
    std::optional<T *> try_get() {
        void *item = nullptr;
        int rc = ivy_queue_get(handle_, &item, 0);
        if (rc == IVY_ETIMEDOUT || rc == IVY_ECLOSED) return std::nullopt;
        check(rc, "queue::try_get");
        return static_cast<T *>(item);
    }
    void close() { check(ivy_queue_close(handle_), "queue::close"); }
    void task_done() { check(ivy_queue_task_done(handle_), "queue::task_done"); }
    void join(deadline_t deadline = forever) { check(ivy_queue_join(handle_, deadline), "queue::join"); }
    std::size_t size() const {
        std::size_t n = 0;
        check(ivy_queue_len(handle_, &n), "queue::size");
        return n;
    }

  private:
    ivy_queue_t handle_{0};
};

namespace this_task {

inline void sleep_for(std::chrono::milliseconds d) { check(ivy_time_sleep(d.count()), "sleep"); }
inline void sleep_until(deadline_t deadline) { check(ivy_time_sleep_until(deadline), "sleep"); }
inline void yield() { check(ivy_task_yield(), "yield"); }

inline std::uint64_t id() {
    std::uint64_t v = 0;
    check(ivy_task_current_id(&v), "current id");
    return v;
}

inline std::string name() {
    std::size_t len = 0;
    char small[64];
    int rc = ivy_task_current_name(small, sizeof small, &len);
    if (rc == 0) return std::string(small, len);
    if (rc != IVY_ERANGE) check(rc, "current name");
    std::string s(len + 1, '\0');
    check(ivy_task_current_name(s.data(), s.size(), &len), "current name");
    s.resize(len);
    return s;
}

/// Runs `f()` shielded from cancellation (see ivy_task_shield): blocking calls in it
/// wait normally even if the task was cancelled, so cleanup can complete. An
/// exception from `f` is carried across the C call and rethrown here.
template <class F> auto shield(F &&f) {
    using R = std::invoke_result_t<F>;
    struct frame {
        F *f;
        std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
        std::exception_ptr exception;
    } fr{&f, std::nullopt, nullptr};
    auto trampoline = [](void *p) -> void * {
        auto *fr = static_cast<frame *>(p);
        try {
            if constexpr (std::is_void_v<R>) {
                (*fr->f)();
                fr->value.emplace('\0');
            } else {
                fr->value.emplace((*fr->f)());
            }
        } catch (...) {
            fr->exception = std::current_exception();
        }
        return nullptr;
    };
    check(ivy_task_shield(trampoline, &fr, nullptr), "shield");
    if (fr.exception) std::rethrow_exception(fr.exception);
    if constexpr (!std::is_void_v<R>) return std::move(*fr.value);
}

} // namespace this_task

} // namespace ivy

#endif
