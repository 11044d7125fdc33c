"""The state file of `envelope-gateway encrypt-existing`: where an interrupted run stopped, so that the next run
with the same file continues there instead of listing (and HEAD-ing) the whole bucket again.

Keys are listed in order and finished out of order (a worker pool), so the state is a low watermark — every key
up to `after` is finished — plus the keys finished beyond it, the keys that failed (retried first on resume) and
the multipart uploads in flight (aborted on resume: a run killed mid-object leaves its plaintext object intact,
but the store would keep the unfinished upload's parts). Written atomically (a temporary file renamed over it).
Nothing secret is in it: key names and upload ids.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path

from gateway import errors
from gateway.tools.sweep import Watermark, write_atomically

VERSION = 1


class Progress:
    """What a run has finished: the watermark (`after`: every key up to it, in listing order, is finished), the
    keys finished beyond it, the keys to try again and the multipart uploads in flight."""

    def __init__(self, bucket: str, prefix: str, after: str = "", done: Iterable[str] = (),
                 failed: Iterable[str] = (), uploads: dict[str, str] | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.failed: set[str] = set(failed)  # keys to try again
        self.uploads: dict[str, str] = dict(uploads or {})  # key -> multipart upload id in flight
        self._watermark = Watermark(after, done)

    @property
    def after(self) -> str:
        return self._watermark.last or ""

    @property
    def done(self) -> AbstractSet[str]:
        return self._watermark.settled_beyond

    def listed(self, key: str) -> None:
        self._watermark.listed(key)

    def finished(self, key: str, ok: bool) -> None:
        """A key is finished (encrypted, skipped, or failed: `ok` False keeps it for a retry). A failed key of an
        earlier run, tried again before the listing reaches it, does not move the watermark."""
        (self.failed.discard if ok else self.failed.add)(key)
        self._watermark.settled(key)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "bucket": self.bucket, "prefix": self.prefix, "after": self.after,
                           "done": sorted(self.done), "failed": sorted(self.failed), "uploads": self.uploads},
                          ensure_ascii=False)


def load(path: Path, bucket: str, prefix: str) -> Progress:
    """The progress recorded in `path` (a new one if there is no such file); InvalidArgument if it is not a
    state file of this bucket and prefix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Progress(bucket, prefix)
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"Cannot read --state-file {path}: {exc}.") from None
    try:
        data = json.loads(text)
        if data["version"] != VERSION:
            raise ValueError("version")
        progress = Progress(str(data["bucket"]), str(data["prefix"]), str(data["after"]), set(data["done"]),
                            set(data["failed"]), {str(k): str(v) for k, v in data["uploads"].items()})
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.InvalidArgument(f"--state-file {path} is not an encrypt-existing state file.") from None
    if (progress.bucket, progress.prefix) != (bucket, prefix):
        raise errors.InvalidArgument(f"--state-file {path} belongs to bucket {progress.bucket!r} and prefix "
                                     f"{progress.prefix!r}.")
    return progress


def save(path: Path, progress: Progress) -> None:
    write_atomically(path, progress.to_json())
