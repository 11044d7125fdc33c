"""The S3 listener's send buffer reaches the connections it accepts; 0 leaves the kernel's default."""
from __future__ import annotations

import socket

from gateway.proxy.sockets import listening_socket, set_send_buffer

SIZE = 1_500_000  # below net.core.wmem_max on any usual kernel; Linux reports twice the value it was given


def _accepted_send_buffer(send_buffer_bytes: int) -> int:
    with listening_socket("127.0.0.1", 0, send_buffer_bytes, backlog=1) as server:
        with socket.create_connection(server.getsockname()) as client:
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"x")
                return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def test_accepted_connections_inherit_the_send_buffer():
    assert _accepted_send_buffer(SIZE) == 2 * SIZE
    assert _accepted_send_buffer(0) != 2 * SIZE  # autotuned: whatever the kernel chose


def test_set_send_buffer_zero_changes_nothing():
    with socket.socket() as sock:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        set_send_buffer(sock, 0)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
        set_send_buffer(sock, SIZE)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * SIZE
