"""Event: wake every waiter at once.

asyncio:  await event.wait(); event.set()
ivyrt:    event.wait(); event.set()
"""

import ivyrt


def waiter(event, name):
    print(f"{name} waiting")
    event.wait()
    print(f"{name} woke up")
    return name


def main():
    event = ivyrt.Event()
    tasks = [ivyrt.create_task(waiter, event, f"waiter{i}") for i in range(3)]
    ivyrt.sleep(0.05)  # all three are parked in wait() by now
    print(f"is_set before: {event.is_set()}")
    event.set()
    print(f"woken: {ivyrt.gather(*tasks)}")
    # A set event does not block; clear() re-arms it.
    event.wait()
    event.clear()
    print(f"is_set after clear: {event.is_set()}")


if __name__ == "__main__":
    ivyrt.run(main)
