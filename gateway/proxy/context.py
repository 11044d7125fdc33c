"""What every request handler shares: settings, the upstream, KMS, the crypto pool, metrics."""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway.keys.kms import KeyService
from gateway.proxy.budget import BatchBudget
from gateway.observability.metrics import Metrics
from gateway.proxy.pool import CryptoPool
from gateway.proxy.tablecache import TableCache
from gateway.proxy.uploadstate import UploadStates
from gateway.proxy.upstream import Upstream
from gateway.s3.access import BucketPolicy, bucket_matches


@dataclass
class Gateway:
    upstream: Upstream
    keys: KeyService
    pool: CryptoPool
    metrics: Metrics
    uploads: UploadStates
    budget: BatchBudget
    tables: TableCache
    client_secrets: dict[str, str] = field(repr=False)
    client_policies: dict[str, BucketPolicy] = field(default_factory=dict)
    virtual_host_domains: tuple[str, ...] = ()
    batch_bytes: int = 1 << 20
    inflight_batches: int = 4
    max_skew_seconds: int = 900
    client_idle_seconds: float = 20.0  # timeouts.client_idle_seconds (gateway.proxy.idle)
    wrapped_copies: int = 1  # KMS-wrapped copies of each data key in an object's metadata (2 with kms.secondary)
    # migration.plaintext_read_buckets: where objects without envelope metadata are served as stored
    plaintext_read_buckets: tuple[str, ...] = ()
    ready: bool = False
    inflight: int = 0  # S3 requests being handled, for draining at shutdown

    def secret_for(self, access_key_id: str) -> str | None:
        return self.client_secrets.get(access_key_id)

    def policy_for(self, access_key_id: str) -> BucketPolicy:
        # Only verified identities get here; a client configured without `buckets` may use every bucket.
        return self.client_policies.get(access_key_id, BucketPolicy())

    def reads_plaintext(self, bucket: str) -> bool:
        """Whether objects written around the gateway (no envelope metadata at all) are served as stored here."""
        return bucket_matches(self.plaintext_read_buckets, bucket)
