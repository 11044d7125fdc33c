"""A minimal, fast S3-compatible sink — for benchmarks and memory tests only, never part of the product.

moto is far too slow to measure a gateway against. This sink answers PutObject, GetObject (with a single
Range), HeadObject and DeleteObject, keeps bodies in files under a temporary directory and user metadata in
memory, checks no signature and implements nothing else. It binds to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import tempfile
from email.utils import formatdate

from aiohttp import web

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_READ_BYTES = 1 << 20


class Sink:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.objects: dict[str, dict[str, str]] = {}

    def _path(self, bucket: str, key: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        bucket, _, key = request.match_info["tail"].partition("/")
        name = f"{bucket}/{key}"
        if request.method == "PUT":
            return await self._put(request, name, self._path(bucket, key))
        if request.method in ("GET", "HEAD"):
            if name not in self.objects:
                return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
            return await self._get(request, name, self._path(bucket, key))
        if request.method == "DELETE":
            self.objects.pop(name, None)
            if os.path.exists(self._path(bucket, key)):
                os.unlink(self._path(bucket, key))
            return web.Response(status=204)
        return web.Response(status=501)

    async def _put(self, request: web.Request, name: str, path: str) -> web.Response:
        digest = hashlib.md5()
        with open(path, "wb") as out:
            while chunk := await request.content.readany():
                digest.update(chunk)
                out.write(chunk)
        meta = {k: v for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-")}
        meta["ETag"] = f'"{digest.hexdigest()}"'
        meta["Last-Modified"] = formatdate(usegmt=True)
        self.objects[name] = meta
        return web.Response(status=200, headers={"ETag": meta["ETag"]})

    async def _get(self, request: web.Request, name: str, path: str) -> web.StreamResponse:
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        headers = dict(self.objects[name])
        match = _RANGE.match(request.headers.get("Range", ""))
        if match and match.group(1):
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
        elif match and match.group(2):
            start, status = max(0, size - int(match.group(2))), 206
        if status == 206:
            if start >= size:
                return web.Response(status=416, text="<Error><Code>InvalidRange</Code></Error>")
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start + 1
        await response.prepare(request)
        if request.method == "GET":
            with open(path, "rb") as source:
                source.seek(start)
                remaining = end - start + 1
                while remaining:
                    chunk = source.read(min(_READ_BYTES, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    await response.write(chunk)
        await response.write_eof()
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envelope-sink-") as directory:
        sink = Sink(directory)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", sink.handle)
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                    loop=asyncio.new_event_loop())


if __name__ == "__main__":
    main()
