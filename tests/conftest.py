"""Shared fixtures: a real moto server (S3 + KMS) and real gateway processes (`envelope-gateway serve`) over real
sockets, one speaking plain HTTP and one TLS with a self-signed certificate generated here."""
from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.devstore import MotoServer, free_port, wait_until_serving

REGION = "us-east-1"
STORE_KEY_ID = "store-access-key"
STORE_SECRET = "store-secret-key"


@dataclass
class GatewayProcess:
    url: str
    admin_url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Stack:
    store_url: str
    key_arn: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    http: GatewayProcess
    tls: GatewayProcess
    ca_file: str


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def start_gateway(directory: Path, name: str, config: dict, env: dict[str, str]) -> GatewayProcess:
    port, admin_port = free_port(), free_port()
    config = {**config, "listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin_port}"}
    config_path = directory / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = directory / f"{name}.log"
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path)],
                               stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env)
    scheme = "https" if config.get("tls") else "http"
    gateway = GatewayProcess(f"{scheme}://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", process, log_path)
    try:
        wait_until_serving(gateway.admin_url + "/startupz", process, 60, "gateway", any_status=False)
    except RuntimeError as exc:
        gateway.stop()
        raise RuntimeError(f"{exc}:\n{gateway.log()}") from None
    return gateway


def kms_calls(admin_url: str) -> dict[str, float]:
    """KMS requests so far by operation, from the gateway's own /metrics (envelope_kms_requests_total)."""
    text = urllib.request.urlopen(admin_url + "/metrics", timeout=10).read().decode()
    calls: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("envelope_kms_requests_total{"):
            operation = line.split('operation="', 1)[1].split('"', 1)[0]
            calls[operation] = calls.get(operation, 0) + float(line.rsplit(" ", 1)[1])
    return calls


def store_env(store_url: str) -> dict[str, str]:
    """The gateway's own identity toward the store and KMS: the AWS SDK's default chain (environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENVELOPE_"))}
    env.update(AWS_ACCESS_KEY_ID=STORE_KEY_ID, AWS_SECRET_ACCESS_KEY=STORE_SECRET, AWS_DEFAULT_REGION=REGION,
               AWS_ENDPOINT_URL_KMS=store_url, AWS_EC2_METADATA_DISABLED="true")
    return env


def gateway_config(store_url: str, key_arn: str, access_key_id: str, secret: str) -> dict:
    return {"upstream": {"endpoint": store_url, "region": REGION}, "kms": {"key_id": key_arn},
            "clients": [{"access_key_id": access_key_id, "secret_access_key": secret}],
            "virtual_host_domains": ["localhost"], "log_format": "text"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("stack")
    store = MotoServer().start()
    gateways: list[GatewayProcess] = []
    try:
        common = dict(endpoint_url=store.url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                      aws_secret_access_key=STORE_SECRET)
        key_arn = boto3.client("kms", **common).create_key()["KeyMetadata"]["Arn"]
        bucket = "envelope-test"
        boto3.client("s3", **common).create_bucket(Bucket=bucket)
        access_key_id, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
        config = gateway_config(store.url, key_arn, access_key_id, secret)
        env = store_env(store.url)
        gateways.append(start_gateway(directory, "http", config, env))
        cert_file, key_file = _self_signed(directory)
        gateways.append(start_gateway(directory, "tls", {**config, "tls": {"cert_file": cert_file,
                                                                            "key_file": key_file}}, env))
        yield Stack(store.url, key_arn, bucket, access_key_id, secret, gateways[0], gateways[1], cert_file)
    finally:
        for gateway in gateways:
            gateway.stop()
        store.stop()


def client_for(stack: Stack, url: str, *, secret: str | None = None, verify: str | bool | None = None,
               addressing_style: str = "path", **config: object):
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=stack.access_key_id,
                        aws_secret_access_key=secret or stack.secret_access_key, verify=verify,
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": addressing_style},
                                      signature_version="s3v4",
                                      **config))


@pytest.fixture(scope="session")
def s3(stack: Stack):
    """boto3 (its current defaults: flexible checksums) over plain HTTP."""
    return client_for(stack, stack.http.url)


@pytest.fixture(scope="session")
def s3_tls(stack: Stack):
    """boto3 over TLS: the aws-chunked body with an unsigned CRC32 trailer."""
    return client_for(stack, stack.tls.url, verify=stack.ca_file)


@pytest.fixture(params=["http", "tls"])
def s3_any(request, s3, s3_tls):
    return s3 if request.param == "http" else s3_tls


@pytest.fixture(scope="session")
def store(stack: Stack):
    """The object store itself, bypassing the gateway: what is really stored."""
    return boto3.client("s3", endpoint_url=stack.store_url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                        aws_secret_access_key=STORE_SECRET)
