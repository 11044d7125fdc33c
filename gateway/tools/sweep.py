"""Resuming a sweep over a bucket listing (`rewrap`; `encrypt-existing` keeps its own state in resume.py on the
same Watermark): the state file, and the watermark it records.

Objects are processed concurrently, so they finish out of listing order. The *watermark* is the last key of the
longest prefix of the listing whose every key is settled (done, skipped or failed); a re-run lists from just
after it, and retries the keys that failed (they are recorded by name). Keys settled beyond the watermark are
processed again after an interruption: the sweep must be idempotent, which `rewrap` is.

The state file is JSON, replaced atomically (a temporary file renamed over it), so an interruption at any point
leaves either the previous state or the new one.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from gateway import errors

STATE_VERSION = 1


@dataclass
class SweepState:
    bucket: str
    prefix: str
    target: str  # what the sweep does (for rewrap: the target key's ARN); a state for another target is refused
    after: str | None = None  # the watermark: every listed key up to and including it is settled
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason, retried first by a re-run

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "bucket": self.bucket, "prefix": self.prefix,
                           "target": self.target, "after": self.after, "failed": self.failed}, indent=1,
                          sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str) -> SweepState:
        try:
            data = json.loads(text)
        except ValueError:
            raise errors.InvalidArgument(f"{origin} is not a sweep state file (not JSON).") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise errors.InvalidArgument(f"{origin} is not a version-{STATE_VERSION} sweep state file.")
        strings = all(isinstance(data.get(name), str) for name in ("bucket", "prefix", "target"))
        failed = data.get("failed")
        if not strings or not (data.get("after") is None or isinstance(data["after"], str)) \
                or not isinstance(failed, dict) \
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in failed.items()):
            raise errors.InvalidArgument(f"{origin}: a field of the sweep state has the wrong type.")
        return cls(data["bucket"], data["prefix"], data["target"], data["after"], dict(failed))

    def check_matches(self, bucket: str, prefix: str, target: str, origin: str) -> None:
        if (self.bucket, self.prefix, self.target) != (bucket, prefix, target):
            raise errors.InvalidArgument(
                f"{origin} records a sweep of bucket {self.bucket!r}, prefix {self.prefix!r} to {self.target}: not "
                "this one. Give another --state-file, or delete it to start over.")


def load_state(path: str) -> SweepState | None:
    """The state in `path`, or None if there is no such file yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.InvalidArgument(f"Cannot read --state-file {path}: {exc.strerror}.") from None
    return SweepState.from_json(text, f"--state-file {path}")


def save_state(path: str, state: SweepState) -> None:
    write_atomically(Path(path), state.to_json())


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` by a temporary file renamed over it: an interruption at any point leaves either
    the previous content or the new one, never a torn file (what a state file to resume from needs)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Watermark:
    """The last key of the longest settled prefix of a listing whose keys settle in any order.

    `settled` seeds keys already settled beyond `start` (an earlier run's, recorded in its state file): they count
    once they are listed again. A key settled without being listed (a retry of an earlier run's failure, before
    the listing reaches it) does not move the watermark.
    """

    def __init__(self, start: str | None = None, settled: Iterable[str] = ()) -> None:
        self.last = start
        self._pending: deque[str] = deque()  # listed, in listing order, not yet below the watermark
        self._listed: set[str] = set()  # the same keys, for membership
        self._settled: set[str] = set(settled)

    @property
    def settled_beyond(self) -> AbstractSet[str]:
        """Keys settled above the watermark, waiting for the keys before them (a live, read-only view)."""
        return self._settled

    def listed(self, key: str) -> None:
        self._pending.append(key)
        self._listed.add(key)

    def settled(self, key: str) -> None:
        if key not in self._listed:
            return
        self._settled.add(key)
        while self._pending and self._pending[0] in self._settled:
            self.last = self._pending.popleft()
            self._listed.discard(self.last)
            self._settled.discard(self.last)
