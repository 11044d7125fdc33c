"""`make soak`: a long run of mixed load against a gateway whose store and KMS misbehave, watching for leaks and
for wrong bytes.

    python -m tests.soak.soak --seconds 1800 --report docs/benchmarks/soak.md

moto serves S3 and KMS behind two fault proxies (tests/faultproxy.py); the gateway reaches each only through its
proxy. Worker threads drive PUT / GET / ranged GET / multipart of mixed sizes, and raw-socket clients that abort or
stall mid-transfer (tests/rawpeers.py). A fault thread injects resets, stalls, drips, refusals and 5xx bursts into
the store or KMS path at random times. Every object's bytes come from its seed (`Content`), so nothing big is kept
and every byte read back is checked.

It fails if any wrong byte ever comes back (a clean 200/206 whose bytes or length are wrong, or an acknowledged
object that is gone), if an aborted upload was stored, if a well-formed request got a 4xx, if the gateway's RSS
grows by more than 10 % (median of the last window against the first window after warm-up), or if it holds more
than 10 % more open descriptors once idle after the load than idle before it (under load they follow the requests
in flight). Everything is bounded by the run's deadline and listens on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.devstore import MotoServer
from gateway.s3.sigv4 import Credentials
from tests.conftest import REGION, STORE_KEY_ID, STORE_SECRET, gateway_config, start_gateway, store_env
from tests.faultproxy import DOWN, INTERNAL_ERROR, KMS_INTERNAL_FAILURE, SLOW_DOWN, UP, FaultProxy
from tests.rawpeers import RawPeer, open_fds, stalled_upload, unread_get

MiB = 1 << 20
PATTERN_PERIOD = 65_537  # prime: the pattern never lines up with the gateway's 64 KiB segments
STALL_TARGET_KEY, STALL_TARGET_SEED, STALL_TARGET_BYTES = "stall-target", 1, 24 * (1 << 20)
SIZES = (0, 1, 1000, 64 * 1024 - 1, 64 * 1024 + 1, 300 * 1000, MiB, 3 * MiB + 17)
PART_BYTES = 5 * MiB
GATEWAY_TIMEOUT_SECONDS = 5.0  # timeouts.request_head_seconds and client_idle_seconds of the soaked gateway
MAX_HELD_STALLS = 6
GROWTH_LIMIT = 0.10
BUCKET = "soak"
_WELL_FORMED = {"put", "get", "ranged_get", "multipart"}  # the boto3 workers' operations (not the raw peers')


class Content:
    """The bytes of an object, derived from its seed: byte i is pattern[i % PATTERN_PERIOD]."""

    def __init__(self, seed: int) -> None:
        self.pattern = random.Random(seed).randbytes(PATTERN_PERIOD)

    def slice(self, offset: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            start = (offset + len(out)) % PATTERN_PERIOD
            out += self.pattern[start:start + length - len(out)]
        return bytes(out)


@dataclass
class Tally:
    """What happened, shared by the threads (under `lock`)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: collections.Counter = field(default_factory=collections.Counter)  # "op outcome" -> count
    violations: list[str] = field(default_factory=list)
    faults: collections.Counter = field(default_factory=collections.Counter)
    aborted_keys: int = 0
    stalls_outliving_timeout: int = 0

    def count(self, op: str, outcome: str) -> None:
        with self.lock:
            self.outcomes[f"{op} {outcome}"] += 1

    def violation(self, text: str) -> None:
        with self.lock:
            if len(self.violations) < 100:
                self.violations.append(text)
            self.outcomes["VIOLATION"] += 1


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        return f"{meta.get('HTTPStatusCode')} {exc.response.get('Error', {}).get('Code')}"
    return f"exc:{type(exc).__name__}"


class Worker:
    """One client thread: its own boto3 client and its own window of acknowledged objects."""

    def __init__(self, number: int, run: "Soak") -> None:
        self.run, self.rng = run, random.Random(run.seed * 1000 + number)
        self.number = number
        self.client = run.client()
        self.objects: collections.deque[tuple[str, int, int]] = collections.deque()  # key, seed, size
        self.next_seed = number * 10_000_000
        self.held: list[RawPeer] = []

    def loop(self) -> None:
        ops = [(self.put, 30), (self.get, 30), (self.ranged_get, 20), (self.multipart, 3),
               (self.abort_upload, 5), (self.abort_get, 5), (self.stall, 4)]
        choices, weights = zip(*ops)
        while time.monotonic() < self.run.deadline:
            op = self.rng.choices(choices, weights)[0]
            try:
                op()
            except Exception as exc:  # noqa: BLE001 - every failure is an outcome to count, the run goes on
                self.run.tally.count(op.__name__, _outcome(exc))
            self._reap_stalls(force=False)
        self._reap_stalls(force=True)
        for key, _, _ in self.objects:
            self._delete(key)

    def _seed(self) -> int:
        self.next_seed += 1
        return self.next_seed

    def put(self) -> None:
        seed, size = self._seed(), self.rng.choice(SIZES)
        key = f"objects/{self.number}/{seed}"
        self.client.put_object(Bucket=BUCKET, Key=key, Body=Content(seed).slice(0, size))
        self._acknowledged(key, seed, size)
        self.run.tally.count("put", "ok")

    def multipart(self) -> None:
        seed = self._seed()
        key, content = f"objects/{self.number}/{seed}", Content(seed)
        sizes = [PART_BYTES, self.rng.randrange(1, MiB)]
        upload = self.client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        try:
            parts, offset = [], 0
            for number, size in enumerate(sizes, 1):
                etag = self.client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number,
                                               Body=content.slice(offset, size))["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                offset += size
            self.client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": parts})
        except Exception:
            try:
                self.client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload)
            except Exception:  # noqa: BLE001 - best effort under injected faults
                pass
            raise
        self._acknowledged(key, seed, sum(sizes))
        self.run.tally.count("multipart", "ok")

    def get(self) -> None:
        if not self.objects:
            return self.put()
        key, seed, size = self.rng.choice(self.objects)
        self._read(key, seed, size, 0, size, None, "get")

    def ranged_get(self) -> None:
        candidates = [entry for entry in self.objects if entry[2] > 1]
        if not candidates:
            return self.put()
        key, seed, size = self.rng.choice(candidates)
        first = self.rng.randrange(size)
        last = min(size - 1, first + self.rng.randrange(1, 2 * MiB))
        self._read(key, seed, size, first, last - first + 1, f"bytes={first}-{last}", "ranged_get")

    def _read(self, key: str, seed: int, size: int, offset: int, length: int, range_: str | None, op: str) -> None:
        try:
            response = self.client.get_object(Bucket=BUCKET, Key=key, **({"Range": range_} if range_ else {}))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                self.run.tally.violation(f"{op} {key}: an acknowledged object is gone (404)")
            raise
        content, body, got = Content(seed), response["Body"], 0
        while chunk := body.read(MiB):  # raises if the connection ends before Content-Length: not clean
            expected = content.slice(offset + got, len(chunk))
            if chunk != expected:
                first = next(i for i, (a, b) in enumerate(zip(chunk, expected)) if a != b)
                self.run.tally.violation(f"{op} {key} ({range_ or 'whole'}): wrong bytes at {offset + got + first}")
                return
            got += len(chunk)
        if got != length:
            self.run.tally.violation(f"{op} {key} ({range_ or 'whole'}): a clean body of {got} bytes, "
                                     f"expected {length}")
            return
        self.run.tally.count(op, "ok")

    def abort_upload(self) -> None:
        """A PUT that sends part of its body and then resets the connection: it must never be stored."""
        declared = self.rng.choice((MiB, 3 * MiB))
        peer = stalled_upload(self.run.gateway.url, self.run.credentials, BUCKET,
                              f"aborted/{self.number}/{self._seed()}", declared, self.rng.randrange(declared))
        time.sleep(self.rng.uniform(0, 0.2))
        peer.reset()
        with self.run.tally.lock:
            self.run.tally.aborted_keys += 1
        self.run.tally.count("abort_upload", "done")

    def abort_get(self) -> None:
        candidates = [entry for entry in self.objects if entry[2] > 64 * 1024]
        if not candidates:
            return self.put()
        key, _, size = self.rng.choice(candidates)
        peer = unread_get(self.run.gateway.url, self.run.credentials, BUCKET, key, read=self.rng.randrange(size))
        peer.reset()
        self.run.tally.count("abort_get", "done")

    def stall(self) -> None:
        """A client that stops: an upload that stops sending, or a GET nobody reads. Held until the gateway ends
        it (it must, after its timeout) or the run ends."""
        if len(self.held) >= MAX_HELD_STALLS:
            return
        if self.rng.random() < 0.5 or not self.objects:
            peer = stalled_upload(self.run.gateway.url, self.run.credentials, BUCKET,
                                  f"aborted/{self.number}/{self._seed()}", MiB, self.rng.randrange(MiB))
            with self.run.tally.lock:
                self.run.tally.aborted_keys += 1
        else:
            # Larger than every buffer between the gateway and the peer (the kernel's doubled 4 MiB SO_SNDBUF
            # included): a smaller object is delivered whole, and its connection is merely idle (keep-alive).
            peer = unread_get(self.run.gateway.url, self.run.credentials, BUCKET, STALL_TARGET_KEY)
        self.held.append(peer)
        self.run.tally.count("stall", "held")

    def _reap_stalls(self, force: bool) -> None:
        now, kept = time.monotonic(), []
        for peer in self.held:
            age = now - peer.opened_at
            if age < GATEWAY_TIMEOUT_SECONDS + 10 and not force:
                kept.append(peer)
                continue
            if not _ended_by_gateway(peer):
                with self.run.tally.lock:
                    self.run.tally.stalls_outliving_timeout += 1
            peer.reset()
        self.held = kept

    def _acknowledged(self, key: str, seed: int, size: int) -> None:
        self.objects.append((key, seed, size))
        if len(self.objects) > 25:  # moto keeps everything in memory: keep the store's share bounded too
            self._delete(self.objects.popleft()[0])

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=BUCKET, Key=key)
        except Exception:  # noqa: BLE001 - best effort under injected faults
            pass


def _ended_by_gateway(peer: RawPeer) -> bool:
    """Whether the gateway has ended this (stalled) connection: reading what it sent reaches EOF or RST. Unread
    response bytes are drained (at most a few MiB), with a short bound."""
    peer.read_to_end(deadline_seconds=2.0)
    return peer.ended_by is not None


class Faults:
    """Injects one fault at a time into the store's or KMS's path, for a few seconds, at random times."""

    def __init__(self, run: "Soak") -> None:
        self.run, self.rng = run, random.Random(run.seed + 7)

    def loop(self) -> None:
        proxies = {"store": self.run.store_proxy, "kms": self.run.kms_proxy}
        while True:
            pause = self.rng.uniform(2, 8)
            if time.monotonic() + pause + 5 > self.run.deadline:
                return
            time.sleep(pause)
            target = self.rng.choice(list(proxies))
            proxy = proxies[target]
            kind = self.rng.choice(("reset", "stall", "drip", "refuse", "burst"))
            direction = self.rng.choice((UP, DOWN))
            reach = 2 * MiB if target == "store" else 2048  # KMS messages are small
            if kind == "reset":
                proxy.reset_after(self.rng.randrange(0, reach), direction)
            elif kind == "stall":
                proxy.stall_after(self.rng.randrange(0, reach), direction)
            elif kind == "drip":
                proxy.drip(self.rng.choice((50_000, 500_000)), direction)
            elif kind == "refuse":
                proxy.refuse()
            else:
                canned = KMS_INTERNAL_FAILURE if target == "kms" else self.rng.choice((SLOW_DOWN, INTERNAL_ERROR))
                proxy.answer_next(self.rng.randrange(1, 6), canned)
            with self.run.tally.lock:
                self.run.tally.faults[f"{target} {kind}"] += 1
            time.sleep(self.rng.uniform(0.5, 4))
            proxy.pass_through()


@dataclass
class Sample:
    t: float
    rss: int
    fds: int
    tasks: int
    ok: int  # operations that went as intended, so far
    errors: int  # client-visible errors, so far


class Soak:
    def __init__(self, seconds: float, workers: int, seed: int, directory: Path) -> None:
        self.seconds, self.workers, self.seed, self.directory = seconds, workers, seed, directory
        self.tally = Tally()
        self.samples: list[Sample] = []
        self.deadline = 0.0
        self.after: Sample | None = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.gateway.url, region_name=REGION,
                            aws_access_key_id=self.credentials.access_key_id,
                            aws_secret_access_key=self.credentials.secret_access_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60))

    def run(self) -> dict:
        moto = MotoServer().start()
        self.store_proxy = FaultProxy("127.0.0.1", moto.port).start()
        self.kms_proxy = FaultProxy("127.0.0.1", moto.port).start()
        self.gateway = None
        try:
            direct = dict(endpoint_url=moto.url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                          aws_secret_access_key=STORE_SECRET)
            self.store = boto3.client("s3", **direct)
            self.store.create_bucket(Bucket=BUCKET)
            key_arn = boto3.client("kms", **direct).create_key()["KeyMetadata"]["Arn"]
            self.credentials = Credentials("AKIA" + os.urandom(8).hex().upper(), os.urandom(24).hex())
            config = gateway_config(self.store_proxy.url, key_arn, self.credentials.access_key_id,
                                    self.credentials.secret_access_key)
            config["timeouts"] = {"request_head_seconds": GATEWAY_TIMEOUT_SECONDS,
                                  "client_idle_seconds": GATEWAY_TIMEOUT_SECONDS}
            config["upstream"].update(connect_timeout_seconds=5, read_timeout_seconds=15)
            env = {**store_env(moto.url), "AWS_ENDPOINT_URL_KMS": self.kms_proxy.url}
            self.gateway = start_gateway(self.directory, "soak", config, env)
            return self._drive()
        finally:
            if self.gateway is not None:
                self.gateway.stop()
            self.store_proxy.stop()
            self.kms_proxy.stop()
            moto.stop()

    def _drive(self) -> dict:
        self.client().put_object(Bucket=BUCKET, Key=STALL_TARGET_KEY,
                                 Body=Content(STALL_TARGET_SEED).slice(0, STALL_TARGET_BYTES))
        started = time.monotonic()
        self.deadline = started + self.seconds
        # Many samples (300 per run): the windows' medians must see through in-flight requests coming and going.
        interval = max(1.0, min(10.0, self.seconds / 300))
        threads = [threading.Thread(target=Worker(n, self).loop, name=f"soak-worker-{n}", daemon=True)
                   for n in range(self.workers)]
        threads.append(threading.Thread(target=Faults(self).loop, name="soak-faults", daemon=True))
        for thread in threads:
            thread.start()
        while time.monotonic() < self.deadline:
            self._sample(time.monotonic() - started)
            time.sleep(min(interval, max(0.0, self.deadline - time.monotonic())))
        for thread in threads:
            thread.join(timeout=120)  # a worker finishes its current request (bounded by the client timeouts)
        self.store_proxy.pass_through()
        self.kms_proxy.pass_through()
        time.sleep(GATEWAY_TIMEOUT_SECONDS + 1)  # let the gateway end what the last stalls left
        self._sample(time.monotonic() - started)
        self.after = self.samples.pop()  # idle again: not part of the growth windows, reported on its own
        stored = self.store.list_objects_v2(Bucket=BUCKET, Prefix="aborted/").get("KeyCount", 0)
        if stored:
            self.tally.violation(f"{stored} aborted or stalled uploads were stored")
        return self._verdict(stuck=[thread.name for thread in threads if thread.is_alive()])

    def _sample(self, t: float) -> None:
        pid = self.gateway.pid
        with self.tally.lock:
            ok = sum(n for name, n in self.tally.outcomes.items() if name.endswith((" ok", " done", " held")))
            errors = sum(self.tally.outcomes.values()) - ok
        self.samples.append(Sample(round(t, 1), _rss(pid), open_fds(pid), _tasks(self.gateway.admin_url), ok,
                                   errors))

    def _verdict(self, stuck: list[str]) -> dict:
        warm = [s for s in self.samples if s.t >= 0.2 * self.seconds]
        window = max(3, len(warm) // 10)
        growth = {}
        for name in ("rss", "fds", "tasks"):
            first = statistics.median(getattr(s, name) for s in warm[:window]) if warm else 0
            last = statistics.median(getattr(s, name) for s in warm[-window:]) if warm else 0
            growth[name] = {"first": first, "last": last, "growth": (last - first) / first if first else 0.0}
        failures = []
        if self.tally.violations:
            failures.append(f"{len(self.tally.violations)} wrong-byte / lost-object violations")
        if growth["rss"]["growth"] > GROWTH_LIMIT:
            failures.append(f"rss grew {growth['rss']['growth']:.0%} after warm-up (limit 10 %)")
        # Open files under load follow the requests in flight (a client and a store socket each, 20-60 here), so
        # window medians swing with the load's phases, not with leaks. A leaked descriptor outlives its request:
        # once the load has ended and the gateway has settled, it has as many as before the load, or it leaked.
        baseline, after = (self.samples[0] if self.samples else None), self.after
        if baseline is not None and after is not None and baseline.fds:
            idle_growth = (after.fds - baseline.fds) / baseline.fds
            growth["fds"]["idle_before"], growth["fds"]["idle_after"] = baseline.fds, after.fds
            if idle_growth > GROWTH_LIMIT:
                failures.append(f"fds grew {idle_growth:.0%} from idle before the load to idle after it "
                                "(limit 10 %)")
        # The workers' requests are well-formed and complete: a 4xx for one blames the client for a fault behind
        # the gateway (the store or KMS misbehaving), which a client will not retry.
        misblamed = {name: n for name, n in self.tally.outcomes.items()
                     if name.split(" ")[0] in _WELL_FORMED and name.split(" ")[1].startswith("4")}
        if misblamed:
            failures.append(f"4xx for well-formed requests (the fault was behind the gateway): {misblamed}")
        if len(warm) < 2 * window:
            failures.append("too short to judge growth (fewer than two windows of samples after warm-up)")
        if stuck:
            failures.append(f"threads still running at the end: {stuck}")
        return {"seconds": self.seconds, "workers": self.workers, "seed": self.seed, "growth": growth,
                "failures": failures, "violations": list(self.tally.violations),
                "outcomes": dict(self.tally.outcomes), "faults": dict(self.tally.faults),
                "aborted_or_stalled_uploads": self.tally.aborted_keys,
                "stalls_outliving_timeout": self.tally.stalls_outliving_timeout,
                "samples": [s.__dict__ for s in self.samples],
                "baseline": self.samples[0].__dict__ if self.samples else None,
                "after": self.after.__dict__ if self.after else None}


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _tasks(admin_url: str) -> int:
    try:
        text = urllib.request.urlopen(admin_url + "/metrics", timeout=5).read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("envelope_asyncio_tasks "):
            return int(float(line.split()[1]))
    return -1  # a gateway without the gauge


def render(result: dict, isolation: dict | None) -> str:
    verdict = "PASS" if not result["failures"] else "FAIL"
    lines = [f"# Soak: {result['seconds']:.0f} s of mixed load with injected faults — {verdict}", "",
             "`make soak` (SOAK_SECONDS to change the duration). moto (S3 + KMS) behind two fault proxies; "
             f"{result['workers']} client threads (PUT / GET / ranged GET / multipart, client aborts and stalls); "
             "store and KMS faults (resets, stalls, drips, refusals, 5xx bursts) at random times. Every byte read "
             f"back is checked against its seed (run seed {result['seed']}).", ""]
    lines += ["## Verdict", ""]
    lines += [f"- {failure}" for failure in result["failures"]] or ["- no wrong byte, no misattributed 4xx, no growth over 10 %"]
    lines += ["", "| after warm-up | first window (median) | last window (median) | growth |", "|---|---|---|---|"]
    for name, unit, scale in (("rss", "MiB", 2**20), ("fds", "", 1), ("tasks", "", 1)):
        g = result["growth"][name]
        lines.append(f"| {name} {unit} | {g['first'] / scale:.1f} | {g['last'] / scale:.1f} | {g['growth']:+.1%} |")
    lines += ["", "## Over time", "", "| t (s) | RSS MiB | fds | tasks | ok so far | errors so far |",
              "|---|---|---|---|---|---|"]
    samples = result["samples"]
    step = max(1, len(samples) // 40)
    for sample in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {sample['t']:.0f} | {sample['rss'] / 2**20:.1f} | {sample['fds']} | {sample['tasks']} | "
                     f"{sample['ok']} | {sample['errors']} |")
    if result["after"] and result["baseline"]:
        before, after = result["baseline"], result["after"]
        lines += ["", f"Before the load: {before['fds']} fds, {before['tasks']} tasks. "
                  f"{GATEWAY_TIMEOUT_SECONDS + 1:.0f} s after it ended (faults off): {after['fds']} fds, "
                  f"{after['tasks']} tasks, RSS {after['rss'] / 2**20:.1f} MiB — what the gateway still holds."]
    lines += ["", "## Outcomes by operation and client-visible class", "", "| operation outcome | count |",
              "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(result["outcomes"].items())]
    lines += ["", "## Faults injected", "", "| target fault | count |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(result["faults"].items())]
    lines += ["", f"Aborted or stalled uploads: {result['aborted_or_stalled_uploads']} (none may be stored). "
              f"Stalled clients the gateway had not ended {GATEWAY_TIMEOUT_SECONDS + 10:.0f} s after they stopped "
              f"(its timeouts are {GATEWAY_TIMEOUT_SECONDS:.0f} s): {result['stalls_outliving_timeout']}."]
    if result["violations"]:
        lines += ["", "## Violations", ""] + [f"- {v}" for v in result["violations"]]
    if isolation:
        lines += ["", "## Isolation acceptance (tests/integration/test_isolation_acceptance.py)", "",
                  _isolation_line(isolation)]
    return "\n".join(lines) + "\n"


def _isolation_line(isolation: dict) -> str:
    held, trips = isolation["held"], isolation["round_trips"]
    text = (f"Unrelated {isolation['round_trip_bytes'] >> 20} MiB PUT+GET round trips while {held['unread_gets']} "
            f"unread GETs, {held['stalled_uploads']} stalled uploads and {held['half_sent_heads']} half-sent heads "
            f"were held: {trips['loaded']} succeeded, {trips['loaded_failed']} failed; unloaded p99 "
            f"{isolation['unloaded_p99_seconds']:.3f} s over {trips['unloaded']}.")
    if isolation["ratio"] is not None:
        text += (f" Loaded p99 {isolation['loaded_p99_seconds']:.3f} s = {isolation['ratio']:.2f}x unloaded "
                 f"(target ≤ 3x: {'met' if isolation['within_3x'] else 'NOT met'}).")
    else:
        text += f" Target ≤ 3x: NOT met. First failures: {isolation['failures']}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--report", type=Path, default=Path("docs/benchmarks/soak.md"))
    parser.add_argument("--isolation-json", type=Path, default=None,
                        help="the isolation acceptance test's result (ENVELOPE_ISOLATION_REPORT) to include")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    with tempfile.TemporaryDirectory(prefix="envelope-soak-") as directory:
        result = Soak(args.seconds, args.workers, seed, Path(directory)).run()
    isolation = None
    if args.isolation_json and args.isolation_json.exists() and args.isolation_json.stat().st_size:
        isolation = json.loads(args.isolation_json.read_text())
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(result, isolation))
    args.report.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"soak: {'PASS' if not result['failures'] else 'FAIL'} — report in {args.report}")
    for failure in result["failures"]:
        print("  " + failure)
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
