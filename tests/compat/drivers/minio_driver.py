"""minio-py (MinIO's Python SDK): fput/fget_object (multipart above 5 MiB parts, three in parallel), list_objects,
server-side copy_object, get_object with offset/length, stat_object, presigned GET/PUT (SigV4)."""
from __future__ import annotations

import urllib.parse
from pathlib import Path

import minio
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

from common import ClientError, ClientFailure, Driver, main


class MinioDriver(Driver):
    name = "minio-py"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.client = self.make_client(spec.secret_access_key)

    def make_client(self, secret: str) -> Minio:
        url = urllib.parse.urlsplit(self.spec.endpoint)
        http_client = urllib3.PoolManager(ca_certs=self.spec.ca_file) if self.spec.ca_file else None
        return Minio(url.netloc, access_key=self.spec.access_key_id, secret_key=secret,
                     secure=url.scheme == "https", region=self.spec.region, http_client=http_client)

    def version(self) -> str:
        return f"minio {minio.__version__}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        self.client.fput_object(self.spec.bucket, key, str(path), metadata=metadata)

    def download(self, key: str, path: Path) -> None:
        self.client.fget_object(self.spec.bucket, key, str(path))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        return {o.object_name: o.size for o in self.client.list_objects(self.spec.bucket, prefix, recursive=True)}

    def delete(self, key: str) -> None:
        self.client.remove_object(self.spec.bucket, key)

    def copy(self, source: str, destination: str) -> None:
        self.client.copy_object(self.spec.bucket, destination, CopySource(self.spec.bucket, source))

    def move(self, source: str, destination: str) -> None:
        self.copy(source, destination)
        self.delete(source)

    def read_range(self, key: str, first: int, last: int) -> bytes:
        response = self.client.get_object(self.spec.bucket, key, offset=first, length=last - first + 1)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def metadata(self, key: str) -> dict[str, str]:
        headers = self.client.stat_object(self.spec.bucket, key).metadata
        return {name.lower()[len("x-amz-meta-"):]: value for name, value in headers.items()
                if name.lower().startswith("x-amz-meta-")}

    def presign_get(self, key: str) -> str:
        return self.client.presigned_get_object(self.spec.bucket, key)

    def presign_put(self, key: str) -> str:
        return self.client.presigned_put_object(self.spec.bucket, key)

    def error(self, case: str) -> ClientError:
        client, key, options = self.client, self.key("present"), {}
        if case == "wrong secret":
            client = self.make_client(self.spec.secret_access_key + "x")
        elif case == "missing key":
            key = self.key("no-such-key")
        elif case == "bad range":
            options = {"offset": 100}
        else:
            key = self.spec.tampered_key
        try:
            response = client.get_object(self.spec.bucket, key, **options)
            response.read()
        except S3Error as exc:
            return ClientError(exc.response.status, exc.code, str(exc))
        except minio.error.ServerError as exc:  # a 5xx without an S3 error body
            return ClientError(exc.status_code, None, str(exc))
        except urllib3.exceptions.HTTPError as exc:  # the connection broken mid-body
            return ClientError(None, None, f"{type(exc).__name__}: {exc}")
        raise ClientFailure(f"{case}: the request succeeded")


if __name__ == "__main__":
    main(MinioDriver)
