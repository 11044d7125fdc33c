"""Fuzz properties of the KMS fault map (gateway.keys.faults): whatever KMS, a proxy in front of it or botocore's
parser hands the gateway, it is sorted into a fault whose error is an S3 error with a status a client can act on —
never an exception, never a 2xx, never a 4xx other than the 403 family."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.keys import faults

_OPERATIONS = ("GenerateDataKey", "Decrypt", "Encrypt", "ReEncrypt", "DescribeKey")
_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                    max_size=3), max_leaves=8)


@given(code=st.text() | st.sampled_from(sorted(faults.BY_CODE)), status=st.none() | st.integers(-1, 1000))
def test_any_kms_error_answer_is_a_fault(code, status):
    fault = faults.for_answer(code, status)
    error = fault.error()
    assert isinstance(error, errors.S3Error)
    assert error.status in (403, 500, 503)
    assert fault.retryable == isinstance(error, faults.REGION_FAULTS) == (error.status == 503)
    marked = faults.for_answer("echo-" + code, status).error()
    assert "echo-" not in marked.message  # never an echo of what KMS sent


@given(operation=st.sampled_from(_OPERATIONS),
       answer=st.dictionaries(st.sampled_from(("KeyId", "Plaintext", "CiphertextBlob", "KeyMetadata", "Other")),
                              _values, max_size=5))
def test_any_answer_is_judged_complete_or_not(operation, answer):
    assert faults.complete(operation, answer) in (True, False)
