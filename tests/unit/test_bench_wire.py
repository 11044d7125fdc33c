"""The instruments' minimal HTTP/1.1 pieces (gateway/bench/wire.py) and /proc readers (procstat.py)."""
from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bench import procstat
from gateway.bench.wire import ProtocolError, _ChunkedDecoder, content_length, parse_head, render_head


def test_head_round_trip():
    head = render_head("PUT /b/k HTTP/1.1", [("Host", "127.0.0.1:1"), ("Content-Length", "5"),
                                             ("x-amz-meta-a", " spaced ")])
    assert head.endswith(b"\r\n\r\n")
    start, fields = parse_head(head[:-4])
    assert start == "PUT /b/k HTTP/1.1"
    assert fields == [("host", "127.0.0.1:1"), ("content-length", "5"), ("x-amz-meta-a", "spaced")]
    assert content_length(fields) == 5
    with pytest.raises(ValueError):
        render_head("GET / HTTP/1.1", [("x", "a\r\nInjected: 1")])


def test_head_refusals():
    for bad in (b"GET / HTTP/1.1\r\nno-colon", b"GET / HTTP/1.1\r\n folded: x", b"GET / HTTP/1.1\r\n :x"):
        with pytest.raises(ProtocolError):
            parse_head(bad)
    with pytest.raises(ProtocolError):
        content_length([("content-length", "1"), ("content-length", "2")])
    with pytest.raises(ProtocolError):
        content_length([("content-length", "-1")])
    assert content_length([("content-length", "3"), ("content-length", "3")]) == 3
    assert content_length([]) is None


@given(payload=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=6),
       cut=st.integers(1, 50))
def test_chunked_decoder_reassembles_any_split(payload, sizes, cut):
    encoded, position, i = bytearray(), 0, 0
    while position < len(payload):
        n = sizes[i % len(sizes)]
        piece = payload[position:position + n]
        encoded += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        position += n
        i += 1
    encoded += b"0\r\nx-trailer: 1\r\n\r\nNEXT"
    got = bytearray()
    decoder = _ChunkedDecoder(lambda view: got.extend(view))
    used = 0
    for start in range(0, len(encoded), cut):
        part = memoryview(bytes(encoded[start:start + cut]))
        used += decoder.feed(part)
        if decoder.done:
            break
    assert decoder.done and bytes(got) == payload
    assert used == len(encoded) - len(b"NEXT")


def test_chunked_decoder_refuses_garbage():
    decoder = _ChunkedDecoder(lambda view: None)
    with pytest.raises(ProtocolError):
        decoder.feed(memoryview(b"zz\r\n"))


def test_procstat_reads_this_process():
    pid = os.getpid()
    snapshot = procstat.Snapshot.of(pid)
    assert snapshot.cpu >= 0 and snapshot.faults > 0
    assert snapshot.cpu == pytest.approx(snapshot.user + snapshot.system)
    assert procstat.rss_bytes(pid) > 1 << 20
    assert procstat.peak_rss_bytes(pid) >= procstat.rss_bytes(pid) - (1 << 20)
    busy, steal = procstat.machine_cpu()
    assert busy > 0 and steal >= 0
    later = procstat.Snapshot.of(pid).since(snapshot)
    assert later.cpu >= 0
