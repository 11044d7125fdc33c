import xml.etree.ElementTree as ET

import boto3
import botocore.session
import pytest
from botocore.parsers import RestXMLParser
from moto import mock_aws

from gateway import errors
from gateway.s3.xml import (S3_NAMESPACE, ListedObject, check_client_document, error_body, listed_keys,
                            listed_objects, probe_query, shadowing_prefixes,
                            parse_error, query_after, requested_entries, rewrite_listing, tagging_header,
                            visible_before_hidden)

NS = {"s3": S3_NAMESPACE}
MODEL = botocore.session.get_session().get_service_model("s3")


def client_view(operation: str, body: bytes) -> dict:
    """What botocore (hence boto3, the AWS CLI) makes of a response body."""
    shape = MODEL.operation_model(operation).output_shape
    return RestXMLParser().parse({"body": body, "headers": {}, "status_code": 200}, shape)


def plus_one_hundred(size: int, etag: str = "") -> int | None:
    return size - 100 if size >= 100 else None


# As AWS sends it (compact, one line), from the ListObjectsV2 API reference example, with a key that needs
# escaping and one with a carriage return (AWS writes it as a character reference).
AWS_V2 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix></Prefix>'
    b'<KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>'
    b'<Contents><Key>my-image.jpg</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>'
    b'<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>'
    b'<ChecksumType>FULL_OBJECT</ChecksumType><Size>434334</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'<Contents><Key>a&amp;b&lt;c&gt;.txt</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>'
    b'<ETag>"5a9a7d6b"</ETag><Size>150</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'<Contents><Key>line&#13;break</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>'
    b'<ETag>"5a9a7d6c"</ETag><Size>99</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'<Contents><Key>.envelope/state</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>'
    b'<ETag>"5a9a7d6d"</ETag><Size>1000</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'</ListBucketResult>')


def test_v2_sizes_rewritten_and_keys_kept():
    out = rewrite_listing(AWS_V2, plus_one_hundred)
    assert out.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="'
                          + S3_NAMESPACE.encode() + b'">')
    view = client_view("ListObjectsV2", out)
    assert [(c["Key"], c["Size"]) for c in view["Contents"]] == [
        ("my-image.jpg", 434234), ("a&b<c>.txt", 50), ("line\rbreak", 99), (".envelope/state", 900)]
    assert view["KeyCount"] == 4
    assert view["Contents"][0]["ETag"] == '"fba9dede5f27731c9771645a39863328"'
    assert view["Contents"][0]["ChecksumAlgorithm"] == ["CRC64NVME"]


def test_v2_element_order_and_unknown_elements_kept():
    out = rewrite_listing(AWS_V2, lambda size, etag: size)
    before = [el.tag for el in ET.fromstring(AWS_V2).iter()]
    after = [el.tag for el in ET.fromstring(out).iter()]
    assert before == after
    assert b"<ChecksumType>FULL_OBJECT</ChecksumType>" in out
    assert b"<Prefix/>" in out or b"<Prefix></Prefix>" in out


def test_v2_hidden_keys_dropped_and_key_count_adjusted():
    out = rewrite_listing(AWS_V2, plus_one_hundred, hide_key=lambda key: key.startswith(".envelope/"))
    view = client_view("ListObjectsV2", out)
    assert [c["Key"] for c in view["Contents"]] == ["my-image.jpg", "a&b<c>.txt", "line\rbreak"]
    assert view["KeyCount"] == 3


def test_pretty_printed_input_keeps_its_whitespace():
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n'
            b'  <Name>bucket</Name>\n  <KeyCount>1</KeyCount>\n  <IsTruncated>false</IsTruncated>\n'
            b'  <Contents>\n    <Key>k</Key>\n    <Size>150</Size>\n  </Contents>\n</ListBucketResult>')
    out = rewrite_listing(body, plus_one_hundred)
    assert b"\n    <Size>50</Size>\n" in out
    assert client_view("ListObjectsV2", out)["Contents"][0]["Size"] == 50


def test_none_from_size_of_leaves_the_size():
    out = rewrite_listing(AWS_V2, lambda size, etag: None)
    assert [c["Size"] for c in client_view("ListObjectsV2", out)["Contents"]] == [434334, 150, 99, 1000]


V1_URL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix></Prefix>'
    b'<Marker></Marker><MaxKeys>3</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>'
    b'<Contents><Key>a+b%2Bc</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"x"</ETag>'
    b'<Size>200</Size><Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner><StorageClass>STANDARD</StorageClass>'
    b'</Contents>'
    b'<Contents><Key>%C3%BC</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"y"</ETag>'
    b'<Size>300</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'<Contents><Key>hidden%2Fone</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"z"</ETag>'
    b'<Size>300</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'</ListBucketResult>')


def test_url_encoded_keys_are_decoded_for_hide_key_only():
    seen = []

    def hide(key):
        seen.append(key)
        return key == "hidden/one"

    out = rewrite_listing(V1_URL, plus_one_hundred, hide)
    assert seen == ["a b+c", "ü", "hidden/one"]
    assert b"<Key>a+b%2Bc</Key>" in out   # the client decodes, as it asked to
    # botocore decodes url-encoded listings in a handler after parsing; the raw parse shows what is sent.
    view = client_view("ListObjects", out)
    assert [(c["Key"], c["Size"]) for c in view["Contents"]] == [("a+b%2Bc", 100), ("%C3%BC", 200)]


def hidden_one(key: str) -> bool:
    return key.startswith("hidden/")


# V1_URL in the store's order (by UTF-8 bytes): the hidden key is the page's last.
V1_SORTED = V1_URL.replace(b"%C3%BC", b"b%C3%BC")


V1_NEXT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix></Prefix>'
    b'<Marker>hidden%2F%F4%8F%BF%BF</Marker><MaxKeys>1</MaxKeys><EncodingType>url</EncodingType>'
    b'<IsTruncated>true</IsTruncated>'
    b'<Contents><Key>later</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"w"</ETag>'
    b'<Size>150</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'</ListBucketResult>')


def test_page_ending_among_hidden_keys_is_detected():
    assert visible_before_hidden(V1_SORTED, hidden_one) == 2
    assert visible_before_hidden(V1_SORTED, lambda key: False) is None
    assert visible_before_hidden(V1_SORTED.replace(b"<IsTruncated>true", b"<IsTruncated>false"), hidden_one) is None
    assert visible_before_hidden(V1_SORTED, lambda key: True) == 0   # a page of nothing but hidden keys
    assert visible_before_hidden(VERSIONS, hidden_one) is None     # not truncated
    assert visible_before_hidden(AWS_V2, hidden_one) is None


def test_page_ending_among_hidden_keys_continues_with_the_following_page():
    """Finding 8: the continuation point of a page whose last key is hidden would name it (v1 clients resume
    after the last key, or NextMarker). The following page, past the hidden keys, completes it instead."""
    out = rewrite_listing(V1_SORTED, plus_one_hundred, hidden_one, following=V1_NEXT)
    assert b"hidden" not in out
    view = client_view("ListObjects", out)
    assert [(c["Key"], c["Size"]) for c in view["Contents"]] == [("a+b%2Bc", 100), ("b%C3%BC", 200), ("later", 50)]
    assert view["IsTruncated"] is True and view["Marker"] == "" and view["MaxKeys"] == 3
    last = V1_NEXT.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert client_view("ListObjects", rewrite_listing(V1_SORTED, plus_one_hundred, hidden_one,
                                                      following=last))["IsTruncated"] is False


def test_no_continuation_marker_names_a_hidden_key():
    body = V1_SORTED.replace(b"<IsTruncated>true</IsTruncated>",
                          b"<IsTruncated>true</IsTruncated><NextMarker>hidden%2Fone</NextMarker>")
    assert b"NextMarker" not in rewrite_listing(body, plus_one_hundred, hidden_one)
    assert b"<NextMarker>hidden%2Fone" in rewrite_listing(body, plus_one_hundred)


UPLOADS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>'
    b'<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker>hidden/x</NextKeyMarker>'
    b'<NextUploadIdMarker>u2</NextUploadIdMarker><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>'
    b'<Upload><Key>a</Key><UploadId>u1</UploadId></Upload><Upload><Key>hidden/x</Key><UploadId>u2</UploadId></Upload>'
    b'<CommonPrefixes><Prefix>hidden/</Prefix></CommonPrefixes></ListMultipartUploadsResult>')


def test_upload_listings_hide_reserved_keys():
    assert visible_before_hidden(UPLOADS, hidden_one) == 1
    out = rewrite_listing(UPLOADS, plus_one_hundred, hidden_one)
    assert b"hidden" not in out
    view = client_view("ListMultipartUploads", out)
    assert [upload["Key"] for upload in view["Uploads"]] == ["a"] and "CommonPrefixes" not in view


def test_query_after_moves_each_kind_of_listing():
    assert query_after([("prefix", "p"), ("marker", "m"), ("max-keys", "5")], "x", 3) == [
        ("prefix", "p"), ("marker", "x"), ("max-keys", "3")]
    assert query_after([("list-type", "2"), ("continuation-token", "t"), ("start-after", "s"), ("delimiter", "/")],
                       "x", 7) == [("list-type", "2"), ("delimiter", "/"), ("start-after", "x"), ("max-keys", "7")]
    assert query_after([("versions", ""), ("key-marker", "k"), ("version-id-marker", "v")], "x", 1) == [
        ("versions", ""), ("key-marker", "x"), ("max-keys", "1")]
    assert query_after([("uploads", ""), ("key-marker", "k"), ("upload-id-marker", "u"), ("max-uploads", "9")],
                       "x", 2) == [("uploads", ""), ("key-marker", "x"), ("max-uploads", "2")]


@pytest.mark.parametrize("query,expected", [
    ([], 1000), ([("max-keys", "5")], 5), ([("max-uploads", "7")], 7), ([("max-keys", "99999")], 1000),
    ([("max-keys", "9" * 5000)], 1000), ([("max-keys", "x")], 1000), ([("max-keys", "0")], 0)])
def test_requested_entries(query, expected):
    assert requested_entries(query) == expected


VERSIONS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>my</Prefix>'
    b'<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>5</MaxKeys>'
    b'<IsTruncated>false</IsTruncated>'
    b'<Version><Key>my-image.jpg</Key><VersionId>3/L4kqtJl40Nr8X8gdRQBpUMLUo</VersionId><IsLatest>true</IsLatest>'
    b'<LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>"fba9dede5f27731c9771645a39863328"</ETag>'
    b'<Size>434334</Size><StorageClass>STANDARD</StorageClass><Owner><ID>75aa57f</ID>'
    b'<DisplayName>mtd@amazon.com</DisplayName></Owner></Version>'
    b'<DeleteMarker><Key>my-second-image.jpg</Key><VersionId>03jpff543dhffds434rfdsFDN943fdsFkdmqnh892</VersionId>'
    b'<IsLatest>true</IsLatest><LastModified>2009-11-12T17:50:30.000Z</LastModified>'
    b'<Owner><ID>75aa57f</ID><DisplayName>mtd@amazon.com</DisplayName></Owner></DeleteMarker>'
    b'<DeleteMarker><Key>.envelope/x</Key><VersionId>1</VersionId><IsLatest>true</IsLatest>'
    b'<LastModified>2009-11-12T17:50:30.000Z</LastModified></DeleteMarker>'
    b'<Version><Key>my-second-image.jpg</Key><VersionId>QUpfdndhfd8438MNFDN93jdnJFkdmqnh893</VersionId>'
    b'<IsLatest>false</IsLatest><LastModified>2009-10-10T17:50:30.000Z</LastModified>'
    b'<ETag>"9b2cf535f27731c974343645a3985328"</ETag><Size>166434</Size><StorageClass>STANDARD</StorageClass>'
    b'</Version></ListVersionsResult>')


def test_versions():
    out = rewrite_listing(VERSIONS, plus_one_hundred, lambda key: key.startswith(".envelope/"))
    view = client_view("ListObjectVersions", out)
    assert [(v["Key"], v["Size"]) for v in view["Versions"]] == [("my-image.jpg", 434234),
                                                                 ("my-second-image.jpg", 166334)]
    assert [d["Key"] for d in view["DeleteMarkers"]] == ["my-second-image.jpg"]
    assert b"<KeyCount>" not in out


def test_listed_objects_and_sizes_kept_as_stored():
    assert listed_objects(VERSIONS) == [
        ListedObject("my-image.jpg", "3/L4kqtJl40Nr8X8gdRQBpUMLUo", 434334, '"fba9dede5f27731c9771645a39863328"'),
        ListedObject("my-second-image.jpg", "QUpfdndhfd8438MNFDN93jdnJFkdmqnh893", 166434,
                     '"9b2cf535f27731c974343645a3985328"')]  # delete markers have no size: not objects
    assert [o.key for o in listed_objects(AWS_V2)] == ["my-image.jpg", "a&b<c>.txt", "line\rbreak", ".envelope/state"]
    assert [o.key for o in listed_objects(V1_URL)][:1] == ["a b+c"]
    out = rewrite_listing(VERSIONS, plus_one_hundred, stored_as_is={("my-image.jpg", "3/L4kqtJl40Nr8X8gdRQBpUMLUo")})
    assert [(v["Key"], v["Size"]) for v in client_view("ListObjectVersions", out)["Versions"]] == [
        ("my-image.jpg", 434334), ("my-second-image.jpg", 166334)]
    out = rewrite_listing(AWS_V2, plus_one_hundred, stored_as_is={("a&b<c>.txt", None)})
    assert [c["Size"] for c in client_view("ListObjectsV2", out)["Contents"]] == [434234, 150, 99, 900]


def test_tagging_header():
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b'<TagSet><Tag><Key>origin</Key><Value>legacy app</Value></Tag><Tag><Key>a&amp;b</Key><Value></Value>'
            b'</Tag></TagSet></Tagging>')
    assert tagging_header(body) == "origin=legacy%20app&a%26b="
    assert tagging_header(b"<Tagging><TagSet/></Tagging>") == ""
    with pytest.raises(errors.UpstreamError):
        tagging_header(b"<Tagging")


def test_other_documents_are_returned_unchanged():
    for body in (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/'
                 b'doc/2006-03-01/"><Buckets/></ListAllMyBucketsResult>',
                 b"<Error><Code>NoSuchBucket</Code></Error>"):
        assert rewrite_listing(body, plus_one_hundred) is body


def test_listing_without_namespace():
    body = (b"<ListBucketResult><KeyCount>1</KeyCount><Contents><Key>k</Key><Size>101</Size></Contents>"
            b"</ListBucketResult>")
    out = rewrite_listing(body, plus_one_hundred)
    assert b"xmlns" not in out and b"<Size>1</Size>" in out


def test_foreign_namespaces_survive():
    body = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/" '
            b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Contents><Key>k</Key><Size>101</Size>'
            b'<Owner xsi:type="CanonicalUser"><ID>1</ID></Owner><x:Extra xmlns:x="urn:other">v</x:Extra>'
            b'</Contents></ListBucketResult>')
    root = ET.fromstring(rewrite_listing(body, plus_one_hundred))
    contents = root.find("s3:Contents", NS)
    owner = contents.find("s3:Owner", NS)
    assert owner.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "CanonicalUser"
    assert contents.find("{urn:other}Extra").text == "v"
    assert contents.find("s3:Size", NS).text == "1"


@pytest.mark.parametrize("body", [
    b"",
    b"not xml",
    b"<ListBucketResult><Contents>",
    # Entity expansion and external entities are refused, not expanded.
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<ListBucketResult><Contents><Key>&b;</Key><Size>1</Size></Contents></ListBucketResult>",
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<ListBucketResult><Contents><Key>&x;</Key><Size>1</Size></Contents></ListBucketResult>",
])
def test_unreadable_listing_is_a_store_fault(body):
    with pytest.raises(errors.UpstreamError):
        rewrite_listing(body, plus_one_hundred)
    with pytest.raises(errors.UpstreamError):
        visible_before_hidden(body, hidden_one)


DEEP = b"<a>" * 2000 + b"</a>" * 2000


@pytest.mark.parametrize("body", [
    b"<ListBucketResult>" + DEEP + b"</ListBucketResult>",
    b"<ListBucketResult><Contents><Key>k</Key><Size>1</Size>" + DEEP + b"</Contents></ListBucketResult>",
    b'<?xml version="1.0" encoding="no-such-encoding"?><ListBucketResult/>',
])
def test_hostile_listing_is_a_store_fault_not_a_recursion_error(body):
    """Finding 6: a store's document nested 2,000 deep raised RecursionError (a 500 with a traceback)."""
    with pytest.raises(errors.UpstreamError):
        rewrite_listing(body, plus_one_hundred)
    with pytest.raises(errors.UpstreamError):
        listed_objects(body)
    with pytest.raises(errors.UpstreamError):
        tagging_header(body)
    assert parse_error(body) is None
    with pytest.raises(errors.MalformedXML):
        check_client_document(body)


def test_huge_numbers_in_a_listing_are_read_safely():
    body = AWS_V2.replace(b"<Size>150</Size>", b"<Size>" + b"9" * 5000 + b"</Size>")
    assert b"9" * 5000 not in rewrite_listing(body, lambda size, etag: size)  # read as capped, not a traceback
    assert parse_error(b"<Error>" + DEEP + b"</Error>") is None


# --- real bodies from moto ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_bodies():
    bodies: dict[str, bytes] = {}

    def grab(event_name, response_dict, **kwargs):
        bodies[event_name.rsplit(".", 1)[1]] = response_dict["body"]

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        s3.create_bucket(Bucket="bkt")
        s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
        for key, size in (("a b+c", 130), ("dir/x", 140), ("ü&<>", 150), (".envelope/state", 160)):
            s3.put_object(Bucket="bkt", Key=key, Body=b"x" * size)
        s3.delete_object(Bucket="bkt", Key="dir/x")
        s3.meta.events.register("before-parse.s3.*", grab)
        s3.list_objects_v2(Bucket="bkt", EncodingType="url")
        s3.list_objects(Bucket="bkt", Delimiter="/")
        s3.list_object_versions(Bucket="bkt")
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="bkt", Key="nope")
    return bodies


def test_moto_listings(moto_bodies):
    hide = lambda key: key.startswith(".envelope/")  # noqa: E731
    v2 = client_view("ListObjectsV2", rewrite_listing(moto_bodies["ListObjectsV2"], plus_one_hundred, hide))
    assert sorted((c["Key"], c["Size"]) for c in v2["Contents"]) == [("%C3%BC%26%3C%3E", 50), ("a%20b%2Bc", 30)]
    assert v2["KeyCount"] == 2
    v1 = client_view("ListObjects", rewrite_listing(moto_bodies["ListObjects"], plus_one_hundred, hide))
    assert sorted(c["Size"] for c in v1["Contents"]) == [30, 50]
    assert {p["Prefix"] for p in v1["CommonPrefixes"]} == {"dir/"}  # the hidden tree's prefix is hidden too
    versions = client_view("ListObjectVersions",
                           rewrite_listing(moto_bodies["ListObjectVersions"], plus_one_hundred, hide))
    assert sorted((v["Key"], v["Size"]) for v in versions["Versions"]) == [
        ("a b+c", 30), ("dir/x", 40), ("ü&<>", 50)]
    assert [d["Key"] for d in versions["DeleteMarkers"]] == ["dir/x"]


def test_moto_error(moto_bodies):
    assert parse_error(moto_bodies["GetObject"]) == ("NoSuchKey", "The specified key does not exist.")


# --- error documents ------------------------------------------------------------------------------

def test_error_body_layout():
    body = error_body("InvalidRange", "The requested range is not satisfiable", "/b/k", "REQ1",
                      {"ActualObjectSize": "10", "RangeRequested": "bytes=20-"})
    assert body == (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code>'
                    b"<Message>The requested range is not satisfiable</Message><ActualObjectSize>10</ActualObjectSize>"
                    b"<RangeRequested>bytes=20-</RangeRequested><Resource>/b/k</Resource><RequestId>REQ1</RequestId>"
                    b"</Error>")
    assert error_body("AccessDenied", "Access Denied", "/", "r") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
        b"<Resource>/</Resource><RequestId>r</RequestId></Error>")


def test_error_body_escapes_everything():
    body = error_body("NoSuchKey", 'a <b> & "c"', "/b/<k>&\r\x01\ud800", "id&",
                      {"Key": "</Key><Evil/>", "bad name": "x", "xmlFoo": "x"})
    root = ET.fromstring(body)
    assert root.findtext("Message") == 'a <b> & "c"'
    assert root.findtext("Resource") == "/b/<k>&\r\ufffd\ufffd"
    assert root.findtext("Key") == "</Key><Evil/>"
    assert root.find("Evil") is None and root.find("xmlFoo") is None
    assert [child.tag for child in root] == ["Code", "Message", "Key", "Resource", "RequestId"]


def test_error_body_is_what_botocore_reads():
    body = error_body("SlowDown", "Please reduce your request rate.", "/b", "RID")
    parsed = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 503},
                                   MODEL.operation_model("GetObject").output_shape)
    assert parsed["Error"]["Code"] == "SlowDown"
    assert parsed["Error"]["Message"] == "Please reduce your request rate."
    assert parse_error(body) == ("SlowDown", "Please reduce your request rate.")


@pytest.mark.parametrize("body,expected", [
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does '
     b"not exist</Message><BucketName>b</BucketName><RequestId>1</RequestId><HostId>h</HostId></Error>",
     ("NoSuchBucket", "The specified bucket does not exist")),
    (b"<Error><Code>AccessDenied</Code></Error>", ("AccessDenied", "")),
    (b'<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>X</Code><Message>m &amp; n</Message></Error>',
     ("X", "m & n")),
    (b"", None),
    (b"   ", None),
    (b"<html>Bad Gateway</html>", None),
    (b"Service Unavailable", None),
    (b"<Error><Message>no code</Message></Error>", None),
    (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>', None),
    (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "x">]><Error><Code>&a;</Code></Error>', None),
])
def test_parse_error(body, expected):
    assert parse_error(body) == expected


_PAGE = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><EncodingType>url</EncodingType>'
         b"<Contents><Key>a%2Bb</Key><Size>1</Size></Contents><Contents><Key>c+d</Key><Size>2</Size></Contents>"
         b"<CommonPrefixes><Prefix>.envelope-</Prefix></CommonPrefixes><CommonPrefixes><Prefix>.</Prefix>"
         b"</CommonPrefixes><CommonPrefixes><Prefix>.envelope-gateway/</Prefix></CommonPrefixes>"
         b"<CommonPrefixes><Prefix>-</Prefix></CommonPrefixes></ListBucketResult>")


def test_shadowing_prefixes_are_the_common_prefixes_that_lead_into_the_hidden_one():
    assert shadowing_prefixes(_PAGE, ".envelope-gateway/") == [".envelope-", "."]
    assert shadowing_prefixes(_PAGE, "zzz/") == []


def test_listed_keys_are_decoded_entry_keys_without_common_prefixes():
    assert listed_keys(_PAGE) == ["a+b", "c d"]  # form-encoded, as S3 encodes them with encoding-type=url


@pytest.mark.parametrize("query, kind", [
    ([("list-type", "2"), ("delimiter", "-")], [("list-type", "2"), ("max-keys", "1")]),
    ([("delimiter", "-"), ("marker", "m")], [("list-type", "2"), ("max-keys", "1")]),
    ([("versions", ""), ("key-marker", "k")], [("versions", ""), ("max-keys", "1")]),
    ([("uploads", ""), ("delimiter", "-")], [("uploads", ""), ("max-uploads", "1")])])
def test_probe_query_lists_one_key_of_the_same_kind_under_the_prefix(query, kind):
    assert probe_query(query, ".envelope-") == [*kind, ("prefix", ".envelope-"), ("encoding-type", "url")]
