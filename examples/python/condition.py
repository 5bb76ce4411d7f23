"""Condition: wait until shared state satisfies a predicate.

asyncio:  async with cond: await cond.wait_for(lambda: items)
ivyrt:    with cond: cond.wait_for(lambda: items)

A consumer waits for an item under the condition's lock; the producer
appends under the same lock and notifies. notify_all at the end wakes every
consumer so that each sees the "closed" flag.
"""

import ivyrt

items = []
closed = False


def consumer(cond, name, got):
    while True:
        with cond:
            cond.wait_for(lambda: items or closed)
            if not items:
                return
            got.append((name, items.pop(0)))


def producer(cond):
    global closed
    for i in range(6):
        ivyrt.sleep(0.005)
        with cond:
            items.append(i)
            cond.notify()  # one waiter is enough for one item
    with cond:
        closed = True
        cond.notify_all()


def main():
    cond = ivyrt.Condition()
    got = []
    consumers = [ivyrt.create_task(consumer, cond, f"c{i}", got) for i in range(2)]
    ivyrt.create_task(producer, cond).join()
    ivyrt.gather(*consumers)
    print(f"items consumed: {sorted(item for _, item in got)}")
    print(f"consumers finished: {all(t.done() for t in consumers)}")


if __name__ == "__main__":
    ivyrt.run(main)
