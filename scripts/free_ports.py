#!/usr/bin/env python3
"""Distinct loopback ports nothing listens on, for the scripts and tests that start
processes on them.

Picked at random below the kernel's ephemeral range: a port picked by binding port 0
lies inside that range, and can be handed out as the source port of any outgoing
connection on the machine before the process started on it binds it (seconds
later). Usage: `free_ports.py N` prints N ports on one line; or import `free_ports`.
"""

import random
import socket
import sys


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int) -> list:
    """`n` distinct ports that could be bound on 127.0.0.1 just now."""
    lo = ephemeral_low()
    picked = []
    for _ in range(1000):
        if len(picked) == n:
            return picked
        # With no room below the range, the kernel's choice is all there is.
        p = random.randrange(10000, lo) if lo > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            p = s.getsockname()[1]
        if p not in picked:
            picked.append(p)
    raise RuntimeError(f"found only {len(picked)} of {n} free loopback ports")


def free_port() -> int:
    return free_ports(1)[0]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    print(" ".join(map(str, free_ports(count))))
