"""cancel + finally: cancelling a task, and cleanup that still works.

asyncio:  task.cancel(); try: await task except asyncio.CancelledError: ...
ivyrt:    task.cancel(); try: task.join() except ivyrt.CancelledError: ...

cancel() makes the task's current (or next) blocking call raise
CancelledError, a BaseException as in asyncio, so `except Exception` does
not swallow it. The cancellation is one-shot: once raised, the cleanup in
finally can block again (here: sleep and put to a queue) unless the task
is cancelled a second time.
"""

import ivyrt


def worker(log):
    try:
        print("worker: working")
        ivyrt.sleep(3600)
    except Exception:
        print("never: CancelledError is not an Exception")
    finally:
        ivyrt.sleep(0.01)  # cleanup may block: the cancellation was one-shot
        log.put("cleaned up")
        print("worker: cleanup done")


def main():
    log = ivyrt.Queue()
    task = ivyrt.create_task(worker, log, name="worker")
    ivyrt.sleep(0.05)  # let it start and park in its sleep
    print(f"cancel() -> {task.cancel()}")
    try:
        task.join()
    except ivyrt.CancelledError:
        print("main: joined a cancelled task -> CancelledError")
    print(f"cancelled: {task.cancelled()}, log: {log.get_nowait()}")
    print(f"cancelling a finished task -> {task.cancel()}")


if __name__ == "__main__":
    ivyrt.run(main)
