"""Which S3 operation a request is, and how the gateway handles it. Pure.

This is the defence against misrouting: a request the gateway does not recognise exactly is refused, never
guessed at. A bucket sub-resource taken for "no sub-resource" would turn DELETE ?encryption into DeleteBucket;
an object sub-resource taken for "no sub-resource" would store a plaintext body as an object. So every query
parameter must be either a known sub-resource (which selects the operation) or a known ordinary parameter;
anything else is refused with NotImplemented. Names follow the S3 API reference (and botocore's model).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import errors


class Handling(enum.Enum):
    PUT_OBJECT = "put_object"
    GET_OBJECT = "get_object"
    HEAD_OBJECT = "head_object"
    LIST_OBJECTS = "list_objects"
    CREATE_MULTIPART = "create_multipart"
    UPLOAD_PART = "upload_part"
    COMPLETE_MULTIPART = "complete_multipart"
    ABORT_MULTIPART = "abort_multipart"
    LIST_PARTS = "list_parts"
    UPLOAD_PART_COPY = "upload_part_copy"
    COPY_OBJECT = "copy_object"
    DELETE_BUCKET = "delete_bucket"
    PASS_THROUGH = "pass_through"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Operation:
    name: str                   # the S3 API name; "Unknown" when unrecognised (never client text: it is a label)
    handling: Handling
    bucket: str | None
    key: str | None
    error: errors.S3Error | None = None   # what to answer when handling is REFUSE


# --- bucket level ---------------------------------------------------------------------------------
# sub-resource -> method -> operation name (all passed through: bucket configuration is not object data)
_BUCKET_SUBRESOURCES: dict[str, dict[str, str]] = {
    "abac": {"GET": "GetBucketAbac", "PUT": "PutBucketAbac"},
    "accelerate": {"GET": "GetBucketAccelerateConfiguration", "PUT": "PutBucketAccelerateConfiguration"},
    "acl": {"GET": "GetBucketAcl", "PUT": "PutBucketAcl"},
    "analytics": {"GET": "GetBucketAnalyticsConfiguration", "PUT": "PutBucketAnalyticsConfiguration",
                  "DELETE": "DeleteBucketAnalyticsConfiguration"},
    "cors": {"GET": "GetBucketCors", "PUT": "PutBucketCors", "DELETE": "DeleteBucketCors"},
    "delete": {"POST": "DeleteObjects"},
    "encryption": {"GET": "GetBucketEncryption", "PUT": "PutBucketEncryption", "DELETE": "DeleteBucketEncryption"},
    "intelligent-tiering": {"GET": "GetBucketIntelligentTieringConfiguration",
                            "PUT": "PutBucketIntelligentTieringConfiguration",
                            "DELETE": "DeleteBucketIntelligentTieringConfiguration"},
    "inventory": {"GET": "GetBucketInventoryConfiguration", "PUT": "PutBucketInventoryConfiguration",
                  "DELETE": "DeleteBucketInventoryConfiguration"},
    "lifecycle": {"GET": "GetBucketLifecycleConfiguration", "PUT": "PutBucketLifecycleConfiguration",
                  "DELETE": "DeleteBucketLifecycle"},
    "location": {"GET": "GetBucketLocation"},
    "logging": {"GET": "GetBucketLogging", "PUT": "PutBucketLogging"},
    "metadataConfiguration": {"GET": "GetBucketMetadataConfiguration", "POST": "CreateBucketMetadataConfiguration",
                              "DELETE": "DeleteBucketMetadataConfiguration"},
    "metadataInventoryTable": {"PUT": "UpdateBucketMetadataInventoryTableConfiguration"},
    "metadataJournalTable": {"PUT": "UpdateBucketMetadataJournalTableConfiguration"},
    "metadataTable": {"GET": "GetBucketMetadataTableConfiguration", "POST": "CreateBucketMetadataTableConfiguration",
                      "DELETE": "DeleteBucketMetadataTableConfiguration"},
    "metrics": {"GET": "GetBucketMetricsConfiguration", "PUT": "PutBucketMetricsConfiguration",
                "DELETE": "DeleteBucketMetricsConfiguration"},
    "notification": {"GET": "GetBucketNotificationConfiguration", "PUT": "PutBucketNotificationConfiguration"},
    "object-lock": {"GET": "GetObjectLockConfiguration", "PUT": "PutObjectLockConfiguration"},
    "ownershipControls": {"GET": "GetBucketOwnershipControls", "PUT": "PutBucketOwnershipControls",
                          "DELETE": "DeleteBucketOwnershipControls"},
    "policy": {"GET": "GetBucketPolicy", "PUT": "PutBucketPolicy", "DELETE": "DeleteBucketPolicy"},
    "policyStatus": {"GET": "GetBucketPolicyStatus"},
    "publicAccessBlock": {"GET": "GetPublicAccessBlock", "PUT": "PutPublicAccessBlock",
                          "DELETE": "DeletePublicAccessBlock"},
    "replication": {"GET": "GetBucketReplication", "PUT": "PutBucketReplication", "DELETE": "DeleteBucketReplication"},
    "requestPayment": {"GET": "GetBucketRequestPayment", "PUT": "PutBucketRequestPayment"},
    "tagging": {"GET": "GetBucketTagging", "PUT": "PutBucketTagging", "DELETE": "DeleteBucketTagging"},
    "versioning": {"GET": "GetBucketVersioning", "PUT": "PutBucketVersioning"},
    "website": {"GET": "GetBucketWebsite", "PUT": "PutBucketWebsite", "DELETE": "DeleteBucketWebsite"},
}
# Listings of keys: rewritten (plaintext sizes, the gateway's reserved keys hidden), not passed through.
_BUCKET_LISTINGS = {"versions": "ListObjectVersions", "uploads": "ListMultipartUploads"}
# GET of these without ?id lists the configurations instead of fetching one.
_BUCKET_LISTABLE = {"analytics": "ListBucketAnalyticsConfigurations",
                    "intelligent-tiering": "ListBucketIntelligentTieringConfigurations",
                    "inventory": "ListBucketInventoryConfigurations",
                    "metrics": "ListBucketMetricsConfigurations"}
# Sub-resources the gateway recognises but refuses: name by method, and why.
_BUCKET_REFUSED: dict[str, tuple[dict[str, str], str]] = {
    # CreateSession (directory buckets) answers with session credentials: they would be the gateway's own,
    # handed to a client, and would let it read and write the store around the encryption.
    "session": ({"GET": "CreateSession"},
                "CreateSession is not supported: its credentials would bypass the encryption gateway."),
}
# Ordinary parameters of bucket-level operations: they never select an operation.
_BUCKET_PARAMS = frozenset({
    "prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type", "continuation-token",
    "start-after", "fetch-owner", "key-marker", "version-id-marker", "upload-id-marker", "max-uploads", "id",
})
_SERVICE_PARAMS = frozenset({"max-buckets", "continuation-token", "prefix", "bucket-region",
                             "max-directory-buckets"})

# --- object level ---------------------------------------------------------------------------------
_OBJECT_SUBRESOURCES: dict[str, dict[str, str]] = {
    "acl": {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"},
    "tagging": {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"},
    "retention": {"GET": "GetObjectRetention", "PUT": "PutObjectRetention"},
    "legal-hold": {"GET": "GetObjectLegalHold", "PUT": "PutObjectLegalHold"},
}
# Multipart uploads: sub-resource -> method -> (operation, handling).
_OBJECT_MULTIPART: dict[str, dict[str, tuple[str, Handling]]] = {
    "uploads": {"POST": ("CreateMultipartUpload", Handling.CREATE_MULTIPART)},
    "uploadId": {"PUT": ("UploadPart", Handling.UPLOAD_PART),
                 "POST": ("CompleteMultipartUpload", Handling.COMPLETE_MULTIPART),
                 "DELETE": ("AbortMultipartUpload", Handling.ABORT_MULTIPART),
                 "GET": ("ListParts", Handling.LIST_PARTS)},
}
_OBJECT_REFUSED: dict[str, tuple[dict[str, str], str]] = {
    "attributes": ({"GET": "GetObjectAttributes"},
                   "GetObjectAttributes is not supported: it would report the stored (encrypted) object's sizes "
                   "and checksums."),
    "select": ({"POST": "SelectObjectContent"}, "S3 Select cannot query objects stored encrypted."),
    "restore": ({"POST": "RestoreObject"}, "RestoreObject is not supported by this gateway."),
    "torrent": ({"GET": "GetObjectTorrent"}, "GetObjectTorrent is not supported by this gateway."),
    # The encryption context binds each object to its bucket and key: a renamed object could not be decrypted.
    "renameObject": ({"PUT": "RenameObject"}, "RenameObject is not supported: objects are encrypted under their "
                                              "bucket and key."),
}
_OBJECT_PARAMS = frozenset({"versionId", "partNumber", "select-type", "max-parts", "part-number-marker",
                            "encoding-type"})
_RESPONSE_OVERRIDE = "response-"   # response-content-type etc.: GetObject/HeadObject parameters


def _refuse(name: str, bucket: str | None, key: str | None, error: errors.S3Error) -> Operation:
    return Operation(name, Handling.REFUSE, bucket, key, error)


def _not_allowed(method: str, resource_type: str, bucket: str | None, key: str | None) -> Operation:
    return _refuse("Unknown", bucket, key, errors.MethodNotAllowed(Method=method, ResourceType=resource_type))


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    for name, value in headers.items():
        if name.lower() == wanted:
            return value
    return None


def _unsupported_parameter(name: str, bucket: str | None, key: str | None) -> Operation:
    # The parameter's name goes into the message, for the client; the operation name stays a fixed label.
    return _refuse("Unknown", bucket, key, errors.NotImplementedS3(
        f"The request parameter {name!r} is not supported by this gateway."))


def classify(method: str, bucket: str | None, key: str | None, query: Mapping[str, str],
             headers: Mapping[str, str]) -> Operation:
    method = method.upper()
    # `x-id` is the SDKs' routing hint (?x-id=PutObject): S3 ignores it. addressing.resolve drops it already.
    query = {name: value for name, value in query.items() if name != "x-id"}
    bucket = bucket or None
    key = key or None
    if bucket is None:
        return _service(method, query)
    if key is None:
        return _bucket(method, bucket, query)
    return _object(method, bucket, key, query, headers)


def _service(method: str, query: Mapping[str, str]) -> Operation:
    if method != "GET":
        return _not_allowed(method, "SERVICE", None, None)
    for name in query:
        if name not in _SERVICE_PARAMS:
            return _unsupported_parameter(name, None, None)
    return Operation("ListBuckets", Handling.PASS_THROUGH, None, None)


def _bucket(method: str, bucket: str, query: Mapping[str, str]) -> Operation:
    subresources = []
    for name in query:
        if name in _BUCKET_SUBRESOURCES or name in _BUCKET_REFUSED or name in _BUCKET_LISTINGS:
            subresources.append(name)
        elif name not in _BUCKET_PARAMS:
            return _unsupported_parameter(name, bucket, None)
    if len(subresources) > 1:
        return _refuse("Unknown", bucket, None, errors.NotImplementedS3(
            "The request names more than one sub-resource: " + ", ".join(sorted(subresources)) + "."))

    if not subresources:
        if method == "GET":
            list_type = query.get("list-type")
            if list_type is None:
                return Operation("ListObjects", Handling.LIST_OBJECTS, bucket, None)
            if list_type == "2":
                return Operation("ListObjectsV2", Handling.LIST_OBJECTS, bucket, None)
            return _refuse("ListObjects", bucket, None, errors.InvalidArgument(
                "Invalid list-type: only 2 is supported.", ArgumentName="list-type", ArgumentValue=list_type))
        if method == "DELETE":
            return Operation("DeleteBucket", Handling.DELETE_BUCKET, bucket, None)
        simple = {"PUT": "CreateBucket", "HEAD": "HeadBucket"}
        if method in simple:
            return Operation(simple[method], Handling.PASS_THROUGH, bucket, None)
        if method == "POST":
            # POST to a bucket is the browser form upload (PostObject): it would store the plaintext as sent.
            return _refuse("PostObject", bucket, None, errors.NotImplementedS3(
                "Browser-based POST uploads are not supported by this gateway."))
        return _not_allowed(method, "BUCKET", bucket, None)

    sub = subresources[0]
    if sub in _BUCKET_LISTINGS:
        if method == "GET":
            return Operation(_BUCKET_LISTINGS[sub], Handling.LIST_OBJECTS, bucket, None)
        return _not_allowed(method, "BUCKET", bucket, None)
    if sub in _BUCKET_REFUSED:
        names, message = _BUCKET_REFUSED[sub]
        if method in names:
            return _refuse(names[method], bucket, None, errors.NotImplementedS3(message))
        return _not_allowed(method, "BUCKET", bucket, None)
    names = _BUCKET_SUBRESOURCES[sub]
    if method not in names:
        return _not_allowed(method, "BUCKET", bucket, None)
    name = names[method]
    if method == "GET" and sub in _BUCKET_LISTABLE and "id" not in query:
        name = _BUCKET_LISTABLE[sub]
    return Operation(name, Handling.PASS_THROUGH, bucket, None)


def _object(method: str, bucket: str, key: str, query: Mapping[str, str], headers: Mapping[str, str]
            ) -> Operation:
    subresources = []
    for name in query:
        if name in _OBJECT_SUBRESOURCES or name in _OBJECT_REFUSED or name in _OBJECT_MULTIPART:
            subresources.append(name)
        elif not (name in _OBJECT_PARAMS or name.startswith(_RESPONSE_OVERRIDE)):
            return _unsupported_parameter(name, bucket, key)
    if len(subresources) > 1:
        return _refuse("Unknown", bucket, key, errors.NotImplementedS3(
            "The request names more than one sub-resource: " + ", ".join(sorted(subresources)) + "."))
    copy_source = _header(headers, "x-amz-copy-source")

    if subresources:
        sub = subresources[0]
        if sub in _OBJECT_MULTIPART:
            if method not in _OBJECT_MULTIPART[sub]:
                return _not_allowed(method, "OBJECT", bucket, key)
            name, handling = _OBJECT_MULTIPART[sub][method]
            if handling is Handling.UPLOAD_PART and copy_source is not None:
                return Operation("UploadPartCopy", Handling.UPLOAD_PART_COPY, bucket, key)
            return Operation(name, handling, bucket, key)
        if sub in _OBJECT_REFUSED:
            names, message = _OBJECT_REFUSED[sub]
            if method not in names:
                return _not_allowed(method, "OBJECT", bucket, key)
            return _refuse(names[method], bucket, key, errors.NotImplementedS3(message))
        names = _OBJECT_SUBRESOURCES[sub]
        if method not in names:
            return _not_allowed(method, "OBJECT", bucket, key)
        return Operation(names[method], Handling.PASS_THROUGH, bucket, key)

    if method == "PUT":
        if copy_source is not None:
            if query:
                return _unsupported_parameter(next(iter(query)), bucket, key)
            return Operation("CopyObject", Handling.COPY_OBJECT, bucket, key)
        if query:
            # partNumber without uploadId (or any GET-only parameter) is no PutObject S3 defines.
            return _unsupported_parameter(next(iter(query)), bucket, key)
        return Operation("PutObject", Handling.PUT_OBJECT, bucket, key)
    if method == "GET":
        return Operation("GetObject", Handling.GET_OBJECT, bucket, key)
    if method == "HEAD":
        return Operation("HeadObject", Handling.HEAD_OBJECT, bucket, key)
    if method == "DELETE":
        return Operation("DeleteObject", Handling.PASS_THROUGH, bucket, key)
    return _not_allowed(method, "OBJECT", bucket, key)
