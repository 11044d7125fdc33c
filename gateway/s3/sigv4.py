"""AWS Signature Version 4 for S3: verify what clients send, sign what we forward. Pure (no I/O).

One canonicalisation serves both directions, so a request we sign is built exactly the way a request we verify
is checked. Covers header auth (`Authorization: AWS4-HMAC-SHA256 ...`), presigned URLs (`X-Amz-*` query
parameters) and the chained chunk/trailer signatures of aws-chunked bodies (`ChunkSigner`).

Never put a secret, a signing key or a signature we computed into an error message: they reach the client.
"""
from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_to_bytes

from gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)
from gateway.numerals import decimal

ALGORITHM = "AWS4-HMAC-SHA256"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

PAYLOAD_LITERALS = frozenset({UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # S3's limit for X-Amz-Expires (one week)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# ASCII digits only: `\d` would also match "２" or "٢", which strptime and int() then read as digits.
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE = re.compile(r"[0-9]{8}")
# A header name as HTTP allows it (RFC 9110 token), lowercased as SignedHeaders must list it.
_SIGNED_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
# SigV4's whitespace is ASCII space and tab, nothing else. str.split()/strip() also drop U+00A0, U+2028 and
# friends: a client could then add them to a signed value and still match the signature (finding 7).
_SPACES = " \t"
_SPACE_RUN = re.compile(r"[ \t]+")
_UNSUPPORTED_ALGORITHM = ("The authorization mechanism you have provided is not supported. "
                          "Please use AWS4-HMAC-SHA256.")
_PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                   "X-Amz-Signature")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class VerifiedRequest:
    access_key_id: str
    payload_hash: str          # the literal value the client signed: 64-hex, UNSIGNED-PAYLOAD or a STREAMING-* value
    presigned: bool
    amz_date: str              # yyyymmddThhmmssZ
    scope: str                 # date/region/service/aws4_request
    signature: str             # the seed signature (chunk signatures chain from it)
    key: bytes = field(repr=False)  # signing key, for chunk and trailer signatures
    signed_headers: tuple[str, ...] = ()  # lowercased names the client signed (lets callers refuse unsigned ones)


# --- canonical request pieces ---------------------------------------------------------------------------------

def _uri_encode(raw: str) -> str:
    """Percent-decode then RFC 3986-encode one component: only A-Za-z0-9-._~ stay literal.

    Decoding to bytes (not str) keeps invalid UTF-8 escapes such as %FF byte-exact, and surrogateescape lets
    a raw non-UTF-8 byte the HTTP stack smuggled through as a surrogate round-trip to the same byte."""
    return quote(unquote_to_bytes(raw.encode("utf-8", "surrogateescape")), safe="")


def canonical_uri(raw_path: str) -> str:
    """The S3 canonical URI of an undecoded request path.

    Each '/'-separated segment is decoded and re-encoded on its own, so an encoded slash (%2F, part of a key)
    stays distinct from a real one. S3, unlike other services, does not normalise: '//', '.' and '..' are
    part of the key and stay."""
    if not raw_path:
        return "/"
    return "/".join(_uri_encode(segment) for segment in raw_path.split("/"))


def canonical_query(raw_query: str, exclude: frozenset[str] = frozenset({"X-Amz-Signature"})) -> str:
    """The canonical query string of an undecoded query.

    '+' is a literal plus, not a space: S3 clients encode spaces as %20 and keys/prefixes may contain '+'.
    Parameters are re-encoded (clients differ in what they leave unescaped), sorted by encoded name then value,
    and a parameter without '=' becomes 'name=' (e.g. '?uploads')."""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if unquote(name) in exclude:
            continue
        pairs.append((_uri_encode(name), _uri_encode(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _canonical_value(value: str) -> str:
    # Trim, and collapse inner runs of spaces to one space ("Trimall" in the SigV4 spec): ASCII only, so every
    # other character received is covered by the signature as it is.
    return _SPACE_RUN.sub(" ", value).strip(_SPACES)


def _canonical_headers(headers: dict[str, list[str]], signed: Iterable[str]) -> str:
    lines = []
    for name in signed:
        values = headers.get(name)
        if values is None:
            values = [_reconstruct_missing(name)]
        lines.append(f"{name}:{','.join(_canonical_value(v) for v in values)}\n")
    return "".join(lines)


def _reconstruct_missing(name: str) -> str:
    """A header the client signed but we do not see.

    HTTP stacks and proxies consume some headers before the application sees them. `Expect` is the common
    case: the client signed `expect:100-continue`, which is the only value it can have had. Anything else
    (e.g. `content-length` on a request that arrived with `Transfer-Encoding: chunked`) is treated as present
    with an empty value: if the client really sent a value, the signature will not match, which is correct
    because we cannot know what it was."""
    return "100-continue" if name == "expect" else ""


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # The region is whatever the client put in its credential scope, undecodable bytes (surrogates) included:
    # sign it byte-exact rather than fail on it.
    key = hmac.digest(("AWS4" + secret).encode("utf-8"), date.encode("utf-8"), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode("utf-8", "surrogateescape"), "sha256")
    return key


def _sign(key: bytes, string_to_sign: str) -> str:
    return hmac.new(key, string_to_sign.encode("utf-8", "surrogateescape"), "sha256").hexdigest()


def _same_signature(expected: str, claimed: str) -> bool:
    # compare_digest on str refuses non-ASCII; the claimed value is attacker-controlled, so compare bytes.
    return hmac.compare_digest(expected.encode("ascii"), claimed.encode("utf-8", "surrogateescape"))


# --- verification --------------------------------------------------------------------------------------------

def _as_utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:  # a naive datetime is taken to be UTC
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _parse_amz_date(value: str) -> datetime.datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return datetime.datetime.strptime(value, AMZ_DATE_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _parse_http_date(value: str) -> datetime.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        # A year-9999 date with a negative offset falls off datetime's range when moved to UTC.
        return _as_utc(parsed) if parsed is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _check_payload_hash(value: str) -> str:
    if value in PAYLOAD_LITERALS or _HEX64.fullmatch(value):
        return value
    # Also what a SigV4a streaming client (STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD...) gets.
    raise InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
                          "or a valid sha256 value.", ArgumentName="x-amz-content-sha256")


def _parse_credential(credential: str, error: type[S3Error]) -> tuple[str, str, str, str]:
    """`AKID/yyyymmdd/region/s3/aws4_request` -> (access key, date, region, service)."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not all(parts) or parts[4] != "aws4_request" or not _SCOPE_DATE.fullmatch(parts[1]):
        raise error("The Credential is malformed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    access_key, date, region, service, _ = parts
    if service != "s3":
        raise error(f"The Credential names the wrong service '{service}'; this endpoint is 's3'.")
    return access_key, date, region, service


def _parse_signed_headers(value: str, error: type[S3Error]) -> list[str]:
    names = value.split(";")
    if not all(_SIGNED_HEADER_NAME.fullmatch(n) for n in names):
        raise error("SignedHeaders must be a ';'-separated list of lowercase header names.")
    if "host" not in names:
        raise error("The host header must be signed.")
    return names


def _parse_authorization(value: str) -> tuple[str, str, str]:
    """`AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` -> (credential, signed, signature)."""
    algorithm, _, rest = value.strip(_SPACES).partition(" ")
    if algorithm != ALGORITHM:
        # "AWS AKID:sig" is SigV2; "AWS4-ECDSA-P256-SHA256" is SigV4a. Neither is accepted, say so plainly.
        if algorithm in ("AWS", "AWS4-ECDSA-P256-SHA256"):
            raise InvalidRequest(_UNSUPPORTED_ALGORITHM)
        raise AuthorizationHeaderMalformed(f"Unsupported authorization type; expecting \"{ALGORITHM}\".")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        name, sep, component_value = component.strip(_SPACES).partition("=")
        if not sep or name in fields:
            raise AuthorizationHeaderMalformed("The authorization header is malformed; expecting "
                                               "Credential=..., SignedHeaders=..., Signature=...")
        fields[name] = component_value.strip(_SPACES)
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing or len(fields) != 3:
        raise AuthorizationHeaderMalformed("The authorization header is malformed; expecting exactly "
                                           "Credential=..., SignedHeaders=..., Signature=...")
    return fields["Credential"], fields["SignedHeaders"], fields["Signature"]


def _query_params(raw_query: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.setdefault(unquote(name), []).append(unquote(value))
    return params


@dataclass(frozen=True)
class _Claim:
    """What the client says about itself, parsed from the Authorization header or the presign parameters."""
    access_key: str
    date: str                   # scope date, yyyymmdd
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    amz_date: str               # the timestamp that goes into the string to sign
    moment: datetime.datetime   # the same, parsed
    expires: int | None = None  # presigned only: X-Amz-Expires


def verify_request(method: str, raw_path: str, raw_query: str, headers: list[tuple[str, str]],
                   secret_for: Callable[[str], str | None], now: datetime.datetime,
                   max_skew_seconds: int = 900) -> VerifiedRequest:
    """Authenticate a request signed with SigV4 (Authorization header or presigned URL); raise an S3Error if not.

    `raw_path`/`raw_query` are the undecoded request target; `headers` as received (repeated names are joined
    with ','). The payload hash is only checked for form: hashing the body is the caller's job."""
    header_map: dict[str, list[str]] = {}
    for name, value in headers:
        header_map.setdefault(name.lower(), []).append(value)
    params = _query_params(raw_query)
    now = _as_utc(now)

    authorization = header_map.get("authorization")
    presigned = any(p in params for p in _PRESIGN_PARAMS)
    error: type[S3Error]
    if authorization is not None and presigned:
        raise InvalidArgument("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or "
                              "the Authorization header should be specified.")
    if authorization is not None:
        claim = _header_claim(",".join(authorization), header_map)
        payload_values = header_map.get("x-amz-content-sha256")
        if payload_values is None:  # S3 requires it with header auth: it says how to treat the body
            raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
        payload_hash = _check_payload_hash(",".join(payload_values).strip(_SPACES))
        error = AuthorizationHeaderMalformed
    elif presigned:
        claim = _query_claim(params)
        # A presigned URL is made before the body is known: unsigned unless the signer put a hash in the query.
        payload_values = params.get("X-Amz-Content-Sha256")
        payload_hash = _check_payload_hash(payload_values[0]) if payload_values else UNSIGNED_PAYLOAD
        error = AuthorizationQueryParametersError
    elif "AWSAccessKeyId" in params or "Signature" in params:
        raise InvalidRequest(_UNSUPPORTED_ALGORITHM)  # a SigV2 presigned URL
    else:
        raise AccessDenied("Anonymous access is not allowed; sign the request with AWS4-HMAC-SHA256.")

    if claim.date != claim.amz_date[:8]:
        raise error("Invalid credential date: it is not the same as the request date.")
    _refuse_unsigned_amz_headers(header_map, claim.signed_headers)
    secret = secret_for(claim.access_key)
    if not secret:
        raise InvalidAccessKeyId(AWSAccessKeyId=claim.access_key)
    _check_time(claim, now, max_skew_seconds)

    scope = f"{claim.date}/{claim.region}/{claim.service}/aws4_request"
    canonical_request = "\n".join((
        method.upper(), canonical_uri(raw_path), canonical_query(raw_query),
        _canonical_headers(header_map, claim.signed_headers), ";".join(claim.signed_headers), payload_hash))
    key = signing_key(secret, claim.date, claim.region, claim.service)
    expected = _sign(key, _string_to_sign(claim.amz_date, scope, canonical_request))
    if not _same_signature(expected, claim.signature):
        raise SignatureDoesNotMatch(AWSAccessKeyId=claim.access_key)
    return VerifiedRequest(claim.access_key, payload_hash, claim.expires is not None, claim.amz_date, scope,
                           expected, key, tuple(claim.signed_headers))


def _refuse_unsigned_amz_headers(header_map: dict[str, list[str]], signed: list[str]) -> None:
    """S3's rule, for header auth and presigned URLs alike: every x-amz-* header must be signed.

    The gateway acts on x-amz-* headers (copy source, metadata, tagging, ...). Without this a presigned PUT URL,
    or a captured signed request, plus an added `x-amz-copy-source` would become a copy of another object."""
    unsigned = sorted(name for name in header_map if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        # The names are header-name tokens (the HTTP parser checked them), safe to name back as S3 does.
        raise AccessDenied("There were headers present in the request which were not signed",
                           HeadersNotSigned=", ".join(unsigned))


def _check_time(claim: _Claim, now: datetime.datetime, max_skew_seconds: int) -> None:
    skew = datetime.timedelta(seconds=max_skew_seconds)
    if claim.expires is None:  # header auth: the request must be fresh, in either direction
        if abs(now - claim.moment) > skew:
            raise _too_skewed(claim, now, max_skew_seconds)
        return
    # Presigned: valid from its date (give or take the clock skew) until date + X-Amz-Expires.
    if claim.moment - now > skew:
        raise _too_skewed(claim, now, max_skew_seconds)
    expiry = claim.moment + datetime.timedelta(seconds=claim.expires)
    if now > expiry:
        raise AccessDenied("Request has expired", Expires=_iso(expiry), ServerTime=_iso(now))


def _too_skewed(claim: _Claim, now: datetime.datetime, max_skew_seconds: int) -> RequestTimeTooSkewed:
    return RequestTimeTooSkewed(RequestTime=claim.amz_date, ServerTime=_iso(now),
                                MaxAllowedSkewMilliseconds=str(max_skew_seconds * 1000))


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_claim(authorization: str, header_map: dict[str, list[str]]) -> _Claim:
    credential, signed_value, signature = _parse_authorization(authorization)
    access_key, date, region, service = _parse_credential(credential, AuthorizationHeaderMalformed)
    signed = _parse_signed_headers(signed_value, AuthorizationHeaderMalformed)
    # x-amz-date wins over Date; with Date, the string to sign still carries the basic ISO 8601 form.
    amz_values = header_map.get("x-amz-date")
    if amz_values is not None:
        moment = _parse_amz_date(",".join(amz_values).strip(_SPACES))
    else:
        date_values = header_map.get("date")
        moment = _parse_http_date(",".join(date_values)) if date_values else None
    if moment is None:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    return _Claim(access_key, date, region, service, signed, signature, moment.strftime(AMZ_DATE_FORMAT), moment)


def _query_claim(params: dict[str, list[str]]) -> _Claim:
    error = AuthorizationQueryParametersError
    values: dict[str, str] = {}
    for name in _PRESIGN_PARAMS:
        found = params.get(name)
        if found is None or len(found) != 1:
            raise error("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                        "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters, "
                        "each exactly once.")
        values[name] = found[0]
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise error(f"X-Amz-Algorithm only supports \"{ALGORITHM}\".")
    access_key, date, region, service = _parse_credential(values["X-Amz-Credential"], error)
    signed = _parse_signed_headers(values["X-Amz-SignedHeaders"], error)
    expires = decimal(values["X-Amz-Expires"])
    if expires is None or not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise error(f"X-Amz-Expires must be an integer between 1 and {MAX_PRESIGN_EXPIRES} seconds.")
    amz_date = values["X-Amz-Date"]
    moment = _parse_amz_date(amz_date)
    if moment is None:
        raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".")
    return _Claim(access_key, date, region, service, signed, values["X-Amz-Signature"], amz_date, moment, expires)


# --- signing (outgoing requests) -----------------------------------------------------------------------------

_ADDED = ("x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "authorization")


def sign_request(method: str, raw_path: str, raw_query: str, headers: dict[str, str], payload_hash: str,
                 credentials: Credentials, region: str, now: datetime.datetime, service: str = "s3") -> dict[str, str]:
    """The headers to add so the request verifies: x-amz-date, x-amz-content-sha256, x-amz-security-token (with
    a session token) and Authorization. Every header in `headers` (which must include host) is signed.

    `raw_path`/`raw_query` must be exactly what goes on the wire. Values the caller passed for the added
    headers are ignored (not signed): the returned ones replace them."""
    if payload_hash not in PAYLOAD_LITERALS and not _HEX64.fullmatch(payload_hash):
        raise ValueError("payload_hash must be a sha256 hex digest or a known literal")
    amz_date = _as_utc(now).strftime(AMZ_DATE_FORMAT)
    added = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token

    header_map: dict[str, list[str]] = {}
    for name, value in headers.items():
        if name.lower() not in _ADDED:
            header_map.setdefault(name.lower(), []).append(value)
    if "host" not in header_map:
        raise ValueError("the host header must be given: it is always signed")
    for name, value in added.items():
        header_map[name] = [value]

    signed = sorted(header_map)
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    canonical_request = "\n".join((
        method.upper(), canonical_uri(raw_path), canonical_query(raw_query),
        _canonical_headers(header_map, signed), ";".join(signed), payload_hash))
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = _sign(key, _string_to_sign(amz_date, scope, canonical_request))
    added["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
                              f"SignedHeaders={';'.join(signed)}, Signature={signature}")
    return added


# --- aws-chunked chunk and trailer signatures ----------------------------------------------------------------

def chunk_signature(key: bytes, amz_date: str, scope: str, previous: str, data_sha256_hex: str) -> str:
    """The signature of one aws-chunked chunk; `previous` is the seed or the previous chunk's signature."""
    return _sign(key, f"{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{data_sha256_hex}")


def canonical_trailer(trailer_lines: Iterable[tuple[str, str]]) -> bytes:
    """What a trailer signature covers: 'name:value\\n' per trailer, in the order sent (names lowercased,
    values trimmed); '\\n' here although the wire has '\\r\\n'."""
    return "".join(f"{name.strip(_SPACES).lower()}:{value.strip(_SPACES)}\n"
                   for name, value in trailer_lines).encode("utf-8", "surrogateescape")


def trailer_signature(key: bytes, amz_date: str, scope: str, previous: str,
                      trailer_lines: Iterable[tuple[str, str]]) -> str:
    """The x-amz-trailer-signature value; `previous` is the final (zero-length) chunk's signature."""
    digest = hashlib.sha256(canonical_trailer(trailer_lines)).hexdigest()
    return _sign(key, f"{ALGORITHM}-TRAILER\n{amz_date}\n{scope}\n{previous}\n{digest}")


class ChunkSigner:
    """Verifies the chain of signatures of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body, in order.

    Each chunk's signature covers the previous one, so chunks cannot be dropped, reordered or spliced in."""

    def __init__(self, verified: VerifiedRequest) -> None:
        self._key = verified.key
        self._amz_date = verified.amz_date
        self._scope = verified.scope
        self._previous = verified.signature

    def __repr__(self) -> str:
        return f"ChunkSigner(scope={self._scope!r})"

    def verify_chunk(self, data_sha256_hex: str, claimed_signature: str) -> None:
        expected = chunk_signature(self._key, self._amz_date, self._scope, self._previous, data_sha256_hex)
        if not _same_signature(expected, claimed_signature):
            raise SignatureDoesNotMatch("The chunk signature does not match the chunk data.")
        self._previous = expected

    def verify_trailer(self, trailer_lines: list[tuple[str, str]], claimed_signature: str) -> None:
        expected = trailer_signature(self._key, self._amz_date, self._scope, self._previous, trailer_lines)
        if not _same_signature(expected, claimed_signature):
            raise SignatureDoesNotMatch("The trailer signature does not match the trailing headers.")
        self._previous = expected
