"""timeout(): a deadline over a whole block (asyncio 3.11's asyncio.timeout).

asyncio:  async with asyncio.timeout(0.1): await long_job()
ivyrt:    with ivyrt.timeout(0.1): long_job()

When the delay elapses, the blocking call in progress is cancelled and the
with statement raises the builtin TimeoutError at its end. reschedule()
moves the deadline; expired() tells whether it fired. timeout(None) never
fires until rescheduled.
"""

import time

import ivyrt


def long_job(steps):
    for _ in range(steps):
        ivyrt.sleep(0.05)
    return steps


def main():
    start = time.monotonic()
    try:
        with ivyrt.timeout(0.1) as scope:
            long_job(100)  # 5 s of work, cut after 0.1 s
    except TimeoutError:
        print(f"timed out after about 0.1 s: {time.monotonic() - start < 1.0}")
    print(f"expired: {scope.expired()}")

    # A scope that does not elapse leaves the block alone.
    with ivyrt.timeout(1.0) as scope:
        steps = long_job(2)
    print(f"finished {steps} steps in time, expired: {scope.expired()}")

    # No deadline at first, then one from inside the block.
    try:
        with ivyrt.timeout(None) as scope:
            scope.reschedule(time.monotonic() + 0.05)
            long_job(100)
    except TimeoutError:
        print("rescheduled scope fired")

    # timeout_at takes an absolute time.monotonic() deadline.
    try:
        with ivyrt.timeout_at(time.monotonic() + 0.05):
            long_job(100)
    except TimeoutError:
        print("timeout_at fired")


if __name__ == "__main__":
    ivyrt.run(main)
