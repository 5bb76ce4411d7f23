"""Streams: a TCP echo server and its client (asyncio's "TCP echo" examples).

asyncio:  server = await asyncio.start_server(handle, "127.0.0.1", 0)
          reader, writer = await asyncio.open_connection("127.0.0.1", port)
ivyrt:    server = ivyrt.start_server(handle, "127.0.0.1", 0)
          reader, writer = ivyrt.open_connection("127.0.0.1", port)

The server runs handle(reader, writer) as a task per connection. Three
clients talk to it at once, each sending lines and reading the echo back.
Loopback only.
"""

import ivyrt


def handle(reader, writer):
    peer = writer.get_extra_info("peername")
    while line := reader.readline():  # b"" at EOF
        writer.write(line.upper())
        writer.drain()
    writer.close()
    writer.wait_closed()
    return peer


def send_three_bytes(reader, writer):
    writer.write(b"abc")
    writer.drain()
    writer.close()


def client(port, name):
    reader, writer = ivyrt.open_connection("127.0.0.1", port)
    replies = []
    for i in range(3):
        writer.write(f"{name} says {i}\n".encode())
        writer.drain()
        replies.append(reader.readline().decode().strip())
    writer.close()
    writer.wait_closed()
    return replies


def main():
    with ivyrt.start_server(handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        results = ivyrt.gather(*[ivyrt.create_task(client, port, f"client{i}")
                                 for i in range(3)])
        for replies in results:
            print(" | ".join(replies))
    print("server closed")  # leaving the with block closed it

    # A short read is an error when the protocol needs exactly n bytes.
    with ivyrt.start_server(send_three_bytes, "127.0.0.1", 0) as server:
        reader, writer = ivyrt.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            reader.readexactly(10)
        except ivyrt.IncompleteReadError as e:
            print(f"readexactly(10) got only {e.partial!r}")
        writer.close()


if __name__ == "__main__":
    ivyrt.run(main)
