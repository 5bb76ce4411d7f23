"""Streams: asyncio's ``open_connection`` / ``start_server`` in sync form.

``StreamReader`` keeps a ``bytearray`` buffer over a ``_TcpStream``
(``src/net.rs``) and implements ``read``, ``readline``, ``readexactly`` and
``readuntil`` as asyncio does, limit and errors included. ``StreamWriter``
sends at once: ``write`` parks while the socket's send buffer is full (the
back-pressure asyncio gets from ``drain``), so ``drain()`` has nothing left to
do but is kept for asyncio code. Every blocking call honours cancellation
(``CancelledError``, no byte lost: data already read stays in the buffer) and
enclosing ``ivyrt.timeout()`` scopes (``TimeoutError``).

``start_server`` binds and starts an accept loop as a task; each connection
runs ``client_connected_cb(reader, writer)`` as a detached task of its own.
An exception escaping the callback is reported on stderr with its traceback
and the connection is closed (asyncio logs it likewise).

UDP: ``open_datagram(local_addr, remote_addr)`` gives a ``DatagramSocket``
(``sendto``/``recvfrom``, ``send``/``recv`` once connected), a small socket-like
API rather than asyncio's protocol-based ``create_datagram_endpoint``.
"""

import errno
import inspect
import os
import socket
import sys
import traceback

from ._ivyrt import (
    DatagramSocket,
    IncompleteReadError,
    LimitOverrunError,
    _tcp_connect,
    _tcp_listen,
    _udp_bind,
)

__all__ = [
    "open_connection",
    "start_server",
    "StreamReader",
    "StreamWriter",
    "Server",
    "open_datagram",
    "DatagramSocket",
]

_DEFAULT_LIMIT = 2**16  # asyncio's
_ACCEPT_RETRY_DELAY = 1.0  # asyncio's, after running out of a system resource
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_READ_CHUNK = 2**16


def _incomplete(partial, expected):
    """``IncompleteReadError`` with asyncio's attributes ``partial``/``expected``."""
    r_expected = "undefined" if expected is None else repr(expected)
    e = IncompleteReadError(f"{len(partial)} bytes read on a total of {r_expected} expected bytes")
    e.partial = partial
    e.expected = expected
    return e


def _overrun(message, consumed):
    """``LimitOverrunError`` with asyncio's attribute ``consumed``."""
    e = LimitOverrunError(message)
    e.consumed = consumed
    return e


class StreamReader:
    """The reading side of a connection (asyncio.StreamReader).

    ``limit`` bounds ``readline``/``readuntil`` (``LimitOverrunError`` /
    ``ValueError`` beyond it)."""

    def __init__(self, stream, limit=_DEFAULT_LIMIT):
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    def _fill(self):
        """Reads one chunk into the buffer; False at end of file."""
        if self._eof:
            return False
        data = self._stream.recv(max(_READ_CHUNK, self._limit))
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _take(self, n):
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def at_eof(self):
        """True once end of file was read and the buffer is empty."""
        return self._eof and not self._buffer

    def read(self, n=-1):
        """Up to ``n`` bytes (parking until at least one byte or end of file);
        ``n`` < 0: everything until end of file. ``b""`` at end of file."""
        if n == 0:
            return b""
        if n < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        if not self._buffer:
            if self._eof:
                return b""
            # Fast path: hand the received bytes over without buffering them.
            data = self._stream.recv(min(n, max(_READ_CHUNK, self._limit)))
            if not data:
                self._eof = True
            return data
        return self._take(n)

    def readexactly(self, n):
        """Exactly ``n`` bytes; ``IncompleteReadError`` (with what was read)
        if end of file comes first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if not self._buffer and n and not self._eof:
            # Fast path: one read that brings exactly n bytes skips the buffer.
            data = self._stream.recv(max(_READ_CHUNK, n))
            if len(data) == n:
                return data
            if not data:
                self._eof = True
            self._buffer += data
        while len(self._buffer) < n:
            if not self._fill():
                partial = self._take(len(self._buffer))
                raise _incomplete(partial, n)
        return self._take(n)

    def readuntil(self, separator=b"\n"):
        """Bytes up to and including ``separator``. At end of file first:
        ``IncompleteReadError`` with the rest; no separator within the
        limit: ``LimitOverrunError`` (the data stays buffered)."""
        seplen = len(separator)
        if seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        offset = 0
        while True:
            at = self._buffer.find(separator, offset)
            if at != -1:
                end = at + seplen
                if end > self._limit:
                    raise _overrun("Separator is found, but chunk is longer than limit", at)
                return self._take(end)
            offset = max(0, len(self._buffer) + 1 - seplen)
            if offset > self._limit:
                raise _overrun("Separator is not found, and chunk exceed the limit", offset)
            if not self._fill():
                partial = self._take(len(self._buffer))
                raise _incomplete(partial, None)

    def readline(self):
        """One line, ``\\n`` included; at end of file the rest (maybe ``b""``).
        A line longer than the limit raises ``ValueError`` (and is dropped)."""
        try:
            return self.readuntil(b"\n")
        except IncompleteReadError as e:
            return e.partial
        except LimitOverrunError as e:
            if self._buffer.startswith(b"\n", e.consumed):
                del self._buffer[:e.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(e.args[0]) from None

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __repr__(self):
        info = [f"{len(self._buffer)} bytes"]
        if self._eof:
            info.append("eof")
        return f"<ivyrt.StreamReader {' '.join(info)}>"


class StreamWriter:
    """The writing side of a connection (asyncio.StreamWriter)."""

    def __init__(self, stream, reader=None):
        self._stream = stream
        self._reader = reader
        self._closing = False

    def write(self, data):
        """Sends ``data`` (bytes-like), parking while the socket's buffer is
        full. ``ConnectionResetError`` once closed."""
        if data:
            self._stream.sendall(data)

    def writelines(self, data):
        """Sends each bytes-like object of the iterable, in one write."""
        self.write(b"".join(data))

    def drain(self):
        """asyncio's flow control point: ``write`` already sent everything, so
        this only reports a closed writer (``ConnectionResetError``)."""
        if self._closing:
            raise ConnectionResetError("Connection lost")

    def can_write_eof(self):
        """True: TCP can half-close."""
        return True

    def write_eof(self):
        """Shuts down the sending side; the peer reads end of file."""
        self._stream.shutdown_write()

    def close(self):
        """Closes the connection at once (a read blocked on it, here or in
        another task, sees end of file). Idempotent."""
        self._closing = True
        self._stream.close()

    def is_closing(self):
        """Whether ``close()`` was called."""
        return self._closing

    def wait_closed(self):
        """Returns once closed: ``close()`` is synchronous here."""

    def get_extra_info(self, name, default=None):
        """``'peername'``, ``'sockname'``, or ``'socket'`` (a ``socket.socket``
        over a duplicate of the fd: close it when done)."""
        try:
            if name == "peername":
                return self._stream.peername()
            if name == "sockname":
                return self._stream.sockname()
            if name == "socket":
                return socket.socket(fileno=os.dup(self._stream.fileno()))
        except OSError:
            return default
        return default

    @property
    def transport(self):
        """The underlying ``_TcpStream``."""
        return self._stream

    def __repr__(self):
        state = "closing" if self._closing else "open"
        return f"<ivyrt.StreamWriter {state}>"


def _pair(stream, limit):
    reader = StreamReader(stream, limit)
    return reader, StreamWriter(stream, reader)


def open_connection(host=None, port=None, *, limit=_DEFAULT_LIMIT, timeout=None):
    """Connects to ``host:port`` and returns ``(reader, writer)``, parking the
    task until connected. ``timeout`` (seconds) bounds the connect
    (``TimeoutError``); ``ConnectionRefusedError`` & co. as asyncio raises."""
    if port is None:
        raise ValueError("port is required")
    stream = _tcp_connect(host or "localhost", port, timeout)
    return _pair(stream, limit)


class Server:
    """A listening server (asyncio.Server) made by ``start_server``.

    A context manager: leaving the ``with`` block closes it. ``close()`` stops
    accepting (connections already made keep running)."""

    def __init__(self, listener, client_connected_cb, limit):
        self._listener = listener
        self._callback = client_connected_cb
        self._limit = limit
        self._accepting = None  # the accept loop's Task
        self._closed = False
        self._sockets = None

    def _accept_loop(self):
        import ivyrt

        while True:
            try:
                conn = self._listener.accept()
            except ConnectionAbortedError:
                continue  # the peer gave up before we accepted
            except OSError as e:
                if e.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise
                # Out of fds or memory: say so and retry later, as asyncio does.
                print(f"ivyrt: server {self.address}: accept failed ({e}); retrying in "
                      f"{_ACCEPT_RETRY_DELAY} s", file=sys.stderr)
                ivyrt.sleep(_ACCEPT_RETRY_DELAY)
                continue
            if conn is None:
                return
            stream, _peer = conn
            task = ivyrt.create_task(self._serve_one, stream)
            task.detach()

    def _serve_one(self, stream):
        reader, writer = _pair(stream, self._limit)
        try:
            self._callback(reader, writer)
        except Exception:
            print("ivyrt: unhandled exception in client_connected_cb:", file=sys.stderr)
            traceback.print_exc()
            writer.close()

    def start_serving(self):
        """Starts the accept loop (a task) if it is not running."""
        import ivyrt

        if self._closed:
            raise RuntimeError("server is closed")
        if self._accepting is None:
            self._accepting = ivyrt.create_task(self._accept_loop, name="ivyrt-server")

    def is_serving(self):
        """Whether the server accepts connections."""
        return self._accepting is not None and not self._closed

    def serve_forever(self):
        """Serves until the server is closed (by ``close()`` from another task,
        or by cancelling this call: then it closes the server and re-raises)."""
        self.start_serving()
        try:
            self._accepting.join()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Stops listening at once; connections already made keep running."""
        self._closed = True
        self._listener.close()
        if self._sockets is not None:
            for s in self._sockets:
                s.close()

    def wait_closed(self):
        """Parks until the accept loop has ended (after ``close()``)."""
        if self._accepting is not None:
            self._accepting.join()

    @property
    def sockets(self):
        """The listening sockets, as ``socket.socket`` objects over duplicates
        of the fds (for ``getsockname()`` and options; closed with the server)."""
        if self._sockets is None:
            self._sockets = (socket.socket(fileno=os.dup(self._listener.fileno())),)
        return self._sockets

    @property
    def address(self):
        """The address listened on (the real port when started on port 0)."""
        return self._listener.sockname()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self.wait_closed()
        return False

    def __repr__(self):
        state = "closed" if self._closed else "serving" if self._accepting else "idle"
        return f"<ivyrt.Server {self.address} {state}>"


def start_server(client_connected_cb, host=None, port=None, *, limit=_DEFAULT_LIMIT,
                 backlog=None, start_serving=True):
    """Listens on ``host:port`` (None: every IPv4 interface; port 0 or None:
    any free port, see ``Server.address``) and, unless ``start_serving`` is
    False, starts accepting: each connection runs
    ``client_connected_cb(reader, writer)`` in a task of its own. Returns the
    ``Server``. ``backlog`` is accepted for asyncio compatibility; ivy listens
    with a backlog of its own (capped by ``net.core.somaxconn``)."""
    del backlog
    if inspect.iscoroutinefunction(client_connected_cb):
        raise TypeError("client_connected_cb is an async function: ivyrt runs plain functions "
                        "(def handler(reader, writer): ...)")
    listener = _tcp_listen(host, port or 0)
    server = Server(listener, client_connected_cb, limit)
    if start_serving:
        server.start_serving()
    return server


def open_datagram(local_addr=None, remote_addr=None):
    """A UDP ``DatagramSocket`` bound to ``local_addr`` (``(host, port)``;
    default: an any-port address of ``remote_addr``'s family, or
    ``("0.0.0.0", 0)``) and, with ``remote_addr``, connected to it (then
    ``send``/``recv`` talk to that peer only). ``sendto``/``recvfrom`` park the
    task, honour cancellation and ``timeout()`` scopes; a context manager."""
    if local_addr is None:
        local_addr = ("::", 0) if remote_addr and ":" in remote_addr[0] else ("0.0.0.0", 0)
    sock = _udp_bind(local_addr[0], local_addr[1])
    if remote_addr is not None:
        sock.connect(remote_addr)
    return sock
