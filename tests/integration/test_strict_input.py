"""Strict input over real sockets: ambiguous client XML, numerals past int()'s limit, a hostile store's XML, and
listings that must never name the gateway's reserved prefix (findings 4, 6 and 8)."""
from __future__ import annotations

import base64
import hashlib
import http.client
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import client_for, gateway_config, start_gateway, store_env

RESERVED = ".envelope-gateway/"
HUGE = "9" * 5000  # past CPython's 4,300-digit int() limit


class _ExactPayloadHash(S3SigV4Auth):
    """botocore's signer, signing the x-amz-content-sha256 given (a STREAMING-… value) instead of its own."""

    def __init__(self, credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def send(stack, method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
         body: bytes = b"", url: str | None = None) -> tuple[int, bytes]:
    """A request signed with SigV4 exactly as given (botocore's signer), over a plain socket."""
    base = url or stack.http.url
    target = path + (f"?{query}" if query else "")
    request = AWSRequest(method, base + target, data=body, headers=dict(headers or {}))
    payload_hash = request.headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    _ExactPayloadHash(Credentials(stack.access_key_id, stack.secret_access_key), payload_hash).add_auth(request)
    host, port = base.split("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, target, body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _keys(store, bucket: str) -> list[str]:
    return [o["Key"] for o in store.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def bucket(s3, store):
    name = "strict-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


# --- finding 4: DeleteObjects ---------------------------------------------------------------------

def test_delete_objects_with_two_keys_in_one_object_is_malformed_and_deletes_nothing(stack, store, bucket):
    """The gateway checked the first Key and forwarded the client's bytes; a store keeping the last Key deletes
    the gateway's upload-state record."""
    record = RESERVED + "uploads/" + "0" * 64 + "/state"
    store.put_object(Bucket=bucket, Key=record, Body=b"{}")
    store.put_object(Bucket=bucket, Key="plain", Body=b"x")
    for body in (b"<Delete><Object><Key>plain</Key><Key>" + record.encode() + b"</Key></Object></Delete>",
                 b"<Delete><Object><Key>" + record.encode() + b"</Key></Object></Delete>"[:-9],
                 b'<!DOCTYPE Delete><Delete><Object><Key>plain</Key></Object></Delete>'):
        status, answer = send(stack, "POST", f"/{bucket}", "delete", {"Content-MD5": _md5(body)}, body)
        assert status == 400 and b"<Code>MalformedXML</Code>" in answer, answer
    assert sorted(_keys(store, bucket)) == sorted([record, "plain"])


def test_delete_objects_of_a_reserved_key_is_refused(stack, store, bucket):
    record = RESERVED + "uploads/" + "1" * 64 + "/state"
    store.put_object(Bucket=bucket, Key=record, Body=b"{}")
    body = b"<Delete><Object><Key>x</Key></Object><Object><Key>&#46;" + record[1:].encode() + b"</Key></Object></Delete>"
    status, answer = send(stack, "POST", f"/{bucket}", "delete", {"Content-MD5": _md5(body)}, body)
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer
    assert _keys(store, bucket) == [record]


def test_delete_objects_still_works_and_checks_the_clients_digest(s3, stack, store, bucket):
    for key in ("a", "b&c", "sp ace"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b&c"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["a", "b&c"]
    assert _keys(store, bucket) == ["sp ace"]
    body = b"<Delete><Quiet>true</Quiet><Object><Key>sp ace</Key></Object></Delete>"
    status, answer = send(stack, "POST", f"/{bucket}", "delete", {"Content-MD5": _md5(b"other")}, body)
    assert status == 400 and b"<Code>BadDigest</Code>" in answer
    status, _ = send(stack, "POST", f"/{bucket}", "delete", {"Content-MD5": _md5(body)}, body)
    assert status == 200 and _keys(store, bucket) == []


def test_other_xml_bodies_must_be_well_formed(stack, store, bucket):
    store.put_object(Bucket=bucket, Key="tagged", Body=b"x")
    body = b'<!DOCTYPE t [<!ENTITY e "v">]><Tagging><TagSet><Tag><Key>k</Key><Value>&e;</Value></Tag></TagSet></Tagging>'
    status, answer = send(stack, "PUT", f"/{bucket}/tagged", "tagging", {"Content-MD5": _md5(body)}, body)
    assert status == 400 and b"<Code>MalformedXML</Code>" in answer
    body = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
    status, _ = send(stack, "PUT", f"/{bucket}/tagged", "tagging", {"Content-MD5": _md5(body)}, body)
    assert status == 200
    complete = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber>" \
               b"<ETag>e</ETag></Part></CompleteMultipartUpload>"
    status, answer = send(stack, "POST", f"/{bucket}/tagged", "uploadId=nope", {}, complete)
    assert status == 400 and b"<Code>MalformedXML</Code>" in answer, answer


# --- finding 6: numerals past int()'s limit -------------------------------------------------------

def test_huge_numbers_get_what_s3_answers_never_a_5xx(s3, stack, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"0123456789")
    status, body = send(stack, "GET", f"/{bucket}/obj", headers={"Range": f"bytes=2-{HUGE}"})
    assert (status, body) == (206, b"23456789")   # a huge end is the end of the object
    status, body = send(stack, "GET", f"/{bucket}/obj", headers={"Range": f"bytes={HUGE}-"})
    assert status == 416 and b"<Code>InvalidRange</Code>" in body
    status, body = send(stack, "GET", f"/{bucket}/obj", headers={"Range": f"bytes={HUGE}-1"})
    assert (status, body) == (200, b"0123456789")  # unparseable (last < first): ignored, as S3 does
    status, body = send(stack, "GET", f"/{bucket}/obj", f"partNumber={HUGE}")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    status, body = send(stack, "HEAD", f"/{bucket}/obj", f"partNumber={HUGE}")
    assert status == 400
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    query = f"partNumber={HUGE}&uploadId={quote(upload, safe='')}"
    status, body = send(stack, "PUT", f"/{bucket}/mp", query, body=b"x")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    query = f"partNumber=1&uploadId={quote(upload, safe='')}"
    status, body = send(stack, "PUT", f"/{bucket}/mp", query,
                        {"x-amz-copy-source": f"{bucket}/obj", "x-amz-copy-source-range": f"bytes={HUGE}-1"})
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    status, body = send(stack, "PUT", f"/{bucket}/chunked", headers={
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": HUGE}, body=b"0\r\n\r\n")
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in body
    assert "Traceback" not in stack.http.log()


# --- finding 6: a hostile store -------------------------------------------------------------------

DEEP = b"<a>" * 5000 + b"</a>" * 5000


class _HostileStore(BaseHTTPRequestHandler):
    """An upstream that answers every listing, error and result with XML nested 5,000 deep."""

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        for marker, status, code in _REFUSALS:
            if marker in self.path:
                return self._answer(status, f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode())
        if "list-type" in self.path or "versions" in self.path:
            self._answer(200, b"<ListBucketResult>" + DEEP + b"</ListBucketResult>")
        else:
            self._answer(404, b"<Error><Code>NoSuchKey</Code>" + DEEP + b"</Error>")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(200, b"<InitiateMultipartUploadResult>" + DEEP + b"</InitiateMultipartUploadResult>")

    def do_HEAD(self):  # noqa: N802
        self._answer(200, b"")

    def log_message(self, *args):
        pass


# Store answers that blame the request the gateway built (its signature, its pace, its endpoint), and one that is
# the client's own (a missing key): (marker in the path, status, code).
_REFUSALS = [("refused-signature", 403, "SignatureDoesNotMatch"), ("policy", 403, "InvalidAccessKeyId"),
             ("refused-timeout", 400, "RequestTimeout"), ("moved", 301, "PermanentRedirect"),
             ("missing", 404, "NoSuchKey")]


@pytest.fixture(scope="module")
def hostile_gateway(stack, tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileStore)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    config = gateway_config(url, stack.key_arn, stack.access_key_id, stack.secret_access_key)
    gateway = start_gateway(tmp_path_factory.mktemp("hostile"), "hostile", config, store_env(stack.store_url))
    try:
        yield gateway
    finally:
        gateway.stop()
        server.shutdown()
        server.server_close()


def test_deep_store_xml_is_a_retryable_store_fault_not_a_traceback(stack, hostile_gateway):
    s3 = client_for(stack, hostile_gateway.url)
    for call in (lambda: s3.list_objects_v2(Bucket="bucket"), lambda: s3.list_object_versions(Bucket="bucket"),
                 lambda: s3.create_multipart_upload(Bucket="bucket", Key="k")):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="bucket", Key="k")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 500, 503)
    log = hostile_gateway.log()
    assert "RecursionError" not in log and "Traceback" not in log


def test_store_refusals_of_the_gateways_own_request_are_a_retryable_5xx(stack, hostile_gateway):
    """The client's request was verified and re-signed: a store refusing the gateway's signature, pace or endpoint
    is a fault behind the gateway (503, which SDKs retry), never the client's 4xx or a redirect to the store."""
    s3 = client_for(stack, hostile_gateway.url)
    for call in (lambda: s3.get_object(Bucket="bucket", Key="refused-signature"),
                 lambda: s3.get_object(Bucket="bucket", Key="refused-timeout"),
                 lambda: s3.get_object(Bucket="bucket", Key="moved"),
                 lambda: s3.get_bucket_policy(Bucket="bucket")):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="bucket", Key="missing")
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"  # the client's own: relayed as it came


# --- finding 8: listings --------------------------------------------------------------------------

VISIBLE = ["-first", "a", "b/c", "b/d", "z"]  # "-" sorts before ".", the rest after


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture
def listed_bucket(s3, store, bucket):
    for key in VISIBLE:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    for n in range(4):
        store.put_object(Bucket=bucket, Key=f"{RESERVED}uploads/{n:064x}/state", Body=b"{}")
    return bucket


def _pages(s3, operation: str, **kwargs) -> list[dict]:
    pages = list(s3.get_paginator(operation).paginate(**kwargs))
    assert len(pages) < 50
    for page in pages:
        page.pop("ResponseMetadata", None)
        assert not [s for s in _strings(page) if "envelope-gateway" in s], page
    return pages


@pytest.mark.parametrize("size", [1, 2, 3, 1000])
@pytest.mark.parametrize("delimiter", [None, "/"])
def test_no_listing_names_the_reserved_prefix_and_pagination_is_complete(s3, listed_bucket, size, delimiter):
    extra = {"Delimiter": delimiter} if delimiter else {}
    expected = ["-first", "a", "b/", "z"] if delimiter else VISIBLE
    config = {"PageSize": size}

    def names(pages, entries: str, key: str = "Key") -> list[str]:
        found = [entry[key] for page in pages for entry in page.get(entries, [])]
        # (a set: moto repeats a v1 listing's CommonPrefixes on every page, with or without the gateway)
        return sorted(set(found + [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]))

    for operation in ("list_objects", "list_objects_v2"):
        pages = _pages(s3, operation, Bucket=listed_bucket, PaginationConfig=config, **extra)
        assert names(pages, "Contents") == expected, operation
    pages = _pages(s3, "list_object_versions", Bucket=listed_bucket, PaginationConfig=config, **extra)
    _assert_versions_complete(names(pages, "Versions"), expected)


def _assert_versions_complete(seen: list[str], expected: list[str]) -> None:
    """moto's gap: given a key-marker that is no key (the gateway's marker past its reserved keys), moto skips the
    first version after it, where S3 returns every key after the marker. So against moto the one entry after the
    reserved range may be missing; nothing else may, and the listing must go on past it (not end early)."""
    assert seen == expected or (seen == [k for k in expected if k != "a"] and seen[-1] == expected[-1]), seen


def test_versions_page_of_one_does_not_leak_the_next_key_marker(s3, listed_bucket):
    """The reported leak: ?versions&max-keys=1 answered NextKeyMarker=.envelope-gateway/uploads/…"""
    marker = "-first"
    seen = []
    for _ in range(10):
        page = s3.list_object_versions(Bucket=listed_bucket, MaxKeys=1, KeyMarker=marker)
        assert not [s for s in _strings(page) if "envelope-gateway" in s], page
        seen += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextKeyMarker"]
    _assert_versions_complete(seen, VISIBLE[1:])


def test_upload_listings_hide_reserved_uploads(s3, store, listed_bucket):
    store.create_multipart_upload(Bucket=listed_bucket, Key=RESERVED + "uploads/x")
    s3.create_multipart_upload(Bucket=listed_bucket, Key="visible-upload")
    pages = _pages(s3, "list_multipart_uploads", Bucket=listed_bucket, PaginationConfig={"PageSize": 1})
    assert [u["Key"] for page in pages for u in page.get("Uploads", [])] == ["visible-upload"]


def test_a_common_prefix_that_leads_into_the_reserved_prefix_shows_only_with_visible_keys(s3, store, listed_bucket):
    """A delimiter inside `.envelope-gateway/` (here `-`) makes the store group the gateway's records under a
    shorter prefix, `.envelope-`: shown, it would tell that such keys exist. It is shown only while a visible key
    lies under it too — before the records in key order, or after them."""
    def prefixes(**kwargs) -> dict[str, set[str]]:
        found = {}
        v2 = s3.list_objects_v2(Bucket=listed_bucket, Delimiter="-", **kwargs)
        found["v2"] = {p["Prefix"] for p in v2.get("CommonPrefixes", [])}
        v1 = s3.list_objects(Bucket=listed_bucket, Delimiter="-", **kwargs)
        found["v1"] = {p["Prefix"] for p in v1.get("CommonPrefixes", [])}
        versions = s3.list_object_versions(Bucket=listed_bucket, Delimiter="-", **kwargs)
        found["versions"] = {p["Prefix"] for p in versions.get("CommonPrefixes", [])}
        return found

    for listing, shown in prefixes().items():
        assert ".envelope-" not in shown, (listing, shown)
        assert "-" in shown, (listing, shown)  # the visible "-first" still groups as S3 groups it
    for visible in (".envelope-z", ".envelope-a"):  # after the records in key order, then before them
        s3.put_object(Bucket=listed_bucket, Key=visible, Body=b"x")
        for listing, shown in prefixes().items():
            if listing == "versions" and visible > RESERVED:
                continue  # moto skips the first version after a key-marker that is not a key (S3 does not)
            assert ".envelope-" in shown, (visible, listing, shown)
        s3.delete_object(Bucket=listed_bucket, Key=visible)
    uploads = s3.list_multipart_uploads(Bucket=listed_bucket, Delimiter="-")
    assert ".envelope-" not in {p["Prefix"] for p in uploads.get("CommonPrefixes", [])}
