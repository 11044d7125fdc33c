"""Client bodies and store documents (gateway.s3.xml, gateway.s3.multipart_xml): any bytes give a value or an
S3Error — never RecursionError, ValueError or ParseError — and what the gateway writes reads back the same."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.multipart_xml import (DeleteEntry, DeleteRequest, complete_request_body, list_keys, parse_complete_request, parse_delete_request,
                                      parse_upload_id, result_etag, without_checksums)
from gateway.s3.xml import (check_client_document, listed_keys, listed_objects, parse_error, rewrite_listing,
                            shadowing_prefixes, tagging_header, visible_before_hidden)

# Pieces of S3 documents, so that examples are often nearly valid (and nest, repeat and mix namespaces).
_PIECES = st.sampled_from([
    b"<Delete>", b"</Delete>", b"<Object>", b"</Object>", b"<Key>", b"</Key>", b"<Quiet>true</Quiet>",
    b"<CompleteMultipartUpload>", b"</CompleteMultipartUpload>", b"<Part>", b"</Part>", b"<PartNumber>",
    b"</PartNumber>", b"<ETag>", b"</ETag>", b"<ListBucketResult>", b"</ListBucketResult>", b"<Contents>",
    b"</Contents>", b"<Size>", b"</Size>", b"<IsTruncated>true</IsTruncated>", b"<CommonPrefixes>",
    b"</CommonPrefixes>", b"<Prefix>", b"</Prefix>", b"<NextMarker>", b"</NextMarker>", b"<Error>", b"</Error>",
    b"<Code>", b"</Code>", b"<UploadId>", b"</UploadId>", b"<TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>",
    b'<a xmlns="http://s3.amazonaws.com/doc/2006-03-01/">', b'<a xmlns="urn:x">', b"</a>", b"<a>" * 40,
    b"</a>" * 40, b"<!DOCTYPE d>", b'<!ENTITY e "x">', b"&e;", b"&#0;", b"&#13;", b"<![CDATA[", b"]]>", b"<!--",
    b"-->", b"9" * 5000, b"1", b"0", b".envelope-gateway/uploads/x", b"\xff", b"\x00", b'<?xml version="1.0"?>',
    b'<?xml version="1.0" encoding="utf-16"?>', b"<EncodingType>url</EncodingType>", b"%2F", b" ",
])
_DOCUMENTS = st.one_of(st.binary(max_size=200), st.lists(_PIECES, max_size=30).map(b"".join))


def _hidden(key: str) -> bool:
    return key.startswith(".envelope-gateway/")


@given(_DOCUMENTS)
def test_client_bodies_give_a_value_or_an_s3_error(body: bytes) -> None:
    for parse in (parse_complete_request, parse_delete_request, check_client_document):
        try:
            parse(body)
        except errors.S3Error as exc:
            assert exc.status < 500


@given(_DOCUMENTS, st.one_of(st.none(), _DOCUMENTS))
def test_store_documents_give_a_value_or_an_s3_error(body: bytes, following: bytes | None) -> None:
    assert parse_error(body) is None or isinstance(parse_error(body), tuple)
    readers = (lambda: rewrite_listing(body, lambda size, etag: size, _hidden, following=following),
               lambda: visible_before_hidden(body, _hidden), lambda: listed_objects(body),
               lambda: tagging_header(body), lambda: list_keys(body), lambda: parse_upload_id(body),
               lambda: result_etag(body, "result"), lambda: without_checksums(body, "result"),
               lambda: listed_keys(body), lambda: shadowing_prefixes(body, ".envelope-gateway/"))
    for read in readers:
        try:
            read()
        except errors.S3Error as exc:
            assert exc.status >= 500  # a store's document the gateway cannot read is the store's fault


_KEYS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff",
                              min_codepoint=0x20) | st.sampled_from("&<>\r\"'\t\n"), min_size=1, max_size=30)


@given(st.lists(st.tuples(_KEYS, st.lists(st.sampled_from(["VersionId", "ETag", "Size"]), unique=True)),
                min_size=1, max_size=10), st.sampled_from([None, True, False]))
def test_delete_requests_round_trip(objects, quiet) -> None:
    request = DeleteRequest(quiet, tuple(DeleteEntry(key, tuple((name, key) for name in ("VersionId", "ETag", "Size")
                                                                  if name in names))
                                         for key, names in objects))
    assert parse_delete_request(request.body()) == request


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=20, unique=True).map(sorted),
       st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, blacklist_characters='"'),
                        min_size=1, max_size=8), min_size=20, max_size=20))
def test_complete_requests_round_trip(numbers: list[int], etags: list[str]) -> None:
    parts = list(zip(numbers, etags))
    assert parse_complete_request(complete_request_body(parts)) == parts
