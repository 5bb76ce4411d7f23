"""Lock: mutual exclusion across blocking calls.

asyncio:  async with lock: ...
ivyrt:    with lock: ...

With one worker (the default) code between two blocking calls is already
atomic, as in asyncio; a lock is needed when a critical section blocks in
the middle, as this read-sleep-write does. Without the lock, the ten tasks
would all read 0 and the balance would end at 10, not 100.
"""

import ivyrt

balance = 0


def deposit(lock, amount):
    global balance
    with lock:
        current = balance
        ivyrt.sleep(0.001)  # another task runs here; the lock keeps it out
        balance = current + amount


def main():
    lock = ivyrt.Lock()
    ivyrt.gather(*[ivyrt.create_task(deposit, lock, 10) for _ in range(10)])
    print(f"balance with lock: {balance}")
    print(f"lock released: {not lock.locked()}")


if __name__ == "__main__":
    ivyrt.run(main)
