"""Streams: open_connection/start_server, StreamReader's reads and their
errors, StreamWriter, Server's lifecycle, cancellation and timeouts of reads,
1000 concurrent echo connections with exact byte counts, and the HTTP/1.0
pair of ivyrt.http."""

import errno
import os
import resource
import socket
import time

import pytest

import ivyrt
import ivyrt.http


def wait_until(predicate, limit=10.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        ivyrt.sleep(0.0005)


def echo_handler(reader, writer):
    while data := reader.read(65536):
        writer.write(data)
    writer.close()


def serve(handler, **kw):
    server = ivyrt.start_server(handler, "127.0.0.1", 0, **kw)
    return server, server.address[1]


def test_echo_round_trip_and_extra_info():
    def main():
        server, port = serve(echo_handler)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            assert writer.get_extra_info("peername") == ("127.0.0.1", port)
            local = writer.get_extra_info("sockname")
            assert local[0] == "127.0.0.1" and local[1] != port
            sock = writer.get_extra_info("socket")
            assert sock.getpeername() == ("127.0.0.1", port)
            sock.close()
            assert writer.get_extra_info("nonsense", "dflt") == "dflt"
            writer.write(b"hello ")
            writer.writelines([b"wor", bytearray(b"ld"), memoryview(b"!\n")])
            writer.drain()
            assert reader.readline() == b"hello world!\n"
            writer.write_eof()  # half-close: the echo server then closes
            assert reader.read() == b""
            assert reader.at_eof()
            writer.close()
            assert writer.is_closing()
            writer.wait_closed()
            with pytest.raises(ConnectionResetError):
                writer.drain()

    ivyrt.run(main)


def test_reader_methods_and_their_errors():
    def main():
        def sender(reader, writer):
            writer.write(b"line one\nline two\r\nABCDEFGH--end--tail")
            writer.close()

        server, port = serve(sender)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            assert reader.readline() == b"line one\n"
            assert reader.readuntil(b"\r\n") == b"line two\r\n"
            assert reader.readexactly(4) == b"ABCD"
            assert reader.read(2) == b"EF"
            assert reader.readuntil(b"--end--") == b"GH--end--"
            with pytest.raises(ivyrt.IncompleteReadError) as e:
                reader.readexactly(10)
            assert (e.value.partial, e.value.expected) == (b"tail", 10)
            assert isinstance(e.value, EOFError)
            assert reader.at_eof()
            assert reader.read() == b"" and reader.readline() == b""
            with pytest.raises(ivyrt.IncompleteReadError) as e:
                reader.readuntil(b"x")
            assert (e.value.partial, e.value.expected) == (b"", None)
            with pytest.raises(ValueError):
                reader.readuntil(b"")
            with pytest.raises(ValueError):
                reader.readexactly(-1)
            writer.close()

    ivyrt.run(main)


def test_limits_of_readuntil_and_readline():
    def main():
        def sender(reader, writer):
            writer.write(b"0123456789" * 3 + b"\nshort\n" + b"x" * 50 + b"\nend\n")
            writer.close()

        server, port = serve(sender)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port, limit=16)
            with pytest.raises(ivyrt.LimitOverrunError) as e:
                reader.readuntil(b"\n")
            assert e.value.consumed > 16
            assert reader.readexactly(31) == b"0123456789" * 3 + b"\n"  # kept buffered
            assert reader.readline() == b"short\n"
            with pytest.raises(ValueError):
                reader.readline()  # too long: dropped with its newline
            assert reader.readline() == b"end\n"
            assert list(reader) == []
            writer.close()

    ivyrt.run(main)


def test_reader_iterates_lines():
    def main():
        def sender(reader, writer):
            writer.writelines(f"line {i}\n".encode() for i in range(100))
            writer.close()

        server, port = serve(sender)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            lines = list(reader)
            writer.close()
            return lines

    assert ivyrt.run(main) == [f"line {i}\n".encode() for i in range(100)]


def test_read_cancellation_and_timeout_lose_no_data():
    def main():
        proceed = ivyrt.Event()

        def slow_sender(reader, writer):
            proceed.wait()
            writer.write(b"payload\n")
            reader.read()  # until the client closes
            writer.close()

        server, port = serve(slow_sender)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            started = []

            def blocked_read():
                started.append(1)
                return reader.readline()

            t = ivyrt.create_task(blocked_read)
            wait_until(lambda: started)
            t.cancel()
            with pytest.raises(ivyrt.CancelledError):
                t.join()
            with pytest.raises(TimeoutError):
                with ivyrt.timeout(0.02):
                    reader.readline()
            proceed.set()
            assert reader.readline() == b"payload\n"
            writer.close()

    ivyrt.run(main)


def test_close_wakes_a_reader_in_another_task():
    def main():
        def silent(reader, writer):
            reader.read()
            writer.close()

        server, port = serve(silent)
        with server:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            started = []

            def read_all():
                started.append(1)
                return reader.read(100)

            t = ivyrt.create_task(read_all)
            wait_until(lambda: started)
            writer.close()
            assert t.join() == b""
            with pytest.raises(ConnectionResetError):
                writer.write(b"after close")

    ivyrt.run(main)


def test_server_lifecycle():
    def main():
        server, port = serve(echo_handler)
        assert server.is_serving()
        assert server.sockets[0].getsockname() == ("127.0.0.1", port)
        forever = ivyrt.create_task(server.serve_forever)
        reader, writer = ivyrt.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        assert reader.readline() == b"ping\n"
        server.close()
        forever.join()  # serve_forever returns once closed
        server.wait_closed()
        assert not server.is_serving()
        # The connection made before the close keeps working.
        writer.write(b"still\n")
        assert reader.readline() == b"still\n"
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            ivyrt.open_connection("127.0.0.1", port)

        # serve_forever cancelled: the server closes.
        server2, port2 = serve(echo_handler)
        t = ivyrt.create_task(server2.serve_forever)
        wait_until(server2.is_serving)
        ivyrt.sleep(0.001)
        t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        assert not server2.is_serving()
        with pytest.raises(ConnectionRefusedError):
            ivyrt.open_connection("127.0.0.1", port2)

        # A handler's exception is reported and closes its connection.
        def broken(reader, writer):
            raise RuntimeError("handler bug")

        with ivyrt.start_server(broken, "127.0.0.1", 0, start_serving=False) as server3:
            assert not server3.is_serving()
            server3.start_serving()
            reader, writer = ivyrt.open_connection("127.0.0.1", server3.address[1])
            assert reader.read() == b""
            writer.close()

    ivyrt.run(main)


def test_handler_exception_is_reported(capfd):
    def main():
        def broken(reader, writer):
            raise RuntimeError("handler bug 1234")

        with ivyrt.start_server(broken, "127.0.0.1", 0) as server:
            reader, writer = ivyrt.open_connection("127.0.0.1", server.address[1])
            assert reader.read() == b""
            writer.close()

    ivyrt.run(main)
    err = capfd.readouterr().err
    assert "handler bug 1234" in err and "Traceback" in err


def test_connect_errors():
    def main():
        async def coroutine_handler(reader, writer):
            pass

        with pytest.raises(TypeError, match="async function"):
            ivyrt.start_server(coroutine_handler, "127.0.0.1", 0)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        with pytest.raises(ConnectionRefusedError) as refused:
            ivyrt.open_connection("127.0.0.1", port)
        assert refused.value.errno == errno.ECONNREFUSED  # as the socket module sets it
        assert refused.value.strerror == os.strerror(errno.ECONNREFUSED)
        with pytest.raises(OSError):
            ivyrt.open_connection("no-such-host.invalid", 80)
        with pytest.raises(ValueError):
            ivyrt.open_connection("127.0.0.1", 70000)
        reader, writer = None, None
        server, port = serve(echo_handler)
        with server:
            reader, writer = ivyrt.open_connection("localhost", port)  # a name, resolved
            writer.write(b"by name\n")
            assert reader.readline() == b"by name\n"
            writer.close()

    ivyrt.run(main)


@pytest.mark.parametrize("workers", [1, 2])
def test_echo_1000_concurrent_connections_exact_bytes(workers):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2200  # 1000 client + 1000 server sockets, and the rest
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    def main():
        served = [0]

        def counting_echo(reader, writer):
            while data := reader.read(65536):
                served[0] += len(data)
                writer.write(data)
            writer.close()

        server, port = serve(counting_echo)
        all_connected = ivyrt.Barrier(1000)

        def client(i):
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
            all_connected.wait()  # 1000 connections open at once
            sent = 0
            received = 0
            for k in range(3):
                msg = bytes([i % 251]) * (100 + (i * 37 + k * 1001) % 4000)
                writer.write(msg)
                sent += len(msg)
                echoed = reader.readexactly(len(msg))
                assert echoed == msg
                received += len(echoed)
            writer.write_eof()
            assert reader.read() == b""
            writer.close()
            return sent, received

        results = ivyrt.gather(*[ivyrt.create_task(client, i) for i in range(1000)])
        server.close()
        server.wait_closed()
        wait_until(lambda: served[0] == sum(s for s, _ in results))
        return results, served[0]

    results, served = ivyrt.run(main, workers=workers)
    expected = sum(100 + (i * 37 + k * 1001) % 4000 for i in range(1000) for k in range(3))
    assert sum(s for s, _ in results) == expected
    assert sum(r for _, r in results) == expected
    assert served == expected


def test_http_client_and_server():
    def main():
        hits = []

        def handler(request):
            hits.append(request.path)
            if request.path == "/fail":
                raise RuntimeError("boom")
            if request.method == "POST":
                return 201, {"X-Echo": "yes"}, request.body[::-1]
            body = ("page " + request.path).encode() * 100
            return 200, {"Content-Type": "text/plain"}, body

        with ivyrt.http.start_server(handler) as server:
            base = "http://127.0.0.1:%d" % server.address[1]
            sem = ivyrt.Semaphore(10)

            def fetch(i):
                with sem:
                    return ivyrt.http.get(f"{base}/doc/{i}?q=1", timeout=10)

            responses = ivyrt.gather(*[ivyrt.create_task(fetch, i) for i in range(100)])
            for i, r in enumerate(responses):
                assert r.status == 200 and r.reason == "OK"
                assert r.headers["content-type"] == "text/plain"
                assert r.body == (f"page /doc/{i}?q=1").encode() * 100
            posted = ivyrt.http.request("POST", base + "/up", body=b"abc")
            assert (posted.status, posted.headers["x-echo"], posted.body) == (201, "yes", b"cba")
            assert ivyrt.http.get(base + "/fail").status == 500
            with pytest.raises(ValueError):
                ivyrt.http.get("https://example.com/")
            assert len(hits) == 102

            # A server that never answers: the client's timeout fires.
            silent = ivyrt.start_server(lambda r, w: r.read(), "127.0.0.1", 0)
            with silent:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    ivyrt.http.get("http://127.0.0.1:%d/" % silent.address[1], timeout=0.05)
                assert time.monotonic() - t0 < 2.0

    ivyrt.run(main)


def test_udp_datagrams_exact_counts():
    def main():
        with ivyrt.open_datagram(("127.0.0.1", 0)) as server:
            addr = server.getsockname()

            def echo():
                for _ in range(200):
                    data, peer = server.recvfrom()
                    server.sendto(data.upper(), peer)

            e = ivyrt.create_task(echo)

            def client(k):
                with ivyrt.open_datagram(remote_addr=addr) as sock:
                    got = []
                    for i in range(20):
                        sock.send(f"c{k} m{i}".encode())
                        got.append(sock.recv())
                    return got

            results = ivyrt.gather(*[ivyrt.create_task(client, k) for k in range(10)])
            e.join()
            for k, got in enumerate(results):
                assert got == [f"C{k} M{i}".encode() for i in range(20)]

            # Reads honour cancellation and timeout scopes; close wakes a reader.
            with pytest.raises(TimeoutError):
                with ivyrt.timeout(0.02):
                    server.recvfrom()
            started = []

            def blocked():
                started.append(1)
                return server.recvfrom()

            t = ivyrt.create_task(blocked)
            wait_until(lambda: started)
            t.cancel()
            with pytest.raises(ivyrt.CancelledError):
                t.join()
            t = ivyrt.create_task(blocked)
            wait_until(lambda: len(started) == 2)
            server.close()
            with pytest.raises(ConnectionResetError):
                t.join()

    ivyrt.run(main)


EMFILE_SCRIPT = r"""
import os, resource, sys
import ivyrt

def main():
    def greet(reader, writer):
        writer.write(b"hi\n")
        reader.read()
        writer.close()

    server = ivyrt.start_server(greet, "127.0.0.1", 0)
    port = server.address[1]
    # Leave exactly 9 free fds: fill every free number below the limit, then
    # close nine of the fillers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 10, hard))
    fillers = []
    while True:
        try:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            break
    for _ in range(9):
        os.close(fillers.pop())
    conns, stuck = [], None
    for _ in range(100):
        try:
            reader, writer = ivyrt.open_connection("127.0.0.1", port)
        except OSError:  # the client side ran out first: make room, go on
            conns.pop(0)[1].close()
            continue
        try:
            with ivyrt.timeout(0.3):
                assert reader.readline() == b"hi\n"
            conns.append((reader, writer))
        except TimeoutError:
            stuck = (reader, writer)  # connected, but the server could not accept
            break
    assert stuck is not None, "the server never ran out of fds"
    conns.pop(0)[1].close()  # frees fds; the server retries its accept
    with ivyrt.timeout(5):
        assert stuck[0].readline() == b"hi\n"
    print("recovered")

ivyrt.run(main)
"""


def test_server_survives_running_out_of_fds():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", EMFILE_SCRIPT], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "recovered" in r.stdout
    assert "accept failed" in r.stderr and "retrying" in r.stderr
