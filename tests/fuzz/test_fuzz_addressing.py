"""Fuzz properties of gateway/s3/addressing.py and gateway/s3/names.py: whatever the request target and Host, the
gateway routes only on a valid bucket and a valid key, or answers with an S3 error."""
from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.s3.addressing import resolve
from gateway.s3.names import MAX_KEY_BYTES, is_valid_bucket

DOMAINS = ("localhost", "s3.gateway.svc")

# Targets and Hosts made of the characters that matter to a parser (separators, escapes, dots, brackets, case,
# look-alikes such as U+2028 and the Kelvin sign), mixed with arbitrary text.
_TRICKY = "/?&=%#@:[].-_ aAzZ09fF\n\t\u2028\u212a\u00e9"
_hex_escape = st.integers(0, 255).map(lambda b: f"%{b:02X}")
_raw_piece = st.one_of(st.text(alphabet=_TRICKY, max_size=8), _hex_escape, st.text(max_size=4),
                       st.sampled_from(["/", "?", "localhost", "127.0.0.1", "s3.gateway.svc", "bkt", ":8080"]))
_raw = st.lists(_raw_piece, max_size=12).map("".join)
valid_buckets = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z").filter(is_valid_bucket)
valid_keys = st.text(min_size=1).filter(lambda key: len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES
                                        and not any(0xD800 <= ord(c) <= 0xDFFF for c in key))


def _check(target) -> None:
    assert target.bucket is None or is_valid_bucket(target.bucket)
    assert target.key is None or len(target.key.encode("utf-8")) <= MAX_KEY_BYTES
    assert target.key is None or target.bucket is not None


@given(st.one_of(_raw.map(lambda raw: "/" + raw), _raw), st.one_of(st.none(), _raw))
def test_any_target_and_host_route_on_valid_names_or_fail_as_s3(raw_target: str, host: str | None) -> None:
    try:
        target = resolve(raw_target, host, DOMAINS)
    except errors.S3Error:
        return
    _check(target)


@given(valid_buckets, st.one_of(st.none(), valid_keys), st.sampled_from(["", ":8080"]))
def test_valid_names_round_trip(bucket: str, key: str | None, port: str) -> None:
    raw_key = quote(key, safe="/") if key is not None else ""
    path_style = resolve(f"/{bucket}/{raw_key}", f"127.0.0.1{port}", DOMAINS)
    assert (path_style.bucket, path_style.key, path_style.virtual_hosted) == (bucket, key, False)
    for domain in DOMAINS:
        virtual = resolve(f"/{raw_key}", f"{bucket}.{domain}{port}", DOMAINS)
        assert (virtual.bucket, virtual.key, virtual.virtual_hosted) == (bucket, key, True)
