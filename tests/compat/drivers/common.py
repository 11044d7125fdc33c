"""The client side of the compatibility matrix: scenarios written once, over a few primitives each client driver
implements with that client's own API or command line.

Standard library only: drivers run inside each client's own environment (.venv-clients, .venv-clients-legacy,
.venv-clients-aio), started by tests/compat/test_matrix.py as `python <driver>.py SPEC.json`. A driver prints one
JSON line per scenario: {"scenario", "status": "pass" | "fail" | "n/a", "detail", "seconds"}, and first one line
{"client": name, "version": ...}. A scenario's detail on failure is the exact failure (assertion or client error).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import time
import traceback
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
# The columns of docs/COMPATIBILITY.md, in order.
SCENARIOS = ("0 B", "1 B", "1 MiB+1", "100 MiB", "list sizes", "sync twice", "delete", "copy/move", "ranged read",
             "metadata", "presigned", "hash check", "errors")
# ≥ 100 MiB (the size), with an odd tail so the last part and the last 64 KiB segment are both partial.
TRANSFER_SIZES = {"0 B": 0, "1 B": 1, "1 MiB+1": MiB + 1, "100 MiB": 100 * MiB + 12_345}
USER_METADATA = {"owner": "alice", "purpose": "compat-check"}


@dataclass(frozen=True)
class Spec:
    """What the harness tells a driver: where the gateway is, who the client is, and where to work."""
    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    prefix: str  # every key a driver writes starts with it: drivers never see each other's objects
    workdir: str
    ca_file: str | None  # the gateway's self-signed certificate when the endpoint is https
    tampered_key: str  # an object whose ciphertext the harness altered in the store: must never read as data
    options: dict  # driver-specific switches (e.g. rclone's provider)

    @classmethod
    def load(cls, path: str) -> Spec:
        return cls(**json.loads(Path(path).read_text()))


class NotApplicable(Exception):
    """The client has no way to do this (the cell shows why)."""


class ClientFailure(AssertionError):
    """The client reported an error where none was expected; the message is the client's own words."""


@dataclass
class ClientError:
    """An error as the client surfaced it: HTTP status and S3 error code where the client exposes them, and the
    client's message (for command-line clients, what it printed)."""
    status: int | None
    code: str | None
    message: str

    def matches(self, status: int, code: str) -> bool:
        if self.code is not None:
            return self.code == code and self.status in (None, status)
        if self.status is not None:
            return self.status == status
        return code in self.message or str(status) in self.message

    def __str__(self) -> str:
        return f"{self.status or ''} {self.code or ''} {self.message[:300]!r}".strip()


class Driver:
    name = "?"

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.work = Path(spec.workdir)
        self.work.mkdir(parents=True, exist_ok=True)

    # ---- primitives a client driver implements (NotApplicable where the client has no such operation) ----
    def version(self) -> str:
        raise NotImplementedError

    def upload(self, path: Path, key: str, metadata: dict[str, str] | None = None) -> None:
        raise NotImplementedError

    def download(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every key under prefix with its size as the client's listing shows it."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def copy(self, source: str, destination: str) -> None:
        raise NotImplementedError

    def move(self, source: str, destination: str) -> None:
        raise NotImplementedError

    def read_range(self, key: str, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive), as the client's ranged read returns them."""
        raise NotApplicable("no ranged reads")

    def metadata(self, key: str) -> dict[str, str]:
        """The user metadata the client reads back (names lower-case)."""
        raise NotApplicable("no user metadata")

    def presign_get(self, key: str) -> str:
        raise NotApplicable("cannot presign")

    def presign_put(self, key: str) -> str:
        raise NotApplicable("cannot presign uploads")

    def sync_up(self, directory: Path, prefix: str) -> int:
        """Sync a local directory to prefix; the number of files the client transferred."""
        raise NotApplicable("no sync command")

    def hash_check(self, directory: Path, prefix: str) -> str:
        """The client's own end-to-end hash verification of directory against prefix (after an upload). Returns
        what it reported; raises ClientFailure on a mismatch, a warning or an error."""
        raise NotApplicable("no hash verification of its own")

    def error(self, case: str) -> ClientError:
        """Run one failing request and return the error the client surfaced. case: 'wrong secret', 'missing key',
        'bad range', 'tampered' (a GET of spec.tampered_key). Must raise ClientFailure if it unexpectedly succeeds."""
        raise NotImplementedError

    # ---- helpers ----
    def key(self, name: str) -> str:
        return self.spec.prefix + name

    def error_key(self, case: str) -> str:
        """The object an error case reads: a key never written, the tampered object, or else the 10-byte one."""
        special = {"missing key": self.key("no-such-key"), "tampered": self.spec.tampered_key}
        return special.get(case, self.key("present"))

    def make_file(self, name: str, size: int, seed: int | None = None) -> Path:
        """A file of pseudo-random bytes, written 1 MiB at a time (never held whole)."""
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(size if seed is None else seed)
        with path.open("wb") as out:
            left = size
            while left:
                n = min(left, MiB)
                out.write(rng.randbytes(n))
                left -= n
        return path

    def fresh_path(self, name: str) -> Path:
        path = self.work / "out" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        return path

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.spec.ca_file) if self.spec.ca_file else None

    http_proxy: tuple[str, int] | None = None  # (host, port) of an HTTP proxy for http:// URLs

    def http(self, method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
        """A plain HTTP request with no headers of its own (as curl sends a presigned URL; urllib would add a
        Content-Type, which a SigV2-presigned PUT signs as empty)."""
        parts = urllib.parse.urlsplit(url)
        connection = (http.client.HTTPSConnection(parts.netloc, context=self.ssl_context(), timeout=60)
                      if parts.scheme == "https" else http.client.HTTPConnection(*(self.http_proxy or (parts.netloc,)),
                                                                                  timeout=60))
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if self.http_proxy and parts.scheme == "http":
                target = url  # absolute form: the proxy finds the host in it (and http.client sends it as Host)
            connection.request(method, target, body=body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    # ---- the scenarios ----
    def run(self) -> None:
        emit({"client": self.name, "version": self.version()})
        for scenario in SCENARIOS:
            started = time.monotonic()
            try:
                detail = self.scenario(scenario) or ""
                status = "pass"
            except NotApplicable as exc:
                status, detail = "n/a", str(exc)
            except Exception as exc:  # the cell records the exact failure; the other cells still run
                status, detail = "fail", _describe(exc)
            emit({"scenario": scenario, "status": status, "detail": detail,
                  "seconds": round(time.monotonic() - started, 2)})
        shutil.rmtree(self.work, ignore_errors=True)

    def scenario(self, scenario: str) -> str | None:
        if scenario in TRANSFER_SIZES:
            return self.round_trip(scenario, TRANSFER_SIZES[scenario])
        method = {"list sizes": self.listing, "sync twice": self.sync_twice, "delete": self.deletion,
                  "copy/move": self.copy_move, "ranged read": self.ranged, "metadata": self.metadata_round_trip,
                  "presigned": self.presigned, "hash check": self.hashes, "errors": self.errors}[scenario]
        return method()

    def round_trip(self, label: str, size: int) -> str:
        name = "size-" + label.replace(" ", "").replace("+", "p")
        source = self.make_file(name, size)
        self.upload(source, self.key(name))
        target = self.fresh_path(name)
        self.download(self.key(name), target)
        same_file(source, target)
        try:
            listed = self.list_sizes(self.key(name))
        except NotApplicable:  # a client without listings: the transfer itself still counts
            return f"{size:,} bytes up and down, identical (no listing)"
        expect(listed.get(self.key(name)) == size, f"listed size {listed.get(self.key(name))}, expected {size}")
        return f"{size:,} bytes up and down, identical; listed size exact"

    def listing(self) -> str:
        sizes = {"l/zero": 0, "l/one": 1, "l/seg": 65_537, "l/sub/two-segments": 131_073}
        for name, size in sizes.items():
            self.upload(self.make_file(name, size), self.key(name))
        listed = self.list_sizes(self.key("l/"))
        expected = {self.key(name): size for name, size in sizes.items()}
        expect(listed == expected, f"listed {listed}, expected {expected}")
        return "plaintext sizes of 0, 1, 65,537 and 131,073 bytes (nested key included)"

    def sync_twice(self) -> str:
        directory = self.work / "sync-src"
        # Files written a minute ago, as a user's files are: S3's LastModified has whole seconds, so a file written
        # within the second of its upload looks newer than its object to tools comparing times (on AWS too).
        written = time.time() - 60
        for name, size in {"a.bin": 1, "b.bin": 70_001, "sub/c.bin": 2 * MiB + 3}.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.make_file("sync-files/" + name, size), directory / name)
            os.utime(directory / name, (written, written))
        first = self.sync_up(directory, self.key("sync/"))
        expect(first == 3, f"first sync transferred {first} files, expected 3")
        second = self.sync_up(directory, self.key("sync/"))
        expect(second == 0, f"second sync transferred {second} files, expected 0")
        return "3 files, then 0"

    def deletion(self) -> str:
        name = "to-delete"
        self.upload(self.make_file(name, 1000), self.key(name))
        self.delete(self.key(name))
        expect(self.key(name) not in self.list_sizes(self.key(name)), "still listed after delete")
        return "gone from the listing"

    def copy_move(self) -> str:
        source = self.make_file("copy-src", 200_001)
        self.upload(source, self.key("copy-src"))
        self.copy(self.key("copy-src"), self.key("copy-dst"))
        copied = self.fresh_path("copy-dst")
        self.download(self.key("copy-dst"), copied)
        same_file(source, copied)
        self.move(self.key("copy-dst"), self.key("moved"))
        moved = self.fresh_path("moved")
        self.download(self.key("moved"), moved)
        same_file(source, moved)
        listed = self.list_sizes(self.key(""))
        expect(self.key("copy-dst") not in listed, "move left its source behind")
        expect(listed.get(self.key("moved")) == 200_001, f"moved object listed as {listed.get(self.key('moved'))}")
        return "copy and move inside the gateway, both readable and identical"

    def ranged(self) -> str:
        size = 300_007
        source = self.make_file("ranged", size)
        self.upload(source, self.key("ranged"))
        data = source.read_bytes()
        for first, last in ((0, 0), (65_530, 131_080), (size - 7, size - 1)):
            got = self.read_range(self.key("ranged"), first, last)
            expect(got == data[first:last + 1], f"bytes {first}-{last}: got {len(got)} bytes, not the uploaded ones")
        return "bytes 0-0, across segments, the last 7"

    def metadata_round_trip(self) -> str:
        self.upload(self.make_file("with-metadata", 10), self.key("with-metadata"), metadata=USER_METADATA)
        got = self.metadata(self.key("with-metadata"))
        expect(got == USER_METADATA, f"read back {got}, expected {USER_METADATA}")
        return "user metadata read back exactly (no gateway keys visible)"

    def presigned(self) -> str:
        source = self.make_file("presigned", 100_003)
        self.upload(source, self.key("presigned"))
        status, body = self.http("GET", self.presign_get(self.key("presigned")))
        expect(status == 200 and body == source.read_bytes(), f"presigned GET: {status}, {len(body)} bytes")
        try:
            url = self.presign_put(self.key("presigned-put"))
        except NotApplicable as exc:
            return f"GET; PUT: {exc}"
        payload = random.Random(7).randbytes(70_000)
        status, body = self.http("PUT", url, payload)
        expect(status == 200, f"presigned PUT: {status} {body[:300]!r}")
        target = self.fresh_path("presigned-put")
        self.download(self.key("presigned-put"), target)
        expect(target.read_bytes() == payload, "presigned PUT stored other bytes")
        return "GET and PUT"

    def hashes(self) -> str:
        directory = self.work / "hash-src"
        for name, size in {"small.bin": 1, "medium.bin": 300_001}.items():
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.make_file("hash-files/" + name, size), directory / name)
        return self.hash_check(directory, self.key("hash/"))

    def errors(self) -> str:
        name = "present"
        self.upload(self.make_file(name, 10), self.key(name))
        seen = []
        for case, status, code in (("wrong secret", 403, "SignatureDoesNotMatch"), ("missing key", 404, "NoSuchKey"),
                                   ("bad range", 416, "InvalidRange")):
            try:
                error = self.error(case)
            except NotApplicable as exc:  # the client cannot even send this request: the other cases still count
                seen.append(f"{case}: n/a ({exc})")
                continue
            expect(error.matches(status, code), f"{case}: got {error}, expected {status} {code}")
            seen.append(f"{case} → {error.status or ''} {error.code or ''}".rstrip())
        error = self.error("tampered")
        expect(error.status is None or error.status >= 500, f"tampered: status {error.status}, expected a 5xx")
        seen.append(f"tampered → {error.status} {error.code or ''}".rstrip() if error.status
                    else f"tampered → {error.message[:120]}")
        return "; ".join(seen)


def crc32_check(put, directory: Path, prefix: str) -> str:
    """The SDK's own end-to-end check: each file PUT with a CRC32 the SDK computed, which the gateway verifies over
    the plaintext (400 BadDigest otherwise) and echoes; the echo must equal the file's CRC32."""
    for path in sorted(directory.iterdir()):
        crc = base64.b64encode(zlib.crc32(path.read_bytes()).to_bytes(4, "big")).decode()
        echoed = put(path, prefix + path.name).get("ChecksumCRC32")
        expect(echoed == crc, f"{path.name}: CRC32 echoed {echoed}, the file's is {crc}")
    return "CRC32 computed by the SDK, verified by the gateway and echoed back"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def same_file(expected: Path, actual: Path) -> None:
    expect(actual.exists(), f"{actual.name} was not written")
    a, b = digest(expected), digest(actual)
    expect(a == b, f"{actual.name}: {actual.stat().st_size:,} bytes with SHA-256 {b[:16]}…, expected "
                   f"{expected.stat().st_size:,} bytes with {a[:16]}…")


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            sha.update(chunk)
    return sha.hexdigest()


def command(args: list[str], *, check: bool = True, binary: bool = False, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command-line client and capture what it printed (stdout as bytes when binary). With check, a non-zero
    exit raises ClientFailure carrying the command and its own error output."""
    result = subprocess.run([str(a) for a in args], capture_output=True, timeout=timeout,
                            env={**os.environ, **env} if env else None)
    result.stderr = result.stderr.decode(errors="replace")
    if not binary:
        result.stdout = result.stdout.decode(errors="replace")
    if check and result.returncode != 0:
        raise ClientFailure(f"`{' '.join(str(a) for a in args[:3])} …` exit {result.returncode}: "
                            f"{(result.stderr.strip() or str(result.stdout).strip())[-500:]}")
    return result


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (AssertionError, ClientFailure)):
        text = f"{type(exc).__name__}: {text} (at {traceback.extract_tb(exc.__traceback__)[-1].name})"
    return " ".join(text.split())[:600]


def main(driver_class: type[Driver]) -> None:
    driver_class(Spec.load(sys.argv[1])).run()
