#!/usr/bin/env python3
"""A loopback HTTP/1.0 server whose every answer is delayed: the peer that the
hook layer's proof programs (tests/real/, tests/hook_real_*.rs, the hook rows of
benches/compare) fetch from.

    delayed_http.py [--port 0] [--delay-ms 200]

Prints `LISTENING port=<p>` on stdout once it accepts connections, then serves
until killed. One asyncio loop (a delayed answer is a timer, not a thread) and
a listen backlog of 4096, so that hundreds of clients connecting at once are
all held at once and answered one delay later: the server is never what
serialises them, the client runtime is. One request per connection (HTTP/1.0
style: the answer says `Connection: close` and the server closes).

Paths:
  /item/<k>   the body of item k (k a non-negative integer), after the delay.
              Every item's body is distinct; `body(k)` below is the one
              definition, mirrored byte for byte in tests/real/real_body.h,
              tests/real/support.rs and benches/compare/hook-std/src/main.rs.
  /stats      (no delay) "peak <p>\nserved <s>\n": the most item requests that
              were in their delay at the same moment, and how many were served,
              since start or the last /reset. A client runtime that serialises
              its requests (a hooked call blocking its worker) shows a peak of at
              most its worker count; one whose tasks park shows about the number
              of tasks in flight.
  /reset      (no delay) zeroes both counters, answers "ok\n".
"""

import argparse
import asyncio
import re
import sys

ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def body(k: int) -> bytes:
    """Item k's body: a header line naming k, then (k * 37) % 2000 + 100 bytes of
    a k-dependent pattern, so every body differs in length and content."""
    head = b"item %d\n" % k
    n = (k * 37) % 2000 + 100
    return head + bytes(ALPHABET[(i * 7 + k) % 36] for i in range(n))


class Counters:
    """Requests in their delay now, the peak of that, and requests served (one
    event loop: no lock needed)."""

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.served = 0

    def reset(self):
        self.peak = self.active
        self.served = 0

    def text(self) -> bytes:
        return b"peak %d\nserved %d\n" % (self.peak, self.served)


def answer(code: int, data: bytes) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}[code]
    return (b"HTTP/1.0 %d %s\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (code, reason, len(data))) + data


async def serve(reader, writer, delay_s: float, counters: Counters):
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        m = re.match(rb"GET (\S+) HTTP/1\.[01]\r\n", request)
        path = m.group(1).decode() if m else None
        item = re.fullmatch(r"/item/(\d+)", path) if path else None
        if item:
            counters.active += 1
            counters.peak = max(counters.peak, counters.active)
            try:
                await asyncio.sleep(delay_s)
            finally:
                counters.active -= 1
            counters.served += 1
            writer.write(answer(200, body(int(item.group(1)))))
        elif path == "/stats":
            writer.write(answer(200, counters.text()))
        elif path == "/reset":
            counters.reset()
            writer.write(answer(200, b"ok\n"))
        else:
            writer.write(answer(404 if path else 400, b"not found\n" if path else b"bad request\n"))
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away: nothing to answer
    finally:
        writer.close()


async def main_async(port: int, delay_s: float):
    counters = Counters()
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, delay_s, counters), "127.0.0.1", port, backlog=4096,
        reuse_address=True)
    print(f"LISTENING port={server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=200.0)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args.port, args.delay_ms / 1000.0))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
