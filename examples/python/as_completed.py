"""as_completed: handle results in the order tasks finish.

asyncio:  for coro in asyncio.as_completed(aws): result = await coro
ivyrt:    for task in ivyrt.as_completed(tasks): result = task.result()

asyncio yields awaitables; the sync form yields the finished Task objects
themselves, in completion order, so .result() never blocks.
"""

import ivyrt


def fetch(name, delay):
    ivyrt.sleep(delay)
    return f"{name} after {delay:.2f} s"


def main():
    # Started slowest first: completion order is the reverse of creation order.
    tasks = [ivyrt.create_task(fetch, name, delay, name=name)
             for name, delay in [("slow", 0.15), ("medium", 0.10), ("fast", 0.05)]]
    for task in ivyrt.as_completed(tasks):
        print(f"{task.get_name()} finished: {task.result()}")

    # With a timeout, the iterator raises TimeoutError for what is still running.
    late = ivyrt.create_task(fetch, "late", 10)
    early = ivyrt.create_task(fetch, "early", 0.01)
    try:
        for task in ivyrt.as_completed([late, early], timeout=0.1):
            print(f"in time: {task.result()}")
    except TimeoutError:
        print("the rest timed out")
    late.cancel()


if __name__ == "__main__":
    ivyrt.run(main)
