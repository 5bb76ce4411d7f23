"""wait_for: give up on a task after a timeout (asyncio tutorial, "Timeouts").

asyncio:  await asyncio.wait_for(eternity(), timeout=1.0)
ivyrt:    ivyrt.wait_for(eternity, timeout=1.0)

On timeout the inner task is cancelled (its finally blocks run) and
wait_for raises the builtin TimeoutError, exactly as asyncio does.
"""

import ivyrt


def eternity():
    try:
        ivyrt.sleep(3600)
        print("yay!")  # never printed
    finally:
        print("eternity: cancelled, cleaning up")


def quick():
    ivyrt.sleep(0.01)
    return "quick result"


def main():
    # In time: wait_for returns the result.
    print(f"got: {ivyrt.wait_for(quick, timeout=1.0)}")
    # Too slow: the task is cancelled, TimeoutError is raised.
    task = ivyrt.create_task(eternity)
    try:
        ivyrt.wait_for(task, timeout=0.05)
    except TimeoutError:
        print("timeout!")
    print(f"inner task cancelled: {task.cancelled()}")


if __name__ == "__main__":
    ivyrt.run(main)
