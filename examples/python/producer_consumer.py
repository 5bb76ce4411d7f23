"""Queue: producer/consumer with task_done() and join() (asyncio's Queue example).

asyncio:  await queue.put(x); x = await queue.get(); queue.task_done(); await queue.join()
ivyrt:    queue.put(x);       x = queue.get();       queue.task_done(); queue.join()

Three workers take jobs from a bounded queue. join() returns once every item
put has been marked task_done(); then the workers, which loop forever, are
cancelled, as in the asyncio documentation's example.
"""

import ivyrt


def worker(name, queue, results):
    while True:
        job = queue.get()
        ivyrt.sleep(job / 1000)  # the "work": job ms
        results.append(job)
        queue.task_done()


def main():
    queue = ivyrt.Queue(maxsize=4)  # put() blocks while four jobs wait
    results = []
    workers = [ivyrt.create_task(worker, f"worker-{i}", queue, results) for i in range(3)]

    jobs = [5, 1, 4, 2, 3, 1, 5, 2, 4, 3]
    for job in jobs:
        queue.put(job)
    queue.join()  # every job was taken AND marked done
    print(f"all {len(results)} jobs done, total {sum(results)} ms of work")
    print(f"queue empty: {queue.empty()}")

    for w in workers:
        w.cancel()
    outcomes = ivyrt.gather(*workers, return_exceptions=True)
    print(f"workers cancelled: {all(isinstance(o, ivyrt.CancelledError) for o in outcomes)}")

    # The non-blocking forms raise instead of waiting.
    try:
        queue.get_nowait()
    except ivyrt.QueueEmpty:
        print("get_nowait on an empty queue -> QueueEmpty")


if __name__ == "__main__":
    ivyrt.run(main)
