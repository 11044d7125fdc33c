"""s3cmd (in .venv-clients' bin/) with the configuration file the README gives: the gateway as host_base and
host_bucket (path-style), SigV4, and over TLS its CA as ca_certs_file. put/get/ls/del/cp/mv/sync/info/signurl.

Gateway ETags are not MD5 digests of the plaintext (as on AWS with SSE-KMS); the gateway answers
x-amz-server-side-encryption: aws:kms, so s3cmd skips its ETag comparisons on put and get, and sync needs
--no-check-md5 (sizes only): with MD5 checks s3cmd compares each single-part object's ETag with the local MD5."""
from __future__ import annotations

import http
import re
import urllib.parse
from pathlib import Path

from common import ClientError, ClientFailure, Driver, NotApplicable, command, main, same_file

# "ERROR: S3 error: 404 (NoSuchKey): The specified key does not exist."
# "ERROR: Download of '…' failed (Reason: 404 (NoSuchKey): …)"
S3_ERROR = re.compile(r"(\d{3}) \((\w+)\)")
REASON_PHRASES = {status.phrase for status in http.HTTPStatus}
SYNC_SETTING = "--no-check-md5"


class S3cmd(Driver):
    name = "s3cmd"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.config = self.write_config("s3cfg", spec.secret_access_key)

    def write_config(self, name: str, secret: str) -> Path:
        parts = urllib.parse.urlsplit(self.spec.endpoint)
        tls = parts.scheme == "https"
        lines = [
            "[default]",
            f"access_key = {self.spec.access_key_id}",
            f"secret_key = {secret}",
            f"host_base = {parts.netloc}",
            f"host_bucket = {parts.netloc}",  # no %(bucket)s: path-style requests
            f"bucket_location = {self.spec.region}",
            f"use_https = {tls}",
            f"signurl_use_https = {tls}",
            "signature_v2 = False",
        ]
        if self.spec.ca_file:
            lines.append(f"ca_certs_file = {self.spec.ca_file}")
        path = self.work / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def s3cmd(self, *args: str, config: Path | None = None, check: bool = True):
        """One s3cmd command; any WARNING or ERROR it prints fails the call (s3cmd reports MD5 mismatches and
        retries as warnings, with exit status 0)."""
        result = command(["s3cmd", "--config", config or self.config, "--no-progress", *args], check=check)
        if check:
            complaints = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
            if complaints:
                raise ClientFailure(f"s3cmd {args[0]}: " + " | ".join(complaints)[:500])
        return result

    def s3uri(self, key: str) -> str:
        return f"s3://{self.spec.bucket}/{key}"

    def version(self) -> str:
        return command(["s3cmd", "--version"]).stdout.split()[-1]

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        headers = [f"--add-header=x-amz-meta-{k}:{v}" for k, v in (metadata or {}).items()]
        self.s3cmd("put", *headers, str(path), self.s3uri(key))

    def download(self, key: str, path: Path) -> None:
        self.s3cmd("get", self.s3uri(key), str(path))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        # "2025-01-01 12:00       131073  s3://bucket/compat/row/l/sub/two-segments"
        sizes = {}
        for line in self.s3cmd("ls", "--recursive", self.s3uri(prefix)).stdout.splitlines():
            _date, _time, size, uri = line.split(maxsplit=3)
            sizes[uri.removeprefix(f"s3://{self.spec.bucket}/")] = int(size)
        return sizes

    def delete(self, key: str) -> None:
        self.s3cmd("del", self.s3uri(key))

    def copy(self, source: str, destination: str) -> None:
        self.s3cmd("cp", self.s3uri(source), self.s3uri(destination))

    def move(self, source: str, destination: str) -> None:
        self.s3cmd("mv", self.s3uri(source), self.s3uri(destination))

    def read_range(self, key: str, first: int, last: int) -> bytes:
        raise NotApplicable("s3cmd get has no range option (--continue only resumes from a local file's size)")

    def metadata(self, key: str) -> dict[str, str]:
        # "   x-amz-meta-owner: alice"; x-amz-meta-s3cmd-attrs is s3cmd's own (mode, times, MD5 of the file)
        found = re.findall(r"^\s+x-amz-meta-([\w-]+): (.*)$", self.s3cmd("info", self.s3uri(key)).stdout, re.M)
        return {name: value for name, value in found if name != "s3cmd-attrs"}

    def presign_get(self, key: str) -> str:
        return self.s3cmd("signurl", self.s3uri(key), "+600").stdout.strip()

    def presign_put(self, key: str) -> str:
        raise NotApplicable("s3cmd signurl signs GET only")

    def sync_twice(self) -> str:
        return (f"{super().sync_twice()}, with {SYNC_SETTING} (s3cmd would compare single-part ETags with local MD5s; "
                "SSE-KMS ETags are not MD5s)")

    def sync_up(self, directory: Path, prefix: str) -> int:
        # "upload: '/…/a.bin' -> 's3://bucket/…/a.bin'  [1 of 3]"
        result = self.s3cmd("sync", SYNC_SETTING, f"{directory}/", self.s3uri(prefix))
        return sum(line.startswith("upload:") for line in result.stdout.splitlines())

    def hash_check(self, directory: Path, prefix: str) -> str:
        # put stores the file's MD5 in x-amz-meta-s3cmd-attrs, get compares the received bytes with it; s3cmd warns
        # on a mismatch, except for objects answered with SSE aws:kms (its S3.py), as every gateway object is.
        names = sorted(path.name for path in directory.iterdir())
        for name in names:
            self.s3cmd("put", str(directory / name), self.s3uri(prefix + name))
        for name in names:
            target = self.fresh_path("hash-" + name)
            self.s3cmd("get", self.s3uri(prefix + name), str(target))
            same_file(directory / name, target)
        return (f"put and get of {len(names)} files without an MD5 warning, downloads identical (s3cmd itself skips "
                "its MD5 comparison for SSE-KMS objects)")

    def error(self, case: str) -> ClientError:
        target = self.fresh_path("error")
        config, key = self.config, self.error_key(case)
        if case == "wrong secret":
            config = self.write_config("s3cfg-wrong", self.spec.secret_access_key + "x")
        elif case == "bad range":
            raise NotApplicable("s3cmd never asks for a range past the end (get --continue starts over when the "
                                "local file is longer)")
        # --debug: s3cmd checks the object with a HEAD first, and prints no status for a HEAD's error otherwise
        result = self.s3cmd("--debug", "get", self.s3uri(key), str(target), config=config, check=False)
        if result.returncode == 0:
            raise ClientFailure(f"{case}: the request succeeded")
        if target.exists() and target.stat().st_size:
            raise ClientFailure(f"{case}: failed, but wrote {target.stat().st_size} bytes to the output file")
        message = " | ".join(line for line in result.stderr.splitlines() if line.startswith("ERROR"))
        statuses = re.findall(r"'status': (\d{3})", result.stderr)
        code = S3_ERROR.search(message)  # after a HEAD, s3cmd shows the reason phrase where the code would be
        return ClientError(int(statuses[-1]) if statuses else None,
                           code[2] if code and code[2] not in REASON_PHRASES else None, message)


if __name__ == "__main__":
    main(S3cmd)
