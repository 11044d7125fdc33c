"""Socket and buffer options of the gateway's two kinds of connection: clients in, the store out.

Why a larger send buffer: the gateway writes 1 MiB at a time (a sealed or opened batch). With the kernel's
default, autotuned send buffer a write that size is only partly taken; the event loop then copies the rest
into its own buffer and comes back for it, once per write — event-loop time that measured about a fifth of
the gateway's 1 GiB throughput (docs/benchmarks). The buffer is kernel memory, used only while the peer is
slower than the gateway, and capped by net.core.wmem_max.
"""
from __future__ import annotations

import resource
import socket

# aiohttp's read buffer (client responses and request bodies): its stream pauses the socket at twice this. The
# default, 64 KiB, pauses and resumes reading several times per batch of a few MiB (an epoll change each time,
# and a stalled sender meanwhile); 256 KiB, uvloop's own read size, measured +12 % on a 1 GiB GET.
READ_BUFFER_BYTES = 256 * 1024


def set_send_buffer(sock: socket.socket, size_bytes: int) -> None:
    """SO_SNDBUF, if a size is configured (0 keeps the kernel's autotuning)."""
    if size_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)


def listening_socket(host: str, port: int, send_buffer_bytes: int, backlog: int) -> socket.socket:
    """The S3 listener; accepted connections inherit its send buffer size."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    set_send_buffer(sock, send_buffer_bytes)
    return sock


def raise_open_file_limit() -> tuple[int, int]:
    """Every client connection is a file: the soft RLIMIT_NOFILE (often 1,024, or less under a supervisor) would
    let a few hundred slow or idle clients keep everyone else from connecting. Raised to the hard limit, which
    the operator sets. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
    return soft, hard
