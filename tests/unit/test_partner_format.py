"""The pure parts of partner shares (FORMAT.md §17): RSA-OAEP entries (key checks, labels, round trips, what is
refused), the metadata budget, the signed statement and the share manifest. The published vectors are checked in
test_format_vectors.py; these are properties and edge cases."""
from __future__ import annotations

import dataclasses
import pickle

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.format.envelope import WrappedKey
from gateway.format.partner import (
    SCHEME_RSA_OAEP,
    PartnerPrivateKey,
    Recipient,
    entry_for,
    oaep_label,
)
from gateway.format.signedshare import (
    ECDSA_SHA256,
    RSA_PSS_SHA256,
    Manifest,
    SharedObject,
    Signer,
    SignerPublicKey,
    statement,
    verify_shared,
)

PRIVATE_2048 = rsa.generate_private_key(65537, 2048)
PRIVATE_OTHER = rsa.generate_private_key(65537, 2048)
DEK = bytes(range(32))


def _pem(key) -> bytes:
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60)


# --- keys -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1024, 2047, 4104])
def test_keys_outside_2048_to_4096_bits_are_refused(bits):
    private = rsa.generate_private_key(65537, bits)
    with pytest.raises(errors.InvalidArgument, match=f"{bits} bits"):
        Recipient.from_pem(_pem(private.public_key()), "partner.pem")
    with pytest.raises(errors.InvalidArgument, match=f"{bits} bits"):
        PartnerPrivateKey.from_pem(_pem(private), None, "partner-key.pem")


def test_non_rsa_and_non_key_files_are_refused():
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(errors.InvalidArgument, match="not an RSA key"):
        Recipient.from_pem(_pem(p256.public_key()), "partner.pem")
    with pytest.raises(errors.InvalidArgument, match="not an RSA private key"):
        PartnerPrivateKey.from_pem(_pem(p256), None, "partner-key.pem")
    with pytest.raises(errors.InvalidArgument, match="not a PEM public key"):
        Recipient.from_pem(_pem(PRIVATE_2048), "partner.pem")  # the private key given where the public one goes
    with pytest.raises(errors.InvalidArgument, match="not a PEM private key"):
        PartnerPrivateKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None, "k.pem")


def test_encrypted_private_keys_need_their_passphrase():
    pem = PRIVATE_2048.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(b"correct horse"))
    with pytest.raises(errors.InvalidArgument, match="is encrypted"):
        PartnerPrivateKey.from_pem(pem, None, "k.pem")
    with pytest.raises(errors.InvalidArgument, match="passphrase is wrong"):
        PartnerPrivateKey.from_pem(pem, b"wrong", "k.pem")
    assert PartnerPrivateKey.from_pem(pem, b"correct horse", "k.pem").key_id == Recipient(
        PRIVATE_2048.public_key()).key_id


def test_the_key_id_is_the_same_for_every_spelling_of_a_key():
    public = PRIVATE_2048.public_key()
    pkcs1 = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    ids = {Recipient.from_pem(_pem(public), "a").key_id, Recipient.from_pem(pkcs1, "b").key_id,
           PartnerPrivateKey.from_pem(_pem(PRIVATE_2048), None, "c").key_id}
    assert len(ids) == 1 and len(ids.pop()) == 50
    assert Recipient(PRIVATE_OTHER.public_key()).key_id not in {Recipient(public).key_id}


def test_private_keys_never_show_or_pickle():
    key = PartnerPrivateKey(PRIVATE_2048)
    numbers = PRIVATE_2048.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        assert format(secret, "x")[:16] not in repr(key) and str(secret)[:16] not in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)


# --- entries ----------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(dek=st.binary(min_size=32, max_size=32), bucket=names, key=names, other=names)
def test_wrap_unwrap_round_trip_and_the_name_binding(dek, bucket, key, other):
    recipient, private = Recipient(PRIVATE_2048.public_key()), PartnerPrivateKey(PRIVATE_2048)
    entry = recipient.wrap(dek, bucket, key)
    assert WrappedKey.decode(entry.encode()) == entry and private.accepts(entry)
    assert private.unwrap(entry, bucket, key) == dek
    if other != key:
        with pytest.raises(errors.TamperedCiphertext):
            private.unwrap(entry, bucket, other)


def test_labels_are_unambiguous():
    assert oaep_label("ab", "c") != oaep_label("a", "bc")
    assert oaep_label("b", "k").startswith(b"envelope-gateway/v1/rsa-oaep-dek\x00\x01b\x00\x01k")


def test_pkcs1_v15_and_other_keys_are_refused():
    private = PartnerPrivateKey(PRIVATE_2048)
    key_id = private.key_id
    v15 = PRIVATE_2048.public_key().encrypt(DEK, padding.PKCS1v15())
    with pytest.raises(errors.TamperedCiphertext, match="not RSA-OAEP"):
        private.unwrap(WrappedKey(SCHEME_RSA_OAEP, key_id, v15), "b", "k")
    # An entry for another key is not this key's to open: skipped, never tried.
    other = Recipient(PRIVATE_OTHER.public_key()).wrap(DEK, "b", "k")
    assert not private.accepts(other)
    assert entry_for(key_id, [other]) is None
    # Even relabelled with this key's id, it does not open.
    with pytest.raises(errors.TamperedCiphertext):
        private.unwrap(WrappedKey(SCHEME_RSA_OAEP, key_id, other.blob), "b", "k")


def test_entry_for_picks_the_recipient_entry_among_others():
    recipient = Recipient(PRIVATE_2048.public_key())
    kms = WrappedKey("kms", "arn:aws:kms:us-east-1:1:key/x", b"blob")
    mine = recipient.wrap(DEK, "b", "k")
    assert entry_for(recipient.key_id, [kms, Recipient(PRIVATE_OTHER.public_key()).wrap(DEK, "b", "k"), mine]) \
        == mine


def test_an_entry_costs_what_format_md_says():
    entry = Recipient(PRIVATE_2048.public_key()).wrap(DEK, "b", "k")
    assert len("envelope-key-1") + len(entry.encode()) == 423  # FORMAT.md §17.8


# --- statements and manifests -----------------------------------------------------------------------------------
fields = st.tuples(names, names, st.integers(0, 2**63), st.integers(0, 10_000), st.binary(min_size=32, max_size=32),
                   st.text("ABCabc-_", min_size=1, max_size=91), st.text("abc;:-_", min_size=1, max_size=100))


@settings(max_examples=200)
@given(a=fields, b=fields)
def test_statements_are_injective(a, b):
    assert (statement(*a) == statement(*b)) == (a == b)


@settings(max_examples=50)
@given(items=st.lists(st.tuples(fields, st.none() | st.binary(min_size=1, max_size=600)), max_size=4),
       signed=st.booleans())
def test_manifests_round_trip(items, signed):
    objects = tuple(SharedObject(*f, signature=sig) for f, sig in items)
    signer = Signer("arn:aws:kms:us-east-1:1:key/s", "sha256:x", ECDSA_SHA256) if signed else None
    manifest = Manifest("sha256:r", signer, objects)
    assert Manifest.decode(manifest.encode(), "m") == manifest


@pytest.mark.parametrize("text, error", [
    ("[]", errors.InvalidArgument), ("not json", errors.InvalidArgument),
    ('{"format": "envelope-gateway/share-manifest/v2"}', errors.UnsupportedFormat),
    ('{"format": "envelope-gateway/share-manifest/v1", "objects": []}', errors.InvalidArgument),
    ('{"format": "envelope-gateway/share-manifest/v1", "recipient_key_id": "r", "signer": null, '
     '"objects": [{"bucket": "b"}]}', errors.InvalidArgument),
])
def test_malformed_manifests_are_refused(text, error):
    with pytest.raises(error):
        Manifest.decode(text, "m")


def _signed(private, algorithm: str, actual: SharedObject) -> Manifest:
    if algorithm == RSA_PSS_SHA256:
        signature = private.sign(actual.statement(), padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    else:
        signature = private.sign(actual.statement(), ec.ECDSA(hashes.SHA256()))
    key_id = SignerPublicKey(private.public_key()).key_id
    return Manifest("sha256:r", Signer("arn", key_id, algorithm),
                    (dataclasses.replace(actual, signature=signature),))


ACTUAL = SharedObject("b", "k", 100, 0, bytes(32), "H", "E", None)


@pytest.mark.parametrize("private, algorithm", [(PRIVATE_2048, RSA_PSS_SHA256),
                                                (ec.generate_private_key(ec.SECP256R1()), ECDSA_SHA256)],
                         ids=["rsa-pss", "ecdsa-p256"])
def test_signatures_verify_and_tampering_is_named(private, algorithm):
    manifest = _signed(private, algorithm, ACTUAL)
    signer = SignerPublicKey(private.public_key())
    assert signer.algorithm == algorithm
    verify_shared(manifest, signer, ACTUAL)
    with pytest.raises(errors.TamperedCiphertext, match="the stored ciphertext differs"):
        verify_shared(manifest, signer, dataclasses.replace(ACTUAL, ciphertext_sha256=bytes(31) + b"\1"))
    with pytest.raises(errors.TamperedCiphertext, match="wrapped key differs"):
        verify_shared(manifest, signer, dataclasses.replace(ACTUAL, entry_value="F"))
    with pytest.raises(errors.TamperedCiphertext, match="no entry for this bucket and key"):
        verify_shared(manifest, signer, dataclasses.replace(ACTUAL, key="other"))
    record = manifest.objects[0]
    bad = dataclasses.replace(manifest, objects=(dataclasses.replace(
        record, signature=record.signature[:-1] + bytes([record.signature[-1] ^ 1])),))
    with pytest.raises(errors.TamperedCiphertext, match="does not verify"):
        verify_shared(bad, signer, ACTUAL)


def test_unsigned_or_foreign_signatures_fail_closed():
    manifest = _signed(PRIVATE_2048, RSA_PSS_SHA256, ACTUAL)
    signer = SignerPublicKey(PRIVATE_2048.public_key())
    unsigned = dataclasses.replace(manifest, objects=(dataclasses.replace(manifest.objects[0], signature=None),))
    with pytest.raises(errors.TamperedCiphertext, match="no signature"):
        verify_shared(unsigned, signer, ACTUAL)
    with pytest.raises(errors.TamperedCiphertext, match="no signature"):
        verify_shared(dataclasses.replace(manifest, signer=None), signer, ACTUAL)
    with pytest.raises(errors.TamperedCiphertext, match="another key"):
        verify_shared(manifest, SignerPublicKey(PRIVATE_OTHER.public_key()), ACTUAL)
    # Signed by another key, but the manifest claims ours: the signature itself fails.
    forged = dataclasses.replace(_signed(PRIVATE_OTHER, RSA_PSS_SHA256, ACTUAL), signer=manifest.signer)
    with pytest.raises(errors.TamperedCiphertext, match="does not verify"):
        verify_shared(forged, signer, ACTUAL)


def test_weak_signing_keys_are_refused():
    for key in (rsa.generate_private_key(65537, 1024), ec.generate_private_key(ec.SECP384R1())):
        with pytest.raises(errors.InvalidArgument):
            SignerPublicKey.from_pem(_pem(key.public_key()), "signer.pem")
