"""Semaphore: at most N tasks in a section at once.

asyncio:  sem = asyncio.Semaphore(3); async with sem: ...
ivyrt:    sem = ivyrt.Semaphore(3); with sem: ...

Twelve jobs, three slots: the jobs run in four waves, and the number of
jobs inside the section never exceeds three.
"""

import time

import ivyrt

inside = 0
most_inside = 0


def job(sem, i):
    global inside, most_inside
    with sem:
        inside += 1
        most_inside = max(most_inside, inside)
        ivyrt.sleep(0.05)
        inside -= 1
    return i


def main():
    sem = ivyrt.Semaphore(3)
    start = time.monotonic()
    done = ivyrt.gather(*[ivyrt.create_task(job, sem, i) for i in range(12)])
    elapsed = time.monotonic() - start
    print(f"jobs done: {len(done)}, in order: {done == list(range(12))}")
    print(f"at most {most_inside} at once")
    print(f"waves: {round(elapsed / 0.05)} (about 4 expected)")

    # BoundedSemaphore refuses a release() it did not hand out.
    bounded = ivyrt.BoundedSemaphore(1)
    try:
        bounded.release()
    except ValueError:
        print("BoundedSemaphore: extra release() -> ValueError")


if __name__ == "__main__":
    ivyrt.run(main)
