"""Runs every examples/python/*.py as a user would and checks what it prints.

Each example is a separate process (`python examples/python/NAME.py`, the
interpreter running these tests, from a scratch directory), so it exercises
the installed package end to end: import, run, exit. An example must exit 0
with nothing on stderr (an unjoined task's exception would be reported
there) and print exactly the lines checked below; where the interleaving of
tasks is not promised (same-instant wake-ups), the check is on the set of
lines, not their order.

The first test checks that the package under test is the installed one:
run-tests.sh sets IVYRT_TEST_INSTALLED=1 and runs pytest from outside the
source tree, so `ivyrt` must come from the venv's site-packages.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(os.environ.get("IVYRT_REPO", Path(__file__).resolve().parents[3]))
EXAMPLES = REPO / "examples" / "python"
TIMEOUT_S = 60  # each example runs in about a second; this only bounds a hang


def run_example(name, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr}"
    assert proc.stderr == "", f"{name} wrote to stderr:\n{proc.stderr}"
    return proc.stdout.splitlines()


def test_package_under_test_is_the_installed_one():
    if os.environ.get("IVYRT_TEST_INSTALLED") != "1":
        pytest.skip("only meaningful under bindings/python/run-tests.sh")
    import ivyrt

    where = Path(ivyrt.__file__).resolve()
    assert Path(sys.prefix).resolve() in where.parents, (where, sys.prefix)
    assert REPO / "bindings" / "python" / "python" not in where.parents, where
    assert "site-packages" in where.parts, where


def check_create_task(out):
    assert out == ["started second and first", "hello", "world", "returned 10 characters",
                   "both done: True, result again: 5"]


def check_gather(out):
    assert "results: [2, 6, 24]" in out
    for name, n, f in [("A", 2, 2), ("B", 3, 6), ("C", 4, 24), ("D", 2, 2)]:
        assert f"Task {name}: factorial({n}) = {f}" in out
    assert "with return_exceptions: [2, ValueError('no luck')]" in out
    assert "gather raised: propagated" in out
    # The A/B/C lines come before the results; D's before the mixed line.
    assert out.index("Task C: factorial(4) = 24") < out.index("results: [2, 6, 24]")
    # i=2 of every task before i=3 of any: they run concurrently.
    assert out.index("Task C: compute factorial(4), currently i=2...") < \
        out.index("Task B: compute factorial(3), currently i=3...")


def check_wait_for(out):
    assert out == ["got: quick result", "eternity: cancelled, cleaning up", "timeout!",
                   "inner task cancelled: True"]


def check_as_completed(out):
    assert out == ["fast finished: fast after 0.05 s", "medium finished: medium after 0.10 s",
                   "slow finished: slow after 0.15 s", "in time: early after 0.01 s",
                   "the rest timed out"]


def check_cancel(out):
    assert out == ["worker: working", "cancel() -> True", "worker: cleanup done",
                   "main: joined a cancelled task -> CancelledError",
                   "cancelled: True, log: cleaned up", "cancelling a finished task -> False"]


def check_lock(out):
    assert out == ["balance with lock: 100", "lock released: True"]


def check_semaphore(out):
    assert out[0] == "jobs done: 12, in order: True"
    assert out[1] == "at most 3 at once"
    waves = int(re.fullmatch(r"waves: (\d+) \(about 4 expected\)", out[2]).group(1))
    assert 4 <= waves < 12, waves  # 12 would be one job at a time
    assert out[3:] == ["BoundedSemaphore: extra release() -> ValueError"]


def check_event(out):
    waiting = [f"waiter{i} waiting" for i in range(3)]
    woke = {f"waiter{i} woke up" for i in range(3)}
    assert out[:4] == waiting + ["is_set before: False"]
    assert set(out[4:7]) == woke
    assert out[7:] == ["woken: ['waiter0', 'waiter1', 'waiter2']", "is_set after clear: False"]


def check_condition(out):
    assert out == ["items consumed: [0, 1, 2, 3, 4, 5]", "consumers finished: True"]


def check_producer_consumer(out):
    assert out == ["all 10 jobs done, total 30 ms of work", "queue empty: True",
                   "workers cancelled: True", "get_nowait on an empty queue -> QueueEmpty"]


def check_executor(out):
    assert out == ["slept 0.2 s in a thread"] * 4 + [
        "four 0.2 s calls overlapped: True", "ticker ran meanwhile: 5 ticks",
        "sha256 from a ThreadPoolExecutor: b9fd0d3b01ee8d81",
        "the thread's exception reaches the task: KeyError 'from the pool'"]


def check_timeout_scope(out):
    assert out == ["timed out after about 0.1 s: True", "expired: True",
                   "finished 2 steps in time, expired: False", "rescheduled scope fired",
                   "timeout_at fired"]


def check_taskgroup(out):
    assert out == ["both finished at the end of the block: one done, two done",
                   "ExceptionGroup with 1 error: child failed", "patient child cancelled"]


def check_echo(out):
    assert out == [" | ".join(f"CLIENT{c} SAYS {i}" for i in range(3)) for c in range(3)] + [
        "server closed", "readexactly(10) got only b'abc'"]


def check_downloader(out):
    bars = [l for l in out if l.startswith("[")]
    assert len(bars) == 11
    assert bars == [f"[{'#' * (20 * k // 11)}{'.' * (20 - 20 * k // 11)}] {k}/11"
                    for k in range(1, 12)]
    assert "/flaky: ok after 3 attempts" in out
    assert out[-3:] == ["downloaded 9 files, 36700 bytes",
                        "failed: /missing (HTTP 404), /slow (timeout, 3 attempts)",
                        "most requests in flight: 3 (limit 3)"]


CHECKS = {
    "create_task.py": check_create_task,
    "gather.py": check_gather,
    "wait_for.py": check_wait_for,
    "as_completed.py": check_as_completed,
    "cancel.py": check_cancel,
    "lock.py": check_lock,
    "semaphore.py": check_semaphore,
    "event.py": check_event,
    "condition.py": check_condition,
    "producer_consumer.py": check_producer_consumer,
    "executor.py": check_executor,
    "timeout_scope.py": check_timeout_scope,
    "taskgroup.py": check_taskgroup,
    "echo.py": check_echo,
    "downloader.py": check_downloader,
}


def test_every_example_is_checked():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example(name, tmp_path):
    CHECKS[name](run_example(name, tmp_path))
