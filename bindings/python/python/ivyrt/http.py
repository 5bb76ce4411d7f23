"""A small HTTP/1.0 client and server over ivyrt's streams.

Enough HTTP for examples and tests (a concurrent downloader against a local
server), not a general HTTP library: one request per connection (HTTP/1.0,
``Connection: close``), bodies sized by ``Content-Length`` (or, in responses,
by the end of the connection), no TLS, no chunked encoding.

    import ivyrt, ivyrt.http

    def handler(request):
        return 200, {"Content-Type": "text/plain"}, b"hello " + request.path.encode()

    def main():
        with ivyrt.http.start_server(handler, "127.0.0.1", 0) as server:
            host, port = server.address[:2]
            response = ivyrt.http.get(f"http://{host}:{port}/x", timeout=5)
            assert response.status == 200 and response.body == b"hello /x"

    ivyrt.run(main)

Every call parks the calling task (not the thread); ``timeout`` bounds a whole
request (builtin ``TimeoutError``), and cancellation works as everywhere in
ivyrt.
"""

import http.client
import sys
import traceback
from urllib.parse import urlsplit

from . import _streams

__all__ = ["Request", "Response", "HTTPError", "get", "request", "start_server"]

_MAX_HEAD = 64 * 1024


class HTTPError(Exception):
    """A malformed HTTP message (request or response)."""


class Request:
    """A request as the server's handler sees it."""

    def __init__(self, method, path, headers, body, peer):
        self.method = method
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body
        self.peer = peer

    def __repr__(self):
        return f"<ivyrt.http.Request {self.method} {self.path}>"


class Response:
    """A response as the client sees it: ``status``, ``reason``, ``headers``
    (lower-case names) and ``body`` (bytes)."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"<ivyrt.http.Response {self.status} {self.reason} {len(self.body)} bytes>"


def _read_head(reader):
    """The start line and the headers (lower-case names) of a message."""
    try:
        head = reader.readuntil(b"\r\n\r\n")
    except _streams.LimitOverrunError:
        raise HTTPError("header section too long") from None
    except _streams.IncompleteReadError as e:
        if not e.partial:
            raise ConnectionResetError("connection closed before a message") from None
        raise HTTPError("connection closed inside the header section") from None
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HTTPError(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _content_length(headers):
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise HTTPError(f"bad Content-Length {value!r}") from None
    if n < 0:
        raise HTTPError(f"bad Content-Length {value!r}")
    return n


def _head_bytes(start_line, headers, body_len):
    lines = [start_line]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {body_len}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request(method, url, body=b"", headers=None, timeout=None):
    """Sends one HTTP/1.0 request and returns the ``Response``. ``timeout``
    (seconds) bounds the whole exchange (``TimeoutError``)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head_fields = {"Host": parts.netloc, "Connection": "close", **(headers or {})}

    def exchange():
        reader, writer = _streams.open_connection(parts.hostname, port, limit=_MAX_HEAD)
        try:
            writer.write(_head_bytes(f"{method} {path} HTTP/1.0", head_fields, len(body)) + body)
            start, fields = _read_head(reader)
            version, _, rest = start.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise HTTPError(f"malformed status line {start!r}")
            n = _content_length(fields)
            if n is None:
                data = reader.read()
            else:
                try:
                    data = reader.readexactly(n)
                except _streams.IncompleteReadError as e:
                    raise HTTPError(f"body ended after {len(e.partial)} of {n} bytes") from None
            return Response(int(code), reason, fields, data)
        finally:
            writer.close()

    if timeout is None:
        return exchange()
    from ._tasks import timeout as _timeout

    with _timeout(timeout):
        return exchange()


def get(url, headers=None, timeout=None):
    """``request("GET", url, ...)``."""
    return request("GET", url, b"", headers, timeout)


def _serve(handler, reader, writer):
    try:
        start, headers = _read_head(reader)
        method, path, _version = start.split(" ", 2)
        n = _content_length(headers) or 0
        body = reader.readexactly(n)
    except (HTTPError, ValueError, _streams.IncompleteReadError, ConnectionError):
        writer.write(_head_bytes("HTTP/1.0 400 Bad Request", {}, 0))
        writer.close()
        return
    try:
        result = handler(Request(method, path, headers, body, writer.get_extra_info("peername")))
        status, out_headers, out_body = result
        if isinstance(out_body, str):
            out_body = out_body.encode()
    except Exception:
        print(f"ivyrt.http: handler failed on {method} {path}:", file=sys.stderr)
        traceback.print_exc()
        status, out_headers, out_body = 500, {}, b""
    reason = http.client.responses.get(status, "")
    try:
        writer.write(_head_bytes(f"HTTP/1.0 {status} {reason}", dict(out_headers), len(out_body))
                     + out_body)
    except ConnectionError:
        pass  # the client went away
    finally:
        writer.close()


def start_server(handler, host="127.0.0.1", port=0):
    """Serves HTTP/1.0 on ``host:port`` (0: any free port; see
    ``Server.address``): ``handler(request)`` runs in a task per connection
    and returns ``(status, headers, body)``. An exception in it is a 500
    (reported on stderr). Returns the ``ivyrt.Server``."""
    return _streams.start_server(lambda r, w: _serve(handler, r, w), host, port, limit=_MAX_HEAD)
