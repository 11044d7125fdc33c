"""`envelope-gateway encrypt-existing`: encrypt in place the objects of a bucket that were written around the
gateway (no envelope metadata), so that the bucket can leave migration mode (docs/KEYS.md, "Migrating existing
plaintext buckets").

Each object is read once from the store (pinned to the ETag its HEAD gave), sealed by the format core exactly as
the gateway would (one KMS GenerateDataKey under the object's encryption context), and written back under the
same key, conditional on the ETag (If-Match): an object overwritten meanwhile is never clobbered, it is looked at
again. Objects up to `part_bytes` go back with one PutObject; larger ones as a multipart upload in the multipart
layout, one part in memory at a time, aborted on any failure, so the plaintext object stays as it was until the
encrypted one replaces it whole. Every body sent carries a Content-MD5: the store checks it before it replaces
anything. Objects that already have envelope metadata are skipped, so a second run makes no KMS call.
"""
from __future__ import annotations

import base64
import hashlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from gateway import errors
from gateway.format.envelope import (Header, MultipartKeys, WrappedKey, encryption_context, metadata_for,
                                     new_multipart_keys, new_object_key)
from gateway.format.sizes import ciphertext_size
from gateway.format.writing import multipart_plan, part_sizes, seal_run
from gateway.keys.kms import KMS_SCHEME
from gateway.proxy.uploadstate import is_reserved_key
from gateway.s3.metadata import MAX_USER_METADATA
from gateway.tools import resume
from gateway.tools.aws import kms_call, store_call
from gateway.tools.sources import Readable, StoreBody, StoredObject

DEFAULT_PART_BYTES = 8 * 1024**2
DEFAULT_CONCURRENCY = 4
# An object overwritten while it was being encrypted is looked at again this many times in all.
_ATTEMPTS = 3
_STATE_SAVE_INTERVAL_SECONDS = 1.0
_PROGRESS_INTERVAL_SECONDS = 0.5
_FAILURES_REPORTED = 100
# What an object carries besides its body and user metadata, as HeadObject names it and PutObject /
# CreateMultipartUpload take it.
_CONTENT_FIELDS = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl",
                   "Expires", "WebsiteRedirectLocation", "StorageClass")


@dataclass(frozen=True)
class Options:
    bucket: str
    kms_key_id: str
    prefix: str = ""
    concurrency: int = DEFAULT_CONCURRENCY
    part_bytes: int = DEFAULT_PART_BYTES  # objects up to this are one PutObject; larger: parts of this size
    state_file: Path | None = None
    dry_run: bool = False


@dataclass
class Summary:
    listed: int = 0
    encrypted: int = 0  # (with --dry-run: would be encrypted)
    encrypted_bytes: int = 0
    already_encrypted: int = 0
    gone: int = 0  # deleted since it was listed
    failed: int = 0
    kms_data_keys: int = 0
    interrupted: bool = False
    failures: list[dict[str, str]] = field(default_factory=list)  # the first ones: key and message

    def as_dict(self, options: Options) -> dict[str, Any]:
        return {"bucket": options.bucket, "prefix": options.prefix, "dry_run": options.dry_run,
                **{name: getattr(self, name) for name in ("listed", "encrypted", "encrypted_bytes",
                                                          "already_encrypted", "gone", "failed", "kms_data_keys",
                                                          "interrupted", "failures")}}


class _Changed(Exception):
    """The object is no longer the one the HEAD described: look at it again."""


class _Stopped(Exception):
    """The run is being interrupted: this object is left as it was."""


def has_envelope(metadata: dict[str, str]) -> bool:
    """Any `envelope-*` field: encrypted (or damaged, which is not for this tool to overwrite)."""
    return any(name.lower().startswith("envelope-") for name in metadata)


def write_metadata(user: dict[str, str], header: Header, wrapped: WrappedKey) -> dict[str, str]:
    """The object's own metadata plus its envelope; MetadataTooLarge when both do not fit S3's 2 KB."""
    metadata = {**user, **metadata_for(header, [wrapped])}
    if _size(metadata) > MAX_USER_METADATA:
        raise errors.MetadataTooLarge(f"The object's own metadata ({_size(user)} bytes) leaves no room for the "
                                      "envelope within S3's 2 KB of user metadata: shorten it first.")
    return metadata


def _size(metadata: dict[str, str]) -> int:
    return sum(len(name.encode()) + len(value.encode()) for name, value in metadata.items())


def _joined(batches: Iterable[bytearray], size: int) -> bytearray:
    """Sealed batches in one preallocated buffer (the body of one request, with room for `size` bytes)."""
    out, at = bytearray(size), 0
    for batch in batches:
        out[at:at + len(batch)] = batch
        at += len(batch)
    if at != size:
        raise AssertionError("sealed size differs from the format's arithmetic")
    return out


def tagging(tag_set: list[dict[str, str]]) -> str:
    """A TagSet as PutObject's `Tagging` (URL query form)."""
    return urlencode([(tag["Key"], tag["Value"]) for tag in tag_set], quote_via=quote)


def _md5(data: bytes | bytearray) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class _Run:
    def __init__(self, s3: Any, kms: Any, options: Options, progress: resume.Progress, report: TextIO) -> None:
        self.s3, self.kms, self.options, self.progress, self.report = s3, kms, options, progress, report
        self.summary = Summary()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.fatal: errors.S3Error | None = None
        self._saved = self._shown = 0.0
        self._tty = report.isatty()

    # --- one object ---------------------------------------------------------------------------------------
    def one(self, key: str) -> str:
        """Encrypt one object; its outcome: encrypted, already_encrypted, gone (or the error raised)."""
        for _ in range(_ATTEMPTS):
            if self.stopping.is_set():
                raise _Stopped()
            try:
                head = store_call(self.s3.head_object, Bucket=self.options.bucket, Key=key)
            except errors.NoSuchKey:
                return "gone"
            if has_envelope(head.get("Metadata", {})):
                return "already_encrypted"
            if self.options.dry_run:
                self._count_bytes(head["ContentLength"])
                return "encrypted"
            try:
                self._encrypt(key, head)
            except (_Changed, errors.PreconditionFailed):  # overwritten meanwhile: look at it again
                continue
            except errors.NoSuchKey:
                return "gone"
            self._count_bytes(head["ContentLength"])
            return "encrypted"
        raise errors.ObjectChanged("The object kept changing while it was being encrypted; run again.")

    def _count_bytes(self, size: int) -> None:
        with self.lock:
            self.summary.encrypted_bytes += size

    def _encrypt(self, key: str, head: dict[str, Any]) -> None:
        bucket, etag, size = self.options.bucket, head["ETag"], head["ContentLength"]
        try:
            sizes = part_sizes(size, self.options.part_bytes)
        except ValueError:
            raise errors.EntityTooLarge("The object is too large for 10,000 parts of at most 5 GiB.") from None
        params: dict[str, Any] = {name: head[name] for name in _CONTENT_FIELDS if head.get(name)}
        tags = store_call(self.s3.get_object_tagging, Bucket=bucket, Key=key)["TagSet"]
        if tags:
            params["Tagging"] = tagging(tags)
        response = kms_call(self.kms.generate_data_key, KeyId=self.options.kms_key_id, KeySpec="AES_256",
                            EncryptionContext=encryption_context(bucket, key))
        with self.lock:
            self.summary.kms_data_keys += 1
        dek, wrapped = response["Plaintext"], WrappedKey(KMS_SCHEME, response["KeyId"], response["CiphertextBlob"])
        del response
        body = StoreBody(self.s3, bucket, key, StoredObject(head.get("Metadata", {}), etag, size)).stream()
        try:
            if sizes is None:
                header, object_key = new_object_key(dek)
                del dek
                params["Metadata"] = write_metadata(head.get("Metadata", {}), header, wrapped)
                data = _joined(seal_run(body.read, size, object_key), ciphertext_size(size))
                store_call(self.s3.put_object, Bucket=bucket, Key=key, Body=data, ContentLength=len(data),
                           ContentMD5=_md5(data), IfMatch=etag, **params)
            else:
                header, keys = new_multipart_keys(dek)
                del dek
                params["Metadata"] = write_metadata(head.get("Metadata", {}), header, wrapped)
                self._write_parts(key, etag, keys, sizes, body, params)
        finally:
            body.close()

    def _write_parts(self, key: str, etag: str, keys: MultipartKeys, sizes: list[int], body: Readable,
                     params: dict[str, Any]) -> None:
        bucket = self.options.bucket
        plan = multipart_plan(keys, sizes)
        upload_id = store_call(self.s3.create_multipart_upload, Bucket=bucket, Key=key, **params)["UploadId"]
        self._upload_started(key, upload_id)
        try:
            parts = []
            for index, part in enumerate(plan.table.parts):
                if self.stopping.is_set():
                    raise _Stopped()
                last = index == len(plan.table.parts) - 1
                data = _joined(chain(seal_run(body.read, part.size, keys.part_key(part.number, part.salt),
                                              part.number), [bytearray(plan.trailer)] if last else []),
                               plan.stored_part_size(index))
                answer = store_call(self.s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
                                    PartNumber=part.number, Body=data, ContentLength=len(data),
                                    ContentMD5=_md5(data))
                parts.append({"PartNumber": part.number, "ETag": answer["ETag"]})
                del data
            # S3 checks If-Match at Complete; a store that does not (moto) is caught by this HEAD, which leaves
            # only the moment between the two open.
            if store_call(self.s3.head_object, Bucket=bucket, Key=key)["ETag"] != etag:
                raise _Changed()
            store_call(self.s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id,
                       MultipartUpload={"Parts": parts}, IfMatch=etag)
        except BaseException:
            self._abort(key, upload_id)
            raise
        self._upload_finished(key)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            store_call(self.s3.abort_multipart_upload, Bucket=self.options.bucket, Key=key, UploadId=upload_id)
        except errors.S3Error as exc:
            # Kept in the state file: the next run with it aborts the upload.
            self._say(f"{key}: could not abort its unfinished upload ({exc.message})")
            return
        self._upload_finished(key)

    def _upload_started(self, key: str, upload_id: str) -> None:
        with self.lock:
            self.progress.uploads[key] = upload_id
            self._save(force=True)

    def _upload_finished(self, key: str) -> None:
        with self.lock:
            self.progress.uploads.pop(key, None)

    # --- bookkeeping ----------------------------------------------------------------------------------------
    def finished(self, key: str, future: Future[str]) -> None:
        exc = future.exception()
        with self.lock:
            if isinstance(exc, _Stopped):
                pass  # neither finished nor failed: the next run looks at it again
            elif isinstance(exc, errors.KMSError):
                self.fatal = self.fatal or exc
                self.stopping.set()
            elif exc is not None:
                self.summary.failed += 1
                message = exc.message if isinstance(exc, errors.S3Error) else f"{type(exc).__name__}: {exc}"
                if len(self.summary.failures) < _FAILURES_REPORTED:
                    self.summary.failures.append({"key": key, "error": message})
                self._say(f"{key}: {message}")
                self.progress.finished(key, ok=False)
            else:
                outcome = future.result()
                setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
                self.progress.finished(key, ok=True)
            self._save()
            self._show()

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.options.state_file is None or self.options.dry_run or (
                not force and now - self._saved < _STATE_SAVE_INTERVAL_SECONDS):
            return
        resume.save(self.options.state_file, self.progress)
        self._saved = now

    def _show(self, final: bool = False) -> None:
        now = time.monotonic()
        if not self._tty or (not final and now - self._shown < _PROGRESS_INTERVAL_SECONDS):
            return
        s = self.summary
        verb = "to encrypt" if self.options.dry_run else "encrypted"
        self.report.write(f"\rencrypt-existing: {s.listed} listed, {s.encrypted} {verb} "
                          f"({s.encrypted_bytes / 1024**2:.1f} MiB), {s.already_encrypted} already encrypted, "
                          f"{s.failed} failed" + ("\n" if final else ""))
        self.report.flush()
        self._shown = now

    def _say(self, line: str) -> None:
        self.report.write(("\n" if self._tty else "") + f"envelope-gateway encrypt-existing: {line}\n")

    # --- the listing ----------------------------------------------------------------------------------------
    def keys(self) -> Iterator[str]:
        """The bucket's keys under the prefix, in order, after the state file's watermark."""
        params: dict[str, Any] = {"Bucket": self.options.bucket, "Prefix": self.options.prefix}
        if self.progress.after:
            params["StartAfter"] = self.progress.after
        while True:
            page = store_call(self.s3.list_objects_v2, **params)
            for entry in page.get("Contents", []):
                if not is_reserved_key(entry["Key"]):  # the gateway's own records of multipart uploads
                    yield entry["Key"]
            if not page.get("IsTruncated"):
                return
            params.pop("StartAfter", None)
            params["ContinuationToken"] = page["NextContinuationToken"]

    def abort_stale_uploads(self) -> None:
        """Uploads an earlier run left behind (it was killed mid-object): their objects are still plaintext."""
        for key, upload_id in list(self.progress.uploads.items()):
            try:
                store_call(self.s3.abort_multipart_upload, Bucket=self.options.bucket, Key=key, UploadId=upload_id)
            except errors.NoSuchUpload:
                pass  # completed or aborted already
            self.progress.uploads.pop(key)
            self.progress.failed.add(key)  # looked at again first


def encrypt_existing(s3: Any, kms: Any, options: Options, report: TextIO = sys.stderr) -> Summary:
    """Encrypt every object under the prefix that has no envelope metadata; the summary of what was done.
    KMS errors stop the run (raised); other failures are per object (counted, reported, kept for a re-run)."""
    if options.concurrency < 1:
        raise errors.InvalidArgument("--concurrency must be at least 1.")
    try:
        part_sizes(0, options.part_bytes)  # the part size is checked before anything is done
    except ValueError:
        raise errors.InvalidArgument("--part-size must be at least 5 MiB and at most 5 GiB.") from None
    progress = resume.Progress(options.bucket, options.prefix)
    if options.state_file is not None and not options.dry_run:
        progress = resume.load(options.state_file, options.bucket, options.prefix)
    run = _Run(s3, kms, options, progress, report)
    if not options.dry_run:
        run.abort_stale_uploads()
    slots = threading.BoundedSemaphore(options.concurrency * 2)  # objects queued or in flight

    def submit(pool: ThreadPoolExecutor, key: str) -> None:
        slots.acquire()
        future = pool.submit(run.one, key)
        future.add_done_callback(lambda done: (run.finished(key, done), slots.release()))

    completed = False
    with ThreadPoolExecutor(options.concurrency, thread_name_prefix="encrypt") as pool:
        try:
            retried = set(progress.failed)
            for key in sorted(retried):  # failed (or cut short) in an earlier run: first, and not twice
                submit(pool, key)
            for key in run.keys():
                if run.stopping.is_set():
                    break
                with run.lock:
                    run.summary.listed += 1
                    progress.listed(key)
                    earlier = key in progress.done or key in retried
                if earlier:  # finished by the earlier run this state file is from
                    with run.lock:
                        progress.finished(key, ok=True)
                    continue
                submit(pool, key)
            else:
                completed = True
        except KeyboardInterrupt:
            run.stopping.set()
            run.summary.interrupted = True
        except errors.S3Error:
            run.stopping.set()
            raise
        finally:
            pool.shutdown(wait=True)
            with run.lock:
                run._show(final=True)
                if options.state_file is not None and not options.dry_run:
                    if completed and run.fatal is None and not progress.failed and not progress.uploads:
                        options.state_file.unlink(missing_ok=True)
                    else:
                        resume.save(options.state_file, progress)
    if run.fatal is not None:
        raise run.fatal
    return run.summary
