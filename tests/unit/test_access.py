"""Client bucket grants (gateway.s3.access): which operation needs what, and who gets it."""
from __future__ import annotations

import pytest

from gateway import errors
from gateway.s3.access import ACCESS_WORDS, Access, BucketPolicy, required_access

READ, WRITE = Access.READ, Access.WRITE


@pytest.mark.parametrize("operation, access", [
    ("GetObject", READ), ("HeadObject", READ), ("ListObjectsV2", READ), ("ListParts", READ), ("HeadBucket", READ),
    ("GetBucketLocation", READ), ("PutObject", WRITE), ("DeleteObject", WRITE), ("DeleteObjects", WRITE),
    ("CreateMultipartUpload", WRITE), ("UploadPart", WRITE), ("CompleteMultipartUpload", WRITE),
    ("AbortMultipartUpload", WRITE), ("CopyObject", WRITE), ("CreateBucket", WRITE), ("DeleteBucket", WRITE),
    ("PutBucketPolicy", WRITE), ("RestoreObject", WRITE), ("Unknown", WRITE)])
def test_required_access(operation: str, access: Access) -> None:
    assert required_access(operation) is access


def test_unrestricted_client_may_do_anything() -> None:
    policy = BucketPolicy()
    policy.check("ListBuckets", None)
    policy.check("PutObject", "any", copy_source_bucket="other")


def test_grants_by_name_and_pattern() -> None:
    policy = BucketPolicy({"reports": READ, "logs-*": WRITE, "shared": READ | WRITE})
    policy.check("GetObject", "reports")
    policy.check("PutObject", "logs-2026")
    policy.check("PutObject", "shared")
    policy.check("GetObject", "shared")
    for operation, bucket in (("PutObject", "reports"), ("GetObject", "logs-2026"), ("GetObject", "other"),
                              ("PutObject", "logs"), ("ListObjectsV2", "Reports")):
        with pytest.raises(errors.AccessDenied):
            policy.check(operation, bucket)


def test_patterns_add_up() -> None:
    policy = BucketPolicy({"data-*": READ, "data-in": WRITE})
    policy.check("GetObject", "data-in")
    policy.check("PutObject", "data-in")


def test_setting_words() -> None:
    assert ACCESS_WORDS == {"read": READ, "write": WRITE, "read-write": READ | WRITE}


def test_restricted_client_cannot_list_every_bucket() -> None:
    with pytest.raises(errors.AccessDenied):
        BucketPolicy({"reports": READ}).check("ListBuckets", None)


def test_copy_reads_its_source_bucket() -> None:
    policy = BucketPolicy({"in": READ, "out": WRITE})
    policy.check("CopyObject", "out", copy_source_bucket="in")
    with pytest.raises(errors.AccessDenied):
        policy.check("CopyObject", "out", copy_source_bucket="secret")
    with pytest.raises(errors.AccessDenied):
        policy.check("UploadPartCopy", "out", copy_source_bucket="out")
