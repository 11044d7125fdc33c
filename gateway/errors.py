"""The one error tree. Every error the gateway can answer with is a subclass of `S3Error` and carries the
S3 error code and HTTP status a client expects. Foreign exceptions (botocore, aiohttp, cryptography) are
translated into these at the boundary where they occur; nothing else reaches a client.

Messages must never contain secrets: no data keys, no client secret keys, no signatures we computed.
"""
from __future__ import annotations


class S3Error(Exception):
    code: str = "InternalError"
    status: int = 500
    default_message: str = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, **fields: str) -> None:
        self.message = message or self.default_message
        # Extra XML elements S3 puts into some errors (e.g. <Key>, <BucketName>, <ActualObjectSize>).
        self.fields = fields
        super().__init__(self.message)


# --- 4xx: the request is wrong -------------------------------------------------------------------
class InvalidRequest(S3Error):
    code, status, default_message = "InvalidRequest", 400, "Invalid Request"


class InvalidArgument(S3Error):
    code, status, default_message = "InvalidArgument", 400, "Invalid Argument"


class MalformedXML(S3Error):
    code, status = "MalformedXML", 400
    default_message = "The XML you provided was not well-formed or did not validate against our published schema."


class InvalidBucketName(S3Error):
    code, status, default_message = "InvalidBucketName", 400, "The specified bucket is not valid."


class InvalidURI(S3Error):
    """The request target is not a URI S3 can parse: a stray `%`, an escape that is not UTF-8, a raw byte."""
    code, status, default_message = "InvalidURI", 400, "Couldn't parse the specified URI."


class KeyTooLongError(S3Error):
    code, status, default_message = "KeyTooLongError", 400, "Your key is too long"


class RequestTimeout(S3Error):
    """The client stopped sending its body (or reading the response) for longer than the idle timeout."""
    code, status = "RequestTimeout", 400
    default_message = ("Your socket connection to the server was not read from or written to within the timeout "
                       "period. Idle connections will be closed.")


class BadRequest(S3Error):
    """HTTP that cannot be parsed (S3's answer to a malformed request line or header)."""
    code, status, default_message = "BadRequest", 400, "An error occurred when parsing the HTTP request."


class RequestHeaderSectionTooLarge(S3Error):
    code, status = "RequestHeaderSectionTooLarge", 400
    default_message = "Your request header section exceeds the maximum allowed size."


class InvalidDigest(S3Error):
    code, status, default_message = "InvalidDigest", 400, "The Content-MD5 you specified was invalid."


class BadDigest(S3Error):
    code, status = "BadDigest", 400
    default_message = "The Content-MD5 or checksum value that you specified did not match what the server received."


class XAmzContentSHA256Mismatch(S3Error):
    code, status = "XAmzContentSHA256Mismatch", 400
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class IncompleteBody(S3Error):
    code, status = "IncompleteBody", 400
    default_message = "You did not provide the number of bytes specified by the Content-Length HTTP header."


class MalformedTrailerError(S3Error):
    code, status = "MalformedTrailerError", 400
    default_message = ("The request contained trailing data that was not well-formed or did not conform to our "
                       "published schema.")


class MissingContentLength(S3Error):
    code, status, default_message = "MissingContentLength", 411, "You must provide the Content-Length HTTP header."


class EntityTooLarge(S3Error):
    code, status = "EntityTooLarge", 400
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class MetadataTooLarge(S3Error):
    code, status = "MetadataTooLarge", 400
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class InvalidRange(S3Error):
    code, status, default_message = "InvalidRange", 416, "The requested range is not satisfiable"


class EntityTooSmall(S3Error):
    code, status = "EntityTooSmall", 400
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class InvalidPart(S3Error):
    code, status = "InvalidPart", 400
    default_message = ("One or more of the specified parts could not be found. The part might not have been "
                       "uploaded, or the specified entity tag might not have matched the part's entity tag.")


class InvalidPartOrder(S3Error):
    code, status = "InvalidPartOrder", 400
    default_message = "The list of parts was not in ascending order. Parts must be ordered by part number."


class NoSuchUpload(S3Error):
    code, status = "NoSuchUpload", 404
    default_message = ("The specified upload does not exist. The upload ID may be invalid, or the upload may have "
                       "been aborted or completed.")


class PreconditionFailed(S3Error):
    code, status = "PreconditionFailed", 412
    default_message = "At least one of the pre-conditions you specified did not hold"


class NoSuchKey(S3Error):
    code, status, default_message = "NoSuchKey", 404, "The specified key does not exist."


class InvalidPartNumber(S3Error):
    code, status, default_message = "InvalidPartNumber", 416, "The requested partnumber is not satisfiable"


class NotImplementedS3(S3Error):
    code, status = "NotImplemented", 501
    default_message = "A header or query you provided implies functionality that is not implemented."


class MethodNotAllowed(S3Error):
    code, status = "MethodNotAllowed", 405
    default_message = "The specified method is not allowed against this resource."


# --- 403: who is asking ---------------------------------------------------------------------------
class AccessDenied(S3Error):
    code, status, default_message = "AccessDenied", 403, "Access Denied"


class InvalidAccessKeyId(S3Error):
    code, status = "InvalidAccessKeyId", 403
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(S3Error):
    code, status = "SignatureDoesNotMatch", 403
    default_message = ("The request signature we calculated does not match the signature you provided. "
                       "Check your key and signing method.")


class RequestTimeTooSkewed(S3Error):
    code, status = "RequestTimeTooSkewed", 403
    default_message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(S3Error):
    code, status, default_message = "AuthorizationHeaderMalformed", 400, "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    code, status = "AuthorizationQueryParametersError", 400
    default_message = "Error parsing the X-Amz-Credential parameter."


# --- objects the gateway cannot serve --------------------------------------------------------------
class NotEncrypted(S3Error):
    """The stored object lacks the gateway's envelope metadata (written around the gateway)."""
    code, status = "InvalidObjectState", 403
    default_message = "The object was not written through the encryption gateway and cannot be served."


class UnsupportedFormat(S3Error):
    """The envelope metadata names a format version or suite this gateway does not know."""
    code, status = "InvalidObjectState", 403
    default_message = "The object's encryption format is not supported by this gateway version."


# --- 5xx: the gateway or its dependencies ----------------------------------------------------------
class InternalError(S3Error):
    pass


class TamperedCiphertext(S3Error):
    """A segment failed authentication, the key commitment did not match, or the stored object is truncated
    or extended. Never returned as data: before the response starts it is a 500; after, the connection is
    broken."""
    code, status = "InternalError", 500
    default_message = "The stored object failed its integrity check and is not returned."


class KMSError(S3Error):
    """KMS refused or failed (access denied, disabled key, throttling, unreachable)."""
    code, status = "KMS.InternalError", 500
    default_message = "The key management service could not provide a data key."


class KMSAccessDenied(KMSError):
    code, status = "KMS.AccessDeniedException", 403
    default_message = "The gateway's key management request was denied."


# A master key that cannot be used (revoked by an operator): 403 like S3's own SSE-KMS answers, and not retryable.
class KMSKeyDisabled(KMSError):
    code, status = "KMS.DisabledException", 403
    default_message = "The KMS key that protects this object is disabled."


class KMSKeyInvalidState(KMSError):
    code, status = "KMS.KMSInvalidStateException", 403
    default_message = "The KMS key that protects this object is not usable (pending deletion?)."


class KMSKeyNotFound(KMSError):
    code, status = "KMS.NotFoundException", 403
    default_message = "The KMS key that protects this object does not exist (deleted?)."


class KMSUnavailable(KMSError):
    """KMS did not answer within the retry deadline, answered with its own 5xx, or the circuit breaker is open."""
    code, status = "KMS.ServiceUnavailable", 503
    default_message = "The key management service is unavailable. Please try again."


class UpstreamError(S3Error):
    code, status, default_message = "ServiceUnavailable", 503, "The object store is unavailable."


class ObjectChanged(UpstreamError):
    """A request pinned to an object's ETag (If-Match) found another object under its key: overwritten meanwhile."""
    default_message = "The object changed while it was being read; retry."


class SlowDown(S3Error):
    code, status, default_message = "SlowDown", 503, "Please reduce your request rate."
