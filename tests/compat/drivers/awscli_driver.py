"""The AWS CLI (v1, from PyPI; in .venv-clients' bin/) as users run it: `aws s3 cp/ls/rm/mv/sync/presign` and
`aws s3api head-object/get-object`, credentials and region in ~/.aws (the driver's private HOME), the gateway via
--endpoint-url and, over TLS, --ca-bundle."""
from __future__ import annotations

import json
import re
from pathlib import Path

from common import ClientError, ClientFailure, Driver, NotApplicable, command, main

# "An error occurred (NoSuchKey) when calling the GetObject operation: The specified key does not exist."
ERROR_LINE = re.compile(r"An error occurred \((\w+)\) when calling the \w+ operation")
# With --debug, urllib3 logs every response: '... "GET /bucket/key HTTP/1.1" 404 291'
STATUS_LINE = re.compile(r'"(?:GET|PUT|HEAD|POST|DELETE) \S+ HTTP/1\.1" (\d{3})')


class AwsCli(Driver):
    name = "aws cli"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        aws = Path.home() / ".aws"
        aws.mkdir(exist_ok=True)
        (aws / "credentials").write_text(
            f"[default]\naws_access_key_id = {spec.access_key_id}\naws_secret_access_key = {spec.secret_access_key}\n"
            f"[wrong]\naws_access_key_id = {spec.access_key_id}\naws_secret_access_key = {spec.secret_access_key}x\n")
        (aws / "config").write_text(f"[default]\nregion = {spec.region}\n[profile wrong]\nregion = {spec.region}\n")

    def aws(self, *args: str, check: bool = True, quiet: bool = True):
        """One `aws` command against the gateway; JSON output; progress lines off."""
        extra = ["--endpoint-url", self.spec.endpoint, "--output", "json"]
        if self.spec.ca_file:
            extra += ["--ca-bundle", self.spec.ca_file]
        if quiet and args[0] == "s3" and args[1] in ("cp", "mv", "rm", "sync"):
            extra.append("--only-show-errors")
        return command(["aws", *args, *extra], check=check)

    def s3uri(self, key: str) -> str:
        return f"s3://{self.spec.bucket}/{key}"

    def version(self) -> str:
        return command(["aws", "--version"]).stdout.split()[0]

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        extra = ["--metadata", ",".join(f"{k}={v}" for k, v in metadata.items())] if metadata else []
        self.aws("s3", "cp", str(path), self.s3uri(key), *extra)

    def download(self, key: str, path: Path) -> None:
        self.aws("s3", "cp", self.s3uri(key), str(path))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        # "2025-01-01 12:00:00     131073 compat/row/l/sub/two-segments"; exit 1 when nothing matches
        result = self.aws("s3", "ls", "--recursive", self.s3uri(prefix), check=False)
        if result.returncode not in (0, 1) or result.stderr.strip():
            raise ClientFailure(f"aws s3 ls exit {result.returncode}: {result.stderr.strip()[-500:]}")
        sizes = {}
        for line in result.stdout.splitlines():
            _date, _time, size, key = line.split(maxsplit=3)
            sizes[key] = int(size)
        return sizes

    def delete(self, key: str) -> None:
        self.aws("s3", "rm", self.s3uri(key))

    def copy(self, source: str, destination: str) -> None:
        self.aws("s3", "cp", self.s3uri(source), self.s3uri(destination))

    def move(self, source: str, destination: str) -> None:
        self.aws("s3", "mv", self.s3uri(source), self.s3uri(destination))

    def read_range(self, key: str, first: int, last: int) -> bytes:
        target = self.fresh_path("range")
        self.aws("s3api", "get-object", "--bucket", self.spec.bucket, "--key", key, "--range",
                 f"bytes={first}-{last}", str(target))
        return target.read_bytes()

    def metadata(self, key: str) -> dict[str, str]:
        return json.loads(self.aws("s3api", "head-object", "--bucket", self.spec.bucket, "--key", key).stdout)[
            "Metadata"]

    def presign_get(self, key: str) -> str:
        return self.aws("s3", "presign", self.s3uri(key), "--expires-in", "600").stdout.strip()

    def presign_put(self, key: str) -> str:
        raise NotApplicable("aws s3 presign signs GET only")

    def sync_up(self, directory: Path, prefix: str) -> int:
        # --no-progress keeps the "upload: a.bin to s3://…" lines (one per transferred file) and drops the rest
        result = self.aws("s3", "sync", str(directory), self.s3uri(prefix), "--no-progress", quiet=False)
        return sum(line.startswith("upload:") for line in result.stdout.splitlines())

    def hash_check(self, directory: Path, prefix: str) -> str:
        raise NotApplicable("no command compares local files with objects by hash (aws s3 sync compares size "
                            "and time)")

    def error(self, case: str) -> ClientError:
        target = self.fresh_path("error")
        key, extra = self.error_key(case), []
        if case == "wrong secret":
            extra = ["--profile", "wrong"]
        elif case == "bad range":
            extra = ["--range", "bytes=100-"]
        result = self.aws("s3api", "get-object", "--bucket", self.spec.bucket, "--key", key, *extra, str(target),
                          "--debug", check=False)
        if result.returncode == 0:
            raise ClientFailure(f"{case}: the request succeeded")
        if target.exists() and target.stat().st_size:
            raise ClientFailure(f"{case}: failed, but wrote {target.stat().st_size} bytes to the output file")
        message = next((line for line in result.stderr.splitlines() if ERROR_LINE.search(line)), None)
        if message is None:  # e.g. a connection broken mid-body: no S3 error to parse, but no data either
            return ClientError(None, None, result.stderr.strip().splitlines()[-1])
        statuses = STATUS_LINE.findall(result.stderr)
        return ClientError(int(statuses[-1]) if statuses else None, ERROR_LINE.search(message)[1], message)


if __name__ == "__main__":
    main(AwsCli)
