"""The offline tools' AWS clients (synchronous boto3, the SDK's default credential chain) and the translation of
botocore's errors into the gateway's error tree, with fixed messages: an AWS error can echo request fields, and
the tools handle secrets."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from gateway import errors
from gateway.keys.endpoint import kms_error

_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)


def client(service: str, *, region: str | None, endpoint_url: str | None, config: Config | None = None,
           connections: int | None = None) -> Any:
    """A boto3 client; region and endpoint default to the SDK chain (AWS_REGION, AWS_ENDPOINT_URL_KMS, …).
    `connections`: its connection pool size, for a client that threads share (botocore's default is 10)."""
    merged = _CONFIG.merge(config) if config else _CONFIG
    if connections is not None:
        merged = merged.merge(Config(max_pool_connections=connections))
    try:
        return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint_url,
                                              config=merged)
    except NoRegionError:
        raise errors.InvalidArgument("No AWS region: pass --region or set AWS_REGION.") from None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def kms_call(method: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
    """One KMS request; its failure as the gateway's KMS errors (an integrity failure is TamperedCiphertext)."""
    try:
        return method(**params)
    except ClientError as exc:
        error = kms_error(error_code(exc))
        if isinstance(error, errors.KMSAccessDenied):  # the gateway's own wording names the gateway
            error = errors.KMSAccessDenied("KMS denied the request: check the AWS credentials, the key's policy "
                                           "and the key id given.")
        raise error from None
    except (BotoCoreError, OSError):
        raise errors.KMSError("The key management service is unreachable.") from None


def store_call(method: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
    """One object-store request; its failure as the gateway's errors."""
    try:
        return method(**params)
    except ClientError as exc:
        raise _store_error(error_code(exc)) from None
    except (BotoCoreError, OSError):
        raise errors.UpstreamError("The object store is unreachable.") from None


def _store_error(code: str) -> errors.S3Error:
    # HeadObject answers have no body: their error code is the bare HTTP status.
    if code in ("404", "NoSuchKey"):
        return errors.NoSuchKey()
    if code == "NoSuchUpload":
        return errors.NoSuchUpload()
    if code == "NoSuchBucket":
        return errors.NoSuchKey("The specified bucket does not exist.")
    if code in ("403", "AccessDenied"):
        return errors.AccessDenied("The object store denied access (check the AWS credentials).")
    if code in ("412", "PreconditionFailed"):
        return errors.PreconditionFailed("The object changed while it was being read; retry.")
    return errors.UpstreamError(f"The object store refused the request ({code}).")
