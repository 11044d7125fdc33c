"""The admin port: /metrics (Prometheus), /livez, /readyz. Never served on the S3 port."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability.metrics import Metrics


def build_admin_app(metrics: Metrics, is_started: Callable[[], bool],
                    is_ready: Callable[[], Awaitable[bool]]) -> web.Application:
    """`/livez`: the process answers. `/startupz`: listeners are up. `/readyz`: KMS and the store work now."""
    async def metrics_endpoint(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def startupz(_: web.Request) -> web.Response:
        if is_started():
            return web.Response(text="started\n")
        return web.Response(status=503, text="starting\n")

    async def readyz(_: web.Request) -> web.Response:
        if await is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/livez", livez)
    app.router.add_get("/startupz", startupz)
    app.router.add_get("/readyz", readyz)
    return app
