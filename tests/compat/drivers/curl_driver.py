"""curl with presigned URLs, as a script or a browser hands them out: boto3 (in .venv-clients) signs, curl does the
request and knows nothing of S3. options["signature"]: "s3" (SigV2, what boto3 presigns by default) or "s3v4".
Uploads are presigned PUTs (curl -T), downloads presigned GETs (-o, -r for ranges), metadata a presigned HEAD (-I),
listings presigned ListObjectsV2, deletes presigned DELETEs."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
from botocore.config import Config

from common import ClientError, ClientFailure, Driver, NotApplicable, command, main

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class Curl(Driver):
    name = "curl"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.signer = self.presigner(spec.secret_access_key)

    def presigner(self, secret: str):
        return boto3.client("s3", endpoint_url=self.spec.endpoint, region_name=self.spec.region,
                            aws_access_key_id=self.spec.access_key_id, aws_secret_access_key=secret,
                            config=Config(signature_version=self.spec.options["signature"]))

    def url(self, operation: str, signer=None, **params) -> str:
        return (signer or self.signer).generate_presigned_url(
            operation, Params={"Bucket": self.spec.bucket, **params}, ExpiresIn=600)

    def curl(self, *args: str, check: bool = True, binary: bool = False):
        """curl -sS; with check, an HTTP error fails the call with the S3 error body (--fail-with-body)."""
        extra = ["--cacert", self.spec.ca_file] if self.spec.ca_file else []
        result = command(["curl", "-sS", *(["--fail-with-body"] if check else []), *extra, *args], check=False,
                         binary=binary)
        if check and result.returncode:
            body = result.stdout.decode(errors="replace") if binary else result.stdout
            raise ClientFailure(f"curl {' '.join(args[:-1])} URL: {result.stderr.strip()} {body[:400]}")
        return result

    def version(self) -> str:
        signature = {"s3": "SigV2", "s3v4": "SigV4"}[self.spec.options["signature"]]
        return f"{command(['curl', '--version']).stdout.split()[1]}, {signature} URLs from boto3 {boto3.__version__}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        # the x-amz-meta-* headers are signed with the URL, and curl sends them
        headers = [f"-Hx-amz-meta-{k}: {v}" for k, v in (metadata or {}).items()]
        self.curl("-T", str(path), *headers, self.url("put_object", Key=key, Metadata=metadata or {}))

    def download(self, key: str, path: Path) -> None:
        self.curl("-o", str(path), self.url("get_object", Key=key))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        if self.spec.options["signature"] == "s3":
            # botocore signs a path-style bucket URL's SigV2 resource as "/bucket/" but sends "/bucket"
            raise NotApplicable("boto3's SigV2 presigned bucket URLs carry a signature for /bucket/, not the "
                                "/bucket they request (boto/boto3#4433)")
        sizes, params = {}, {"Prefix": prefix}
        while True:
            listing = ET.fromstring(self.curl(self.url("list_objects_v2", **params)).stdout)
            sizes.update({item.findtext(f"{NS}Key"): int(item.findtext(f"{NS}Size"))
                          for item in listing.iter(f"{NS}Contents")})
            if listing.findtext(f"{NS}IsTruncated") != "true":
                return sizes
            params["ContinuationToken"] = listing.findtext(f"{NS}NextContinuationToken")

    def delete(self, key: str) -> None:
        self.curl("-X", "DELETE", self.url("delete_object", Key=key))

    def copy(self, source: str, destination: str) -> None:
        raise NotApplicable("a copy is no single presigned request a user would hand out")

    def read_range(self, key: str, first: int, last: int) -> bytes:
        return self.curl("-r", f"{first}-{last}", self.url("get_object", Key=key), binary=True).stdout

    def metadata(self, key: str) -> dict[str, str]:
        head = self.curl("-I", self.url("head_object", Key=key)).stdout
        return {name.lower(): value.strip() for name, value in re.findall(r"^x-amz-meta-([\w-]+): (.*)$", head,
                                                                           re.M | re.I)}

    def presign_get(self, key: str) -> str:
        return self.url("get_object", Key=key)

    def presign_put(self, key: str) -> str:
        return self.url("put_object", Key=key)

    def error(self, case: str) -> ClientError:
        signer, key, extra = self.signer, self.error_key(case), []
        if case == "wrong secret":
            signer = self.presigner(self.spec.secret_access_key + "x")
        elif case == "bad range":
            extra = ["-r", "100-"]
        result = self.curl("-w", "\n%{http_code}", *extra, self.url("get_object", signer=signer, Key=key),
                           check=False)
        body, _, status = result.stdout.rpartition("\n")
        if result.returncode != 0 and not status.strip("0"):  # no response at all: the connection broke
            return ClientError(None, None, result.stderr.strip())
        if status.startswith("2"):
            raise ClientFailure(f"{case}: HTTP {status}, {len(body)} bytes")
        try:
            code = ET.fromstring(body).findtext("Code")
        except ET.ParseError:
            raise ClientFailure(f"{case}: HTTP {status} without an S3 error body: {body[:200]!r}") from None
        return ClientError(int(status), code, body)


if __name__ == "__main__":
    main(Curl)
