"""boto3 as applications use it: put/get_object, the managed transfers (upload_file/download_file: multipart above
8 MiB, parallel ranged GETs), copy_object, presigned URLs. Runs in .venv-clients (newest) and .venv-clients-legacy
(1.35, before flexible checksums)."""
from __future__ import annotations

from pathlib import Path

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError as BotoClientError

from common import ClientError, ClientFailure, Driver, crc32_check, main


class Boto3(Driver):
    name = "boto3"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.s3 = self.client(spec.secret_access_key)

    def client(self, secret: str):
        return boto3.client("s3", endpoint_url=self.spec.endpoint, region_name=self.spec.region,
                            aws_access_key_id=self.spec.access_key_id, aws_secret_access_key=secret,
                            verify=self.spec.ca_file, config=Config(retries={"max_attempts": 2}))

    def version(self) -> str:
        return f"boto3 {boto3.__version__}, botocore {botocore.__version__}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        self.s3.upload_file(str(path), self.spec.bucket, key, ExtraArgs={"Metadata": metadata} if metadata else None,
                            Config=TransferConfig(max_concurrency=4))

    def download(self, key: str, path: Path) -> None:
        self.s3.download_file(self.spec.bucket, key, str(path), Config=TransferConfig(max_concurrency=4))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        sizes = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.spec.bucket, Prefix=prefix):
            sizes.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return sizes

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.spec.bucket, Key=key)

    def copy(self, source: str, destination: str) -> None:
        self.s3.copy({"Bucket": self.spec.bucket, "Key": source}, self.spec.bucket, destination)

    def move(self, source: str, destination: str) -> None:
        self.s3.copy_object(Bucket=self.spec.bucket, Key=destination,
                            CopySource={"Bucket": self.spec.bucket, "Key": source})
        self.delete(source)

    def read_range(self, key: str, first: int, last: int) -> bytes:
        return self.s3.get_object(Bucket=self.spec.bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()

    def metadata(self, key: str) -> dict[str, str]:
        return self.s3.head_object(Bucket=self.spec.bucket, Key=key)["Metadata"]

    def presign_get(self, key: str) -> str:
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": self.spec.bucket, "Key": key})

    def presign_put(self, key: str) -> str:
        return self.s3.generate_presigned_url("put_object", Params={"Bucket": self.spec.bucket, "Key": key})

    def hash_check(self, directory: Path, prefix: str) -> str:
        return crc32_check(self.put_with_crc32, directory, prefix)

    def put_with_crc32(self, path: Path, key: str) -> dict:
        return self.s3.put_object(Bucket=self.spec.bucket, Key=key, Body=path.read_bytes(),
                                  ChecksumAlgorithm="CRC32")

    def error(self, case: str) -> ClientError:
        s3, params = self.s3, {"Bucket": self.spec.bucket, "Key": self.key("present")}
        if case == "wrong secret":
            s3 = self.client(self.spec.secret_access_key + "x")
        elif case == "missing key":
            params["Key"] = self.key("no-such-key")
        elif case == "bad range":
            params["Range"] = "bytes=100-"
        else:
            params["Key"] = self.spec.tampered_key
        try:
            s3.get_object(**params)["Body"].read()
        except BotoClientError as exc:
            return ClientError(exc.response["ResponseMetadata"]["HTTPStatusCode"],
                               exc.response["Error"].get("Code"), str(exc))
        except botocore.exceptions.BotoCoreError as exc:  # a connection broken mid-body: no data was returned
            return ClientError(None, None, f"{type(exc).__name__}: {exc}")
        raise ClientFailure(f"{case}: the request succeeded")


if __name__ == "__main__":
    main(Boto3)
