"""rclone (the system's binary) with an S3 remote in its own rclone.conf (--config): provider Other or AWS
(options["provider"]) and `server_side_encryption = aws:kms`, rclone's setting for SSE-KMS buckets.

Provider AWS: rclone always addresses buckets virtual-hosted style (it overrides force_path_style = true), so it
needs a DNS name with a wildcard record for the gateway. Here that is http://localhost:PORT (a virtual_host_domains
entry of the test gateways), and a local HTTP proxy stands in for the DNS record envelope-test.localhost → 127.0.0.1.

Gateway ETags are not MD5 digests of the plaintext (as on AWS with SSE-KMS). Without that setting rclone compares
them with the file's MD5 after each upload, reports "corrupted on transfer: md5 hash differ" and deletes the object;
with it, rclone ignores ETags and stores the file's MD5 in X-Amz-Meta-Md5chksum, which `rclone check` verifies."""
from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
from pathlib import Path

from common import MiB, ClientError, ClientFailure, Driver, NotApplicable, command, main

# "Failed to cat: InternalError: A segment … failed authentication.\n\tstatus code: 500, request id: …"
S3_ERROR = re.compile(r"Failed to \w+: (\w+): ([^\n]*)\n\s*status code: (\d{3})")
# What rclone itself adds to an object's metadata (S3 system metadata, and the local file's with -M).
RCLONE_METADATA = {"atime", "btime", "cache-control", "content-disposition", "content-encoding", "content-language",
                   "content-type", "gid", "mode", "mtime", "rdev", "tier", "uid"}


class Rclone(Driver):
    name = "rclone"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.endpoint, self.env = spec.endpoint, None
        if spec.options["provider"] == "AWS":
            port = urllib.parse.urlsplit(spec.endpoint).port
            self.endpoint = f"http://localhost:{port}"
            self.http_proxy = ("127.0.0.1", WildcardDnsStandIn(port).port)
            self.env = {"HTTP_PROXY": f"http://{self.http_proxy[0]}:{self.http_proxy[1]}"}
        self.config = self.work / "rclone.conf"
        self.config.write_text(self.remote("gw", spec.secret_access_key) +
                               self.remote("wrong", spec.secret_access_key + "x"))

    def remote(self, name: str, secret: str) -> str:
        return "\n".join([
            f"[{name}]",
            "type = s3",
            f"provider = {self.spec.options['provider']}",
            f"access_key_id = {self.spec.access_key_id}",
            f"secret_access_key = {secret}",
            f"endpoint = {self.endpoint}",
            f"region = {self.spec.region}",
            "server_side_encryption = aws:kms",
        ]) + "\n\n"

    def rclone(self, *args: str, check: bool = True, binary: bool = False):
        """One rclone command; an ERROR line fails it even with exit status 0."""
        extra = ["--ca-cert", self.spec.ca_file] if self.spec.ca_file else []
        result = command(["rclone", "--config", self.config, *extra, *args], check=check, binary=binary,
                         env=self.env)
        errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
        if check and errors:
            raise ClientFailure(f"rclone {args[0]}: " + " | ".join(errors)[:500])
        return result

    def path(self, key: str, remote: str = "gw") -> str:
        return f"{remote}:{self.spec.bucket}/{key}"

    def version(self) -> str:
        return command(["rclone", "version"]).stdout.split()[1] + f", provider {self.spec.options['provider']}"

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        # rclone 1.60 sends --metadata-set only with -M (which adds the local file's metadata too)
        extra = ["-M", *(f"--metadata-set={k}={v}" for k, v in metadata.items())] if metadata else []
        self.rclone("copyto", *extra, str(path), self.path(key))

    def download(self, key: str, path: Path) -> None:
        self.rclone("copyto", self.path(key), str(path))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        # rclone lists directories: list prefix's and keep the keys that start with it
        directory = prefix[:prefix.rfind("/") + 1]
        listing = json.loads(self.rclone("lsjson", "-R", "--files-only", self.path(directory)).stdout)
        return {directory + entry["Path"]: entry["Size"] for entry in listing
                if (directory + entry["Path"]).startswith(prefix)}

    def delete(self, key: str) -> None:
        self.rclone("deletefile", self.path(key))

    def copy(self, source: str, destination: str) -> None:
        self.rclone("copyto", self.path(source), self.path(destination))

    def move(self, source: str, destination: str) -> None:
        self.rclone("moveto", self.path(source), self.path(destination))

    def read_range(self, key: str, first: int, last: int) -> bytes:
        return self.rclone("cat", "--offset", str(first), "--count", str(last - first + 1), self.path(key),
                           binary=True).stdout

    def metadata(self, key: str) -> dict[str, str]:
        entry = json.loads(self.rclone("lsjson", "-M", "--stat", self.path(key)).stdout)
        return {k: v for k, v in entry.get("Metadata", {}).items() if k not in RCLONE_METADATA}

    def presign_get(self, key: str) -> str:
        # for S3, rclone link makes a presigned GET URL (SigV4), valid for --expire
        return self.rclone("link", "--expire", "10m", self.path(key)).stdout.strip().splitlines()[-1]

    def presign_put(self, key: str) -> str:
        raise NotApplicable("rclone link makes GET links only")

    def sync_up(self, directory: Path, prefix: str) -> int:
        # -v logs "INFO  : a.bin: Copied (new)" for each file it transferred
        result = self.rclone("sync", "-v", str(directory), self.path(prefix))
        return sum(": Copied (" in line for line in result.stderr.splitlines())

    def hash_check(self, directory: Path, prefix: str) -> str:
        self.rclone("copy", str(directory), self.path(prefix))
        result = self.rclone("check", str(directory), self.path(prefix))
        notices = [line.split("NOTICE: ", 1)[-1] for line in result.stderr.splitlines() if "NOTICE" in line]
        count = len(list(directory.iterdir()))
        # "N hashes could not be checked" means rclone compared sizes only
        if any("could not be checked" in line for line in notices) or f"{count} matching files" not in " ".join(
                notices) or not any("0 differences found" in line for line in notices):
            raise ClientFailure("rclone check: " + " | ".join(notices))
        return "rclone check: " + "; ".join(line.split(": ", 1)[-1] for line in notices)

    def error(self, case: str) -> ClientError:
        remote = "wrong" if case == "wrong secret" else "gw"
        extra = ["--offset", "100"] if case == "bad range" else []
        # one attempt: rclone would retry a 5xx for ~45 s (--retries 3 × --low-level-retries 10) to the same end
        result = self.rclone("cat", "--retries", "1", "--low-level-retries", "1", *extra,
                             self.path(self.error_key(case), remote), check=False, binary=True)
        if result.returncode == 0 and case == "missing key" and not result.stdout:
            raise NotApplicable("rclone reads a path that is no object as an empty directory: cat prints nothing")
        if result.returncode == 0 and case == "bad range" and result.stdout == (self.work / "present").read_bytes():
            raise NotApplicable("cat --offset 100 of a 10-byte object sends Range: bytes=100-9, an invalid range "
                                "that HTTP says to ignore (RFC 9110 §14.2): the whole object comes back, as from S3")
        if result.returncode == 0 or result.stdout:
            raise ClientFailure(f"{case}: rclone cat exit {result.returncode}, printed {len(result.stdout)} bytes")
        found = S3_ERROR.search(result.stderr)
        if found is None:
            return ClientError(None, None, result.stderr.strip().splitlines()[-1])
        return ClientError(int(found[3]), found[1], f"{found[1]}: {found[2]}")

class WildcardDnsStandIn:
    """An HTTP proxy on 127.0.0.1 that sends every request to the gateway on 127.0.0.1:port, Host header unchanged:
    what a wildcard DNS record for the gateway's name would do. Requests arrive in absolute form
    (GET http://bucket.localhost:port/key) and leave in origin form (GET /key); responses pass through."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self.responses, args=(upstream, client), daemon=True).start()

    @staticmethod
    def requests(client: socket.socket, upstream: socket.socket) -> None:
        reader = client.makefile("rb")
        while line := reader.readline():
            method, target, version = line.split(b" ", 2)
            if target.startswith(b"http://"):
                target = b"/" + (target.split(b"/", 3)[3:] or [b""])[0]
            head, length = [b" ".join((method, target, version))], 0
            while (header := reader.readline()) not in (b"\r\n", b""):
                head.append(header)
                name, _, value = header.partition(b":")
                length = int(value) if name.strip().lower() == b"content-length" else length
                if name.strip().lower() == b"transfer-encoding":
                    raise ValueError("chunked request bodies are not forwarded")
            upstream.sendall(b"".join(head) + b"\r\n")
            while length:
                chunk = reader.read(min(length, MiB))
                upstream.sendall(chunk)
                length -= len(chunk)
        upstream.shutdown(socket.SHUT_WR)

    @staticmethod
    def responses(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(MiB):
                client.sendall(data)
        except OSError:
            pass
        client.close()


if __name__ == "__main__":
    main(Rclone)
