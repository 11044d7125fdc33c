"""`envelope-gateway rewrap`: move every object of a bucket (or prefix) to another KMS master key, without
re-encrypting any data.

Each object's KMS entries are re-wrapped by KMS `ReEncrypt` (the data key never leaves KMS in clear) and written
back with `gateway.tools.rewrite.rewrite_envelope` (a server-side self-copy that keeps bytes, ETag and
attributes):

- scheme `kms`: the DEK's blob, from and to the object's own encryption context (FORMAT.md §8);
- scheme `kms-bucket-key`: the bucket key's blob under the bucket-key context (§16.1), with the object's salt
  kept, so the derived DEK is the same (§16.5). Objects share bucket keys: each is re-encrypted once per run;
- any other scheme (a partner's copy) is kept as it is.

Idempotent: entries already under the target key are left alone, and an object with nothing to re-wrap is not
written and costs no KMS call. Resumable: a state file (gateway.tools.sweep) records how far the listing is
settled and which objects failed. Objects not written by the gateway are counted and never modified; the
gateway's own `.envelope-gateway/` state is skipped.

Which source keys to trust: without `from_key`, KMS entries under any key other than the target are re-wrapped,
and the summary lists the keys they came from. Where others can write to the store, name the old key: an object
planted under a stranger's key would otherwise become readable through a gateway configured with the target.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from gateway import errors
from gateway.format.bucketkey import SCHEME_BUCKET_KEY, BucketKeyBlob, bucket_key_context
from gateway.format.envelope import WrappedKey, encryption_context
from gateway.keys.kms import KMS_SCHEME
from gateway.proxy.uploadstate import is_reserved_key
from gateway.tools.aws import kms_call, store_call
from gateway.tools.rewrite import Outcome, rewrite_envelope
from gateway.tools.sweep import SweepState, Watermark, load_state, save_state

# An object that changed between its HEAD and its copy is read again and retried this many times in all.
ATTEMPTS_PER_OBJECT = 3
_SAVE_STATE_SECONDS = 2.0
# Re-encrypted bucket keys remembered per run; a bucket has one per writer window, so this is rarely reached.
_MAX_CACHED_BUCKET_KEYS = 10_000
_KMS_SCHEMES = (KMS_SCHEME, SCHEME_BUCKET_KEY)


@dataclass
class Summary:
    rewritten: int = 0  # with dry_run: objects that would be
    already_under_target: int = 0  # every KMS entry already under the target key
    other_keys: int = 0  # KMS entries only under keys that --from-key excludes, or no KMS entry at all
    not_gateway: int = 0  # no envelope metadata: not written through the gateway, left alone
    gone: int = 0  # listed, then deleted before it was reached: nothing to do
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason
    reencrypt_calls: int = 0
    sources: Counter[str] = field(default_factory=Counter)  # the keys entries were re-wrapped from -> objects
    dry_run: bool = False

    @property
    def settled(self) -> int:
        return (self.rewritten + self.already_under_target + self.other_keys + self.not_gateway + self.gone
                + len(self.failed))

    def as_dict(self) -> dict[str, Any]:
        return {"rewritten": self.rewritten, "already_under_target": self.already_under_target,
                "other_keys": self.other_keys, "not_gateway": self.not_gateway, "gone": self.gone,
                "failed": dict(self.failed),
                "reencrypt_calls": self.reencrypt_calls, "sources": dict(self.sources), "dry_run": self.dry_run}

    def progress_line(self) -> str:
        verb = "to re-wrap" if self.dry_run else "re-wrapped"
        return (f"rewrap: {self.settled} objects — {self.rewritten} {verb}, "
                f"{self.already_under_target + self.other_keys} unchanged, {self.not_gateway} not the gateway's, "
                f"{len(self.failed)} failed")

    def text(self) -> str:
        lines = [f"{'would re-wrap' if self.dry_run else 're-wrapped'}: {self.rewritten}",
                 f"already under the target key: {self.already_under_target}",
                 f"under other keys, kept: {self.other_keys}",
                 f"not written by the gateway, left alone: {self.not_gateway}",
                 f"deleted meanwhile: {self.gone}",
                 f"failed: {len(self.failed)}",
                 f"KMS ReEncrypt calls: {self.reencrypt_calls}"]
        lines += [f"re-wrapped from {arn}: {count}" for arn, count in sorted(self.sources.items())]
        lines += [f"  failed {key!r}: {reason}" for key, reason in sorted(self.failed.items())]
        return "\n".join(lines) + "\n"


def resolve_key(kms: Any, key_id: str) -> str:
    """The ARN of a KMS key given by id, ARN or alias; InvalidArgument unless it can wrap data keys now."""
    meta = kms_call(kms.describe_key, KeyId=key_id)["KeyMetadata"]
    # moto leaves KeyUsage out; AWS always says it.
    if (meta.get("KeyUsage", "ENCRYPT_DECRYPT"), meta.get("KeySpec")) != ("ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT"):
        raise errors.InvalidArgument(f"{key_id} is not a symmetric encryption key: it cannot wrap data keys.")
    if meta.get("KeyState", "Enabled") != "Enabled":
        raise errors.InvalidArgument(f"{key_id} is {meta['KeyState']}, not Enabled.")
    return meta["Arn"]


class Rewrapper:
    """Re-wraps KMS entries under the target key with ReEncrypt; thread-safe (one per run, shared by workers)."""

    def __init__(self, kms: Any, target_arn: str, source_arn: str | None = None) -> None:
        self._kms, self.target_arn, self._source_arn = kms, target_arn, source_arn
        self._lock = threading.Lock()
        self._bucket_keys: dict[tuple[str, str, bytes], _Once] = {}
        self.reencrypt_calls = 0

    def selects(self, entry: WrappedKey) -> bool:
        """Whether this entry is to be re-wrapped: a KMS scheme, not under the target, under --from-key if set."""
        return (entry.scheme in _KMS_SCHEMES and entry.key_id != self.target_arn
                and self._source_arn in (None, entry.key_id))

    def rewrapped(self, bucket: str, key: str, entries: list[WrappedKey]) -> list[WrappedKey]:
        return [self._rewrap(bucket, key, entry) if self.selects(entry) else entry for entry in entries]

    def _rewrap(self, bucket: str, key: str, entry: WrappedKey) -> WrappedKey:
        if entry.scheme == SCHEME_BUCKET_KEY:
            blob = BucketKeyBlob.decode(entry.blob)
            arn, wrapped_bucket_key = self._bucket_key(bucket, entry.key_id, blob.wrapped_bucket_key)
            # Same salt, same bucket key inside: the derived DEK, hence the body, stays valid (FORMAT.md §16.5).
            return WrappedKey(SCHEME_BUCKET_KEY, arn, BucketKeyBlob(blob.salt, wrapped_bucket_key).encode())
        arn, blob = self._reencrypt(entry.key_id, entry.blob, encryption_context(bucket, key))
        return WrappedKey(KMS_SCHEME, arn, blob)

    def _bucket_key(self, bucket: str, source_arn: str, wrapped: bytes) -> tuple[str, bytes]:
        """One ReEncrypt per bucket key, however many workers meet it at once (they wait for the first)."""
        cache_key = (bucket, source_arn, wrapped)  # the context is the bucket's: part of what KMS checks
        with self._lock:
            once = self._bucket_keys.get(cache_key)
            if once is None:
                if len(self._bucket_keys) >= _MAX_CACHED_BUCKET_KEYS:
                    self._bucket_keys.clear()
                once = self._bucket_keys[cache_key] = _Once()
        return once.get(lambda: self._reencrypt(source_arn, wrapped, bucket_key_context(bucket)))

    def _reencrypt(self, source_arn: str, blob: bytes, context: dict[str, str]) -> tuple[str, bytes]:
        with self._lock:
            self.reencrypt_calls += 1
        # SourceKeyId pins the key named in the entry (KMS refuses a blob another key wrapped); the answer's
        # SourceKeyId is checked as well, for a KMS that does not enforce it (moto).
        response = kms_call(self._kms.re_encrypt, CiphertextBlob=blob, SourceKeyId=source_arn,
                            SourceEncryptionContext=context, DestinationKeyId=self.target_arn,
                            DestinationEncryptionContext=context)
        if response.get("SourceKeyId", source_arn) != source_arn:
            raise errors.TamperedCiphertext("A wrapped key was not wrapped by the KMS key its entry names.")
        return response["KeyId"], response["CiphertextBlob"]


class _Once:
    """A value computed by the first caller while the others wait; a failure is not kept (the next one tries)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: tuple[str, bytes] | None = None

    def get(self, compute: Callable[[], tuple[str, bytes]]) -> tuple[str, bytes]:
        with self._lock:
            if self._value is None:
                self._value = compute()
            return self._value


@dataclass(frozen=True)
class ObjectResult:
    outcome: str  # "rewritten", "already_under_target", "other_keys", "not_gateway" or "gone"
    sources: frozenset[str] = frozenset()


def rewrap_object(s3: Any, rewrapper: Rewrapper, bucket: str, key: str, *, dry_run: bool = False) -> ObjectResult:
    """Re-wrap one object's selected entries (dry run: only find them). Errors as rewrite_envelope's."""
    seen: dict[str, Any] = {}

    def update(header: object, entries: list[WrappedKey]) -> list[WrappedKey] | None:
        seen["sources"] = frozenset(entry.key_id for entry in entries if rewrapper.selects(entry))
        seen["under_target"] = any(entry.scheme in _KMS_SCHEMES and entry.key_id == rewrapper.target_arn
                                   for entry in entries)
        if not seen["sources"] or dry_run:
            return None
        return rewrapper.rewrapped(bucket, key, entries)

    if rewrite_envelope(s3, bucket, key, update) is Outcome.NOT_ENCRYPTED:
        return ObjectResult("not_gateway")
    if seen["sources"]:  # rewritten, or (a dry run) to be
        return ObjectResult("rewritten", seen["sources"])
    return ObjectResult("already_under_target" if seen["under_target"] else "other_keys")


def listing(s3: Any, bucket: str, prefix: str, after: str | None) -> Iterator[str]:
    """The keys under `prefix` after `after`, in the store's (lexicographic) order, without the gateway's own."""
    params: dict[str, str] = {"Bucket": bucket, "Prefix": prefix}
    if after is not None:
        params["StartAfter"] = after
    while True:
        page = store_call(s3.list_objects_v2, **params)
        for entry in page.get("Contents", []):
            if not is_reserved_key(entry["Key"]):
                yield entry["Key"]
        if not page.get("IsTruncated"):
            return
        params = {"Bucket": bucket, "Prefix": prefix, "ContinuationToken": page["NextContinuationToken"]}


def rewrap_bucket(s3: Any, kms: Any, bucket: str, to_key: str, *, prefix: str = "", from_key: str | None = None,
                  concurrency: int = 8, state_file: str | None = None, dry_run: bool = False,
                  on_progress: Callable[[Summary], None] | None = None) -> Summary:
    """Re-wrap every gateway object under s3://bucket/prefix to `to_key` (id, ARN or alias); the library entry
    point of `envelope-gateway rewrap`. Per-object failures are collected in the summary (the run goes on);
    errors that stop the run (KMS keys unusable, the listing refused) are raised, with the state file saved."""
    if concurrency < 1:
        raise errors.InvalidArgument("--concurrency must be at least 1.")
    if is_reserved_key(prefix):
        raise errors.InvalidArgument("The prefix .envelope-gateway/ holds the gateway's own state.")
    target_arn = resolve_key(kms, to_key)
    rewrapper = Rewrapper(kms, target_arn, None if from_key is None else resolve_key(kms, from_key))
    state = _initial_state(state_file, bucket, prefix, target_arn)
    summary = Summary(dry_run=dry_run)
    watermark = Watermark(state.after)
    # Failed last time: retried first. They stay recorded until they succeed (an interruption keeps them).
    work = [(key, False) for key in sorted(state.failed)]
    saved_at = time.monotonic()

    def task(key: str) -> ObjectResult:
        for attempt in range(1, ATTEMPTS_PER_OBJECT + 1):
            try:
                return rewrap_object(s3, rewrapper, bucket, key, dry_run=dry_run)
            except errors.NoSuchKey:
                return ObjectResult("gone")  # not an error: a re-run would fail it again, forever
            except errors.PreconditionFailed:
                if attempt == ATTEMPTS_PER_OBJECT:
                    raise
        raise AssertionError("unreachable")

    def settle(key: str, listed: bool, future: Future[ObjectResult]) -> None:
        try:
            result = future.result()
        except errors.S3Error as exc:
            reason = ("integrity check failed: " if isinstance(exc, errors.TamperedCiphertext) else "") + exc.message
            summary.failed[key] = state.failed[key] = reason
        else:
            state.failed.pop(key, None)
            setattr(summary, result.outcome, getattr(summary, result.outcome) + 1)
            summary.sources.update(result.sources)
        if listed:
            watermark.settled(key)
            state.after = watermark.last

    inflight: dict[Future[ObjectResult], tuple[str, bool]] = {}

    def drain(down_to: int) -> None:
        nonlocal saved_at
        while len(inflight) > down_to:
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in finished:
                settle(*inflight.pop(future), future)
            summary.reencrypt_calls = rewrapper.reencrypt_calls
            if on_progress is not None:
                on_progress(summary)
            if state_file and not dry_run and time.monotonic() - saved_at > _SAVE_STATE_SECONDS:
                save_state(state_file, state)
                saved_at = time.monotonic()

    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="rewrap") as pool:
            try:
                for key, listed in _chain(work, listing(s3, bucket, prefix, state.after)):
                    if listed:
                        watermark.listed(key)
                    inflight[pool.submit(task, key)] = (key, listed)
                    drain(2 * concurrency - 1)  # a bounded window: the listing may be endless
                drain(0)
            except BaseException:
                # Interrupted (or the listing failed): what runs finishes and is recorded, what has not started
                # is dropped; it lies beyond the watermark, so a re-run does it.
                for future in [f for f in inflight if f.cancel()]:
                    del inflight[future]
                drain(0)
                raise
    finally:
        summary.reencrypt_calls = rewrapper.reencrypt_calls
        if state_file and not dry_run:
            save_state(state_file, state)
    return summary


def _chain(retries: list[tuple[str, bool]], listed: Iterator[str]) -> Iterator[tuple[str, bool]]:
    yield from retries
    for key in listed:
        yield key, True


def _initial_state(path: str | None, bucket: str, prefix: str, target: str) -> SweepState:
    state = load_state(path) if path else None
    if state is None:
        return SweepState(bucket, prefix, target)
    state.check_matches(bucket, prefix, target, f"--state-file {path}")
    return state
