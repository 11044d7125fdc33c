"""A fast KMS stand-in on 127.0.0.1 — for benchmarks only, never part of the product.

moto answers a GenerateDataKey in ~3 ms of its own CPU, which swamps what the gateway itself adds to a 4 KiB
request. This stub answers the three calls the gateway makes (GenerateDataKey, Decrypt, DescribeKey) in the
KMS JSON protocol, in well under a millisecond: data keys are random, wrapped with AES-256-GCM under a key held
in memory, bound to the key ARN and the encryption context (a blob presented with another context fails with
InvalidCiphertextException, as KMS does). No signature is checked. `envelope-gateway bench --kms stub`.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import time

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEFAULT_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-00000000beef"
_VERSION = b"\x01"


class Stub:
    def __init__(self, key_arn: str = DEFAULT_KEY_ARN) -> None:
        self.key_arn = key_arn
        self.key_id = key_arn.rsplit("/", 1)[-1]
        self._aead = AESGCM(AESGCM.generate_key(256))
        self.calls = 0

    def _aad(self, context: dict) -> bytes:
        return self.key_arn.encode() + b"\0" + json.dumps(context or {}, sort_keys=True).encode()

    def _known(self, key_id: str | None) -> bool:
        return key_id in (None, self.key_arn, self.key_id) or (key_id or "").startswith("alias/")

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        try:
            params = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error("SerializationException", "not JSON")
        if not self._known(params.get("KeyId")):
            return _error("NotFoundException", "unknown key")
        context = params.get("EncryptionContext") or {}
        if operation == "GenerateDataKey":
            dek = os.urandom(32)
            nonce = os.urandom(12)
            blob = _VERSION + nonce + self._aead.encrypt(nonce, dek, self._aad(context))
            return _json({"CiphertextBlob": _b64(blob), "Plaintext": _b64(dek), "KeyId": self.key_arn})
        if operation == "Decrypt":
            try:
                blob = base64.b64decode(params["CiphertextBlob"])
                if blob[:1] != _VERSION:
                    raise ValueError
                dek = self._aead.decrypt(blob[1:13], blob[13:], self._aad(context))
            except (KeyError, ValueError, InvalidTag):
                return _error("InvalidCiphertextException", "")
            return _json({"KeyId": self.key_arn, "Plaintext": _b64(dek), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        if operation == "DescribeKey":
            return _json({"KeyMetadata": {"KeyId": self.key_id, "Arn": self.key_arn, "AWSAccountId": "111122223333",
                                          "Enabled": True, "KeyState": "Enabled", "KeyUsage": "ENCRYPT_DECRYPT",
                                          "KeySpec": "SYMMETRIC_DEFAULT", "CreationDate": int(time.time())}})
        return _error("UnsupportedOperationException", operation)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(body: dict) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/x-amz-json-1.1")


def _error(code: str, message: str) -> web.Response:
    return web.Response(status=400, body=json.dumps({"__type": code, "message": message}).encode(),
                        content_type="application/x-amz-json-1.1")


def build_app(stub: Stub) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-arn", default=DEFAULT_KEY_ARN)
    args = parser.parse_args(argv)
    import uvloop

    web.run_app(build_app(Stub(args.key_arn)), host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
