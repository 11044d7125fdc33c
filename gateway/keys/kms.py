"""Data keys from AWS KMS (GenerateDataKey / Decrypt), through aioboto3.

Plaintext data keys exist only as `bytes` in this process's memory: never logged, never put in an exception.
botocore exceptions are translated here, at the boundary, into the gateway's error tree.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway import errors
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context, derive_dek
from gateway.format.envelope import ENCRYPTION_CONTEXT_BUCKET, ENCRYPTION_CONTEXT_KEY, WrappedKey
from gateway.keys.bucketkeys import BucketKeys
from gateway.observability.logs import audit
from gateway.observability.metrics import Metrics

KMS_SCHEME = "kms"
_KMS_SCHEMES = (KMS_SCHEME, SCHEME_BUCKET_KEY)

# KMS error codes that mean "this ciphertext/context pair is not what was stored": the wrapped key or its
# encryption context (bucket, key) does not match, e.g. an object copied or swapped around the gateway.
_INTEGRITY_CODES = {"InvalidCiphertextException", "IncorrectKeyException"}
_DENIED_CODES = {"AccessDeniedException", "UnauthorizedException"}
_THROTTLE_CODES = {"ThrottlingException", "LimitExceededException", "KMSInternalException"}


class KeyService:
    def __init__(self, key_id: str, metrics: Metrics, *, endpoint_url: str | None = None, region: str | None = None,
                 session: aioboto3.Session | None = None, bucket_keys: BucketKeys | None = None) -> None:
        self._key_id = key_id
        self._bucket_keys = bucket_keys
        self._metrics = metrics
        self._endpoint_url = endpoint_url
        self._region = region
        self._session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._trusted_arn: str | None = None

    async def start(self) -> None:
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)
        self._client = await self._stack.enter_async_context(
            self._session.client("kms", endpoint_url=self._endpoint_url, region_name=self._region, config=config))

    async def close(self) -> None:
        if self._bucket_keys is not None:
            self._bucket_keys.close()
        await self._stack.aclose()

    async def generate(self, context: Mapping[str, str], principal: str) -> tuple[bytes, WrappedKey]:
        """A fresh AES-256 data key: (plaintext, wrapped copy). In a bucket-key bucket the DEK is derived from the
        bucket's current bucket key (no KMS call but one per bucket key)."""
        bucket = context.get(ENCRYPTION_CONTEXT_BUCKET)  # the readiness probe's context names no bucket
        if self._bucket_keys is not None and bucket is not None and self._bucket_keys.applies(bucket):
            return await self._bucket_keys.issue(bucket, context[ENCRYPTION_CONTEXT_KEY],
                                                 lambda: self._new_bucket_key(bucket, principal))
        response = await self._call("GenerateDataKey", _Audit(principal, context, self._key_id), KeyId=self._key_id,
                                    KeySpec="AES_256", EncryptionContext=dict(context))
        return response["Plaintext"], WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])

    async def _new_bucket_key(self, bucket: str, principal: str) -> tuple[bytes, bytes, str]:
        context = bucket_key_context(bucket)
        response = await self._call("GenerateDataKey", _Audit(principal, context, self._key_id), KeyId=self._key_id,
                                    KeySpec="AES_256", EncryptionContext=context)
        return response["Plaintext"], response["CiphertextBlob"], response["KeyId"]

    async def unwrap(self, wrapped: list[WrappedKey], context: Mapping[str, str], principal: str) -> bytes:
        """The plaintext data key, unwrapped by the configured KMS key only.

        The key id in the object's metadata is not trusted on its own: whoever can write to the store could
        plant an object wrapped under a KMS key of theirs, with this object's name as context. Only copies
        wrapped by the configured key are sent to KMS, and with its ARN pinned.
        """
        trusted, copy = await self._trusted_copy("Decrypt", wrapped, context, principal)
        if copy.scheme == SCHEME_BUCKET_KEY:
            entry = BucketKeyBlob.decode(copy.blob)
            bucket = context[ENCRYPTION_CONTEXT_BUCKET]
            response = await self._call("Decrypt", _Audit(principal, context, trusted),
                                        CiphertextBlob=entry.wrapped_bucket_key, KeyId=trusted,
                                        EncryptionContext=bucket_key_context(bucket))
            return derive_dek(response["Plaintext"], entry.salt, bucket, context[ENCRYPTION_CONTEXT_KEY])
        response = await self._call("Decrypt", _Audit(principal, context, trusted), CiphertextBlob=copy.blob,
                                    KeyId=trusted, EncryptionContext=dict(context))
        return response["Plaintext"]

    async def rewrap(self, wrapped: list[WrappedKey], source: Mapping[str, str], destination: Mapping[str, str],
                     principal: str) -> WrappedKey:
        """The data key wrapped for another encryption context (a copy under a new name), by KMS ReEncrypt:
        the plaintext key never leaves KMS. Only a copy wrapped by the configured key is accepted (see unwrap).
        A bucket-key DEK is bound to its object's name by derivation, so its copy gets a `kms` entry instead: KMS
        Encrypt of the DEK under the destination's context."""
        trusted, copy = await self._trusted_copy("ReEncrypt", wrapped, source, principal)
        if copy.scheme == SCHEME_BUCKET_KEY:
            dek = await self.unwrap([copy], source, principal)
            response = await self._call("Encrypt", _Audit(principal, destination, self._key_id), KeyId=self._key_id,
                                        Plaintext=dek, EncryptionContext=dict(destination))
            return WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])
        response = await self._call("ReEncrypt", _Audit(principal, destination, trusted),
                                    CiphertextBlob=copy.blob, SourceKeyId=trusted,
                                    SourceEncryptionContext=dict(source), DestinationKeyId=self._key_id,
                                    DestinationEncryptionContext=dict(destination))
        return WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])

    async def _trusted_copy(self, operation: str, wrapped: list[WrappedKey], context: Mapping[str, str],
                            principal: str) -> tuple[str, WrappedKey]:
        """(configured key ARN, the first copy it wrapped — scheme `kms` or `kms-bucket-key`); refused (and
        audited) if none."""
        trusted = await self.trusted_arn()
        usable = [w for w in wrapped if w.scheme in _KMS_SCHEMES and w.key_id == trusted]
        if not usable:
            audit(operation, "untrusted_key", principal=principal, **_object(context),
                  kms_key_id=[w.key_id for w in wrapped])
            raise errors.UnsupportedFormat("The object's data key is not wrapped by this gateway's KMS key.")
        return trusted, usable[0]

    async def trusted_arn(self) -> str:
        """The ARN of the configured key (which may be given as an alias), resolved once."""
        if self._trusted_arn is None:
            response = await self._call("DescribeKey", None, KeyId=self._key_id)
            self._trusted_arn = response["KeyMetadata"]["Arn"]
        return self._trusted_arn

    async def _call(self, operation: str, audited: _Audit | None, **params: Any) -> dict[str, Any]:
        method = {"GenerateDataKey": self._client.generate_data_key, "Decrypt": self._client.decrypt,
                  "Encrypt": self._client.encrypt,
                  "ReEncrypt": self._client.re_encrypt, "DescribeKey": self._client.describe_key}[operation]
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await method(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            outcome = _outcome(code)
            raise kms_error(code) from None
        except (BotoCoreError, OSError):
            outcome = "unreachable"
            raise errors.KMSError("The key management service is unreachable.") from None
        finally:
            self._metrics.kms_duration.labels(operation).observe(time.perf_counter() - started)
            self._metrics.kms_requests.labels(operation, outcome).inc()
            if audited is not None:
                audit(operation, outcome, principal=audited.principal, **_object(audited.context),
                      kms_key_id=audited.kms_key_id)


@dataclass(frozen=True)
class _Audit:
    """Who asked for a key operation on which object: what the audit log records (never key material)."""
    principal: str
    context: Mapping[str, str]
    kms_key_id: str


def _object(context: Mapping[str, str]) -> dict[str, str | None]:
    return {"bucket": context.get("envelope-gateway:bucket"), "key": context.get("envelope-gateway:key")}


def _outcome(code: str) -> str:
    if code in _INTEGRITY_CODES:
        return "invalid_ciphertext"
    if code in _DENIED_CODES:
        return "denied"
    if code in _THROTTLE_CODES:
        return "throttled"
    return "error"


def kms_error(code: str) -> errors.S3Error:
    """The gateway's error for a KMS error code (also used by the offline tools in gateway.tools)."""
    # `from None` at the callers and fixed messages here: KMS errors can echo request fields; none of it is shown.
    if code in _INTEGRITY_CODES:
        return errors.TamperedCiphertext(
            "The object's data key does not belong to this bucket and key (copied or swapped outside the gateway?).")
    if code in _DENIED_CODES:
        return errors.KMSAccessDenied()
    if code in _THROTTLE_CODES:
        return errors.SlowDown("The key management service is throttling requests.")
    if code in {"DisabledException", "KMSInvalidStateException", "NotFoundException", "KeyUnavailableException"}:
        return errors.KMSError(f"The KMS key is not usable ({code}).")
    return errors.KMSError()
