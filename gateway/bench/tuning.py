"""Allocator settings for the instruments (the load client and the sink) — never applied to a proxy under test.

glibc serves allocations above 128 KiB with mmap and trims the heap top above 128 KiB, adapting both upward
only as large blocks are freed. Socket reads and body chunks of 64 KiB–1 MiB, allocated and freed thousands
of times a second, then keep returning memory to the kernel and faulting it back in, a page fault per 4 KiB;
in a VM that costs more than copying the bytes. Fixed, high thresholds keep that memory in the heap.
"""
from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
INSTRUMENT_MMAP_THRESHOLD_BYTES = 32 << 20
INSTRUMENT_TRIM_THRESHOLD_BYTES = 256 << 20


def keep_heap_memory() -> bool:
    """mallopt() for this process; False when not on glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, INSTRUMENT_MMAP_THRESHOLD_BYTES)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, INSTRUMENT_TRIM_THRESHOLD_BYTES)
        return bool(ok)
    except (OSError, AttributeError):
        return False
