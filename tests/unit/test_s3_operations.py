import botocore.session
import pytest

from gateway import errors
from gateway.s3.addressing import resolve
from gateway.s3.operations import Handling, classify

P, G, H, L, T, R = (Handling.PUT_OBJECT, Handling.GET_OBJECT, Handling.HEAD_OBJECT, Handling.LIST_OBJECTS,
                    Handling.PASS_THROUGH, Handling.REFUSE)


def op(method: str, target: str, headers: dict[str, str] | None = None):
    # As the app does: x-amz-* parameters a presigner hoisted into the query string are headers.
    t = resolve(target, "127.0.0.1:8080", [])
    return classify(method, t.bucket, t.key, t.query_map, {**(headers or {}), **dict(t.hoisted_headers)})


# (method, request target, headers) -> (operation name, handling)
TABLE = [
    # service
    ("GET", "/", {}, "ListBuckets", T),
    ("GET", "/?max-buckets=10&continuation-token=x&prefix=a&bucket-region=eu-west-1", {}, "ListBuckets", T),
    # bucket, no sub-resource
    ("GET", "/b", {}, "ListObjects", L),
    ("GET", "/b/", {}, "ListObjects", L),
    ("GET", "/b?prefix=a%2F&delimiter=%2F&marker=m&max-keys=5&encoding-type=url", {}, "ListObjects", L),
    ("GET", "/b?list-type=2", {}, "ListObjectsV2", L),
    ("GET", "/b?list-type=2&continuation-token=t&start-after=s&fetch-owner=true&prefix=", {}, "ListObjectsV2", L),
    ("GET", "/b?versions", {}, "ListObjectVersions", L),
    ("GET", "/b?versions&key-marker=k&version-id-marker=v&prefix=p&encoding-type=url", {}, "ListObjectVersions", L),
    ("PUT", "/b", {}, "CreateBucket", T),
    ("DELETE", "/b", {}, "DeleteBucket", Handling.DELETE_BUCKET),
    ("HEAD", "/b", {}, "HeadBucket", T),
    ("POST", "/b?delete", {}, "DeleteObjects", T),
    # bucket sub-resources: never DeleteBucket / CreateBucket / ListObjects
    ("DELETE", "/b?encryption", {}, "DeleteBucketEncryption", T),
    ("DELETE", "/b?tagging", {}, "DeleteBucketTagging", T),
    ("DELETE", "/b?cors", {}, "DeleteBucketCors", T),
    ("DELETE", "/b?lifecycle", {}, "DeleteBucketLifecycle", T),
    ("DELETE", "/b?policy", {}, "DeleteBucketPolicy", T),
    ("DELETE", "/b?website", {}, "DeleteBucketWebsite", T),
    ("DELETE", "/b?replication", {}, "DeleteBucketReplication", T),
    ("DELETE", "/b?ownershipControls", {}, "DeleteBucketOwnershipControls", T),
    ("DELETE", "/b?publicAccessBlock", {}, "DeletePublicAccessBlock", T),
    ("DELETE", "/b?metrics&id=m", {}, "DeleteBucketMetricsConfiguration", T),
    ("DELETE", "/b?analytics&id=a", {}, "DeleteBucketAnalyticsConfiguration", T),
    ("DELETE", "/b?inventory&id=i", {}, "DeleteBucketInventoryConfiguration", T),
    ("DELETE", "/b?intelligent-tiering&id=i", {}, "DeleteBucketIntelligentTieringConfiguration", T),
    ("DELETE", "/b?metadataTable", {}, "DeleteBucketMetadataTableConfiguration", T),
    ("DELETE", "/b?metadataConfiguration", {}, "DeleteBucketMetadataConfiguration", T),
    ("GET", "/b?acl", {}, "GetBucketAcl", T),
    ("PUT", "/b?acl", {}, "PutBucketAcl", T),
    ("GET", "/b?policy", {}, "GetBucketPolicy", T),
    ("PUT", "/b?policy", {}, "PutBucketPolicy", T),
    ("GET", "/b?policyStatus", {}, "GetBucketPolicyStatus", T),
    ("GET", "/b?cors", {}, "GetBucketCors", T),
    ("PUT", "/b?cors", {}, "PutBucketCors", T),
    ("GET", "/b?lifecycle", {}, "GetBucketLifecycleConfiguration", T),
    ("PUT", "/b?lifecycle", {}, "PutBucketLifecycleConfiguration", T),
    ("GET", "/b?tagging", {}, "GetBucketTagging", T),
    ("PUT", "/b?tagging", {}, "PutBucketTagging", T),
    ("GET", "/b?versioning", {}, "GetBucketVersioning", T),
    ("PUT", "/b?versioning", {}, "PutBucketVersioning", T),
    ("GET", "/b?location", {}, "GetBucketLocation", T),
    ("GET", "/b?encryption", {}, "GetBucketEncryption", T),
    ("PUT", "/b?encryption", {}, "PutBucketEncryption", T),
    ("GET", "/b?website", {}, "GetBucketWebsite", T),
    ("PUT", "/b?website", {}, "PutBucketWebsite", T),
    ("GET", "/b?logging", {}, "GetBucketLogging", T),
    ("PUT", "/b?logging", {}, "PutBucketLogging", T),
    ("GET", "/b?notification", {}, "GetBucketNotificationConfiguration", T),
    ("PUT", "/b?notification", {}, "PutBucketNotificationConfiguration", T),
    ("GET", "/b?replication", {}, "GetBucketReplication", T),
    ("PUT", "/b?replication", {}, "PutBucketReplication", T),
    ("GET", "/b?ownershipControls", {}, "GetBucketOwnershipControls", T),
    ("PUT", "/b?ownershipControls", {}, "PutBucketOwnershipControls", T),
    ("GET", "/b?publicAccessBlock", {}, "GetPublicAccessBlock", T),
    ("PUT", "/b?publicAccessBlock", {}, "PutPublicAccessBlock", T),
    ("GET", "/b?object-lock", {}, "GetObjectLockConfiguration", T),
    ("PUT", "/b?object-lock", {}, "PutObjectLockConfiguration", T),
    ("GET", "/b?accelerate", {}, "GetBucketAccelerateConfiguration", T),
    ("PUT", "/b?accelerate", {}, "PutBucketAccelerateConfiguration", T),
    ("GET", "/b?requestPayment", {}, "GetBucketRequestPayment", T),
    ("PUT", "/b?requestPayment", {}, "PutBucketRequestPayment", T),
    ("GET", "/b?intelligent-tiering&id=i", {}, "GetBucketIntelligentTieringConfiguration", T),
    ("GET", "/b?intelligent-tiering", {}, "ListBucketIntelligentTieringConfigurations", T),
    ("PUT", "/b?intelligent-tiering&id=i", {}, "PutBucketIntelligentTieringConfiguration", T),
    ("GET", "/b?inventory&id=i", {}, "GetBucketInventoryConfiguration", T),
    ("GET", "/b?inventory&continuation-token=t", {}, "ListBucketInventoryConfigurations", T),
    ("PUT", "/b?inventory&id=i", {}, "PutBucketInventoryConfiguration", T),
    ("GET", "/b?metrics&id=m", {}, "GetBucketMetricsConfiguration", T),
    ("GET", "/b?metrics", {}, "ListBucketMetricsConfigurations", T),
    ("PUT", "/b?metrics&id=m", {}, "PutBucketMetricsConfiguration", T),
    ("GET", "/b?analytics&id=a", {}, "GetBucketAnalyticsConfiguration", T),
    ("GET", "/b?analytics", {}, "ListBucketAnalyticsConfigurations", T),
    ("PUT", "/b?analytics&id=a", {}, "PutBucketAnalyticsConfiguration", T),
    ("GET", "/b?metadataTable", {}, "GetBucketMetadataTableConfiguration", T),
    ("POST", "/b?metadataTable", {}, "CreateBucketMetadataTableConfiguration", T),
    ("GET", "/b?metadataConfiguration", {}, "GetBucketMetadataConfiguration", T),
    ("POST", "/b?metadataConfiguration", {}, "CreateBucketMetadataConfiguration", T),
    ("PUT", "/b?metadataInventoryTable", {}, "UpdateBucketMetadataInventoryTableConfiguration", T),
    ("PUT", "/b?metadataJournalTable", {}, "UpdateBucketMetadataJournalTableConfiguration", T),
    ("GET", "/b?abac", {}, "GetBucketAbac", T),
    ("PUT", "/b?abac", {}, "PutBucketAbac", T),
    # refused at bucket level
    ("GET", "/b?uploads", {}, "ListMultipartUploads", Handling.LIST_OBJECTS),
    ("GET", "/b?uploads&prefix=p&key-marker=k&upload-id-marker=u&max-uploads=5", {}, "ListMultipartUploads",
     Handling.LIST_OBJECTS),
    ("GET", "/b?session", {}, "CreateSession", R),
    ("POST", "/b", {}, "PostObject", R),
    # object
    ("PUT", "/b/k", {}, "PutObject", P),
    ("PUT", "/b/dir/k%20x", {"Content-Type": "text/plain"}, "PutObject", P),
    ("GET", "/b/k", {}, "GetObject", G),
    ("GET", "/b/k?versionId=3&partNumber=1&response-content-type=text%2Fplain&response-cache-control=no",
     {}, "GetObject", G),
    ("GET", "/b/k?x-amz-checksum-mode=ENABLED", {}, "GetObject", G),   # hoisted by a presigner
    ("HEAD", "/b/k", {}, "HeadObject", H),
    ("HEAD", "/b/k?versionId=3&partNumber=2", {}, "HeadObject", H),
    ("DELETE", "/b/k", {}, "DeleteObject", T),
    ("DELETE", "/b/k?versionId=3", {}, "DeleteObject", T),
    ("GET", "/b/k?tagging", {}, "GetObjectTagging", T),
    ("PUT", "/b/k?tagging", {}, "PutObjectTagging", T),
    ("DELETE", "/b/k?tagging", {}, "DeleteObjectTagging", T),
    ("DELETE", "/b/k?tagging&versionId=2", {}, "DeleteObjectTagging", T),
    ("GET", "/b/k?acl", {}, "GetObjectAcl", T),
    ("PUT", "/b/k?acl&versionId=1", {}, "PutObjectAcl", T),
    ("GET", "/b/k?retention", {}, "GetObjectRetention", T),
    ("PUT", "/b/k?retention", {}, "PutObjectRetention", T),
    ("GET", "/b/k?legal-hold", {}, "GetObjectLegalHold", T),
    ("PUT", "/b/k?legal-hold", {}, "PutObjectLegalHold", T),
    # refused at object level
    ("PUT", "/b/k", {"x-amz-copy-source": "/b/other"}, "CopyObject", Handling.COPY_OBJECT),
    ("PUT", "/b/k", {"X-Amz-Copy-Source": "b/other?versionId=1"}, "CopyObject", Handling.COPY_OBJECT),
    ("POST", "/b/k?uploads", {}, "CreateMultipartUpload", Handling.CREATE_MULTIPART),
    ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart", Handling.UPLOAD_PART),
    ("PUT", "/b/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "/b/o"}, "UploadPartCopy",
     Handling.UPLOAD_PART_COPY),
    ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload", Handling.COMPLETE_MULTIPART),
    ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload", Handling.ABORT_MULTIPART),
    ("GET", "/b/k?uploadId=u&max-parts=10&part-number-marker=2", {}, "ListParts", Handling.LIST_PARTS),
    ("GET", "/b/k?attributes", {"x-amz-object-attributes": "ObjectSize"}, "GetObjectAttributes", R),
    ("POST", "/b/k?select&select-type=2", {}, "SelectObjectContent", R),
    ("POST", "/b/k?restore", {}, "RestoreObject", R),
    ("GET", "/b/k?torrent", {}, "GetObjectTorrent", R),
    ("PUT", "/b/k?renameObject", {"x-amz-rename-source": "/b/o"}, "RenameObject", R),
]


@pytest.mark.parametrize("method,target,headers,name,handling", TABLE)
def test_table(method, target, headers, name, handling):
    operation = op(method, target, headers)
    assert (operation.name, operation.handling) == (name, handling)
    assert (operation.error is not None) == (handling is Handling.REFUSE)


def test_bucket_and_key_are_returned():
    operation = op("PUT", "/my-bucket/a/b%2Fc")
    assert (operation.bucket, operation.key) == ("my-bucket", "a/b/c")
    assert op("GET", "/my-bucket?acl").bucket == "my-bucket"
    assert op("GET", "/").bucket is None


@pytest.mark.parametrize("method,target", [
    ("DELETE", "/b?encryption"), ("DELETE", "/b?tagging"), ("DELETE", "/b?cors"), ("DELETE", "/b?lifecycle"),
    ("DELETE", "/b?policy"), ("DELETE", "/b?website"), ("DELETE", "/b?unknown"), ("DELETE", "/b?Encryption"),
    ("DELETE", "/b?encryption&tagging"), ("DELETE", "/b?uploads"), ("DELETE", "/b?versions"),
    ("DELETE", "/b?x-amz-bypass=1&encryption"),
])
def test_delete_with_any_sub_resource_is_never_delete_bucket(method, target):
    assert op(method, target).name != "DeleteBucket"


@pytest.mark.parametrize("target", ["/b/k?tagging", "/b/k?uploadId=1", "/b/k?unknown", "/b/k?tagging&acl",
                                    "/b/k?x-amz-copy-source=b%2Fo&tagging"])
def test_delete_with_any_sub_resource_is_never_delete_object(target):
    assert op("DELETE", target).name != "DeleteObject"


@pytest.mark.parametrize("method,target", [
    ("PUT", "/b/k?acl"), ("PUT", "/b/k?unknown"), ("PUT", "/b/k?partNumber=1"), ("PUT", "/b/k?versionId=1"),
    ("PUT", "/b/k?x-amz-copy-source=b%2Fo"), ("PUT", "/b/k?response-content-type=x"),
    ("PUT", "/b/k?uploadId=1"), ("POST", "/b/k"),
])
def test_only_a_plain_put_stores_an_object(method, target):
    assert op(method, target).handling is not Handling.PUT_OBJECT


@pytest.mark.parametrize("target", ["/b?unknown", "/b?Acl", "/b?versionId=1", "/b?acl&policy",
                                    "/?foo", "/b/k?foo", "/b/k?ACL", "/b/k?tagging&acl", "/b/k?uploads&uploadId=1"])
def test_unknown_or_ambiguous_is_refused(target):
    for method in ("GET", "PUT", "DELETE", "HEAD", "POST"):
        operation = op(method, target)
        assert operation.handling is Handling.REFUSE, (method, target)
        assert operation.name in ("Unknown", "ListObjects"), operation.name  # a fixed label, never client text


def test_list_type_other_than_2():
    operation = op("GET", "/b?list-type=3")
    assert operation.handling is Handling.REFUSE
    assert isinstance(operation.error, errors.InvalidArgument)


def test_refusal_errors():
    def error(method, target, headers=None):
        e = op(method, target, headers).error
        assert isinstance(e, errors.S3Error)
        return e

    assert isinstance(error("GET", "/b/k?attributes"), errors.NotImplementedS3)
    assert isinstance(error("POST", "/b/k?select&select-type=2"), errors.NotImplementedS3)
    unknown = error("GET", "/b?frobnicate")
    assert isinstance(unknown, errors.NotImplementedS3) and "frobnicate" in unknown.message

    for method, target, resource_type in [("POST", "/b/k", "OBJECT"), ("PATCH", "/b/k", "OBJECT"),
                                          ("OPTIONS", "/b/k", "OBJECT"), ("PUT", "/", "SERVICE"),
                                          ("DELETE", "/", "SERVICE"), ("HEAD", "/", "SERVICE"),
                                          ("POST", "/b?acl", "BUCKET"), ("DELETE", "/b?acl", "BUCKET"),
                                          ("PUT", "/b?location", "BUCKET"), ("PUT", "/b?versions", "BUCKET"),
                                          ("GET", "/b?delete", "BUCKET"), ("PUT", "/b?uploads", "BUCKET"),
                                          ("POST", "/b/k?tagging", "OBJECT"), ("GET", "/b/k?uploads", "OBJECT"),
                                          ("HEAD", "/b/k?acl", "OBJECT")]:
        e = error(method, target)
        assert isinstance(e, errors.MethodNotAllowed), (method, target)
        assert e.status == 405
        assert e.fields == {"Method": method, "ResourceType": resource_type}


def test_lowercase_method_and_x_id_hint():
    assert op("get", "/b/k").name == "GetObject"
    assert classify("PUT", "b", "k", {"x-id": "PutObject"}, {}).name == "PutObject"


def test_operation_is_immutable():
    operation = op("GET", "/b/k")
    with pytest.raises(AttributeError):
        operation.name = "PutObject"  # type: ignore[misc]


def test_every_botocore_operation_is_classified_by_its_own_name():
    """Build each operation's request line from botocore's S3 model and check we name it the same (or refuse it
    with a reason)."""
    model = botocore.session.get_session().get_service_model("s3")
    aliases = {"GetBucketLifecycle": "GetBucketLifecycleConfiguration",          # deprecated twins, same wire
               "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
               "GetBucketNotification": "GetBucketNotificationConfiguration",
               "PutBucketNotification": "PutBucketNotificationConfiguration",
               "ListDirectoryBuckets": "ListBuckets"}
    skipped = {"WriteGetObjectResponse"}  # an Object Lambda endpoint, not a bucket or object request
    for name in model.operation_names:
        if name in skipped:
            continue
        http = model.operation_model(name).http
        path, _, query = http["requestUri"].partition("?")
        path = path.replace("{Bucket}", "bkt").replace("{Key+}", "key")
        params = [p for p in query.split("&") if p]
        required = model.operation_model(name).input_shape.required_members
        members = model.operation_model(name).input_shape.members
        headers = {}
        for member in required:
            location = members[member].serialization.get("location")
            location_name = members[member].serialization.get("name")
            if location == "querystring":
                params.append(f"{location_name}=1")
            elif location == "header":
                headers[location_name] = "x"
        if name in ("GetBucketAnalyticsConfiguration", "GetBucketInventoryConfiguration",
                    "GetBucketMetricsConfiguration", "GetBucketIntelligentTieringConfiguration"):
            assert any(p.startswith("id=") for p in params)
        target = path + ("?" + "&".join(params) if params else "")
        operation = op(http["method"], target, headers)
        assert operation.name == aliases.get(name, name), (name, target)


@pytest.mark.parametrize("method, target, name", [
    ("PUT", "/b/k?x-amz-copy-source=b%2Fo", "CopyObject"),
    ("PUT", "/b/k?X-Amz-Meta-Owner=alice", "PutObject"),
    ("PUT", "/b/k?x-amz-meta-envelope-header=x", "PutObject"),  # then refused like the header (reserved name)
    ("GET", "/b/k?x-amz-checksum-mode=ENABLED", "GetObject"),
    ("DELETE", "/b/k?x-amz-mfa=1", "DeleteObject"),
    ("DELETE", "/b?x-amz-expected-bucket-owner=1", "DeleteBucket"),
])
def test_hoisted_headers_are_headers(method: str, target: str, name: str) -> None:
    """Presigners move signed x-amz-* headers into the query string and S3 reads them as headers: so does the
    gateway, so that every check it applies to headers applies to them (none is forwarded as a parameter)."""
    assert op(method, target).name == name
    assert not any(k.lower().startswith("x-amz-") for k, _ in resolve(target, "h", []).query)
