#!/usr/bin/env python3
"""Loopback floor: 32-byte TCP ping-pong between two processes (TCP_NODELAY),
to compare the master's gRPC round trips against. Prints p50/p99 in microseconds."""
import multiprocessing
import socket
import time

N = 5000


def serve(srv):
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(64)
        if not data:
            return
        conn.sendall(data)


def main():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    proc = multiprocessing.Process(target=serve, args=(srv,))
    proc.start()
    s = socket.create_connection(srv.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    for _ in range(N):
        t = time.perf_counter()
        s.sendall(b"x" * 32)
        s.recv(64)
        lat.append(time.perf_counter() - t)
    s.close()
    proc.join()
    lat.sort()
    print("tcp ping-pong between processes: p50 %.1f us p99 %.1f us"
          % (lat[N // 2] * 1e6, lat[N * 99 // 100] * 1e6))


if __name__ == "__main__":
    main()
