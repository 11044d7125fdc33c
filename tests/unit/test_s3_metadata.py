import pytest
from multidict import CIMultiDict

from gateway import errors
from gateway.s3.metadata import MAX_USER_METADATA, RESERVED_PREFIX, check_client_metadata, envelope_fields


def test_reserved_prefix():
    assert RESERVED_PREFIX == "x-amz-meta-envelope-"


@pytest.mark.parametrize("name", ["x-amz-meta-envelope-header", "X-Amz-Meta-Envelope-Key-0",
                                  "X-AMZ-META-ENVELOPE-", "x-amz-meta-envelope-anything-else"])
def test_clients_cannot_set_reserved_fields(name):
    with pytest.raises(errors.InvalidArgument) as exc:
        check_client_metadata(CIMultiDict({name: "x", "x-amz-meta-ok": "1"}))
    assert exc.value.status == 400
    assert exc.value.fields["ArgumentName"] == name.lower()


@pytest.mark.parametrize("name", ["x-amz-meta-envelope", "x-amz-meta-envelopes-x", "x-amz-meta-my-envelope-x",
                                  "x-amz-envelope-header", "envelope-header"])
def test_similar_names_are_fine(name):
    check_client_metadata({name: "x"})


def test_size_counts_utf8_names_without_prefix_and_values():
    # 2048 exactly: accepted. "a" * 1000 name + "b" * 1048 value.
    check_client_metadata({"x-amz-meta-" + "a" * 1000: "b" * 1048})
    with pytest.raises(errors.MetadataTooLarge) as exc:
        check_client_metadata({"x-amz-meta-" + "a" * 1000: "b" * 1049})
    assert exc.value.status == 400
    assert exc.value.fields == {"Size": "2049", "MaxSizeAllowed": "2048"}
    # Several headers add up; other headers do not count.
    check_client_metadata({"x-amz-meta-a": "x" * 1000, "x-amz-meta-b": "x" * 1046, "content-type": "x" * 5000})
    with pytest.raises(errors.MetadataTooLarge):
        check_client_metadata({"x-amz-meta-a": "x" * 1000, "x-amz-meta-b": "x" * 1047})


def test_size_is_in_utf8_bytes():
    check_client_metadata({"x-amz-meta-k": "é" * 1023})          # 1 + 2046 bytes
    with pytest.raises(errors.MetadataTooLarge):
        check_client_metadata({"x-amz-meta-k": "é" * 1024})      # 1 + 2048 bytes
    # aiohttp hands undecodable bytes over as surrogate escapes: they count as the single bytes they were.
    check_client_metadata({"x-amz-meta-k": "\udce9" * 2047})


def test_reserve_for_the_envelope():
    check_client_metadata({"x-amz-meta-k": "v" * 1447}, reserved_bytes=600)
    with pytest.raises(errors.MetadataTooLarge) as exc:
        check_client_metadata({"x-amz-meta-k": "v" * 1448}, reserved_bytes=600)
    assert exc.value.fields == {"Size": "1449", "MaxSizeAllowed": str(MAX_USER_METADATA - 600)}
    check_client_metadata({}, reserved_bytes=2048)
    with pytest.raises(errors.MetadataTooLarge):
        check_client_metadata({"x-amz-meta-k": ""}, reserved_bytes=2048)



def test_envelope_fields():
    headers = CIMultiDict([("x-amz-meta-envelope-header", "h"), ("X-Amz-Meta-Envelope-Key-0", "k0"),
                           ("x-amz-meta-envelope-key-1", "k1"), ("x-amz-meta-user", "u"), ("Content-Type", "t")])
    assert envelope_fields(headers) == {"envelope-header": "h", "envelope-key-0": "k0", "envelope-key-1": "k1"}
    assert envelope_fields({"x-amz-meta-user": "u"}) == {}
