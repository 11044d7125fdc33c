"""Which master key encrypts which object (`kms.key_policy`). Pure.

Rules name a bucket (a name or a shell-style pattern) and a key prefix; for an object, among the rules whose bucket
matches, the longest prefix that starts the object's key wins (the first listed, between equally long ones), and
`kms.key_id` is the default. Only new data keys follow the policy: reading accepts any configured key (the
gateway's allow-list, FORMAT.md §8), so moving a prefix to another key never makes its old objects unreadable.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.s3.access import bucket_matches


@dataclass(frozen=True)
class KeyRule:
    bucket: str
    prefix: str
    key_id: str

    def matches(self, bucket: str, key: str) -> bool:
        return bucket_matches((self.bucket,), bucket) and key.startswith(self.prefix)


@dataclass(frozen=True)
class MasterKeyPolicy:
    default_key_id: str
    rules: tuple[KeyRule, ...] = ()

    def key_for(self, bucket: str, key: str) -> str:
        best: KeyRule | None = None
        for rule in self.rules:
            if rule.matches(bucket, key) and (best is None or len(rule.prefix) > len(best.prefix)):
                best = rule
        return self.default_key_id if best is None else best.key_id

    def key_ids(self) -> tuple[str, ...]:
        """Every key the policy writes with, the default first, each once."""
        return tuple(dict.fromkeys((self.default_key_id, *(rule.key_id for rule in self.rules))))
