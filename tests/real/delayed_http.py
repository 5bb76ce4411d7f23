#!/usr/bin/env python3
"""A loopback HTTP/1.0 server whose every answer is delayed: the peer that the
hook layer's proof programs (tests/real/, tests/hook_real_*.rs, the hook rows of
benches/compare) fetch from.

    delayed_http.py [--port 0] [--delay-ms 200]

Prints `LISTENING port=<p>` on stdout once it accepts connections, then serves
until killed. One thread per connection (ThreadingHTTPServer) and a listen
backlog of 4096, so that hundreds of clients connecting at once are all served
at once: the server is never what serialises them, the client runtime is.

Paths:
  /item/<k>   the body of item k (k a non-negative integer), after the delay.
              Every item's body is distinct; `body(k)` below is the one
              definition, mirrored byte for byte in tests/real/real_body.h and
              tests/hook_real_http.rs.
  /stats      (no delay) "peak <p>\nserved <s>\n": the most item requests that
              were in their delay at the same moment, and how many were served,
              since start or the last /reset. A client runtime that serialises
              its requests (a hooked call blocking its worker) shows a peak of at
              most its worker count; one whose tasks park shows about the number
              of tasks in flight.
  /reset      (no delay) zeroes both counters, answers "ok\n".
"""

import argparse
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def body(k: int) -> bytes:
    """Item k's body: a header line naming k, then (k * 37) % 2000 + 100 bytes of
    a k-dependent pattern, so every body differs in length and content."""
    head = b"item %d\n" % k
    n = (k * 37) % 2000 + 100
    return head + bytes(ALPHABET[(i * 7 + k) % 36] for i in range(n))


class Counters:
    """Requests in their delay now, the peak of that, and requests served."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.served = 0

    def enter(self):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self):
        with self.lock:
            self.active -= 1
            self.served += 1

    def reset(self):
        with self.lock:
            self.peak = self.active
            self.served = 0

    def text(self) -> bytes:
        with self.lock:
            return b"peak %d\nserved %d\n" % (self.peak, self.served)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # listen backlog: a burst of connects never waits for a SYN retry
    allow_reuse_address = True


def make_handler(delay_s: float, counters: Counters):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            m = re.fullmatch(r"/item/(\d+)", self.path)
            if m:
                counters.enter()
                try:
                    time.sleep(delay_s)
                finally:
                    counters.leave()
                self.answer(200, body(int(m.group(1))))
            elif self.path == "/stats":
                self.answer(200, counters.text())
            elif self.path == "/reset":
                counters.reset()
                self.answer(200, b"ok\n")
            else:
                self.answer(404, b"not found\n")

        def answer(self, code: int, data: bytes):
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: the tests read only stdout's first line
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=200.0)
    args = ap.parse_args()
    counters = Counters()
    server = Server(("127.0.0.1", args.port), make_handler(args.delay_ms / 1000.0, counters))
    print(f"LISTENING port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
