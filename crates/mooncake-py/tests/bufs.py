"""Caller-owned host memory for the pointer API: a ctypes buffer with its address."""

import ctypes


class HostBuf:
    """``size`` zeroed bytes at a stable address (``ptr``), viewable as ``view``."""

    def __init__(self, size: int):
        self.size = size
        self._raw = ctypes.create_string_buffer(size)
        self.ptr = ctypes.addressof(self._raw)
        self.view = memoryview(self._raw).cast("B")

    def write(self, offset: int, data: bytes):
        self.view[offset:offset + len(data)] = data

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.view[offset:offset + n])


def pattern(seed: int, n: int) -> bytes:
    """Deterministic, position-dependent bytes, so misplaced data cannot pass."""
    block = bytes((seed * 131 + i * 7) & 0xFF for i in range(251))
    return (block * (n // len(block) + 1))[:n]
