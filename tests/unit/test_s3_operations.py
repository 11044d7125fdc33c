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
    ("GET", "/bkt", {}, "ListObjects", L),
    ("GET", "/bkt/", {}, "ListObjects", L),
    ("GET", "/bkt?prefix=a%2F&delimiter=%2F&marker=m&max-keys=5&encoding-type=url", {}, "ListObjects", L),
    ("GET", "/bkt?list-type=2", {}, "ListObjectsV2", L),
    ("GET", "/bkt?list-type=2&continuation-token=t&start-after=s&fetch-owner=true&prefix=", {}, "ListObjectsV2", L),
    ("GET", "/bkt?versions", {}, "ListObjectVersions", L),
    ("GET", "/bkt?versions&key-marker=k&version-id-marker=v&prefix=p&encoding-type=url", {}, "ListObjectVersions", L),
    ("PUT", "/bkt", {}, "CreateBucket", T),
    ("DELETE", "/bkt", {}, "DeleteBucket", Handling.DELETE_BUCKET),
    ("HEAD", "/bkt", {}, "HeadBucket", T),
    ("POST", "/bkt?delete", {}, "DeleteObjects", T),
    # bucket sub-resources: never DeleteBucket / CreateBucket / ListObjects
    ("DELETE", "/bkt?encryption", {}, "DeleteBucketEncryption", T),
    ("DELETE", "/bkt?tagging", {}, "DeleteBucketTagging", T),
    ("DELETE", "/bkt?cors", {}, "DeleteBucketCors", T),
    ("DELETE", "/bkt?lifecycle", {}, "DeleteBucketLifecycle", T),
    ("DELETE", "/bkt?policy", {}, "DeleteBucketPolicy", T),
    ("DELETE", "/bkt?website", {}, "DeleteBucketWebsite", T),
    ("DELETE", "/bkt?replication", {}, "DeleteBucketReplication", T),
    ("DELETE", "/bkt?ownershipControls", {}, "DeleteBucketOwnershipControls", T),
    ("DELETE", "/bkt?publicAccessBlock", {}, "DeletePublicAccessBlock", T),
    ("DELETE", "/bkt?metrics&id=m", {}, "DeleteBucketMetricsConfiguration", T),
    ("DELETE", "/bkt?analytics&id=a", {}, "DeleteBucketAnalyticsConfiguration", T),
    ("DELETE", "/bkt?inventory&id=i", {}, "DeleteBucketInventoryConfiguration", T),
    ("DELETE", "/bkt?intelligent-tiering&id=i", {}, "DeleteBucketIntelligentTieringConfiguration", T),
    ("DELETE", "/bkt?metadataTable", {}, "DeleteBucketMetadataTableConfiguration", T),
    ("DELETE", "/bkt?metadataConfiguration", {}, "DeleteBucketMetadataConfiguration", T),
    ("GET", "/bkt?acl", {}, "GetBucketAcl", T),
    ("PUT", "/bkt?acl", {}, "PutBucketAcl", T),
    ("GET", "/bkt?policy", {}, "GetBucketPolicy", T),
    ("PUT", "/bkt?policy", {}, "PutBucketPolicy", T),
    ("GET", "/bkt?policyStatus", {}, "GetBucketPolicyStatus", T),
    ("GET", "/bkt?cors", {}, "GetBucketCors", T),
    ("PUT", "/bkt?cors", {}, "PutBucketCors", T),
    ("GET", "/bkt?lifecycle", {}, "GetBucketLifecycleConfiguration", T),
    ("PUT", "/bkt?lifecycle", {}, "PutBucketLifecycleConfiguration", T),
    ("GET", "/bkt?tagging", {}, "GetBucketTagging", T),
    ("PUT", "/bkt?tagging", {}, "PutBucketTagging", T),
    ("GET", "/bkt?versioning", {}, "GetBucketVersioning", T),
    ("PUT", "/bkt?versioning", {}, "PutBucketVersioning", T),
    ("GET", "/bkt?location", {}, "GetBucketLocation", T),
    ("GET", "/bkt?encryption", {}, "GetBucketEncryption", T),
    ("PUT", "/bkt?encryption", {}, "PutBucketEncryption", T),
    ("GET", "/bkt?website", {}, "GetBucketWebsite", T),
    ("PUT", "/bkt?website", {}, "PutBucketWebsite", T),
    ("GET", "/bkt?logging", {}, "GetBucketLogging", T),
    ("PUT", "/bkt?logging", {}, "PutBucketLogging", T),
    ("GET", "/bkt?notification", {}, "GetBucketNotificationConfiguration", T),
    ("PUT", "/bkt?notification", {}, "PutBucketNotificationConfiguration", T),
    ("GET", "/bkt?replication", {}, "GetBucketReplication", T),
    ("PUT", "/bkt?replication", {}, "PutBucketReplication", T),
    ("GET", "/bkt?ownershipControls", {}, "GetBucketOwnershipControls", T),
    ("PUT", "/bkt?ownershipControls", {}, "PutBucketOwnershipControls", T),
    ("GET", "/bkt?publicAccessBlock", {}, "GetPublicAccessBlock", T),
    ("PUT", "/bkt?publicAccessBlock", {}, "PutPublicAccessBlock", T),
    ("GET", "/bkt?object-lock", {}, "GetObjectLockConfiguration", T),
    ("PUT", "/bkt?object-lock", {}, "PutObjectLockConfiguration", T),
    ("GET", "/bkt?accelerate", {}, "GetBucketAccelerateConfiguration", T),
    ("PUT", "/bkt?accelerate", {}, "PutBucketAccelerateConfiguration", T),
    ("GET", "/bkt?requestPayment", {}, "GetBucketRequestPayment", T),
    ("PUT", "/bkt?requestPayment", {}, "PutBucketRequestPayment", T),
    ("GET", "/bkt?intelligent-tiering&id=i", {}, "GetBucketIntelligentTieringConfiguration", T),
    ("GET", "/bkt?intelligent-tiering", {}, "ListBucketIntelligentTieringConfigurations", T),
    ("PUT", "/bkt?intelligent-tiering&id=i", {}, "PutBucketIntelligentTieringConfiguration", T),
    ("GET", "/bkt?inventory&id=i", {}, "GetBucketInventoryConfiguration", T),
    ("GET", "/bkt?inventory&continuation-token=t", {}, "ListBucketInventoryConfigurations", T),
    ("PUT", "/bkt?inventory&id=i", {}, "PutBucketInventoryConfiguration", T),
    ("GET", "/bkt?metrics&id=m", {}, "GetBucketMetricsConfiguration", T),
    ("GET", "/bkt?metrics", {}, "ListBucketMetricsConfigurations", T),
    ("PUT", "/bkt?metrics&id=m", {}, "PutBucketMetricsConfiguration", T),
    ("GET", "/bkt?analytics&id=a", {}, "GetBucketAnalyticsConfiguration", T),
    ("GET", "/bkt?analytics", {}, "ListBucketAnalyticsConfigurations", T),
    ("PUT", "/bkt?analytics&id=a", {}, "PutBucketAnalyticsConfiguration", T),
    ("GET", "/bkt?metadataTable", {}, "GetBucketMetadataTableConfiguration", T),
    ("POST", "/bkt?metadataTable", {}, "CreateBucketMetadataTableConfiguration", T),
    ("GET", "/bkt?metadataConfiguration", {}, "GetBucketMetadataConfiguration", T),
    ("POST", "/bkt?metadataConfiguration", {}, "CreateBucketMetadataConfiguration", T),
    ("PUT", "/bkt?metadataInventoryTable", {}, "UpdateBucketMetadataInventoryTableConfiguration", T),
    ("PUT", "/bkt?metadataJournalTable", {}, "UpdateBucketMetadataJournalTableConfiguration", T),
    ("GET", "/bkt?abac", {}, "GetBucketAbac", T),
    ("PUT", "/bkt?abac", {}, "PutBucketAbac", T),
    # refused at bucket level
    ("GET", "/bkt?uploads", {}, "ListMultipartUploads", Handling.LIST_OBJECTS),
    ("GET", "/bkt?uploads&prefix=p&key-marker=k&upload-id-marker=u&max-uploads=5", {}, "ListMultipartUploads",
     Handling.LIST_OBJECTS),
    ("GET", "/bkt?session", {}, "CreateSession", R),
    ("POST", "/bkt", {}, "PostObject", R),
    # object
    ("PUT", "/bkt/k", {}, "PutObject", P),
    ("PUT", "/bkt/dir/k%20x", {"Content-Type": "text/plain"}, "PutObject", P),
    ("GET", "/bkt/k", {}, "GetObject", G),
    ("GET", "/bkt/k?versionId=3&partNumber=1&response-content-type=text%2Fplain&response-cache-control=no",
     {}, "GetObject", G),
    ("GET", "/bkt/k?x-amz-checksum-mode=ENABLED", {}, "GetObject", G),   # hoisted by a presigner
    ("HEAD", "/bkt/k", {}, "HeadObject", H),
    ("HEAD", "/bkt/k?versionId=3&partNumber=2", {}, "HeadObject", H),
    ("DELETE", "/bkt/k", {}, "DeleteObject", T),
    ("DELETE", "/bkt/k?versionId=3", {}, "DeleteObject", T),
    ("GET", "/bkt/k?tagging", {}, "GetObjectTagging", T),
    ("PUT", "/bkt/k?tagging", {}, "PutObjectTagging", T),
    ("DELETE", "/bkt/k?tagging", {}, "DeleteObjectTagging", T),
    ("DELETE", "/bkt/k?tagging&versionId=2", {}, "DeleteObjectTagging", T),
    ("GET", "/bkt/k?acl", {}, "GetObjectAcl", T),
    ("PUT", "/bkt/k?acl&versionId=1", {}, "PutObjectAcl", T),
    ("GET", "/bkt/k?retention", {}, "GetObjectRetention", T),
    ("PUT", "/bkt/k?retention", {}, "PutObjectRetention", T),
    ("GET", "/bkt/k?legal-hold", {}, "GetObjectLegalHold", T),
    ("PUT", "/bkt/k?legal-hold", {}, "PutObjectLegalHold", T),
    # refused at object level
    ("PUT", "/bkt/k", {"x-amz-copy-source": "/bkt/other"}, "CopyObject", Handling.COPY_OBJECT),
    ("PUT", "/bkt/k", {"X-Amz-Copy-Source": "b/other?versionId=1"}, "CopyObject", Handling.COPY_OBJECT),
    ("POST", "/bkt/k?uploads", {}, "CreateMultipartUpload", Handling.CREATE_MULTIPART),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", {}, "UploadPart", Handling.UPLOAD_PART),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "/bkt/o"}, "UploadPartCopy",
     Handling.UPLOAD_PART_COPY),
    ("POST", "/bkt/k?uploadId=u", {}, "CompleteMultipartUpload", Handling.COMPLETE_MULTIPART),
    ("DELETE", "/bkt/k?uploadId=u", {}, "AbortMultipartUpload", Handling.ABORT_MULTIPART),
    ("GET", "/bkt/k?uploadId=u&max-parts=10&part-number-marker=2", {}, "ListParts", Handling.LIST_PARTS),
    ("GET", "/bkt/k?attributes", {"x-amz-object-attributes": "ObjectSize"}, "GetObjectAttributes", R),
    ("POST", "/bkt/k?select&select-type=2", {}, "SelectObjectContent", R),
    ("POST", "/bkt/k?restore", {}, "RestoreObject", R),
    ("GET", "/bkt/k?torrent", {}, "GetObjectTorrent", R),
    ("PUT", "/bkt/k?renameObject", {"x-amz-rename-source": "/bkt/o"}, "RenameObject", R),
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
    ("DELETE", "/bkt?encryption"), ("DELETE", "/bkt?tagging"), ("DELETE", "/bkt?cors"), ("DELETE", "/bkt?lifecycle"),
    ("DELETE", "/bkt?policy"), ("DELETE", "/bkt?website"), ("DELETE", "/bkt?unknown"), ("DELETE", "/bkt?Encryption"),
    ("DELETE", "/bkt?encryption&tagging"), ("DELETE", "/bkt?uploads"), ("DELETE", "/bkt?versions"),
    ("DELETE", "/bkt?x-amz-bypass=1&encryption"),
])
def test_delete_with_any_sub_resource_is_never_delete_bucket(method, target):
    assert op(method, target).name != "DeleteBucket"


@pytest.mark.parametrize("target", ["/bkt/k?tagging", "/bkt/k?uploadId=1", "/bkt/k?unknown", "/bkt/k?tagging&acl",
                                    "/bkt/k?x-amz-copy-source=b%2Fo&tagging"])
def test_delete_with_any_sub_resource_is_never_delete_object(target):
    assert op("DELETE", target).name != "DeleteObject"


@pytest.mark.parametrize("method,target", [
    ("PUT", "/bkt/k?acl"), ("PUT", "/bkt/k?unknown"), ("PUT", "/bkt/k?partNumber=1"), ("PUT", "/bkt/k?versionId=1"),
    ("PUT", "/bkt/k?x-amz-copy-source=b%2Fo"), ("PUT", "/bkt/k?response-content-type=x"),
    ("PUT", "/bkt/k?uploadId=1"), ("POST", "/bkt/k"),
])
def test_only_a_plain_put_stores_an_object(method, target):
    assert op(method, target).handling is not Handling.PUT_OBJECT


@pytest.mark.parametrize("target", ["/bkt?unknown", "/bkt?Acl", "/bkt?versionId=1", "/bkt?acl&policy",
                                    "/?foo", "/bkt/k?foo", "/bkt/k?ACL", "/bkt/k?tagging&acl", "/bkt/k?uploads&uploadId=1"])
def test_unknown_or_ambiguous_is_refused(target):
    for method in ("GET", "PUT", "DELETE", "HEAD", "POST"):
        operation = op(method, target)
        assert operation.handling is Handling.REFUSE, (method, target)
        assert operation.name in ("Unknown", "ListObjects"), operation.name  # a fixed label, never client text


def test_list_type_other_than_2():
    operation = op("GET", "/bkt?list-type=3")
    assert operation.handling is Handling.REFUSE
    assert isinstance(operation.error, errors.InvalidArgument)


def test_refusal_errors():
    def error(method, target, headers=None):
        e = op(method, target, headers).error
        assert isinstance(e, errors.S3Error)
        return e

    assert isinstance(error("GET", "/bkt/k?attributes"), errors.NotImplementedS3)
    assert isinstance(error("POST", "/bkt/k?select&select-type=2"), errors.NotImplementedS3)
    unknown = error("GET", "/bkt?frobnicate")
    assert isinstance(unknown, errors.NotImplementedS3) and "frobnicate" in unknown.message

    for method, target, resource_type in [("POST", "/bkt/k", "OBJECT"), ("PATCH", "/bkt/k", "OBJECT"),
                                          ("OPTIONS", "/bkt/k", "OBJECT"), ("PUT", "/", "SERVICE"),
                                          ("DELETE", "/", "SERVICE"), ("HEAD", "/", "SERVICE"),
                                          ("POST", "/bkt?acl", "BUCKET"), ("DELETE", "/bkt?acl", "BUCKET"),
                                          ("PUT", "/bkt?location", "BUCKET"), ("PUT", "/bkt?versions", "BUCKET"),
                                          ("GET", "/bkt?delete", "BUCKET"), ("PUT", "/bkt?uploads", "BUCKET"),
                                          ("POST", "/bkt/k?tagging", "OBJECT"), ("GET", "/bkt/k?uploads", "OBJECT"),
                                          ("HEAD", "/bkt/k?acl", "OBJECT")]:
        e = error(method, target)
        assert isinstance(e, errors.MethodNotAllowed), (method, target)
        assert e.status == 405
        assert e.fields == {"Method": method, "ResourceType": resource_type}


def test_lowercase_method_and_x_id_hint():
    assert op("get", "/bkt/k").name == "GetObject"
    assert classify("PUT", "b", "k", {"x-id": "PutObject"}, {}).name == "PutObject"


def test_operation_is_immutable():
    operation = op("GET", "/bkt/k")
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
    ("PUT", "/bkt/k?x-amz-copy-source=b%2Fo", "CopyObject"),
    ("PUT", "/bkt/k?X-Amz-Meta-Owner=alice", "PutObject"),
    ("PUT", "/bkt/k?x-amz-meta-envelope-header=x", "PutObject"),  # then refused like the header (reserved name)
    ("GET", "/bkt/k?x-amz-checksum-mode=ENABLED", "GetObject"),
    ("DELETE", "/bkt/k?x-amz-mfa=1", "DeleteObject"),
    ("DELETE", "/bkt?x-amz-expected-bucket-owner=1", "DeleteBucket"),
])
def test_hoisted_headers_are_headers(method: str, target: str, name: str) -> None:
    """Presigners move signed x-amz-* headers into the query string and S3 reads them as headers: so does the
    gateway, so that every check it applies to headers applies to them (none is forwarded as a parameter)."""
    assert op(method, target).name == name
    assert not any(k.lower().startswith("x-amz-") for k, _ in resolve(target, "h", []).query)
