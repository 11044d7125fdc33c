"""Generate the format-v1 test vectors in this directory, deterministically.

    python tests/vectors/generate.py            # rewrite the JSON files
    python tests/vectors/generate.py --check    # exit 1 if the files differ from what would be written

This is a second, deliberately independent implementation of docs/FORMAT.md: it does not import the gateway and
uses only the standard library plus AESGCM from `cryptography` (HKDF is spelled out with hmac), so the vectors
check the gateway's code against the specification rather than against itself.

The data key, salts and wrapped-key blobs below are fixed, public test values. The `kms` blob is NOT a real KMS
ciphertext: it only shows the metadata encoding.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent

S = 65536  # segment size (2^16)
T = 16  # tag size
SEALED = S + T
VERSION, SUITE, SEG_LOG2, FLAGS = 1, 1, 16, 0
DATA_KEY_LABEL = b"envelope-gateway/v1/data-key"
COMMITMENT_LABEL = b"envelope-gateway/v1/commitment"

DEK = bytes(range(32))  # 000102…1f
BUCKET = "vectors-bucket"
KEY = "dir/object.bin"
KMS_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-1111-2222-3333-444444444444"
FAKE_BLOB = hashlib.sha256(b"envelope-gateway test vectors: fake KMS CiphertextBlob").digest() * 5  # 160 bytes

SIZES = [0, 1, S - 1, S, S + 1, 2 * S + 5]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def plaintext_for(n: int) -> bytes:
    # Period 251 (prime, coprime with S): no two segments of a vector have the same plaintext.
    return bytes(i % 251 for i in range(n))


def salt_for(name: str) -> bytes:
    # One salt per vector, so no two vectors share an object key (as no two real objects do).
    return hashlib.sha256(b"envelope-gateway test vectors: salt " + name.encode()).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_32(prk: bytes, info: bytes) -> bytes:
    # RFC 5869 with L = 32 = HashLen: a single block, T(1) = HMAC(PRK, info ‖ 0x01).
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def nonce(part: int, index: int, final: bool) -> bytes:
    return struct.pack(">I", part) + index.to_bytes(7, "big") + (b"\x01" if final else b"\x00")


def encrypt(dek: bytes, salt: bytes, plaintext: bytes) -> dict:
    bound = bytes([VERSION, SUITE, SEG_LOG2, FLAGS]) + salt
    prk = hkdf_extract(salt, dek)
    data_key_info = DATA_KEY_LABEL + bound
    commitment_info = COMMITMENT_LABEL + bound
    object_key = hkdf_expand_32(prk, data_key_info)
    commitment = hkdf_expand_32(prk, commitment_info)
    header = bound + commitment
    aead = AESGCM(object_key)
    n = len(plaintext)
    k = max(1, -(-n // S))
    segments, sealed = [], []
    for i in range(k):
        chunk = plaintext[i * S:(i + 1) * S]
        nce = nonce(0, i, i == k - 1)
        ct = aead.encrypt(nce, chunk, b"")
        sealed.append(ct)
        segments.append({"index": i, "nonce": nce.hex(), "plaintext_size": len(chunk), "sealed_size": len(ct),
                         "stored_offset": i * SEALED, "tag": ct[-T:].hex()})
    return {"bound": bound, "prk": prk, "data_key_info": data_key_info, "commitment_info": commitment_info,
            "object_key": object_key, "commitment": commitment, "header": header, "segments": segments,
            "ciphertext": b"".join(sealed)}


def positive(n: int) -> tuple[str, dict]:
    name = f"v1-plaintext-{n}"
    salt = salt_for(name)
    plaintext = plaintext_for(n)
    enc = encrypt(DEK, salt, plaintext)
    wrapped = f"kms;{KMS_KEY_ARN};{b64url(FAKE_BLOB)}"
    return name, {
        "name": name,
        "description": f"Format v1, one-request object of {n} plaintext bytes (plaintext[i] = i mod 251).",
        "dek": DEK.hex(),
        "salt": salt.hex(),
        "bucket": BUCKET,
        "key": KEY,
        "encryption_context": {"envelope-gateway:bucket": BUCKET, "envelope-gateway:key": KEY},
        "wrapped_keys": [{"scheme": "kms", "key_id": KMS_KEY_ARN, "blob": FAKE_BLOB.hex(),
                          "note": "not a real KMS CiphertextBlob; shows the encoding only"}],
        "intermediate": {
            "header_bound_0_36": enc["bound"].hex(),
            "prk": enc["prk"].hex(),
            "data_key_info": enc["data_key_info"].hex(),
            "commitment_info": enc["commitment_info"].hex(),
            "object_key": enc["object_key"].hex(),
            "commitment": enc["commitment"].hex(),
        },
        "header": enc["header"].hex(),
        "metadata": {"envelope-header": b64url(enc["header"]), "envelope-key-0": wrapped},
        "plaintext_size": n,
        "ciphertext_size": len(enc["ciphertext"]),
        "segment_count": len(enc["segments"]),
        "segments": enc["segments"],
        "plaintext": plaintext.hex(),
        "ciphertext": enc["ciphertext"].hex(),
    }


def _header_b64(vector: dict, **changes: int | bytes) -> str:
    header = bytearray(bytes.fromhex(vector["header"]))
    offsets = {"version": 0, "suite": 1, "segment_size_log2": 2, "flags": 3}
    for field, value in changes.items():
        if field in offsets:
            header[offsets[field]] = value
        elif field == "salt_xor0":
            header[4] ^= value
        elif field == "commitment_xor0":
            header[36] ^= value
    return b64url(bytes(header))


def negative(vectors: dict[str, dict]) -> dict:
    """Tampered objects: a base vector, edits to its ciphertext / metadata / data key, and the expected error."""
    big = "v1-plaintext-131077"  # three segments: S, S, 5 bytes
    one = "v1-plaintext-65536"  # exactly one full (final) segment
    other = "v1-plaintext-65537"
    base = vectors[big]
    b64 = base["metadata"]["envelope-header"]
    tampered, unsupported, absent = "TamperedCiphertext", "UnsupportedFormat", "NotEncrypted"
    cases = [
        ("flip-first-ciphertext-byte", big, [{"op": "flip", "offset": 0}], {}, None, tampered, "segment"),
        ("flip-final-tag-byte", big, [{"op": "flip", "offset": 2 * SEALED + 5 + 15}], {}, None, tampered, "segment"),
        ("truncate-at-segment-boundary", big, [{"op": "truncate", "length": 2 * SEALED}], {}, None, tampered,
         "segment"),
        ("truncate-mid-segment", big, [{"op": "truncate", "length": 2 * SEALED + 20}], {}, None, tampered,
         "segment"),
        ("truncate-to-impossible-size", big, [{"op": "truncate", "length": 2 * SEALED + 10}], {}, None, tampered,
         "size"),
        ("truncate-to-empty-final-segment", big, [{"op": "truncate", "length": SEALED + T}], {}, None, tampered,
         "size"),
        ("extend-by-a-segment", one, [{"op": "append_from", "vector": one, "start": 0, "end": SEALED}], {}, None,
         tampered, "segment"),
        ("reorder-segments", big, [{"op": "swap", "a": [0, SEALED], "b": [SEALED, 2 * SEALED]}], {}, None, tampered,
         "segment"),
        ("segment-from-another-object", big, [{"op": "splice_from", "vector": other, "start": 0, "end": SEALED}],
         {}, None, tampered, "segment"),
        ("wrong-data-key", big, [], {}, bytes(32).hex(), tampered, "commitment"),
        ("header-version-2", big, [], {"envelope-header": _header_b64(base, version=2)}, None, unsupported,
         "metadata"),
        ("header-suite-2", big, [], {"envelope-header": _header_b64(base, suite=2)}, None, unsupported, "metadata"),
        ("header-segment-size-2^20", big, [], {"envelope-header": _header_b64(base, segment_size_log2=20)}, None,
         unsupported, "metadata"),
        ("header-flag-multipart", big, [], {"envelope-header": _header_b64(base, flags=1)}, None, unsupported,
         "metadata"),
        ("header-flag-unknown", big, [], {"envelope-header": _header_b64(base, flags=0x80)}, None, unsupported,
         "metadata"),
        ("header-salt-changed", big, [], {"envelope-header": _header_b64(base, salt_xor0=1)}, None, tampered,
         "commitment"),
        ("header-commitment-changed", big, [], {"envelope-header": _header_b64(base, commitment_xor0=1)}, None,
         tampered, "commitment"),
        ("header-too-short", big, [], {"envelope-header": b64url(bytes.fromhex(base["header"])[:67])}, None,
         tampered, "metadata"),
        ("header-padded-base64", big, [], {"envelope-header": b64 + "="}, None, tampered, "metadata"),
        ("header-not-base64", big, [], {"envelope-header": "!" + b64[1:]}, None, tampered, "metadata"),
        # Same DEK in every vector, so the other object's header carries a valid commitment for it: the header is
        # bound to the data only through the object key, and the first segment's tag catches the swap.
        ("header-from-another-object", big, [], {"envelope-header": vectors[other]["metadata"]["envelope-header"]},
         None, tampered, "segment"),
        ("wrapped-key-malformed", big, [], {"envelope-key-0": "kms;only-two-fields"}, None, tampered, "metadata"),
        ("header-missing", big, [], {"envelope-header": None}, None, tampered, "metadata"),
        ("no-envelope-metadata", big, [], {"envelope-header": None, "envelope-key-0": None}, None, absent,
         "metadata"),
    ]
    out = []
    for name, vector, edits, metadata, dek, error, stage in cases:
        out.append({"name": name, "base": vector, "ciphertext_edits": edits, "metadata_changes": metadata,
                    "dek": dek, "error": error, "detected_by": stage})
    return {
        "description": ("Tampered objects. Start from the base vector's metadata, data key and ciphertext; apply "
                        "metadata_changes (null removes the entry), use dek if not null, apply ciphertext_edits in "
                        "order (flip: xor 0x01 into the byte at offset; truncate: keep the first length bytes; "
                        "append_from / splice_from: append, or overwrite at the same offsets, the bytes "
                        "[start, end) of another vector's ciphertext; swap: exchange two equal-length byte ranges "
                        "[start, end)). Reading the whole object must then fail with error; detected_by names the "
                        "first check that fails in the reading order of docs/FORMAT.md (metadata, size, "
                        "commitment, segment)."),
        "cases": out,
    }


def build() -> dict[str, str]:
    """File name → exact file content."""
    vectors = dict(positive(n) for n in SIZES)
    files = {f"{name}.json": _dump(vector) for name, vector in vectors.items()}
    files["v1-negative.json"] = _dump(negative(vectors))
    return files


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    files = build()
    if "--check" in argv:
        stale = [name for name, text in files.items()
                 if not (HERE / name).exists() or (HERE / name).read_text() != text]
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
