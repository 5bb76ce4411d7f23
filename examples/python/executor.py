"""to_thread / run_in_executor: call blocking code without stalling other tasks.

asyncio:  await asyncio.to_thread(fn, arg); await loop.run_in_executor(pool, fn, arg)
ivyrt:    ivyrt.to_thread(fn, arg);          ivyrt.run_in_executor(pool, fn, arg)

time.sleep and CPU-heavy C calls block the OS thread they run on. Run on a
task, they would stop every other task of that worker; sent to a thread
they park only the calling task. to_thread uses ivy's blocking pool;
run_in_executor takes any concurrent.futures.Executor (None = ivy's pool).
"""

import concurrent.futures
import hashlib
import time

import ivyrt


def blocking_io(seconds):
    time.sleep(seconds)  # a blocking call that knows nothing about ivyrt
    return f"slept {seconds} s in a thread"


def cpu_bound(data):
    return hashlib.sha256(data).hexdigest()[:16]


def ticker(ticks):
    # Keeps running while the blocking calls are out on threads.
    for _ in range(5):
        ivyrt.sleep(0.02)
        ticks.append(1)


def main():
    ticks = []
    tick_task = ivyrt.create_task(ticker, ticks)
    start = time.monotonic()
    calls = [ivyrt.create_task(ivyrt.to_thread, blocking_io, 0.2) for _ in range(2)]
    calls += [ivyrt.create_task(ivyrt.run_in_executor, None, blocking_io, 0.2) for _ in range(2)]
    for call in calls:
        print(call.join())
    elapsed = time.monotonic() - start
    tick_task.join()
    # One after the other they would take 0.8 s; together about 0.2 s.
    print(f"four 0.2 s calls overlapped: {elapsed < 0.6}")
    print(f"ticker ran meanwhile: {len(ticks)} ticks")

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        digest = ivyrt.run_in_executor(pool, cpu_bound, b"ivy" * 100_000)
    print(f"sha256 from a ThreadPoolExecutor: {digest}")

    def raises():
        raise KeyError("from the pool")

    try:
        ivyrt.to_thread(raises)
    except KeyError as e:
        print(f"the thread's exception reaches the task: KeyError {e}")


if __name__ == "__main__":
    ivyrt.run(main)
