from gateway.s3.addressing import resolve


def test_path_style():
    t = resolve("/bucket/a%20b/c%2Fd?list-type=2&prefix=x%2By", "127.0.0.1:8080", ["localhost"])
    assert (t.bucket, t.key) == ("bucket", "a b/c/d")
    assert t.query == (("list-type", "2"), ("prefix", "x+y"))
    assert t.raw_path == "/bucket/a%20b/c%2Fd"


def test_service_and_bucket_roots():
    assert resolve("/", "h", []).bucket is None
    t = resolve("/bucket", "h", [])
    assert (t.bucket, t.key) == ("bucket", None)
    t = resolve("/bucket/", "h", [])
    assert (t.bucket, t.key) == ("bucket", None)


def test_keys_keep_slashes_and_dots():
    t = resolve("/b//x/../y/", "h", [])
    assert t.key == "/x/../y/"


def test_virtual_hosted_style():
    t = resolve("/key/with/slash", "my-bucket.localhost:8080", ["localhost"])
    assert (t.bucket, t.key) == ("my-bucket", "key/with/slash")
    t = resolve("/", "my.dotted.bucket.s3.gateway.svc", ["s3.gateway.svc"])
    assert (t.bucket, t.key) == ("my.dotted.bucket", None)
    # The bare domain is path-style.
    t = resolve("/b/k", "localhost:8080", ["localhost"])
    assert (t.bucket, t.key) == ("b", "k")


def test_presigned_auth_parameters_are_not_routed_on():
    t = resolve("/b/k?X-Amz-Signature=abc&X-Amz-Credential=x&versionId=3&x-id=GetObject", "h", [])
    assert t.query == (("versionId", "3"),)


def test_hoisted_headers_are_split_off_the_query():
    t = resolve("/b/k?X-Amz-Meta-Owner=alice&versionId=3&x-amz-checksum-mode=ENABLED&X-Amz-Signature=s",
                "127.0.0.1:8080", [])
    assert t.query == (("versionId", "3"),)
    assert t.hoisted_headers == (("x-amz-meta-owner", "alice"), ("x-amz-checksum-mode", "ENABLED"))
