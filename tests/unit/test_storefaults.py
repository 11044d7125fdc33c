"""The store-fault map: which store answers are the client's to see, and which blame the gateway's own request."""
from __future__ import annotations

import pytest

from gateway import errors
from gateway.proxy.storefaults import GATEWAY_SIDE_CODES, store_refusal


@pytest.mark.parametrize("code", sorted(GATEWAY_SIDE_CODES))
def test_refusals_of_the_gateways_request_are_a_retryable_5xx(code):
    refusal = store_refusal(code)
    assert isinstance(refusal, errors.UpstreamError) and refusal.status == 503
    assert code in refusal.message


@pytest.mark.parametrize("code", ["NoSuchKey", "NoSuchBucket", "AccessDenied", "PreconditionFailed", "InvalidRange",
                                  "NoSuchUpload", "InternalError", "SlowDown", "MalformedXML", None])
def test_the_clients_own_answers_and_the_stores_5xx_are_relayed(code):
    assert store_refusal(code) is None
