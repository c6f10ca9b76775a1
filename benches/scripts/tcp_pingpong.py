#!/usr/bin/env python3
"""Loopback floor: TCP ping-pong between two processes (TCP_NODELAY), to compare the
master's round trips and the gets against. A 32-byte request is answered with
``SIZE`` bytes (first argument, default 32; ``4096`` is the round trip of a 4 KiB
get). Prints p50/p99 in microseconds."""
import multiprocessing
import socket
import sys
import time

N = 5000
REQ = 32


def recv_exactly(s, n):
    got = 0
    while got < n:
        chunk = s.recv(n - got)
        if not chunk:
            return False
        got += len(chunk)
    return True


def serve(srv, size):
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answer = b"y" * size
    while True:
        if not recv_exactly(conn, REQ):
            return
        conn.sendall(answer)


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    proc = multiprocessing.Process(target=serve, args=(srv, size))
    proc.start()
    s = socket.create_connection(srv.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    for _ in range(N):
        t = time.perf_counter()
        s.sendall(b"x" * REQ)
        recv_exactly(s, size)
        lat.append(time.perf_counter() - t)
    s.close()
    proc.join()
    lat.sort()
    print("tcp ping-pong between processes (%d-byte answers): p50 %.1f us p99 %.1f us"
          % (size, lat[N // 2] * 1e6, lat[N * 99 // 100] * 1e6))


if __name__ == "__main__":
    main()
