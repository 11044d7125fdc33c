"""The parts of `rewrap` that need no store: which entries are re-wrapped and how (a fake KMS records the calls),
the sweep's watermark and its state file."""
from __future__ import annotations

import json
import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.format.bucketkey import BucketKeyBlob, bucket_key_context
from gateway.format.envelope import WrappedKey, encryption_context
from gateway.tools.rewrap import Rewrapper, Summary
from gateway.tools.sweep import SweepState, Watermark, load_state, save_state

OLD, NEW, OTHER = ("arn:aws:kms:eu-west-1:1:key/" + name for name in ("old", "new", "other"))


class FakeKms:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def re_encrypt(self, **params):
        with self._lock:
            self.calls.append(params)
        return {"KeyId": params["DestinationKeyId"], "SourceKeyId": params["SourceKeyId"],
                "CiphertextBlob": b"new:" + params["CiphertextBlob"]}


def _bucket_key_entry(arn: str, salt: bytes, wrapped: bytes = b"bk-blob") -> WrappedKey:
    return WrappedKey("kms-bucket-key", arn, BucketKeyBlob(salt, wrapped).encode())


def test_kms_entries_are_reencrypted_under_their_own_context_and_others_kept():
    kms = FakeKms()
    partner = WrappedKey("rsa-oaep-sha256", "partner", b"p" * 40)
    already = WrappedKey("kms", NEW, b"n" * 50)
    entries = [WrappedKey("kms", OLD, b"o" * 50), partner, already]
    out = Rewrapper(kms, NEW).rewrapped("b", "dir/k", entries)
    assert out == [WrappedKey("kms", NEW, b"new:" + b"o" * 50), partner, already]
    assert kms.calls == [{"CiphertextBlob": b"o" * 50, "SourceKeyId": OLD, "DestinationKeyId": NEW,
                          "SourceEncryptionContext": encryption_context("b", "dir/k"),
                          "DestinationEncryptionContext": encryption_context("b", "dir/k")}]


def test_from_key_limits_what_is_rewrapped():
    rewrapper = Rewrapper(FakeKms(), NEW, OLD)
    assert rewrapper.selects(WrappedKey("kms", OLD, b"x"))
    assert not rewrapper.selects(WrappedKey("kms", OTHER, b"x"))
    assert not rewrapper.selects(WrappedKey("kms", NEW, b"x"))
    assert not rewrapper.selects(WrappedKey("rsa-oaep-sha256", OLD, b"x"))
    assert Rewrapper(FakeKms(), NEW).selects(WrappedKey("kms-bucket-key", OTHER, b"x"))


def test_bucket_keys_keep_the_salt_and_are_reencrypted_once_per_bucket():
    kms = FakeKms()
    rewrapper = Rewrapper(kms, NEW)
    salts = [bytes([i]) * 32 for i in range(20)]

    def rewrap(i: int, bucket: str) -> WrappedKey:
        return rewrapper.rewrapped(bucket, f"k{i}", [_bucket_key_entry(OLD, salts[i])])[0]

    threads = [threading.Thread(target=rewrap, args=(i, "b1")) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = rewrap(3, "b1")
    assert (out.scheme, out.key_id) == ("kms-bucket-key", NEW)
    assert BucketKeyBlob.decode(out.blob) == BucketKeyBlob(salts[3], b"new:bk-blob")
    assert len(kms.calls) == 1 and kms.calls[0]["SourceEncryptionContext"] == bucket_key_context("b1")
    rewrap(3, "b2")  # the same blob in another bucket is another context: KMS must check it
    assert len(kms.calls) == 2 and rewrapper.reencrypt_calls == 2


def test_a_blob_that_another_key_wrapped_is_refused():
    class LyingKms(FakeKms):
        def re_encrypt(self, **params):
            return {**super().re_encrypt(**params), "SourceKeyId": OTHER}

    with pytest.raises(errors.TamperedCiphertext):
        Rewrapper(LyingKms(), NEW).rewrapped("b", "k", [WrappedKey("kms", OLD, b"o")])


@given(st.lists(st.text(min_size=1), min_size=1, max_size=30, unique=True), st.randoms())
def test_the_watermark_is_the_end_of_the_settled_prefix(keys, rnd: random.Random):
    keys = sorted(keys)
    watermark = Watermark()
    for key in keys:
        watermark.listed(key)
    order = keys[:]
    rnd.shuffle(order)
    done: set[str] = set()
    for key in order:
        watermark.settled(key)
        done.add(key)
        prefix = 0
        while prefix < len(keys) and keys[prefix] in done:
            prefix += 1
        assert watermark.last == (keys[prefix - 1] if prefix else None)


def test_state_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "state.json")
    assert load_state(path) is None
    state = SweepState("b", "p/", NEW, "p/k9", {"p/k3": "why"})
    save_state(path, state)
    assert load_state(path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    state.check_matches("b", "p/", NEW, "f")
    with pytest.raises(errors.InvalidArgument, match="records a sweep"):
        state.check_matches("b", "", NEW, "f")
    for text in ("not json", "[]", json.dumps({"version": 2}),
                 json.dumps({"version": 1, "bucket": "b", "prefix": "", "target": NEW, "after": 3, "failed": {}}),
                 json.dumps({"version": 1, "bucket": "b", "prefix": "", "target": NEW, "after": None,
                             "failed": {"k": 1}})):
        with pytest.raises(errors.InvalidArgument):
            SweepState.from_json(text, "f")


def test_summary_text_names_every_count_and_failure():
    summary = Summary(rewritten=3, already_under_target=2, not_gateway=1, failed={"a": "why"}, reencrypt_calls=3)
    summary.sources[OLD] = 3
    text = summary.text()
    for line in ("re-wrapped: 3", "already under the target key: 2", "not written by the gateway, left alone: 1",
                 "failed: 1", "KMS ReEncrypt calls: 3", f"re-wrapped from {OLD}: 3", "failed 'a': why"):
        assert line in text
    assert Summary(dry_run=True, rewritten=1).text().startswith("would re-wrap: 1")
