"""TaskGroup: structured concurrency (asyncio 3.11's asyncio.TaskGroup).

asyncio:  async with asyncio.TaskGroup() as tg: tg.create_task(coro())
ivyrt:    with ivyrt.TaskGroup() as tg: tg.create_task(fn)

Leaving the with block waits for every child. If a child fails, the group
cancels the others and raises an ExceptionGroup holding the failures.
"""

import ivyrt


def work(name, delay):
    ivyrt.sleep(delay)
    return f"{name} done"


def fail_after(delay):
    ivyrt.sleep(delay)
    raise ValueError("child failed")


def patient(log):
    try:
        ivyrt.sleep(3600)
    finally:
        log.append("patient child cancelled")


def main():
    with ivyrt.TaskGroup() as tg:
        t1 = tg.create_task(work, "one", 0.02)
        t2 = tg.create_task(work, "two", 0.01)
    print(f"both finished at the end of the block: {t1.result()}, {t2.result()}")

    log = []
    try:
        with ivyrt.TaskGroup() as tg:
            tg.create_task(patient, log)
            tg.create_task(fail_after, 0.02)
    except* ValueError as eg:
        print(f"ExceptionGroup with {len(eg.exceptions)} error: {eg.exceptions[0]}")
    print(log[0])


if __name__ == "__main__":
    ivyrt.run(main)
