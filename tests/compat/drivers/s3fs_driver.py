"""s3fs / fsspec (on aiobotocore): put_file/get_file (multipart above 2 × 50 MiB), find with sizes, cp/mv, random
reads through a file object (ranged GETs pinned to the listed ETag with If-Match), metadata, presigned GET."""
from __future__ import annotations

from pathlib import Path

import botocore.exceptions
import s3fs

from common import ClientError, ClientFailure, Driver, main


class S3fsDriver(Driver):
    name = "s3fs"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.fs = self.filesystem(spec.secret_access_key)

    def filesystem(self, secret: str) -> s3fs.S3FileSystem:
        client_kwargs = {"region_name": self.spec.region}
        if self.spec.ca_file:
            client_kwargs["verify"] = self.spec.ca_file
        return s3fs.S3FileSystem(key=self.spec.access_key_id, secret=secret, endpoint_url=self.spec.endpoint,
                                 client_kwargs=client_kwargs, skip_instance_cache=True,
                                 config_kwargs={"retries": {"max_attempts": 2}})

    def path(self, key: str) -> str:
        return f"{self.spec.bucket}/{key}"

    def version(self) -> str:
        import aiobotocore
        return f"s3fs {s3fs.__version__}, aiobotocore {aiobotocore.__version__}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        self.fs.put_file(str(path), self.path(key), **({"Metadata": metadata} if metadata else {}))

    def download(self, key: str, path: Path) -> None:
        self.fs.get_file(self.path(key), str(path))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        self.fs.invalidate_cache()
        found = self.fs.find(self.path(prefix), detail=True, prefix="")
        bucket = self.spec.bucket + "/"
        return {name[len(bucket):]: info["size"] for name, info in found.items() if info["type"] == "file"}

    def delete(self, key: str) -> None:
        self.fs.rm(self.path(key))

    def copy(self, source: str, destination: str) -> None:
        self.fs.copy(self.path(source), self.path(destination))

    def move(self, source: str, destination: str) -> None:
        self.fs.mv(self.path(source), self.path(destination))

    def read_range(self, key: str, first: int, last: int) -> bytes:
        # A file object as pandas or pyarrow use it: seek + read, a small block size so each read is its own GET.
        with self.fs.open(self.path(key), "rb", block_size=4096, cache_type="none") as f:
            f.seek(first)
            return f.read(last - first + 1)

    def metadata(self, key: str) -> dict[str, str]:
        return self.fs.metadata(self.path(key), refresh=True)

    def presign_get(self, key: str) -> str:
        return self.fs.url(self.path(key))

    def error(self, case: str) -> ClientError:
        fs, key, start = self.fs, self.key("present"), None
        if case == "wrong secret":
            fs = self.filesystem(self.spec.secret_access_key + "x")
        elif case == "missing key":
            key = self.key("no-such-key")
        elif case == "bad range":
            start = 100
        else:
            key = self.spec.tampered_key
        try:
            fs.cat_file(self.path(key), start=start)
        except botocore.exceptions.ClientError as exc:
            return s3_error(exc, str(exc))
        except OSError as exc:  # s3fs translates S3 errors into OSError subclasses, the S3 error as the cause
            if isinstance(exc.__cause__, botocore.exceptions.ClientError):
                return s3_error(exc.__cause__, f"{type(exc).__name__}: {exc}")
            # Otherwise s3fs decided itself (e.g. HEAD 404 then an empty listing → FileNotFoundError).
            status = {FileNotFoundError: 404, PermissionError: 403}.get(type(exc))
            return ClientError(status, None, f"{type(exc).__name__}: {exc}")
        raise ClientFailure(f"{case}: the request succeeded")


def s3_error(exc: botocore.exceptions.ClientError, message: str) -> ClientError:
    # s3fs asks HEAD first; a HEAD error has no body (S3 sends none), so botocore's "code" is just the status.
    code = None if exc.operation_name == "HeadObject" else exc.response["Error"].get("Code")
    return ClientError(exc.response["ResponseMetadata"]["HTTPStatusCode"], code,
                       f"{message} ({exc.operation_name})")


if __name__ == "__main__":
    main(S3fsDriver)
