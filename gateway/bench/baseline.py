"""A plain HTTP pass-through proxy done well — the baseline the gateway is measured against. Benchmarks only.

No crypto, no authentication, no S3 knowledge: every request is relayed to the upstream as it is, streamed
both ways — `readany()` in, `iter_any()` out — with an exact Content-Length both ways (never chunked when the
length is known), on uvloop, with the access log off. What a well-built aiohttp proxy costs in CPU and
throughput on this machine; an encrypting gateway can at best add the cipher to it.
"""
from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the client library sets itself.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "host", "content-length", "expect"})
UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
DEFAULT_READ_BUFSIZE = 1 << 16  # aiohttp's default


async def _body(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await content.readany():
        yield chunk


async def handle(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    url = URL(request.app[UPSTREAM] + request.raw_path, encoded=True)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
    length = request.content_length
    data = None
    if length is not None and length > 0:
        headers["Content-Length"] = str(length)
        data = _body(request.content)
    elif request.body_exists:
        data = _body(request.content)  # no length from the client: aiohttp sends it chunked
    elif request.method in ("PUT", "POST"):
        headers["Content-Length"] = "0"
    async with session.request(request.method, url, headers=headers, data=data, allow_redirects=False,
                               compress=None) as upstream:
        out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)
        response = web.StreamResponse(status=upstream.status, headers=out)
        if "Content-Length" in upstream.headers:
            response.content_length = int(upstream.headers["Content-Length"])
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, OSError):
                # The upstream broke mid-body: end the client's connection so it cannot take a short body
                # for a whole one.
                if request.transport is not None:
                    request.transport.abort()
                return response
        await response.write_eof()
        return response


READ_BUFSIZE = web.AppKey("read_bufsize", int)


async def _session(app: web.Application):
    connector = aiohttp.TCPConnector(limit=256)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         read_bufsize=app[READ_BUFSIZE],
                                         skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
                                         timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=300))
    yield
    await app[SESSION].close()


def build_app(upstream: str, read_bufsize: int = DEFAULT_READ_BUFSIZE) -> web.Application:
    app = web.Application(client_max_size=0)
    app[UPSTREAM] = upstream.rstrip("/")
    app[READ_BUFSIZE] = read_bufsize
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the store")
    parser.add_argument("--read-bufsize", type=int, default=DEFAULT_READ_BUFSIZE,
                        help=f"aiohttp read buffer, both sides (default {DEFAULT_READ_BUFSIZE}: aiohttp's)")
    args = parser.parse_args(argv)
    import uvloop

    web.run_app(build_app(args.upstream, args.read_bufsize), host="127.0.0.1", port=args.port, access_log=None,
                print=None, loop=uvloop.new_event_loop(), read_bufsize=args.read_bufsize)


if __name__ == "__main__":
    main()
