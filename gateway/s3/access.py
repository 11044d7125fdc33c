"""Which buckets a client may read or write (the `buckets` setting of a client). Pure.

The gateway holds the store's credentials, so the store's own IAM cannot tell the gateway's clients apart: this is
where they are told apart. A request is judged after its signature is verified and before anything is forwarded;
a refusal is 403 AccessDenied and the store never sees the request.
"""
from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway import errors


class Access(enum.Flag):
    READ = enum.auto()
    WRITE = enum.auto()


# The setting's words; "read-write" is both.
ACCESS_WORDS: Mapping[str, Access] = {"read": Access.READ, "write": Access.WRITE,
                                      "read-write": Access.READ | Access.WRITE}


def required_access(operation_name: str) -> Access:
    """What an S3 operation does to its bucket. Reading means Get*/Head*/List* (ListParts and
    ListMultipartUploads included); everything else changes the bucket or its objects, including DeleteObjects,
    RestoreObject and the multipart steps, and is a write. Unknown operations count as writes (fail closed)."""
    return Access.READ if operation_name.startswith(("Get", "Head", "List")) else Access.WRITE


def bucket_matches(patterns: Iterable[str], bucket: str) -> bool:
    """Whether a bucket is named by one of these bucket names or shell-style patterns (`logs-*`)."""
    return any(pattern == bucket or fnmatch.fnmatchcase(bucket, pattern) for pattern in patterns)


@dataclass(frozen=True)
class BucketPolicy:
    """A client's grants: bucket name or shell-style pattern (`logs-*`) → access. `None` grants: every bucket,
    read and write (a client without a `buckets` setting)."""
    grants: Mapping[str, Access] | None = None

    def allows(self, bucket: str, access: Access) -> bool:
        if self.grants is None:
            return True
        granted = Access(0)
        for pattern, grant in self.grants.items():
            if bucket_matches((pattern,), bucket):
                granted |= grant
        return access in granted

    def check(self, operation_name: str, bucket: str | None, copy_source_bucket: str | None = None) -> None:
        """Raise AccessDenied unless the operation is allowed. Service-level operations (ListBuckets) would show
        every bucket of the store's account, so only unrestricted clients may call them. A copy also reads its
        source bucket."""
        if self.grants is None:
            return
        if bucket is None:
            raise errors.AccessDenied("This client may only use the buckets it is granted.")
        if not self.allows(bucket, required_access(operation_name)):
            raise errors.AccessDenied()
        if copy_source_bucket is not None and not self.allows(copy_source_bucket, Access.READ):
            raise errors.AccessDenied()
