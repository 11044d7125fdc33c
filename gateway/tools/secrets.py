"""`envelope-gateway wrap | unwrap`: small secrets (config values, tokens) encrypted by KMS Encrypt directly, no
data key and no gateway (the seed's "Direct Encrypt for < 4 KB payloads").

The wrapped form is one line of JSON, versioned and self-describing:

    {"format": "envelope-gateway/wrapped-secret/v1", "key_id": "<KMS key ARN>",
     "encryption_context": {"k": "v", …}, "ciphertext": "<base64 of KMS CiphertextBlob>"}

The recorded context is a description, not an input: `unwrap` sends KMS the context its caller states
(`--context`), so a wrapped secret swapped for another one (context and all) does not unwrap where the caller
expects something else. The plaintext is read from standard input and written to standard output only; it is never
part of a message or an exception.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway import errors
from gateway.tools.aws import kms_call

FORMAT = "envelope-gateway/wrapped-secret/v1"
# KMS Encrypt takes at most 4,096 bytes of plaintext; secrets are kept strictly below 4 KiB.
MAX_SECRET_BYTES = 4095
# A wrapped secret is a KMS blob (at most ~6 KiB for 4 KiB of plaintext) in base64, plus its description.
MAX_WRAPPED_BYTES = 64 * 1024


def parse_context(pairs: Sequence[str]) -> dict[str, str]:
    """`--context k=v` arguments as a KMS encryption context; names must be unique and non-empty."""
    context: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise errors.InvalidArgument(f"--context {pair!r} is not NAME=VALUE.")
        if name in context:
            raise errors.InvalidArgument(f"--context names {name!r} twice.")
        context[name] = value
    return context


def read_secret(stream: BinaryIO) -> bytes:
    secret = stream.read(MAX_SECRET_BYTES + 1)
    if len(secret) > MAX_SECRET_BYTES:
        raise errors.InvalidArgument(f"The secret is {MAX_SECRET_BYTES + 1} bytes or more: wrap takes secrets "
                                     f"below 4 KiB (at most {MAX_SECRET_BYTES} bytes). Encrypt larger data through "
                                     "the gateway.")
    if not secret:
        raise errors.InvalidArgument("The secret on standard input is empty.")
    return secret


@dataclass(frozen=True, repr=False)
class WrappedSecret:
    key_id: str  # the KMS key ARN that Encrypt returned
    encryption_context: dict[str, str]  # as recorded at wrap time: a description, never sent to KMS
    blob: bytes  # the KMS CiphertextBlob (not secret)

    def encode(self) -> str:
        """One line of JSON, newline-terminated."""
        return json.dumps({"format": FORMAT, "key_id": self.key_id, "encryption_context": self.encryption_context,
                           "ciphertext": base64.b64encode(self.blob).decode("ascii")}, sort_keys=True) + "\n"

    @classmethod
    def decode(cls, data: bytes) -> WrappedSecret:
        if len(data) > MAX_WRAPPED_BYTES:
            raise errors.InvalidArgument("The input is too large to be a wrapped secret.")
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("format"), str):
            raise errors.InvalidArgument(f"The input is not a wrapped secret (expected the JSON of {FORMAT}).")
        if document["format"] != FORMAT:
            raise errors.UnsupportedFormat(f"Unknown wrapped-secret format {document['format'][:80]!r}.")
        key_id, context, ciphertext = (document.get(name) for name in ("key_id", "encryption_context",
                                                                       "ciphertext"))
        if not isinstance(key_id, str) or not isinstance(context, dict) or not isinstance(ciphertext, str):
            raise errors.InvalidArgument("The wrapped secret lacks key_id, encryption_context or ciphertext.")
        try:
            blob = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidArgument("The wrapped secret's ciphertext is not base64.") from None
        return cls(key_id, {str(k): str(v) for k, v in context.items()}, blob)


def wrap(kms: Any, key_id: str, context: Mapping[str, str], secret: bytes) -> str:
    """The wrapped form of `secret`."""
    response = kms_call(kms.encrypt, KeyId=key_id, Plaintext=secret, EncryptionContext=dict(context))
    return WrappedSecret(response["KeyId"], dict(context), response["CiphertextBlob"]).encode()


def unwrap(kms: Any, wrapped: bytes, context: Mapping[str, str], key_id: str | None = None) -> bytes:
    """The secret of a wrapped form, unwrapped under `context`; pinned to `key_id` when given (otherwise the
    key the wrapped form names)."""
    secret = WrappedSecret.decode(wrapped)
    try:
        response = kms_call(kms.decrypt, CiphertextBlob=secret.blob, KeyId=key_id or secret.key_id,
                            EncryptionContext=dict(context))
    except errors.TamperedCiphertext:
        recorded = ", ".join(sorted(secret.encryption_context)) or "none"
        raise errors.TamperedCiphertext(
            "KMS refused to unwrap the secret: the --context given is not the one it was wrapped with (the "
            f"wrapped form records context names: {recorded}), --key-id names another key, or the wrapped form "
            "was altered.") from None
    return response["Plaintext"]
