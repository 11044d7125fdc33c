"""Prometheus metrics, served on the admin port only.

Naming follows Prometheus rules: base units (`_bytes`, `_seconds`), counters end in `_total`. No label ever carries
a bucket, a key or a credential: label values come from small fixed sets (operation names, status codes, outcomes),
so cardinality stays bounded whatever clients send.
"""
from __future__ import annotations

import asyncio
import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Request latencies of an S3 gateway span sub-millisecond HEADs to minutes-long multi-GiB transfers.
_LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("envelope_requests_total", "S3 requests answered, by operation and HTTP status.",
                                ["operation", "status"], registry=r)
        self.request_duration = Histogram("envelope_request_duration_seconds",
                                          "Time from request start to the end of the response body.",
                                          ["operation"], buckets=_LATENCY_BUCKETS_SECONDS, registry=r)
        self.time_to_first_byte = Histogram("envelope_time_to_first_byte_seconds",
                                            "Time from request start to the response's status line.",
                                            ["operation"], buckets=_LATENCY_BUCKETS_SECONDS, registry=r)
        self.inflight = Gauge("envelope_inflight_requests", "S3 requests being served now.", registry=r)
        self.asyncio_tasks = Gauge("envelope_asyncio_tasks",
                                   "Tasks alive in the gateway's event loop when scraped; growth under steady load "
                                   "is a leak (a connection or transfer never ended).", registry=r)
        self.asyncio_tasks.set_function(_running_tasks)
        self.plaintext_bytes = Counter("envelope_plaintext_bytes_total",
                                       "Plaintext bytes received from (in) or sent to (out) clients.",
                                       ["direction"], registry=r)
        self.ciphertext_bytes = Counter("envelope_ciphertext_bytes_total",
                                        "Ciphertext bytes sent to (out) or received from (in) the object store.",
                                        ["direction"], registry=r)
        self.kms_requests = Counter("envelope_kms_requests_total", "KMS calls by operation and outcome.",
                                    ["operation", "outcome"], registry=r)
        self.kms_duration = Histogram("envelope_kms_request_duration_seconds", "KMS call latency.", ["operation"],
                                      buckets=_LATENCY_BUCKETS_SECONDS, registry=r)
        self.kms_retries = Counter("envelope_kms_retries_total",
                                   "KMS calls repeated after throttling or a failure, within the retry deadline.",
                                   ["operation"], registry=r)
        self.kms_breaker_open = Gauge("envelope_kms_breaker_open",
                                      "1 while the KMS circuit breaker refuses calls (open or probing), else 0.",
                                      registry=r)
        self.kms_breaker_rejections = Counter("envelope_kms_breaker_rejections_total",
                                              "Key operations refused without calling KMS: the breaker was open.",
                                              ["operation"], registry=r)
        self.kms_fallbacks = Counter("envelope_kms_fallbacks_total",
                                     "Data keys read from the object's copy under the second KMS key because the "
                                     "first KMS failed or timed out.", ["operation"], registry=r)
        self.dek_cache_hits = Counter("envelope_dek_cache_hits_total",
                                      "Data keys served from the DEK cache (no KMS call).", registry=r)
        self.dek_cache_misses = Counter("envelope_dek_cache_misses_total",
                                        "Data keys not in the DEK cache (a KMS Decrypt, or joining one in flight).",
                                        registry=r)
        self.dek_cache_evictions = Counter("envelope_dek_cache_evictions_total",
                                           "Data keys dropped (and zeroed) from the DEK cache, by reason.",
                                           ["reason"], registry=r)
        self.dek_cache_entries = Gauge("envelope_dek_cache_entries", "Data keys in the DEK cache.", registry=r)
        self.dek_cache_bytes = Gauge("envelope_dek_cache_bytes",
                                     "Bytes held by the DEK cache (keys, wrapped keys, encryption contexts).",
                                     registry=r)
        self.upstream_requests = Counter("envelope_upstream_requests_total",
                                         "Requests sent to the object store, by HTTP method and status class.",
                                         ["method", "status_class"], registry=r)
        self.upstream_duration = Histogram("envelope_upstream_request_duration_seconds",
                                           "Time until the object store's response headers arrived.", ["method"],
                                           buckets=_LATENCY_BUCKETS_SECONDS, registry=r)
        self.pool_queue_depth = Gauge("envelope_crypto_pool_queue_depth",
                                      "Crypto jobs submitted and waiting for a worker.", registry=r)
        self.pool_busy_workers = Gauge("envelope_crypto_pool_busy_workers", "Crypto workers running a job now.",
                                       registry=r)
        self.build_info = Gauge("envelope_gateway_build_info", "Version information; the value is always 1.",
                                ["version", "python"], registry=r)
        self.build_info.labels(package_version(), platform.python_version()).set(1)
        self.tamper_detections = Counter("envelope_tamper_detections_total",
                                         "Stored objects that failed authentication (commitment, tag, framing).",
                                         registry=r)
        self.plaintext_reads = Counter("envelope_plaintext_reads_total",
                                       "Objects without envelope metadata served as stored (plaintext), in a bucket "
                                       "opted in to plaintext reads for its migration.", registry=r)
        self.auth_failures = Counter("envelope_auth_failures_total", "Client requests refused by authentication.",
                                     ["code"], registry=r)
        self.request_head_timeouts = Counter("envelope_request_head_timeouts_total",
                                             "Client connections closed because a request head did not arrive "
                                             "within timeouts.request_head_seconds.", registry=r)
        self.malformed_requests = Counter("envelope_malformed_requests_total",
                                          "Requests refused before routing: unparseable HTTP or a head too large, "
                                          "by S3 error code.", ["code"], registry=r)
        self.transfer_timeouts = Counter("envelope_transfer_timeouts_total",
                                         "Transfers cut because a side stopped moving bytes, by what stalled.",
                                         ["stalled"], registry=r)
        self.overload_rejections = Counter("envelope_overload_rejections_total",
                                           "Requests answered 503 SlowDown because memory or upstream connections "
                                           "stayed exhausted for the bounded wait, by resource.",
                                           ["resource"], registry=r)
        for direction in ("in", "out"):
            self.plaintext_bytes.labels(direction)
            self.ciphertext_bytes.labels(direction)


def _running_tasks() -> float:
    # /metrics is served on the gateway's own loop, so the running loop is the one to count.
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # collected outside a running loop (a test's registry): nothing to count
        return 0


def package_version() -> str:
    try:
        return version("envelope-gateway")
    except PackageNotFoundError:
        return "unknown"
