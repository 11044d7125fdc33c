"""Key and manifest files of partner shares (docs/KEYS.md): the partner's public key (`share --recipient`), the
partner's private key (`decrypt --private-key`, with its passphrase), the owner's exported signing key
(`decrypt --verify-key`) and the share manifest. Reading and writing only; what the bytes mean is
gateway.format.partner and gateway.format.signedshare. Messages name the file, never its content."""
from __future__ import annotations

import getpass
import os
import sys

from gateway import errors
from gateway.format.partner import PartnerPrivateKey, Recipient
from gateway.format.signedshare import Manifest, SignerPublicKey
from gateway.tools.output import plaintext_output

PASSPHRASE_ENV = "ENVELOPE_PRIVATE_KEY_PASSPHRASE"
# Far above any PEM key (a 4096-bit private key is about 3.3 KB): a mistaken path to a large file is refused
# without reading it whole.
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def _read(path: str, option: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise errors.InvalidArgument(f"Cannot read {option} {path}: {exc.strerror}.") from None
    if len(data) > limit:
        raise errors.InvalidArgument(f"{option} {path} is too large to be a key file.")
    return data


def load_recipient(path: str) -> Recipient:
    return Recipient.from_pem(_read(path, "--recipient", MAX_KEY_FILE_BYTES), f"--recipient {path}")


def load_signer_key(path: str) -> SignerPublicKey:
    return SignerPublicKey.from_pem(_read(path, "--verify-key", MAX_KEY_FILE_BYTES), f"--verify-key {path}")


def load_private_key(path: str) -> PartnerPrivateKey:
    """The partner's private key. An encrypted PEM is opened with the passphrase from ENVELOPE_PRIVATE_KEY_PASSPHRASE,
    or asked for on the terminal when there is one."""
    pem = _read(path, "--private-key", MAX_KEY_FILE_BYTES)
    origin = f"--private-key {path}"
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None and b"ENCRYPTED" in pem and sys.stdin.isatty():
        passphrase = getpass.getpass(f"Passphrase for {path}: ")
    return PartnerPrivateKey.from_pem(pem, None if passphrase is None else passphrase.encode(), origin)


def load_manifest(path: str) -> Manifest:
    text = _read(path, "--manifest", MAX_MANIFEST_BYTES)
    try:
        return Manifest.decode(text.decode("utf-8"), f"--manifest {path}")
    except UnicodeDecodeError:
        raise errors.InvalidArgument(f"--manifest {path} is not UTF-8 JSON.") from None


def write_manifest(path: str, manifest: Manifest) -> None:
    """Written beside the target and renamed over it: a manifest is there whole or not at all."""
    with plaintext_output(path, "--manifest") as out:
        out.write(manifest.encode().encode("utf-8"))
