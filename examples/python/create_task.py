"""create_task: run two functions concurrently (asyncio tutorial, "Tasks").

asyncio:  task = asyncio.create_task(say_after(1, "hello")); await task
ivyrt:    task = ivyrt.create_task(say_after, 1, "hello"); task.join()

Each task is a green thread with its own stack: say_after is a plain function
that blocks in ivyrt.sleep, and while it sleeps the other task runs. The
waits overlap: "hello" (0.1 s) prints before "world" (0.2 s) although the
"world" task was created and joined first.
"""

import ivyrt


def say_after(delay, what):
    ivyrt.sleep(delay)
    print(what)
    return len(what)


def main():
    # Created in this order, started in this order (FIFO, like asyncio).
    task1 = ivyrt.create_task(say_after, 0.2, "world", name="second")
    task2 = ivyrt.create_task(say_after, 0.1, "hello", name="first")
    print(f"started {task1.get_name()} and {task2.get_name()}")
    # join() waits for the task and returns its result (asyncio: await task).
    total = task1.join() + task2.join()
    print(f"returned {total} characters")
    print(f"both done: {task1.done() and task2.done()}, result again: {task2.result()}")


if __name__ == "__main__":
    ivyrt.run(main)
