"""Client-supplied body checksums (Content-MD5 and the x-amz-checksum-* family), verified over the plaintext.

The store only ever sees ciphertext, so any checksum the client sent would fail there; the gateway checks it
itself, answers the way S3 does, and never forwards it (see `strip_checksum_headers`). Pure: no I/O.
Error codes and messages follow what AWS S3 answers for the same requests.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from awscrt import checksums as crt

from gateway import errors

CHECKSUM_PREFIX = "x-amz-checksum-"
# Headers that share the prefix but carry no checksum value: the multipart algorithm/type settings and the
# GET-side "return me the checksum" switch. They are neither values to verify nor "a second checksum".
_NOT_VALUES = frozenset({"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"})
# Algorithms S3 knows but this gateway does not verify; named separately so the client learns why.
_UNSUPPORTED = frozenset({"sha512", "md5", "xxhash64", "xxhash3", "xxhash128"})

_MULTIPLE = "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
_BAD_SDK_ALGORITHM = "Value for x-amz-sdk-checksum-algorithm header is invalid."
_MISSING_VALUE = ("x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or "
                  "x-amz-trailer headers were found.")

_NEVER_FORWARDED = frozenset({"content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                              "x-amz-decoded-content-length", "x-amz-mp-object-size"})


class _Crc:
    """A running CRC from awscrt; the digest is the big-endian value, as S3 encodes it."""
    __slots__ = ("_fn", "_width", "_value")

    def __init__(self, fn: Callable[[Any, int], int], width: int) -> None:
        self._fn, self._width, self._value = fn, width, 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


# name -> (digest length in bytes, factory of an object with update()/digest())
_ALGORITHMS: dict[str, tuple[int, Callable[[], Any]]] = {
    "crc32": (4, lambda: _Crc(crt.crc32, 4)),
    "crc32c": (4, lambda: _Crc(crt.crc32c, 4)),
    "crc64nvme": (8, lambda: _Crc(crt.crc64nvme, 8)),
    "sha1": (20, hashlib.sha1),
    "sha256": (32, hashlib.sha256),
}


def _decode(value: str, length: int) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length else None


def _check_algorithm(name: str) -> None:
    if name in _UNSUPPORTED:
        raise errors.InvalidRequest(f"This gateway cannot verify {name.upper()} checksums; use CRC32, CRC32C, "
                                    "CRC64NVME, SHA1 or SHA256.")
    if name not in _ALGORITHMS:
        raise errors.InvalidRequest("The algorithm type you specified in x-amz-checksum- header is invalid.")


class BodyChecks:
    """Everything the client asked to have verified about one request body."""

    def __init__(self, md5: bytes | None, algorithm: str | None, expected: bytes | None, trailer: bool) -> None:
        self._md5_expected = md5
        self._algorithm = algorithm
        self._expected = expected       # None: it arrives as a trailer (trailer=True)
        self._trailer = trailer
        self._hashers: list[Any] = []
        self._md5: Any = None
        if md5 is not None:
            # Content-MD5 is an integrity check, not security: allowed where FIPS forbids MD5 for security.
            self._md5 = hashlib.md5(usedforsecurity=False)
            self._hashers.append(self._md5)
        self._checksum: Any = None
        if algorithm is not None:
            self._checksum = _ALGORITHMS[algorithm][1]()
            self._hashers.append(self._checksum)
        # Bound methods, resolved once: update() runs per 1-4 MiB buffer on the hot path.
        self._updates = [h.update for h in self._hashers]
        self._finished = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> BodyChecks:
        """Validate the checksum-related request headers (raises S3 errors) and prepare the computation."""
        md5: bytes | None = None
        values: list[tuple[str, str]] = []
        trailer_value: str | None = None
        sdk_value: str | None = None
        # items(), not get(): a multi-dict may carry a header twice, and two values are two checksums.
        for raw_name, value in headers.items():
            name = raw_name.lower()
            if name == "content-md5":
                md5 = _decode(value, 16)
                if md5 is None:
                    raise errors.InvalidDigest()
            elif name.startswith(CHECKSUM_PREFIX) and name not in _NOT_VALUES:
                values.append((name[len(CHECKSUM_PREFIX):], value))
            elif name == "x-amz-trailer":
                trailer_value = value
            elif name == "x-amz-sdk-checksum-algorithm":
                sdk_value = value

        trailer_algorithm: str | None = None
        if trailer_value is not None:
            names = [n.strip().lower() for n in trailer_value.split(",") if n.strip()]
            checksum_names = [n for n in names if n.startswith(CHECKSUM_PREFIX)]
            if len(names) != len(checksum_names):
                # The only trailers S3 defines are checksums; anything else cannot be verified or stored.
                raise errors.InvalidRequest("The value specified in the x-amz-trailer header is not supported.")
            if checksum_names:
                trailer_algorithm = checksum_names[0][len(CHECKSUM_PREFIX):]
            if len(checksum_names) > 1:
                raise errors.InvalidRequest(_MULTIPLE)

        if len(values) + (trailer_algorithm is not None) > 1:
            raise errors.InvalidRequest(_MULTIPLE)

        algorithm: str | None = None
        expected: bytes | None = None
        if values:
            algorithm, value = values[0]
            _check_algorithm(algorithm)
            expected = _decode(value, _ALGORITHMS[algorithm][0])
            if expected is None:
                raise errors.InvalidRequest(f"Value for x-amz-checksum-{algorithm} header is invalid.")
        elif trailer_algorithm is not None:
            algorithm = trailer_algorithm
            _check_algorithm(algorithm)

        if sdk_value is not None:
            sdk_algorithm = sdk_value.strip().lower()
            if sdk_algorithm in _UNSUPPORTED:
                _check_algorithm(sdk_algorithm)  # raises, saying why
            if sdk_algorithm not in _ALGORITHMS:
                raise errors.InvalidRequest(_BAD_SDK_ALGORITHM)
            if algorithm is None:
                # AWS rejects this rather than computing a checksum nobody supplied (seen from AWS in SDK bug
                # reports: HADOOP-19046, versitygw #1593).
                raise errors.InvalidRequest(_MISSING_VALUE)
            if sdk_algorithm != algorithm:
                raise errors.InvalidRequest(_BAD_SDK_ALGORITHM)

        return cls(md5, algorithm, expected, trailer_algorithm is not None)

    @property
    def active(self) -> bool:
        return bool(self._hashers)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # Buffers go straight to the C implementations (which take any buffer and release the GIL): no copy.
        for update in self._updates:
            update(data)

    def finish(self, trailers: Mapping[str, str] | None = None) -> dict[str, str]:
        """After the last update(): verify, then return the checksum headers S3 would echo on success."""
        if self._finished:
            raise RuntimeError("BodyChecks.finish() called twice")
        self._finished = True
        algorithm, expected = self._algorithm, self._expected
        received = {k.lower(): v for k, v in (trailers or {}).items() if k.lower().startswith(CHECKSUM_PREFIX)}
        if self._trailer:
            assert algorithm is not None
            name = CHECKSUM_PREFIX + algorithm
            if set(received) != {name}:
                raise errors.MalformedTrailerError()
            expected = _decode(received[name], _ALGORITHMS[algorithm][0])
            if expected is None:
                raise errors.InvalidRequest(f"Value for {name} trailing header is invalid.")
        elif received:
            # A checksum trailer the x-amz-trailer header did not announce.
            raise errors.MalformedTrailerError()

        if self._md5 is not None and self._md5.digest() != self._md5_expected:
            raise errors.BadDigest("The Content-MD5 you specified did not match what we received.")
        if self._checksum is None or algorithm is None:
            return {}
        digest = self._checksum.digest()
        if expected is not None and digest != expected:
            raise errors.BadDigest(f"The {algorithm.upper()} you specified did not match the calculated checksum.")
        return {CHECKSUM_PREFIX + algorithm: base64.b64encode(digest).decode("ascii"),
                # What S3 answers for every single-request upload since its checksum-type change (2025).
                "x-amz-checksum-type": "FULL_OBJECT"}


def is_checksum_header(name: str) -> bool:
    """True for request headers that describe the client's plaintext body and must not reach the store."""
    lname = name.lower()
    return lname in _NEVER_FORWARDED or lname.startswith(CHECKSUM_PREFIX)
