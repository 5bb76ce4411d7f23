"""A concurrent downloader: semaphore + timeout + retries + progress bar.

The asyncio classic (aiohttp + Semaphore + wait_for + a retry loop), in
plain sync code on green threads. It starts its own HTTP server on
127.0.0.1 (the standard library's ThreadingHTTPServer, in an OS thread) that
serves files of known sizes, one path that fails twice with 503 before
succeeding, one that is too slow, and one that does not exist. The client
speaks HTTP/1.0 over ivyrt.open_connection; every download is a task:

- at most MAX_PARALLEL requests in flight (ivyrt.Semaphore),
- each attempt bounded by ivyrt.timeout(ATTEMPT_TIMEOUT),
- 5xx answers and timeouts retried up to ATTEMPTS times with a growing pause,
  4xx answers not retried,
- a progress bar redrawn as each download finishes (ivyrt.as_completed).
"""

import http.server
import threading
import time

import ivyrt

MAX_PARALLEL = 3
ATTEMPTS = 3
ATTEMPT_TIMEOUT = 0.5
FILES = {f"/file{i}.bin": 1000 * (i + 1) for i in range(8)}


class Handler(http.server.BaseHTTPRequestHandler):
    """The test server: /fileN.bin, /flaky (503 twice), /slow (never in time), 404 else."""

    lock = threading.Lock()  # the server's threads share flaky_calls
    flaky_calls = 0

    def do_GET(self):
        time.sleep(0.02)  # a little latency, so that requests overlap
        if self.path == "/flaky":
            with type(self).lock:
                type(self).flaky_calls += 1
                calls = type(self).flaky_calls
            if calls <= 2:
                return self.send_error(503, "try again")
            return self.send_body(b"finally" * 100)
        if self.path == "/slow":
            time.sleep(ATTEMPT_TIMEOUT * 2)
            return self.send_body(b"too late")
        if self.path in FILES:
            return self.send_body(bytes(i % 251 for i in range(FILES[self.path])))
        self.send_error(404, "no such file")

    def send_body(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # keep the example's output clean


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client gave up on /slow and closed: expected, not worth a traceback


class HTTPStatusError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


def http_get(port, path):
    """One HTTP/1.0 GET over ivyrt's streams: the body, or HTTPStatusError."""
    reader, writer = ivyrt.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        writer.drain()
        status = int(reader.readline().split()[1])
        length = None
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = reader.read()  # HTTP/1.0: the server closes after the body
        if status >= 400:
            raise HTTPStatusError(status)
        if length is not None and len(body) != length:
            raise IOError(f"{path}: {len(body)} of {length} bytes")
        return body
    finally:
        writer.close()


in_flight = most_in_flight = 0  # one worker: tasks switch only at blocking calls


def download(port, path, sem):
    """Fetches path with retries; returns (path, bytes, attempts) or raises the last error."""
    global in_flight, most_in_flight
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with sem:  # at most MAX_PARALLEL requests in flight
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
                try:
                    with ivyrt.timeout(ATTEMPT_TIMEOUT):
                        body = http_get(port, path)
                finally:
                    in_flight -= 1
            return path, len(body), attempt
        except HTTPStatusError as e:
            if e.status < 500 or attempt == ATTEMPTS:
                raise
        except TimeoutError:
            if attempt == ATTEMPTS:
                raise
        ivyrt.sleep(0.05 * attempt)  # back off before the next attempt
    raise AssertionError("unreachable")


def progress(done, total, width=20):
    filled = width * done // total
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def main(port):
    paths = sorted(FILES) + ["/flaky", "/missing", "/slow"]
    sem = ivyrt.Semaphore(MAX_PARALLEL)
    tasks = [ivyrt.create_task(download, port, path, sem, name=path) for path in paths]
    ok, failed, total_bytes = [], [], 0
    for n, task in enumerate(ivyrt.as_completed(tasks), 1):
        try:
            path, size, attempts = task.result()
            ok.append(path)
            total_bytes += size
            if attempts > 1:
                print(f"{path}: ok after {attempts} attempts")
        except TimeoutError:
            failed.append(f"{task.get_name()} (timeout, {ATTEMPTS} attempts)")
        except HTTPStatusError as e:
            failed.append(f"{task.get_name()} ({e})")
        print(progress(n, len(tasks)))
    print(f"downloaded {len(ok)} files, {total_bytes} bytes")
    print(f"failed: {', '.join(sorted(failed))}")
    print(f"most requests in flight: {most_in_flight} (limit {MAX_PARALLEL})")


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ivyrt.run(main, server.server_address[1])
    finally:
        server.shutdown()
