"""The admin port: /metrics (Prometheus), /livez, /readyz. Never served on the S3 port."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability.metrics import Metrics


def build_admin_app(metrics: Metrics, is_ready: Callable[[], bool]) -> web.Application:
    async def metrics_endpoint(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app
