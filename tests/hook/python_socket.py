"""The hook from Python: with libivy_hook.so preloaded, the standard `socket`
and `time` modules cooperate inside ivy tasks (the ctypes binding,
bindings/python/ivy.py, over target/release/libivy.so).

Run by tests/hook/run.sh as
    LD_PRELOAD=target/release/libivy_hook.so python3 tests/hook/python_socket.py
On ONE worker, an echo server task and 50 client tasks talk over loopback
through plain `socket` calls: without the hook the first blocking `accept` or
`recv` would hold the only worker and the program would hang (the script's own
alarm then fails it). 50 tasks each `time.sleep(0.1)` take about 0.1 s, not 5 s.
"""

import ctypes
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
import ivy  # noqa: E402

CLIENTS = 50


def check_hook_loaded() -> None:
    try:
        ctypes.CDLL(None).ivy_hook_version
    except AttributeError:
        sys.exit("FAIL: libivy_hook.so is not preloaded")


def echo_server(listener: socket.socket) -> int:
    """Accepts CLIENTS connections, one task each, echoing until EOF."""
    handlers = []

    def handle(conn: socket.socket) -> int:
        n = 0
        with conn:
            while True:
                data = conn.recv(64)
                if not data:
                    return n
                conn.sendall(data)
                n += 1

    for _ in range(CLIENTS):
        conn, _ = listener.accept()
        handlers.append(ivy.spawn(handle, conn))
    return sum(h.join() for h in handlers)


def client(port: int, i: int) -> bool:
    with socket.create_connection(("127.0.0.1", port)) as s:
        ok = True
        for r in range(5):
            msg = f"{i}:{r}".encode()
            s.sendall(msg)
            back = b""
            while len(back) < len(msg):
                chunk = s.recv(64)
                if not chunk:
                    return False
                back += chunk
            ok = ok and back == msg
        return ok


def main() -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    server = ivy.spawn(echo_server, listener)
    clients = [ivy.spawn(client, port, i) for i in range(CLIENTS)]
    results = [c.join() for c in clients]
    echoed = server.join()
    listener.close()
    assert all(results), results
    assert echoed == CLIENTS * 5, echoed

    t0 = time.monotonic()
    sleepers = [ivy.spawn(time.sleep, 0.1) for _ in range(CLIENTS)]
    for s in sleepers:
        s.join()
    took = time.monotonic() - t0
    assert 0.1 <= took < 1.5, f"50 sleeps of 0.1 s took {took:.2f} s"
    return echoed


if __name__ == "__main__":
    check_hook_loaded()
    signal.alarm(60)  # a hang (a worker blocked) fails instead of stalling CI
    n = ivy.run(main, workers=1)
    print(f"ok   python: socket echo ({n} messages) and time.sleep cooperate in ivy tasks")
