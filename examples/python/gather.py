"""gather: run tasks concurrently, collect their results in order.

asyncio:  await asyncio.gather(factorial("A", 2), factorial("B", 3))
ivyrt:    ivyrt.gather(ivyrt.create_task(factorial, "A", 2), ...)

gather takes tasks or plain callables (ivyrt turns each callable into a
task). Results come back in argument order whatever the completion order.
As in asyncio, the first exception propagates at once unless
return_exceptions=True, which collects exceptions as results instead.
"""

import ivyrt


def factorial(name, number):
    f = 1
    for i in range(2, number + 1):
        print(f"Task {name}: compute factorial({number}), currently i={i}...")
        ivyrt.sleep(0.01)  # every task takes its turn: the lines interleave
        f *= i
    print(f"Task {name}: factorial({number}) = {f}")
    return f


def fails(message):
    ivyrt.sleep(0.01)
    raise ValueError(message)


def main():
    results = ivyrt.gather(
        ivyrt.create_task(factorial, "A", 2),
        ivyrt.create_task(factorial, "B", 3),
        ivyrt.create_task(factorial, "C", 4),
    )
    print(f"results: {results}")

    # Plain callables work too; return_exceptions=True keeps going past a failure.
    mixed = ivyrt.gather(lambda: factorial("D", 2), lambda: fails("no luck"),
                         return_exceptions=True)
    print(f"with return_exceptions: {mixed!r}")

    # Without it, the first exception propagates to the caller.
    try:
        ivyrt.gather(lambda: factorial("E", 2), lambda: fails("propagated"))
    except ValueError as e:
        print(f"gather raised: {e}")


if __name__ == "__main__":
    ivyrt.run(main)
