"""Generate the format-v1 test vectors in this directory, deterministically.

    python tests/vectors/generate.py            # rewrite the JSON files
    python tests/vectors/generate.py --check    # exit 1 if the files differ from what would be written

This is a second, deliberately independent implementation of docs/FORMAT.md: it does not import the gateway and
uses only the standard library plus AESGCM from `cryptography` (HKDF is spelled out with hmac; RSA-OAEP,
RSASSA-PSS and the keys' DER encodings with Python integers), so the vectors
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
from math import gcd
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


def _inputs(salt: bytes) -> dict:
    """The inputs every vector states: DEK, salt, object name, its KMS context and (placeholder) wrapped key."""
    return {
        "dek": DEK.hex(),
        "salt": salt.hex(),
        "bucket": BUCKET,
        "key": KEY,
        "encryption_context": {"envelope-gateway:bucket": BUCKET, "envelope-gateway:key": KEY},
        "wrapped_keys": [{"scheme": "kms", "key_id": KMS_KEY_ARN, "blob": FAKE_BLOB.hex(),
                          "note": "not a real KMS CiphertextBlob; shows the encoding only"}],
    }


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
        **_inputs(salt),
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
        # Bit 0 selects the multipart layout (FORMAT.md §15); flags are bound into the commitment.
        ("header-flag-multipart", big, [], {"envelope-header": _header_b64(base, flags=1)}, None, tampered,
         "commitment"),
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


# --- multipart layout (docs/FORMAT.md §15) ---------------------------------------------------------------------
MP_FLAGS = 0x01
PART_KEY_LABEL = b"envelope-gateway/v1/part-key"
TABLE_KEY_LABEL = b"envelope-gateway/v1/part-table"
TABLE_NONCE = bytes(11) + b"\x01"
ENTRY = 4 + 8 + 32  # be32(number) ‖ be64(size) ‖ part salt
TRAILER_FIXED = 32 + 12 + T + 4  # table salt ‖ table head (be32 M ‖ be64 n) ‖ tag ‖ be32(N)
MAX_PARTS = 10000

# name → ([(client part number, plaintext size)], trailer in a store part of its own?). The sizes are far below
# S3's 5 MiB minimum for a non-last part, to keep the files small: the format does not depend on that minimum.
MULTIPART_LAYOUTS = {
    "2-parts-trailer-appended": ([(1, S + 1), (2, 3)], False),
    "3-parts-trailer-part": ([(1, S), (2, 70000), (5, 0)], True),
    "1-part-trailer-part": ([(1, 1)], True),
    "1-empty-part-trailer-appended": ([(1, 0)], False),
}


def mp_stored_size(n: int, m: int) -> int:
    return n + T * (n // S) + (T + ENTRY) * m + TRAILER_FIXED


def seal_part(part_key: bytes, number: int, plaintext: bytes) -> tuple[bytes, list[dict]]:
    aead = AESGCM(part_key)
    k = max(1, -(-len(plaintext) // S))
    sealed, segments = [], []
    for i in range(k):
        chunk = plaintext[i * S:(i + 1) * S]
        nce = nonce(number, i, i == k - 1)
        ct = aead.encrypt(nce, chunk, b"")
        sealed.append(ct)
        segments.append({"index": i, "nonce": nce.hex(), "plaintext_size": len(chunk), "sealed_size": len(ct),
                         "offset_in_part": i * SEALED, "tag": ct[-T:].hex()})
    return b"".join(sealed), segments


def multipart(name: str, layout: list[tuple[int, int]], trailer_part: bool) -> tuple[str, dict]:
    name = f"v1-multipart-{name}"
    salt = salt_for(name)
    bound = bytes([VERSION, SUITE, SEG_LOG2, MP_FLAGS]) + salt
    prk = hkdf_extract(salt, DEK)
    commitment_info = COMMITMENT_LABEL + bound
    commitment = hkdf_expand_32(prk, commitment_info)
    header = bound + commitment
    n = sum(size for _, size in layout)
    plaintext = plaintext_for(n)
    count, stored_count = len(layout), len(layout) + (1 if trailer_part else 0)

    parts, bodies, entries = [], [], []
    plain_at = stored_at = 0
    for number, size in layout:
        part_salt = salt_for(f"{name} part {number}")
        info = PART_KEY_LABEL + bound + struct.pack(">I", number) + part_salt
        part_key = hkdf_expand_32(prk, info)
        body, segments = seal_part(part_key, number, plaintext[plain_at:plain_at + size])
        parts.append({"number": number, "plaintext_size": size, "plaintext_offset": plain_at,
                      "part_salt": part_salt.hex(), "part_key_info": info.hex(), "part_key": part_key.hex(),
                      "stored_offset": stored_at, "stored_size": len(body), "segments": segments,
                      "stored": body.hex()})
        bodies.append(body)
        entries.append(struct.pack(">IQ", number, size) + part_salt)
        plain_at, stored_at = plain_at + size, stored_at + len(body)

    table = struct.pack(">IQ", stored_count, n) + b"".join(entries)
    table_salt = salt_for(f"{name} table")
    table_info = TABLE_KEY_LABEL + bound + table_salt
    table_key = hkdf_expand_32(prk, table_info)
    count_bytes = struct.pack(">I", count)
    sealed_table = AESGCM(table_key).encrypt(TABLE_NONCE, table, count_bytes)
    size = mp_stored_size(n, stored_count)
    tail = table_salt + sealed_table + count_bytes
    assert len(tail) == TRAILER_FIXED + ENTRY * count
    padding = size - stored_at - len(tail)
    assert padding >= 0
    trailer = bytes(padding) + tail
    body = b"".join(bodies) + trailer
    assert len(body) == size

    # The parts as the store holds them: the trailer appended to the last client part (M = N), or a store part
    # of its own numbered after the last client part (M = N + 1).
    store = [{"part_number": p["number"], "size": p["stored_size"], "holds": f"client part {p['number']}"}
             for p in parts]
    if trailer_part:
        store.append({"part_number": parts[-1]["number"] + 1, "size": len(trailer), "holds": "the trailer"})
    else:
        store[-1]["size"] += len(trailer)
        store[-1]["holds"] += " and the trailer"
    at = 0
    for entry in store:
        entry["stored_offset"] = at
        at += entry["size"]
    # What AWS S3 reports for these parts (MD5 of the part MD5s, then "-M"); only the suffix matters to readers.
    digests = b"".join(hashlib.md5(body[e["stored_offset"]:e["stored_offset"] + e["size"]]).digest()
                       for e in store)
    etag = f"{hashlib.md5(digests).hexdigest()}-{stored_count}"

    wrapped = f"kms;{KMS_KEY_ARN};{b64url(FAKE_BLOB)}"
    layout_text = ", ".join(f"part {number}: {size} bytes" for number, size in layout)
    placement = "is a store part of its own" if trailer_part else "is appended to the last part"
    return name, {
        "name": name,
        "description": (f"Format v1, multipart layout (header flags 0x01): {layout_text}; "
                        f"the trailer {placement} (M = {'N + 1' if trailer_part else 'N'}). plaintext[i] = i mod 251 over the whole object. "
                        "Part sizes are far below S3's 5 MiB minimum to keep the file small."),
        **_inputs(salt),
        "intermediate": {
            "header_bound_0_36": bound.hex(),
            "prk": prk.hex(),
            "commitment_info": commitment_info.hex(),
            "commitment": commitment.hex(),
            "table_key_info": table_info.hex(),
            "table_key": table_key.hex(),
        },
        "header": header.hex(),
        "metadata": {"envelope-header": b64url(header), "envelope-key-0": wrapped},
        "plaintext_size": n,
        "part_count": count,
        "stored_part_count": stored_count,
        "parts": parts,
        "table_salt": table_salt.hex(),
        "table_nonce": TABLE_NONCE.hex(),
        "table_aad": count_bytes.hex(),
        "table_plaintext": table.hex(),
        "sealed_table": sealed_table.hex(),
        "padding_size": padding,
        "trailer_size": len(trailer),
        "trailer": trailer.hex(),
        "table_tail_size": len(tail),
        "stored_size": size,
        "store_parts": store,
        "store_etag": etag,
        "plaintext": plaintext.hex(),
        "stored": body.hex(),
    }


class Refused(Exception):
    def __init__(self, stage: str, error: str) -> None:
        super().__init__(stage, error)
        self.stage, self.error = stage, error


def read_object(meta: dict, dek: bytes, stored: bytes, etag_part_count: int | None) -> bytes:
    """An independent whole-object reader in the order of docs/FORMAT.md §9 / §15.7, used to check that every
    negative multipart vector fails where it says. etag_part_count is the `-M` of the store's ETag (None: none)."""
    tampered = "TamperedCiphertext"
    if "envelope-header" not in meta:
        raise Refused("metadata", tampered if "envelope-key-0" in meta else "NotEncrypted")
    text = meta["envelope-header"]
    header = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(header) != text or len(header) != 68:
        raise Refused("metadata", tampered)
    if header[0] != VERSION or header[1] != SUITE or header[2] != SEG_LOG2 or header[3] & ~MP_FLAGS:
        raise Refused("metadata", "UnsupportedFormat")
    bound, c = header[:36], len(stored)
    multipart_layout = bool(header[3] & MP_FLAGS)
    m = etag_part_count
    if multipart_layout and m is not None:
        rest = c - (T + ENTRY) * m - TRAILER_FIXED
        if not (1 <= m <= MAX_PARTS and rest >= 0 and rest % SEALED < S):
            raise Refused("size", tampered)
    else:
        k = -(-c // SEALED)
        last = c - (k - 1) * SEALED
        if c < T or last < T or (k > 1 and last == T):
            raise Refused("size", tampered)
    prk = hkdf_extract(header[4:36], dek)
    if not hmac.compare_digest(hkdf_expand_32(prk, COMMITMENT_LABEL + bound), header[36:]):
        raise Refused("commitment", tampered)
    if not multipart_layout:
        aead = AESGCM(hkdf_expand_32(prk, DATA_KEY_LABEL + bound))
        try:
            return b"".join(aead.decrypt(nonce(0, i, i == k - 1), stored[i * SEALED:(i + 1) * SEALED], b"")
                            for i in range(k))
        except Exception:
            raise Refused("segment", tampered) from None

    # N from the last four bytes; with the ETag's M it must be M or M - 1. Without a `-M` suffix the table
    # alone gives M (a fallback: listings cannot show such an object's size).
    count = struct.unpack(">I", stored[-4:])[0] if c >= 4 else 0
    if not 1 <= count <= MAX_PARTS or (m is not None and count not in (m - 1, m)) \
            or TRAILER_FIXED + ENTRY * count > c:
        raise Refused("table", tampered)
    tail = stored[-(TRAILER_FIXED + ENTRY * count):]
    table_salt, count_bytes = tail[:32], tail[-4:]
    try:
        table = AESGCM(hkdf_expand_32(prk, TABLE_KEY_LABEL + bound + table_salt)).decrypt(
            TABLE_NONCE, tail[32:-4], count_bytes)
    except Exception:
        raise Refused("table", tampered) from None
    table_m, n = struct.unpack(">IQ", table[:12])
    entries = [struct.unpack(">IQ32s", table[12 + i * ENTRY:12 + (i + 1) * ENTRY]) for i in range(count)]
    numbers = [e[0] for e in entries]
    if (table_m != (m if m is not None else table_m) or table_m not in (count, count + 1)
            or sum(e[1] for e in entries) != n or mp_stored_size(n, table_m) != c
            or numbers != sorted(set(numbers)) or not 1 <= numbers[0] <= numbers[-1] <= MAX_PARTS):
        raise Refused("table", tampered)
    parts_end = sum(size + T * max(1, -(-size // S)) for _, size, _ in entries)
    if any(stored[parts_end:c - len(tail)]):
        raise Refused("padding", tampered)
    out, at = [], 0
    for number, size, part_salt in entries:
        aead = AESGCM(hkdf_expand_32(prk, PART_KEY_LABEL + bound + struct.pack(">I", number) + part_salt))
        k = max(1, -(-size // S))
        sealed_size = size + T * k
        part = stored[at:at + sealed_size]
        try:
            out += [aead.decrypt(nonce(number, i, i == k - 1), part[i * SEALED:(i + 1) * SEALED], b"")
                    for i in range(k)]
        except Exception:
            raise Refused("segment", tampered) from None
        at += sealed_size
    return b"".join(out)


def apply_edits(stored: bytes, edits: list[dict], vectors: dict[str, dict]) -> bytes:
    out = bytearray(stored)
    for edit in edits:
        op = edit["op"]
        if op == "flip":
            out[edit["offset"]] ^= 0x01
        elif op == "truncate":
            del out[edit["length"]:]
        elif op == "delete":
            del out[edit["start"]:edit["end"]]
        elif op == "insert_zeros":
            out[edit["offset"]:edit["offset"]] = bytes(edit["count"])
        elif op == "overwrite":
            data = bytes.fromhex(edit["hex"])
            out[edit["offset"]:edit["offset"] + len(data)] = data
        elif op == "splice_from":
            out[edit["start"]:edit["end"]] = bytes.fromhex(vectors[edit["vector"]]["stored"])[edit["start"]:edit["end"]]
        elif op == "swap":
            (a0, a1), (b0, b1) = edit["a"], edit["b"]
            assert a1 <= b0
            out = out[:a0] + out[b0:b1] + out[a1:b0] + out[a0:a1] + out[b1:]
        else:
            raise AssertionError(op)
    return bytes(out)


def multipart_negative(vectors: dict[str, dict]) -> dict:
    two, three, one = ("v1-multipart-2-parts-trailer-appended", "v1-multipart-3-parts-trailer-part",
                       "v1-multipart-1-part-trailer-part")
    v2, v3, v1 = vectors[two], vectors[three], vectors[one]
    tampered = "TamperedCiphertext"

    def part(vector: dict, index: int) -> tuple[int, int]:
        p = vector["parts"][index]
        return p["stored_offset"], p["stored_offset"] + p["stored_size"]

    def padding_at(vector: dict) -> int:
        return vector["stored_size"] - vector["trailer_size"]

    def tail_at(vector: dict) -> int:
        return vector["stored_size"] - vector["table_tail_size"]

    # Part 2 of `two` uploaded a second time (same number, same plaintext, a new part salt): a valid part of the
    # same upload, but the table names the other upload's salt.
    reupload_salt = salt_for(f"{two} part 2 upload 2")
    bound = bytes.fromhex(v2["intermediate"]["header_bound_0_36"])
    reupload_key = hkdf_expand_32(bytes.fromhex(v2["intermediate"]["prk"]),
                                  PART_KEY_LABEL + bound + struct.pack(">I", 2) + reupload_salt)
    p2 = v2["parts"][1]
    reupload, _ = seal_part(reupload_key, 2, bytes.fromhex(v2["plaintext"])[p2["plaintext_offset"]:])
    assert len(reupload) == p2["stored_size"]

    p3_2 = v3["parts"][1]  # 70000 bytes: two segments, 65552 + 4480 stored
    last_seg = p3_2["stored_offset"] + p3_2["segments"][1]["offset_in_part"]
    cases = [
        ("swap-parts", two, [{"op": "swap", "a": list(part(v2, 0)), "b": list(part(v2, 1))}], {}, None, None,
         "segment"),
        ("part-truncated-by-a-segment", three, [{"op": "delete", "start": last_seg, "end": part(v3, 1)[1]}], {},
         None, None, "size"),
        ("part-truncated-by-a-segment-size-kept", three,
         [{"op": "delete", "start": last_seg, "end": part(v3, 1)[1]},
          {"op": "insert_zeros", "offset": tail_at(v3) - (part(v3, 1)[1] - last_seg), "count":
           part(v3, 1)[1] - last_seg}], {}, None, None, "segment"),
        ("part-dropped", three, [{"op": "delete", "start": part(v3, 2)[0], "end": part(v3, 2)[1]}], {}, None,
         None, "table"),
        ("part-dropped-size-kept", three,
         [{"op": "delete", "start": part(v3, 2)[0], "end": part(v3, 2)[1]},
          {"op": "insert_zeros", "offset": tail_at(v3) - (part(v3, 2)[1] - part(v3, 2)[0]),
           "count": part(v3, 2)[1] - part(v3, 2)[0]}], {}, None, None, "segment"),
        ("part-from-another-upload-of-the-same-number", two,
         [{"op": "overwrite", "offset": p2["stored_offset"], "hex": reupload.hex()}], {}, None, None, "segment"),
        ("segment-from-another-object", two, [{"op": "splice_from", "vector": three, "start": 0, "end": SEALED}],
         {}, None, None, "segment"),
        ("flip-part-byte", two, [{"op": "flip", "offset": 100}], {}, None, None, "segment"),
        ("flip-padding-byte", three, [{"op": "flip", "offset": padding_at(v3) + 3}], {}, None, None, "padding"),
        ("flip-padding-byte-1-part", one, [{"op": "flip", "offset": padding_at(v1)}], {}, None, None, "padding"),
        ("flip-table-salt-byte", two, [{"op": "flip", "offset": tail_at(v2)}], {}, None, None, "table"),
        ("flip-sealed-table-byte", three, [{"op": "flip", "offset": tail_at(v3) + 40}], {}, None, None, "table"),
        ("flip-table-tag-byte", one, [{"op": "flip", "offset": v1["stored_size"] - 5}], {}, None, None, "table"),
        ("flip-part-count", two, [{"op": "flip", "offset": v2["stored_size"] - 1}], {}, None, None, "table"),
        ("flip-part-count-3-to-2", three, [{"op": "flip", "offset": v3["stored_size"] - 1}], {}, None, None,
         "table"),
        # N = 4 = M passes the count check; the sealed table is then looked for 44 bytes too early.
        ("part-count-set-to-m", three, [{"op": "overwrite", "offset": v3["stored_size"] - 4, "hex": "00000004"}],
         {}, None, None, "table"),
        ("append-a-byte", one, [{"op": "insert_zeros", "offset": v1["stored_size"], "count": 1}], {}, None, None,
         "table"),
        ("append-a-sealed-segment", two, [{"op": "insert_zeros", "offset": v2["stored_size"], "count": SEALED}],
         {}, None, None, "table"),
        ("truncate-last-byte", one, [{"op": "truncate", "length": v1["stored_size"] - 1}], {}, None, None, "table"),
        ("etag-part-count-impossible", one, [], {}, None, 3, "size"),
        ("etag-part-count-possible-but-wrong", one, [], {}, None, 1, "table"),
        # Without a `-M` the reader falls back to the count, and then the table must match the stored size.
        ("etag-without-part-count-and-a-byte-appended", one,
         [{"op": "insert_zeros", "offset": v1["stored_size"] - 4, "count": 1}], {}, None, "none", "table"),
        ("wrong-data-key", two, [], {}, bytes(32).hex(), None, "commitment"),
        ("header-flags-cleared", three, [], {"envelope-header": _header_b64(v3, flags=0)}, None, None,
         "commitment"),
        ("header-flags-unknown-bit", three, [], {"envelope-header": _header_b64(v3, flags=0x03)}, None, None,
         "metadata"),
        ("header-from-another-multipart-object", two, [],
         {"envelope-header": v3["metadata"]["envelope-header"]}, None, None, "table"),
    ]
    out = []
    for name, base, edits, metadata, dek, etag_m, stage in cases:
        vector = vectors[base]
        meta = {k: v for k, v in (vector["metadata"] | metadata).items() if v is not None}
        m = None if etag_m == "none" else (etag_m or vector["stored_part_count"])
        try:
            read_object(meta, bytes.fromhex(dek or vector["dek"]), apply_edits(bytes.fromhex(vector["stored"]),
                                                                                edits, vectors), m)
        except Refused as refused:
            assert (refused.stage, refused.error) == (stage, tampered if stage != "metadata" else refused.error), \
                (name, refused.stage, stage)
            error = refused.error
        else:
            raise AssertionError(f"negative vector {name} reads")
        out.append({"name": name, "base": base, "ciphertext_edits": edits, "metadata_changes": metadata,
                    "dek": dek, "etag_part_count": m, "error": error, "detected_by": stage})
    for name in (two, three, one):
        v = vectors[name]
        for m in (v["stored_part_count"], None):  # with the ETag's M, and by the fallback without it
            assert read_object(v["metadata"], DEK, bytes.fromhex(v["stored"]), m).hex() == v["plaintext"]
    return {
        "description": ("Tampered multipart-layout objects. Start from the base vector's metadata, data key and "
                        "stored body; apply metadata_changes, use dek if not null, apply ciphertext_edits in order "
                        "(flip: xor 0x01 into the byte at offset; truncate: keep the first length bytes; delete: "
                        "remove bytes [start, end); insert_zeros: insert count zero bytes before offset; overwrite: "
                        "write the bytes hex at offset; splice_from: overwrite bytes [start, end) with the same "
                        "range of another vector's stored body; swap: exchange the byte ranges a = [start, end) "
                        "and b (a before b, lengths may differ)). etag_part_count is the M of the store's ETag "
                        "suffix `-M` (null: the ETag has no suffix, and the reader takes N from the last four bytes "
                        "instead). Reading the whole object must then fail with "
                        "error; detected_by names the first check that fails in the reading order of "
                        "docs/FORMAT.md §15.7 (metadata, size, commitment, table, padding, segment)."),
        "cases": out,
    }


# --- wrapped-key schemes (FORMAT.md §3, §8, §16) -----------------------------------------------------------------
BUCKET_KEY = hashlib.sha256(b"envelope-gateway test vectors: bucket key").digest()
FAKE_BUCKET_KEY_BLOB = hashlib.sha256(b"envelope-gateway test vectors: fake wrapped bucket key").digest() * 5


def bucket_key_variant(name: str, bucket: str, key: str) -> dict:
    salt = hashlib.sha256(b"envelope-gateway test vectors: object salt " + name.encode()).digest()
    b, k = bucket.encode("utf-8"), key.encode("utf-8")
    info = b"envelope-gateway/v1/bucket-key-dek" + struct.pack(">H", len(b)) + b + struct.pack(">H", len(k)) + k
    prk = hkdf_extract(salt, BUCKET_KEY)
    dek = hkdf_expand_32(prk, info)
    blob = b"\x01" + salt + FAKE_BUCKET_KEY_BLOB
    return {
        "name": name,
        "scheme": "kms-bucket-key",
        "bucket": bucket,
        "key": key,
        "bucket_key": BUCKET_KEY.hex(),
        "bucket_key_encryption_context": {"envelope-gateway:bucket": bucket, "envelope-gateway:bucket-key": "v1"},
        "wrapped_bucket_key": FAKE_BUCKET_KEY_BLOB.hex(),
        "salt": salt.hex(),
        "info": info.hex(),
        "prk": prk.hex(),
        "dek": dek.hex(),
        "key_id": KMS_KEY_ARN,
        "blob": blob.hex(),
        "metadata_value": f"kms-bucket-key;{KMS_KEY_ARN};{b64url(blob)}",
    }


def wrapped_keys() -> dict:
    return {
        "description": "Format v1 wrapped-key entries (envelope-key-<i>), one per scheme. The KMS blobs are fake "
                       "(opaque here); kms-bucket-key shows how a reader derives the object's DEK from the "
                       "unwrapped bucket key (FORMAT.md §16); rsa-oaep-sha256 gives a public test private key, "
                       "the OAEP seed used, and blobs a reader must refuse (FORMAT.md §17).",
        "variants": [
            {"name": "kms", "scheme": "kms", "bucket": BUCKET, "key": KEY, "dek": DEK.hex(),
             "encryption_context": {"envelope-gateway:bucket": BUCKET, "envelope-gateway:key": KEY},
             "key_id": KMS_KEY_ARN, "blob": FAKE_BLOB.hex(),
             "metadata_value": f"kms;{KMS_KEY_ARN};{b64url(FAKE_BLOB)}"},
            bucket_key_variant("kms-bucket-key", BUCKET, KEY),
            bucket_key_variant("kms-bucket-key-utf8-name", BUCKET, "répertoire/объект 1.bin"),
            partner_variant(2048, RSA_2048_P, RSA_2048_Q),
            partner_variant(4096, RSA_4096_P, RSA_4096_Q),
        ],
    }


# --- partner entries (FORMAT.md §17): RSA-OAEP, RSASSA-PSS and the keys' DER, by hand ----------------------------
# Fixed RSA keys for the vectors. They are PUBLIC TEST KEYS, published in this repository: never use them for
# anything else. The primes were drawn once with `cryptography`; everything below is spelled out with integers.
RSA_E = 65537
RSA_2048_P = int(
    "ebc7ff555f122c1d9f37507e9d17187dd76b205f655cce5140243f87e7cf8fa35c9da7de39e04d4b8ad1c508c88b69c823b5"
    "e98435dff1c0c0b96a4bd6c13c06308f38d5986112e31c7c84fbb4f6b824764cf8245d90a0257e1582a6603f4d69d6685c58"
    "7bde02d5a6dd1a99391f60630106e222794b9596b9dcbfc7b85a8e3f"
    , 16)
RSA_2048_Q = int(
    "c8b74a07f132f024c15d7354039de2a00b10204b4947a8555668484cfe15c6b1e4e36b3febc86d4c8cea31afa5a8829eb3ff"
    "9fef1675893166361628f65f5fd2e65ac10941c3b6835ec71e3acd9299a55583875b4d2e08a749df4bb255b93e1ca485f5b9"
    "f80ea18d9505437e888ced56ff07ec04103bd0cf52bed6028bd62447"
    , 16)
RSA_4096_P = int(
    "cea9ce17632f01961db21013867242eafd8433f466273f133c55855544d7de823b31a847078349b6f62522f730156c9c5934"
    "b4b29a9c4db5577f2ffad896e88bbbf3774d52c41ab85406ec927c5c0d8f404335efb302eb5c2147c623273c1b27d140ee3e"
    "b121efab862deb30cda4896a37071dca1cd9365f80d73ecdcff4faf18889a3633a3209c04100aef0b82e316399bb01c2daa8"
    "e85630d52fdbd0266276d9f639932cffb62a966f262002b31c193ec161daade6e85f71b2eca47bcff5dbd4f77c04ce16c4cd"
    "84462a124c4c5d5f108f2b4c5c69ab2c69de2fe8e5c92b9f5c9657a28ec26ffc94cc32e6981fd9f5bb075987ca6ff842247e"
    "5994b0d0d7dd"
    , 16)
RSA_4096_Q = int(
    "cd367db94e77cc2b4d455012643cf81712bb5f42e0e44f4d0f9b986f3d5449420c27a8640aba0668e68df57c4809efe805a2"
    "820f2d6d1f8c71fdc324e99c11158c587a78e5c9f400fb4dd5df3458d1a9bd0da45ea444499a4326a09ab0eb4a0828ce4ae7"
    "351cd222ade07f25ba6c59a1346aee749f7493bb3b66e34b8cef5eaf0df6bf58c82ed5b59876c9411248e296771de7bed255"
    "61a7b706e062177abf5ed2f616f458072143f7cd2a3ba7319934835404edfc65222ff022c7c93ec7c6e40f00311e18c488de"
    "f61dbc473d5a33b9e81af0e8a9bd93a0a40a2bd0ec2a560f073c0be1f3b2f22055cf5768e0387a8f558c4b70902ed7fad456"
    "d689934e85bb"
    , 16)
OAEP_LABEL_PREFIX = b"envelope-gateway/v1/rsa-oaep-dek"
STATEMENT_LABEL = b"envelope-gateway/v1/share-statement"
OID_RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101")  # 1.2.840.113549.1.1.1


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def der_int(v: int) -> bytes:
    return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))  # minimal, with a 0x00 when the top bit is set


def rsa_key(p: int, q: int) -> dict:
    """n, d and the PKCS#8 PEM and DER SubjectPublicKeyInfo of the key (p, q, RSA_E)."""
    n, lam = p * q, (p - 1) * (q - 1) // gcd(p - 1, q - 1)
    d = pow(RSA_E, -1, lam)
    algorithm = der(0x30, OID_RSA_ENCRYPTION + b"\x05\x00")
    private = der(0x30, b"".join(der_int(v) for v in (0, n, RSA_E, d, p, q, d % (p - 1), d % (q - 1),
                                                      pow(q, -1, p))))
    pkcs8 = der(0x30, der_int(0) + algorithm + der(0x04, private))
    b64 = base64.b64encode(pkcs8).decode("ascii")
    pem = "-----BEGIN PRIVATE KEY-----\n" + "".join(b64[i:i + 64] + "\n" for i in range(0, len(b64), 64)) \
        + "-----END PRIVATE KEY-----\n"
    spki = der(0x30, algorithm + der(0x03, b"\x00" + der(0x30, der_int(n) + der_int(RSA_E))))
    return {"n": n, "d": d, "k": (n.bit_length() + 7) // 8, "pem": pem, "spki": spki}


def mgf1(seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    out, counter = b"", 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + struct.pack(">I", counter)).digest()
        counter += 1
    return out[:length]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def oaep_encrypt(key: dict, message: bytes, label: bytes, seed: bytes, hash_name: str = "sha256") -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017 §7.1.1) with a given seed, so that the vector is reproducible."""
    k, h = key["k"], hashlib.new(hash_name).digest_size
    db = hashlib.new(hash_name, label).digest() + bytes(k - len(message) - 2 * h - 2) + b"\x01" + message
    masked_db = xor(db, mgf1(seed, k - h - 1, hash_name))
    em = b"\x00" + xor(seed, mgf1(masked_db, h, hash_name)) + masked_db
    return pow(int.from_bytes(em, "big"), RSA_E, key["n"]).to_bytes(k, "big")


def oaep_decrypt(key: dict, blob: bytes, label: bytes) -> bytes:
    """RSAES-OAEP-DECRYPT with SHA-256 (the generator checks its own blobs with it)."""
    k, h = key["k"], 32
    em = pow(int.from_bytes(blob, "big"), key["d"], key["n"]).to_bytes(k, "big")
    masked_seed, masked_db = em[1:1 + h], em[1 + h:]
    db = xor(masked_db, mgf1(xor(masked_seed, mgf1(masked_db, h)), k - h - 1))
    assert em[0] == 0 and db[:h] == hashlib.sha256(label).digest()
    return db[db.index(b"\x01", h) + 1:]


def pkcs1_v15_encrypt(key: dict, message: bytes) -> bytes:
    """RSAES-PKCS1-v1_5 (RFC 8017 §7.2.1) with fixed non-zero padding: what readers must refuse."""
    ps = bytes(1 + (i % 255) for i in range(key["k"] - len(message) - 3))
    em = b"\x00\x02" + ps + b"\x00" + message
    return pow(int.from_bytes(em, "big"), RSA_E, key["n"]).to_bytes(key["k"], "big")


def pss_sign(key: dict, message: bytes, salt: bytes) -> bytes:
    """RSASSA-PSS-SIGN (RFC 8017 §8.1.1, EMSA-PSS with SHA-256, MGF1-SHA-256) with a given 32-byte salt."""
    em_bits = key["n"].bit_length() - 1
    em_len = (em_bits + 7) // 8
    h = hashlib.sha256(bytes(8) + hashlib.sha256(message).digest() + salt).digest()
    db = bytes(em_len - len(salt) - 32 - 2) + b"\x01" + salt
    masked_db = bytearray(xor(db, mgf1(h, em_len - 32 - 1)))
    masked_db[0] &= 0xFF >> (8 * em_len - em_bits)
    em = bytes(masked_db) + h + b"\xbc"
    return pow(int.from_bytes(em, "big"), key["d"], key["n"]).to_bytes(key["k"], "big")


def oaep_label(bucket: str, key: str) -> bytes:
    b, k = bucket.encode("utf-8"), key.encode("utf-8")
    return OAEP_LABEL_PREFIX + struct.pack(">H", len(b)) + b + struct.pack(">H", len(k)) + k


def rsa_key_id(key: dict) -> str:
    return "sha256:" + b64url(hashlib.sha256(key["spki"]).digest())


def partner_variant(bits: int, p: int, q: int) -> dict:
    name = f"rsa-oaep-sha256-{bits}"
    key = rsa_key(p, q)
    assert key["n"].bit_length() == bits
    seed = hashlib.sha256(b"envelope-gateway test vectors: OAEP seed " + name.encode()).digest()
    label = oaep_label(BUCKET, KEY)
    blob = oaep_encrypt(key, DEK, label, seed)
    assert oaep_decrypt(key, blob, label) == DEK
    key_id = rsa_key_id(key)
    value = f"rsa-oaep-sha256;{key_id};{b64url(blob)}"
    refused = [
        ("pkcs1-v1.5", "the DEK under PKCS#1 v1.5 padding (never accepted)", pkcs1_v15_encrypt(key, DEK)),
        ("label-of-another-object", "OAEP under the label of dir/other.bin: an entry moved to another object",
         oaep_encrypt(key, DEK, oaep_label(BUCKET, "dir/other.bin"), seed)),
        ("empty-label", "OAEP without the label", oaep_encrypt(key, DEK, b"", seed)),
        ("oaep-sha1", "OAEP with SHA-1 and MGF1-SHA-1 (a library default)", oaep_encrypt(key, DEK, label,
                                                                                         seed[:20], "sha1")),
        ("not-a-data-key", "OAEP of 31 bytes: the right label, but not a 32-byte DEK",
         oaep_encrypt(key, DEK[:31], label, seed)),
    ]
    return {
        "name": name,
        "scheme": "rsa-oaep-sha256",
        "note": "PUBLIC TEST KEY: published with these vectors, never use it for anything else",
        "bucket": BUCKET,
        "key": KEY,
        "dek": DEK.hex(),
        "rsa_bits": bits,
        "private_key_pem": key["pem"],
        "public_key_spki_der": key["spki"].hex(),
        "key_id": key_id,
        "oaep_label": label.hex(),
        "oaep_seed": seed.hex(),
        "blob": blob.hex(),
        "metadata_value": value,
        "metadata_bytes_as_entry_1": len("envelope-key-1") + len(value),
        "refused": [{"name": n, "description": d, "blob": b.hex(), "error": "TamperedCiphertext"}
                    for n, d, b in refused],
    }


def share_statement_vector(vectors: dict[str, dict], partner: dict) -> dict:
    """A signed share of v1-plaintext-65537 (whose DEK the partner entry wraps), signed with the 4096-bit test key
    standing in for the owner's KMS signing key (RSASSA-PSS, SHA-256, a fixed 32-byte salt)."""
    base = vectors["v1-plaintext-65537"]
    ciphertext = bytes.fromhex(base["ciphertext"])
    b, k = BUCKET.encode(), KEY.encode()
    header_value, entry = base["metadata"]["envelope-header"], partner["metadata_value"]
    fields = {"bucket": BUCKET, "key": KEY, "stored_size": len(ciphertext), "part_count": 0,
              "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest(), "envelope_header": header_value,
              "wrapped_key": entry}
    signed = (STATEMENT_LABEL + struct.pack(">H", len(b)) + b + struct.pack(">H", len(k)) + k
              + struct.pack(">QH", len(ciphertext), 0) + hashlib.sha256(ciphertext).digest()
              + struct.pack(">H", len(header_value)) + header_value.encode()
              + struct.pack(">H", len(entry)) + entry.encode())
    signer = rsa_key(RSA_4096_P, RSA_4096_Q)
    salt = hashlib.sha256(b"envelope-gateway test vectors: PSS salt").digest()
    signature = pss_sign(signer, signed, salt)
    manifest = {
        "format": "envelope-gateway/share-manifest/v1",
        "recipient_key_id": partner["key_id"],
        "signer": {"kms_key_arn": "arn:aws:kms:us-east-1:111122223333:key/55555555-6666-7777-8888-999999999999",
                   "public_key_id": rsa_key_id(signer), "algorithm": "RSASSA_PSS_SHA_256"},
        "objects": [{**fields, "signature": base64.b64encode(signature).decode("ascii")}],
    }
    return {
        "description": ("A signed share (FORMAT.md §17.5-17.7): the object v1-plaintext-65537 with the partner "
                        "entry of rsa-oaep-sha256-2048 added as envelope-key-1, the statement its fields give, and "
                        "a manifest signed with the 4096-bit test key (standing in for a KMS signing key; "
                        "RSASSA-PSS SHA-256, pss_salt). Verifying the manifest with signer_public_key_spki_der, "
                        "then unwrapping with the partner's test key and decrypting, gives the base vector's "
                        "plaintext."),
        "base": "v1-plaintext-65537",
        "partner_variant": partner["name"],
        "metadata": {**base["metadata"], "envelope-key-1": entry},
        "statement": signed.hex(),
        "pss_salt": salt.hex(),
        "signature": signature.hex(),
        "signer_public_key_spki_der": signer["spki"].hex(),
        "manifest": manifest,
    }


def build() -> dict[str, str]:
    """File name → exact file content."""
    vectors = dict(positive(n) for n in SIZES)
    files = {f"{name}.json": _dump(vector) for name, vector in vectors.items()}
    files["v1-negative.json"] = _dump(negative(vectors))
    mp_vectors = dict(multipart(name, layout, trailer_part)
                      for name, (layout, trailer_part) in MULTIPART_LAYOUTS.items())
    files |= {f"{name}.json": _dump(vector) for name, vector in mp_vectors.items()}
    files["v1-multipart-negative.json"] = _dump(multipart_negative(mp_vectors))
    keys = wrapped_keys()
    files["v1-wrapped-keys.json"] = _dump(keys)
    partner = next(v for v in keys["variants"] if v["name"] == "rsa-oaep-sha256-2048")
    files["v1-signed-share.json"] = _dump(share_statement_vector(vectors, partner))
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
