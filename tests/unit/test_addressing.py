import pytest

from gateway import errors
from gateway.s3.addressing import parse_query, resolve


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
    t = resolve("/bkt//x/../y/", "h", [])
    assert t.key == "/x/../y/"


def test_virtual_hosted_style():
    t = resolve("/key/with/slash", "my-bucket.localhost:8080", ["localhost"])
    assert (t.bucket, t.key) == ("my-bucket", "key/with/slash")
    t = resolve("/", "my.dotted.bucket.s3.gateway.svc", ["s3.gateway.svc"])
    assert (t.bucket, t.key) == ("my.dotted.bucket", None)
    # The bare domain is path-style.
    t = resolve("/bkt/k", "localhost:8080", ["localhost"])
    assert (t.bucket, t.key) == ("bkt", "k")
    # The domain matches without regard to (ASCII) case; one trailing dot is the same name.
    assert resolve("/k", "my-bucket.LocalHost.:80", ["localhost"]).bucket == "my-bucket"
    # The longest configured domain wins, whatever their order.
    assert resolve("/", "bkt.s3.localhost", ["localhost", "s3.localhost"]).bucket == "bkt"


def test_presigned_auth_parameters_are_not_routed_on():
    t = resolve("/bkt/k?X-Amz-Signature=abc&X-Amz-Credential=x&versionId=3&x-id=GetObject", "h", [])
    assert t.query == (("versionId", "3"),)


def test_hoisted_headers_are_split_off_the_query():
    t = resolve("/bkt/k?X-Amz-Meta-Owner=alice&versionId=3&x-amz-checksum-mode=ENABLED&X-Amz-Signature=s",
                "127.0.0.1:8080", [])
    assert t.query == (("versionId", "3"),)
    assert t.hoisted_headers == (("x-amz-meta-owner", "alice"), ("x-amz-checksum-mode", "ENABLED"))


# --- finding 3: only valid bucket names are routed ---------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/127.0.0.1%3A9000%23/x",            # would become the upstream host 127.0.0.1:9000 with virtual addressing
    "/evil.example%2Flatest/x",         # a slash inside the bucket segment
    "/a%2Fb/k",                         # split before decoding: the bucket is `a/b`
    "//key",                            # empty bucket
    "/ab/k", "/" + "a" * 64 + "/k",     # 2 and 64 characters
    "/MyBucket/k", "/my_bucket/k",      # legacy names (uppercase, underscore): refused, see gateway/s3/names.py
    "/-bucket/k", "/bucket-/k", "/.bucket/k", "/bucket./k",
    "/my..bucket/k", "/my.-bucket/k", "/my-.bucket/k",
    "/192.168.5.4/k",                   # IP-address form
    "/b%C3%BCcket/k", "/bucket%00/k", "/bucket%40host/k", "/bucket%3Fq/k",
])
def test_invalid_bucket_names_are_refused(target):
    with pytest.raises(errors.InvalidBucketName):
        resolve(target, "127.0.0.1:8080", ["localhost"])


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my.dotted.bucket", "0-9", "192.168.5.4.5", "1.2.3",
                                  "xn--bucket", "access-point-abcd-s3alias", "bucket--x-s3"])
def test_valid_bucket_names_are_routed(name):
    assert resolve(f"/{name}/k", "127.0.0.1:8080", []).bucket == name
    assert resolve("/k", f"{name}.localhost", ["localhost"]).bucket == name


@pytest.mark.parametrize("host", [
    # The SSRF of finding 3: host, port and path smuggled through the Host header.
    "127.0.0.1:9000/latest/meta-data/iam/security-credentials/role#.localhost:8080",
    "bkt.localhost:8080/x", "bkt.localhost#", "bkt.localhost?x", "user@bkt.localhost", "bkt .localhost",
    "\u2028bkt.localhost", "bkt.localhost\u2028", "bkt.locaLHOST".replace("L", "\u212a"),  # finding 7
    "bkt.localhost:", "bkt.localhost:80:80", "bkt.localhost:8o", "bkt.localhost:123456",
    "bkt..localhost", ".localhost", "bkt-.x.localhost", "[::1", "[::1]x", "[nope]:80", "bkt.localhost\t", "a" * 64 + ".localhost",
])
def test_malformed_hosts_are_refused(host):
    with pytest.raises(errors.InvalidArgument) as caught:
        resolve("/bkt/k", host, ["localhost"])
    assert caught.value.fields == {"ArgumentName": "Host"}


@pytest.mark.parametrize("host", ["MyBucket.localhost", "my_bucket.localhost:80", "a.localhost",
                                  "127.0.0.1.localhost", "ab.localhost"])
def test_invalid_bucket_in_host_is_refused(host):
    with pytest.raises(errors.InvalidBucketName):
        resolve("/k", host, ["localhost"])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "[::1]", "gateway_svc:80",
                                  "s3.example.com.", "", None])
def test_hosts_outside_the_domains_are_path_style(host):
    t = resolve("/bkt/k", host, ["localhost"])
    assert (t.bucket, t.key, t.virtual_hosted) == ("bkt", "k", False)


def test_request_targets_that_are_not_paths_are_refused():
    for target in ["http://169.254.169.254/latest/meta-data", "*", "bkt/k", ""]:
        with pytest.raises(errors.InvalidURI):
            resolve(target, "127.0.0.1", [])


# --- finding 10: every valid key is reachable, every invalid one refused -----------------------------------

def test_control_characters_in_keys_are_kept():
    assert resolve("/bkt/a%0Ab%0D%09%00%7F", "h", []).key == "a\nb\r\t\x00\x7f"
    assert resolve("/k%0A", "bkt.localhost", ["localhost"]).key == "k\n"


@pytest.mark.parametrize("target", [
    "/bkt/%FF", "/bkt/a%C3", "/bkt/%C3%28", "/bkt/%ED%A0%80",  # not UTF-8 (a lone surrogate is not, either)
    "/bkt/100%", "/bkt/%zz", "/bkt/%4",                      # stray percent signs
    "/bkt/k?prefix=%FF", "/bkt?list-type=2&prefix=%E2%82", "/bkt?%FF=1", "/bkt?prefix=50%",
    "/bkt/\u00e9", "/bkt/a b", "/bkt/a\nb",                   # raw bytes the HTTP parser would refuse anyway
])
def test_unparseable_targets_are_refused(target):
    with pytest.raises(errors.InvalidURI):
        resolve(target, "127.0.0.1", [])


def test_key_length_is_counted_in_utf8_bytes():
    assert resolve("/bkt/" + "k" * 1024, "h", []).key == "k" * 1024
    assert resolve("/bkt/" + "%C3%A9" * 512, "h", []).key == "\u00e9" * 512
    for target in ["/bkt/" + "k" * 1025, "/bkt/" + "%C3%A9" * 512 + "k"]:
        with pytest.raises(errors.KeyTooLongError) as caught:
            resolve(target, "h", [])
        assert caught.value.status == 400
        assert caught.value.fields == {"Size": "1025", "MaxSizeAllowed": "1024"}


def test_query_values_decode_exactly():
    assert parse_query("prefix=%E2%82%AC+%20&marker=") == [("prefix", "\u20ac+ "), ("marker", "")]
    with pytest.raises(errors.InvalidURI):
        parse_query("prefix=%80")
