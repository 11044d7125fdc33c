"""Start-up and shutdown: build the gateway from settings, listen on the S3 and admin ports, stop cleanly."""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aioboto3
from aiohttp import web

from gateway.config import Settings, effective_cpu_count
from gateway.keys.bucketkeys import BucketKeyPolicy, BucketKeys
from gateway.keys.breaker import Breaker
from gateway.keys.cache import CacheLimits
from gateway.keys.endpoint import KmsEndpoint
from gateway.keys.kms import KeyService, Secondary
from gateway.keys.policy import KeyRule, MasterKeyPolicy
from gateway.keys.retry import RetryPolicy
from gateway.observability.admin import build_admin_app
from gateway.observability.metrics import Metrics
from gateway.proxy.app import build_app
from gateway.proxy.budget import BatchBudget
from gateway.proxy.context import Gateway
from gateway.proxy.health import Readiness
from gateway.proxy.pool import CryptoPool
from gateway.proxy.protocol import Edge, EdgeRunner
from gateway.proxy.sockets import READ_BUFFER_BYTES, listening_socket, raise_open_file_limit
from gateway.proxy.tablecache import TableCache
from gateway.proxy.uploadstate import UploadStates
from gateway.proxy.upstream import CredentialSource, SdkCredentials, Upstream

log = logging.getLogger(__name__)


@dataclass
class Overrides:
    """What dev mode and tests inject instead of the SDK's default chain."""
    upstream_credentials: CredentialSource | None = None
    kms_session: aioboto3.Session | None = None


def _upstream_endpoint(settings: Settings, region: str) -> str:
    if settings.upstream.endpoint:
        return str(settings.upstream.endpoint).rstrip("/")
    env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return env.rstrip("/") if env else f"https://s3.{region}.amazonaws.com"


def _region(configured: str | None) -> str:
    return configured or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.tls.cert_file), str(settings.tls.key_file))
    return context


def _keep_heap_memory() -> None:
    """glibc returns freed batch buffers to the kernel (mmap threshold, heap trim) and faults them back in on the
    next batch: fixed, higher thresholds keep them in the heap. Memory stays bounded by concurrency (the batch
    budget). One arena for all threads: batches are allocated by the event loop and the crypto threads alike, and
    every further arena keeps free pages of its own. Measured with 16 concurrent transfers: one arena per thread
    to two, 5-9 MiB less peak RSS; two to one, another 8-11 MiB less (134-136 MiB instead of 143-146, and
    steadier), with throughput and CPU per GiB unchanged in an interleaved A/B (a crypto thread allocates once
    per batch, so the shared arena's lock is not contended)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 1)          # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _log_open_file_limit(before: int, after: int) -> None:
    if after != before:
        log.info("open file limit: raised from %d to %d (the hard limit)", before, after)
    else:
        log.info("open file limit: %d", after)


async def run(settings: Settings, overrides: Overrides | None = None,
              on_ready: Callable[[], Awaitable[None] | None] | None = None,
              stop: asyncio.Event | None = None) -> None:
    _keep_heap_memory()
    _log_open_file_limit(*raise_open_file_limit())
    overrides = overrides or Overrides()
    metrics = Metrics()
    region = _region(settings.upstream.region)
    upstream = Upstream(_upstream_endpoint(settings, region), region, settings.upstream.addressing_style,
                        overrides.upstream_credentials or SdkCredentials(), metrics,
                        max_connections=settings.upstream.max_connections,
                        connect_timeout_seconds=settings.upstream.connect_timeout_seconds,
                        read_timeout_seconds=settings.upstream.read_timeout_seconds,
                        pool_wait_seconds=settings.upstream.pool_wait_seconds,
                        send_buffer_bytes=settings.socket_send_buffer_bytes)
    kms = settings.kms

    def endpoint(url: str | None, region: str | None, primary: bool) -> KmsEndpoint:
        return KmsEndpoint(metrics, endpoint_url=str(url).rstrip("/") if url else None,
                           region=_region(region or settings.upstream.region), session=overrides.kms_session,
                           retry=RetryPolicy(kms.retry.deadline_seconds, kms.retry.base_delay_seconds,
                                             kms.retry.max_delay_seconds),
                           breaker=Breaker(kms.breaker.failure_threshold, kms.breaker.open_seconds),
                           reports_breaker=primary)
    keys = KeyService(
        MasterKeyPolicy(kms.key_id, tuple(KeyRule(r.bucket, r.prefix, r.key_id) for r in kms.key_policy)), metrics,
        endpoint(kms.endpoint, kms.region, primary=True),
        cache=CacheLimits(kms.cache.ttl_seconds, kms.cache.max_entries, kms.cache.max_bytes, kms.cache.max_uses),
        cache_new_keys=kms.cache.write_through,
        decrypt_key_ids=tuple(kms.decrypt_key_ids),
        secondary=Secondary(kms.secondary.key_id, endpoint(kms.secondary.endpoint, kms.secondary.region,
                                                           primary=False)) if kms.secondary else None,
        bucket_keys=BucketKeys(BucketKeyPolicy(tuple(kms.bucket_keys.buckets), kms.bucket_keys.max_age_seconds,
                                               kms.bucket_keys.max_objects)) if kms.bucket_keys else None)
    pool = CryptoPool(settings.crypto.workers or effective_cpu_count(), metrics)
    gw = Gateway(upstream=upstream, keys=keys, pool=pool, metrics=metrics, uploads=UploadStates(upstream, keys),
                 client_secrets={c.access_key_id: c.secret_access_key.get_secret_value() for c in settings.clients},
                 client_policies={c.access_key_id: c.bucket_policy() for c in settings.clients},
                 wrapped_copies=2 if kms.secondary else 1,
                 virtual_host_domains=tuple(settings.virtual_host_domains),
                 batch_bytes=settings.crypto.batch_bytes,
                 inflight_batches=settings.crypto.inflight_batches_per_request,
                 max_skew_seconds=settings.max_skew_seconds,
                 plaintext_read_buckets=tuple(settings.migration.plaintext_read_buckets),
                 client_idle_seconds=settings.timeouts.client_idle_seconds,
                 budget=BatchBudget(settings.crypto.buffer_budget_bytes, settings.crypto.batch_bytes,
                                    settings.crypto.budget_wait_seconds,
                                    metrics.overload_rejections.labels("transfer_memory").inc),
                 tables=TableCache())

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass

    await upstream.start()
    await keys.start()
    # The drain happens in _drain(): aiohttp's own graceful shutdown stops reading request bodies at once, which
    # would stall every upload in flight. By cleanup time, what is left is cancelled after this short timeout.
    s3_runner = EdgeRunner(build_app(gw), edge=Edge.create(settings.timeouts.request_head_seconds,
                                                               settings.timeouts.keepalive_seconds, metrics),
                           handler_args={"access_log": None, "read_bufsize": READ_BUFFER_BYTES},
                           shutdown_timeout=1.0)
    readiness = Readiness(gw)
    admin_runner = web.AppRunner(build_admin_app(metrics, lambda: gw.ready, readiness.ready), access_log=None)
    try:
        await admin_runner.setup()
        await web.TCPSite(admin_runner, settings.admin_listen.host, settings.admin_listen.port).start()
        await s3_runner.setup()
        s3_site = web.SockSite(s3_runner, listening_socket(settings.listen.host, settings.listen.port,
                                                           settings.socket_send_buffer_bytes, backlog=1024),
                               ssl_context=_ssl_context(settings))
        await s3_site.start()
        gw.ready = True
        log.info("listening: s3=%s://%s:%d admin=http://%s:%d upstream=%s",
                 "https" if settings.tls else "http", settings.listen.host, settings.listen.port,
                 settings.admin_listen.host, settings.admin_listen.port, upstream.endpoint)
        if on_ready is not None:
            result = on_ready()
            if result is not None:
                await result
        await stop.wait()
        await _drain(gw, s3_site, settings.shutdown_grace_seconds)
    finally:
        await s3_runner.cleanup()
        await admin_runner.cleanup()
        await keys.close()
        await upstream.close()
        pool.close()


async def _drain(gw: Gateway, site: web.BaseSite, grace_seconds: float) -> None:
    """Not ready, no new connections; in-flight requests get `grace_seconds` to finish. What is still running
    afterwards is cancelled by the runner's cleanup: a cancelled upload aborts its upstream body before the last
    byte, so it never becomes an object."""
    gw.ready = False
    await site.stop()
    log.info("shutting down: %d requests in flight, draining for up to %ss", gw.inflight, grace_seconds)
    deadline = asyncio.get_running_loop().time() + grace_seconds
    while gw.inflight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if gw.inflight:
        log.warning("shutting down: aborting %d requests still in flight", gw.inflight)
