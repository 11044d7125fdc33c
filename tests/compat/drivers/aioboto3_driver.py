"""aioboto3 (asyncio applications): its managed upload_file/download_file (multipart, concurrent parts), list,
copy, ranged get_object streamed through the async body, head_object metadata, presigned GET/PUT."""
from __future__ import annotations

import asyncio
from pathlib import Path

import aioboto3
import aiobotocore
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from common import ClientError, ClientFailure, Driver, crc32_check, main


class Aioboto3Driver(Driver):
    name = "aioboto3"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.loop = asyncio.new_event_loop()
        self.session = aioboto3.Session()

    def call(self, operation: str, *args, secret: str | None = None, **kwargs):
        """One client call on a fresh client (aioboto3 clients are async context managers)."""
        async def run():
            async with self.session.client(
                    "s3", endpoint_url=self.spec.endpoint, region_name=self.spec.region,
                    aws_access_key_id=self.spec.access_key_id,
                    aws_secret_access_key=secret or self.spec.secret_access_key, verify=self.spec.ca_file,
                    config=Config(retries={"max_attempts": 2})) as s3:
                result = await getattr(s3, operation)(*args, **kwargs)
                if isinstance(result, dict) and "Body" in result:
                    async with result["Body"] as body:
                        result["Body"] = await body.read()
                return result
        return self.loop.run_until_complete(run())

    def version(self) -> str:
        return f"aioboto3 {aioboto3.__version__}, aiobotocore {aiobotocore.__version__}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        self.call("upload_file", str(path), self.spec.bucket, key, ExtraArgs={"Metadata": metadata} if metadata
                  else None, Config=TransferConfig(max_concurrency=4))

    def download(self, key: str, path: Path) -> None:
        self.call("download_file", self.spec.bucket, key, str(path), Config=TransferConfig(max_concurrency=4))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        sizes, token = {}, {}
        while True:
            page = self.call("list_objects_v2", Bucket=self.spec.bucket, Prefix=prefix, **token)
            sizes.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
            if not page.get("IsTruncated"):
                return sizes
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self.call("delete_object", Bucket=self.spec.bucket, Key=key)

    def copy(self, source: str, destination: str) -> None:
        self.call("copy", {"Bucket": self.spec.bucket, "Key": source}, self.spec.bucket, destination)

    def move(self, source: str, destination: str) -> None:
        self.call("copy_object", Bucket=self.spec.bucket, Key=destination,
                  CopySource={"Bucket": self.spec.bucket, "Key": source})
        self.delete(source)

    def read_range(self, key: str, first: int, last: int) -> bytes:
        return self.call("get_object", Bucket=self.spec.bucket, Key=key, Range=f"bytes={first}-{last}")["Body"]

    def metadata(self, key: str) -> dict[str, str]:
        return self.call("head_object", Bucket=self.spec.bucket, Key=key)["Metadata"]

    def presign_get(self, key: str) -> str:
        return self.call("generate_presigned_url", "get_object", Params={"Bucket": self.spec.bucket, "Key": key})

    def presign_put(self, key: str) -> str:
        return self.call("generate_presigned_url", "put_object", Params={"Bucket": self.spec.bucket, "Key": key})

    def hash_check(self, directory: Path, prefix: str) -> str:
        return crc32_check(self.put_with_crc32, directory, prefix)

    def put_with_crc32(self, path: Path, key: str) -> dict:
        return self.call("put_object", Bucket=self.spec.bucket, Key=key, Body=path.read_bytes(),
                         ChecksumAlgorithm="CRC32")

    def error(self, case: str) -> ClientError:
        secret, params = None, {"Bucket": self.spec.bucket, "Key": self.key("present")}
        if case == "wrong secret":
            secret = self.spec.secret_access_key + "x"
        elif case == "missing key":
            params["Key"] = self.key("no-such-key")
        elif case == "bad range":
            params["Range"] = "bytes=100-"
        else:
            params["Key"] = self.spec.tampered_key
        try:
            self.call("get_object", secret=secret, **params)
        except botocore.exceptions.ClientError as exc:
            return ClientError(exc.response["ResponseMetadata"]["HTTPStatusCode"],
                               exc.response["Error"].get("Code"), str(exc))
        except (botocore.exceptions.BotoCoreError, OSError) as exc:  # the connection broken mid-body
            return ClientError(None, None, f"{type(exc).__name__}: {exc}")
        raise ClientFailure(f"{case}: the request succeeded")


if __name__ == "__main__":
    main(Aioboto3Driver)
