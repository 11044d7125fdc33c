"""`envelope-gateway dev`: the gateway on an embedded S3 + KMS (moto server on 127.0.0.1), ready to use.

It creates a KMS key and a bucket, generates client credentials for this run, and prints `export` lines for the
shell: the gateway endpoint and credentials, and the embedded store's own endpoint and credentials, so a user
can look at what is really stored (ciphertext).
"""
from __future__ import annotations

import secrets
import socket
import sys

import aioboto3
import boto3
import uvloop

from gateway.config import Settings
from gateway.devstore import MotoServer
from gateway.observability.logs import configure
from gateway.proxy.upstream import StaticCredentials
from gateway.s3.sigv4 import Credentials
from gateway.server import Overrides, run

DEV_REGION = "us-east-1"
DEV_BUCKET = "envelope-dev"
DEV_KEY_ALIAS = "alias/envelope-dev"
# moto accepts any credentials; these only make the store's own endpoint usable with the aws cli.
STORE_CREDENTIALS = Credentials("envelope-store", "envelope-store-secret")


def _provision(store_url: str) -> str:
    """A KMS key (with its alias) and the dev bucket in the embedded store; returns the key ARN."""
    common = dict(endpoint_url=store_url, region_name=DEV_REGION, aws_access_key_id=STORE_CREDENTIALS.access_key_id,
                  aws_secret_access_key=STORE_CREDENTIALS.secret_access_key)
    kms = boto3.client("kms", **common)
    key_arn = kms.create_key(Description="envelope-gateway dev master key")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=DEV_KEY_ALIAS, TargetKeyId=key_arn)
    boto3.client("s3", **common).create_bucket(Bucket=DEV_BUCKET)
    return key_arn


def dev_settings(port: int, admin_port: int, store_url: str, key_id: str, access_key_id: str,
                 secret_access_key: str) -> Settings:
    return Settings.model_validate({
        "listen": f"127.0.0.1:{port}",
        "admin_listen": f"127.0.0.1:{admin_port}",
        "upstream": {"endpoint": store_url, "region": DEV_REGION},
        "kms": {"key_id": key_id, "endpoint": store_url, "region": DEV_REGION},
        "clients": [{"access_key_id": access_key_id, "secret_access_key": secret_access_key}],
        "virtual_host_domains": ["localhost"],
        "log_format": "text",
    })


def dev_overrides() -> Overrides:
    return Overrides(
        upstream_credentials=StaticCredentials(STORE_CREDENTIALS),
        kms_session=aioboto3.Session(aws_access_key_id=STORE_CREDENTIALS.access_key_id,
                                     aws_secret_access_key=STORE_CREDENTIALS.secret_access_key,
                                     region_name=DEV_REGION))


def _check_free(ports: dict[str, int]) -> None:
    for option, port in ports.items():
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(f"envelope-gateway dev: port {port} is in use; "
                                 f"choose another with {option}.") from None


def main(port: int, store_port: int, admin_port: int) -> None:
    _check_free({"--port": port, "--store-port": store_port, "--admin-port": admin_port})
    store = MotoServer(store_port).start()
    try:
        key_arn = _provision(store.url)
        access_key_id = "AKIA" + secrets.token_hex(8).upper()
        secret_access_key = secrets.token_urlsafe(30)
        settings = dev_settings(port, admin_port, store.url, key_arn, access_key_id, secret_access_key)

        def announce() -> None:
            exports = {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": access_key_id,
                "AWS_SECRET_ACCESS_KEY": secret_access_key,
                "AWS_DEFAULT_REGION": DEV_REGION,
                "ENVELOPE_STORE_ENDPOINT_URL": store.url,
                "ENVELOPE_STORE_ACCESS_KEY_ID": STORE_CREDENTIALS.access_key_id,
                "ENVELOPE_STORE_SECRET_ACCESS_KEY": STORE_CREDENTIALS.secret_access_key,
                "ENVELOPE_ADMIN_URL": f"http://127.0.0.1:{admin_port}",
                "ENVELOPE_BUCKET": DEV_BUCKET,
            }
            print("# envelope-gateway dev mode is ready. Paste these lines into another shell:", flush=True)
            for name, value in exports.items():
                print(f"export {name}={value}")
            print(f"# e.g.  aws s3 cp README.md s3://{DEV_BUCKET}/README.md && aws s3 ls s3://{DEV_BUCKET}/",
                  flush=True)

        configure(settings.log_level, settings.log_format, settings.audit_log_file)
        uvloop.run(run(settings, dev_overrides(), on_ready=announce))
    except KeyboardInterrupt:
        pass
    finally:
        store.stop()
        sys.stdout.flush()
