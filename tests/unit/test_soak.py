"""The soak's own checks can fail: seeded content is stable, a wrong or short body is a violation, growth over
10 % fails the run (tests/soak/soak.py)."""
from __future__ import annotations

import io
from pathlib import Path

from tests.soak.soak import PATTERN_PERIOD, Content, Sample, Soak, Tally, Worker


def test_content_is_the_same_whatever_the_slicing():
    content = Content(42)
    whole = content.slice(0, 3 * PATTERN_PERIOD + 5)
    assert content.slice(PATTERN_PERIOD - 3, 10) == whole[PATTERN_PERIOD - 3:PATTERN_PERIOD + 7]
    assert Content(42).slice(0, 100) == whole[:100] != Content(43).slice(0, 100)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, amount: int) -> bytes:
        return self._stream.read(amount)


class _Client:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, **_: object) -> dict:
        return {"Body": _Body(self.data)}


def _worker(data: bytes) -> Worker:
    worker = Worker.__new__(Worker)
    worker.run = Soak.__new__(Soak)
    worker.run.tally = Tally()
    worker.client = _Client(data)
    return worker


def test_a_right_body_counts_ok():
    worker = _worker(Content(7).slice(100, 5000))
    worker._read("k", 7, 10_000, 100, 5000, "bytes=100-5099", "ranged_get")
    assert worker.run.tally.outcomes == {"ranged_get ok": 1} and not worker.run.tally.violations


def test_a_wrong_byte_is_a_violation():
    data = bytearray(Content(7).slice(0, 5000))
    data[4321] ^= 1
    worker = _worker(bytes(data))
    worker._read("k", 7, 5000, 0, 5000, None, "get")
    assert worker.run.tally.violations == ["get k (whole): wrong bytes at 4321"]


def test_a_short_body_that_ended_cleanly_is_a_violation():
    worker = _worker(Content(7).slice(0, 4000))
    worker._read("k", 7, 5000, 0, 5000, None, "get")
    assert worker.run.tally.violations == ["get k (whole): a clean body of 4000 bytes, expected 5000"]


def _judged(rss: list[int]) -> dict:
    soak = Soak(seconds=100, workers=1, seed=1, directory=Path("."))
    soak.samples = [Sample(t=float(t), rss=value, fds=40, tasks=10, ok=0, errors=0)
                    for t, value in zip(range(20, 100, 4), rss)]
    return soak._verdict(stuck=[])


def test_growth_over_ten_percent_fails_the_run():
    flat = _judged([100] * 20)
    assert flat["failures"] == []
    growing = _judged([100] * 10 + [112] * 10)
    assert growing["failures"] == ["rss grew 12% after warm-up (limit 10 %)"]


def test_descriptors_still_open_once_idle_fail_the_run():
    soak = Soak(seconds=100, workers=1, seed=1, directory=Path("."))
    # Under load the count swings with the requests in flight: not a verdict on its own.
    soak.samples = [Sample(t=0.0, rss=100, fds=20, tasks=5, ok=0, errors=0)] + [
        Sample(t=float(t), rss=100, fds=30 + (t % 3) * 10, tasks=10, ok=0, errors=0) for t in range(20, 100, 4)]
    soak.after = Sample(t=101.0, rss=100, fds=20, tasks=5, ok=0, errors=0)
    assert soak._verdict(stuck=[])["failures"] == []
    soak.after = Sample(t=101.0, rss=100, fds=25, tasks=5, ok=0, errors=0)
    assert soak._verdict(stuck=[])["failures"] == [
        "fds grew 25% from idle before the load to idle after it (limit 10 %)"]


def test_a_4xx_for_a_well_formed_request_fails_the_run():
    soak = Soak(seconds=100, workers=1, seed=1, directory=Path("."))
    soak.samples = [Sample(t=float(t), rss=100, fds=40, tasks=10, ok=0, errors=0) for t in range(20, 100, 4)]
    soak.tally.outcomes.update({"put ok": 5, "put 400 IncompleteBody": 1, "put 503 SlowDown": 2,
                                "abort_upload done": 3})
    assert soak._verdict(stuck=[])["failures"] == [
        "4xx for well-formed requests (the fault was behind the gateway): {'put 400 IncompleteBody': 1}"]
