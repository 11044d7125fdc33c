"""Which region a read goes to (gateway.keys.kms.KeyService), with scripted KMS endpoints: a region that cannot
answer passes the read to the other, a final answer never does, each region's keys resolve on that region only,
and the second region is not called while the first serves. No network."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import errors
from gateway.format.envelope import WrappedKey, encryption_context
from gateway.keys.cache import CacheLimits
from gateway.keys.kms import KMS_SCHEME, KeyService, Secondary
from gateway.keys.policy import MasterKeyPolicy
from gateway.observability.metrics import Metrics

FIRST_ARN = "arn:aws:kms:us-east-1:111122223333:key/first"
SECOND_ARN = "arn:aws:kms:eu-west-1:111122223333:key/second"
CONTEXT = encryption_context("bucket", "key")
DEK = b"d" * 32


class Region:
    """A KMS endpoint whose every call raises `failure` (if set) or answers like KMS for its one key."""

    def __init__(self, arn: str, failure: errors.S3Error | None = None) -> None:
        self.arn, self.failure = arn, failure
        self.calls: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(self, operation: str, audited: object, **params: Any) -> dict[str, Any]:
        self.calls.append(operation)
        if self.failure is not None:
            raise self.failure
        if operation == "DescribeKey":
            return {"KeyMetadata": {"Arn": self.arn}}
        assert operation == "Decrypt" and params["KeyId"] == self.arn and params["CiphertextBlob"] == self.arn.encode()
        return {"KeyId": self.arn, "Plaintext": DEK}


def _service(first: Region, second: Region, key_id: str = FIRST_ARN) -> KeyService:
    return KeyService(MasterKeyPolicy(key_id), Metrics(), first,  # type: ignore[arg-type]
                      cache=CacheLimits(0, 10, 1 << 20, 10),
                      secondary=Secondary("alias/second", second))  # type: ignore[arg-type]


WRAPPED = [WrappedKey(KMS_SCHEME, FIRST_ARN, FIRST_ARN.encode()), WrappedKey(KMS_SCHEME, SECOND_ARN,
                                                                             SECOND_ARN.encode())]


def _unwrap(service: KeyService, wrapped: list[WrappedKey] = WRAPPED) -> bytes:
    return bytes(asyncio.run(service.unwrap(wrapped, CONTEXT, "reader")))


def test_the_second_region_is_not_called_while_the_first_serves():
    first, second = Region(FIRST_ARN), Region(SECOND_ARN, errors.KMSUnavailable())
    assert _unwrap(_service(first, second)) == DEK
    assert first.calls == ["Decrypt"] and second.calls == []  # a key ARN needs no DescribeKey


@pytest.mark.parametrize("failure", [errors.KMSUnavailable(), errors.SlowDown()])
def test_a_first_region_that_cannot_answer_passes_the_read_to_the_second(failure):
    first, second = Region(FIRST_ARN, failure), Region(SECOND_ARN)
    service = _service(first, second)
    assert _unwrap(service) == DEK
    assert second.calls == ["DescribeKey", "Decrypt"]  # the second key resolved on the second region
    assert service._metrics.registry.get_sample_value(  # noqa: SLF001
        "envelope_kms_fallbacks_total", {"operation": "Decrypt"}) == 1


def test_a_first_region_down_while_resolving_its_alias_passes_the_read_to_the_second():
    first, second = Region(FIRST_ARN, errors.KMSUnavailable()), Region(SECOND_ARN)
    assert _unwrap(_service(first, second, key_id="alias/first")) == DEK
    assert first.calls == ["DescribeKey"] and second.calls == ["DescribeKey", "Decrypt"]


@pytest.mark.parametrize("failure", [errors.KMSKeyDisabled(), errors.KMSKeyInvalidState(), errors.KMSAccessDenied(),
                                     errors.TamperedCiphertext()])
def test_a_final_answer_is_never_taken_to_the_other_region(failure):
    """A key revoked in the first region must stop reads, not send them to the second."""
    first, second = Region(FIRST_ARN, failure), Region(SECOND_ARN)
    with pytest.raises(type(failure)):
        _unwrap(_service(first, second))
    assert second.calls == []


def test_both_regions_down_is_the_first_regions_503_not_a_refusal_of_the_object():
    first, second = Region(FIRST_ARN, errors.SlowDown()), Region(SECOND_ARN, errors.KMSUnavailable())
    with pytest.raises(errors.SlowDown):
        _unwrap(_service(first, second, key_id="alias/first"))


def test_an_object_without_a_copy_in_the_answering_region_gets_the_failure():
    first, second = Region(FIRST_ARN, errors.KMSUnavailable()), Region(SECOND_ARN)
    with pytest.raises(errors.KMSUnavailable):
        _unwrap(_service(first, second), WRAPPED[:1])  # written before the second region was configured


def test_copies_under_keys_nobody_configured_are_refused_unsent():
    first, second = Region(FIRST_ARN), Region(SECOND_ARN)
    planted = [WrappedKey(KMS_SCHEME, "arn:aws:kms:us-east-1:999999999999:key/theirs", b"x")]
    with pytest.raises(errors.UnsupportedFormat):
        _unwrap(_service(first, second), planted)
    assert "Decrypt" not in first.calls + second.calls


class Prober(Region):
    """A region for the readiness probe: GenerateDataKey / Encrypt / Decrypt round trips; `hang` never answers."""

    def __init__(self, arn: str, failure: errors.S3Error | None = None, hang: bool = False) -> None:
        super().__init__(arn, failure)
        self.hang = hang

    async def call(self, operation: str, audited: object, **params: Any) -> dict[str, Any]:
        self.calls.append(operation)
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure
        if operation == "GenerateDataKey":
            return {"KeyId": self.arn, "Plaintext": DEK, "CiphertextBlob": DEK[::-1]}
        if operation == "Encrypt":
            return {"KeyId": self.arn, "CiphertextBlob": params["Plaintext"][::-1]}
        return {"KeyId": self.arn, "Plaintext": params["CiphertextBlob"][::-1]}


@pytest.mark.parametrize("first, second, ready, second_called", [
    (Prober(FIRST_ARN), Prober(SECOND_ARN, errors.KMSUnavailable()), True, False),
    (Prober(FIRST_ARN, errors.KMSUnavailable()), Prober(SECOND_ARN), True, True),
    (Prober(FIRST_ARN, errors.SlowDown()), Prober(SECOND_ARN), True, True),
    (Prober(FIRST_ARN, hang=True), Prober(SECOND_ARN), True, True),
    (Prober(FIRST_ARN, errors.KMSUnavailable()), Prober(SECOND_ARN, errors.KMSUnavailable()), False, True),
])
def test_readiness_needs_one_region(first, second, ready, second_called):
    assert asyncio.run(_service(first, second).probe({"probe": "readyz"}, "readyz")) is ready
    assert bool(second.calls) is second_called


def test_readiness_fails_on_a_final_answer_from_the_first_region():
    with pytest.raises(errors.KMSKeyDisabled):
        asyncio.run(_service(Prober(FIRST_ARN, errors.KMSKeyDisabled()), Prober(SECOND_ARN)).probe({}, "readyz"))
