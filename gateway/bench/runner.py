"""Runs workloads against targets, in interleaved repetitions, and records every phase.

For each workload, each repetition runs every target in turn (the order rotates from one repetition to the
next, so no target always runs first or last), and for each target the workload's phases in order: the upload
(`put` or `multipart`), `get` of every object uploaded, `range` GETs; then the objects are deleted. Around
each phase the runner reads the CPU time of the proxy under test (and of the instruments: this process and the
sink) from /proc, and resets and reads the proxy's peak RSS. Every loop is bounded in count and in time.
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.bench import procstat
from gateway.bench.client import OpResult, Progress, S3Client
from gateway.bench.datagen import PatternData, object_seed
from gateway.bench.scenario import Workload

DEFAULT_PHASE_TIMEOUT_SECONDS = 900


@dataclass
class TargetHandle:
    name: str
    url: str
    client: S3Client
    pid: int | None = None          # the process under test (a proxy); None when going straight to the store
    admin_url: str | None = None    # the gateway's metrics endpoint


@dataclass
class PhaseRecord:
    workload: str
    op: str
    target: str
    rep: int
    planned: int
    ops: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    payload_bytes: int = 0
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    proxy_cpu_seconds: float | None = None
    proxy_main_thread_cpu_seconds: float | None = None
    proxy_other_threads_cpu_seconds: float | None = None
    proxy_peak_rss_bytes: int | None = None
    proxy_peak_rss_exact: bool = True
    proxy_faults: int | None = None
    proxy_system_cpu_seconds: float | None = None
    sink_cpu_seconds: float | None = None
    sink_faults: int | None = None
    client_cpu_seconds: float | None = None
    client_faults: int | None = None
    machine_busy_seconds: float | None = None   # all CPUs, all processes, interrupts included
    steal_seconds: float | None = None          # CPU time the hypervisor gave to someone else
    kms: dict[str, dict[str, float]] = field(default_factory=dict)  # operation → {count, seconds} (gateway)
    timed_out: bool = False


_METRIC = re.compile(r'^envelope_kms_request_duration_seconds_(sum|count)\{operation="([A-Za-z]+)"\} ([0-9.eE+-]+)$')


def _kms_totals(admin_url: str | None) -> dict[str, dict[str, float]]:
    """KMS calls and their total seconds, by operation, from the gateway's /metrics (best effort)."""
    if not admin_url:
        return {}
    try:
        with urllib.request.urlopen(admin_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match:
            kind, operation, value = match.groups()
            out.setdefault(operation, {})["seconds" if kind == "sum" else "count"] = float(value)
    return out


def _kms_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    out = {}
    for operation, values in after.items():
        old = before.get(operation, {})
        count = values.get("count", 0) - old.get("count", 0)
        if count:
            out[operation] = {"count": count, "seconds": values.get("seconds", 0) - old.get("seconds", 0)}
    return out


def phase_line(record: PhaseRecord, planned: int) -> str:
    wall = record.wall_seconds or float("inf")
    text = (f"{record.ok}/{planned} ops  {record.payload_bytes / 1e6:10.1f} MB  "
            f"{record.payload_bytes / wall / 1e6:8.1f} MB/s  {record.ok / wall:8.1f} ops/s")
    if record.proxy_cpu_seconds is not None and record.payload_bytes:
        text += f"  {record.proxy_cpu_seconds / (record.payload_bytes / 2**30):5.2f} CPU-s/GiB"
    if record.errors:
        text += f"  errors {dict(record.errors)}"
    return text


class ProgressLine:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, enabled: bool, stream=sys.stdout) -> None:
        self.enabled = enabled
        self._stream = stream
        self._width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = len(text)

    def done(self, text: str) -> None:
        if not self.enabled:
            return
        self.show(text)
        self._stream.write("\n")
        self._stream.flush()
        self._width = 0


class Runner:
    def __init__(self, targets: list[TargetHandle], bucket: str, *, sink_pid: int | None, deadline: float,
                 phase_timeout_seconds: float = DEFAULT_PHASE_TIMEOUT_SECONDS, progress: ProgressLine | None = None,
                 digest: str = "crc64nvme", alive: Callable[[], str | None] | None = None,
                 profiled_pid: int | None = None) -> None:
        self.targets = {t.name: t for t in targets}
        self.bucket = bucket
        self.sink_pid = sink_pid
        self.deadline = deadline
        self.phase_timeout_seconds = phase_timeout_seconds
        self.progress = progress or ProgressLine(False)
        self.digest = digest
        self.alive = alive or (lambda: None)
        self.profiled_pid = profiled_pid  # gets SIGUSR1/SIGUSR2 around its phases (gateway.bench.profiled)
        self.records: list[PhaseRecord] = []
        self.truncated = False
        self._step = 0
        self._steps = 0

    # --- the plan ----------------------------------------------------------------------------------------------
    async def warm_up(self) -> None:
        """One small PUT + GET + DELETE per target: connections, KMS key lookup, first-request paths."""
        for target in self.targets.values():
            data = PatternData(object_seed("warm-up", target.name), 256 * 1024)
            put = await target.client.put(self.bucket, f"warm-up/{target.name}", data)
            if not put.ok:
                raise RuntimeError(f"warm-up PUT to {target.name} ({target.url}) failed: {put.error}")
            get = await target.client.get(self.bucket, f"warm-up/{target.name}", data.size, put.digest)
            if not get.ok:
                raise RuntimeError(f"warm-up GET from {target.name} ({target.url}) failed: {get.error}")
            await target.client.delete(self.bucket, f"warm-up/{target.name}")

    async def run(self, workloads: list[Workload]) -> list[PhaseRecord]:
        self._steps = sum(w.reps * len([t for t in w.targets if t in self.targets]) * len(w.ops)
                          for w in workloads)
        for workload in workloads:
            names = [t for t in workload.targets if t in self.targets]
            for rep in range(workload.reps):
                order = names[rep % len(names):] + names[:rep % len(names)] if names else []
                for name in order:
                    if time.monotonic() >= self.deadline:
                        self.truncated = True
                        return self.records
                    problem = self.alive()
                    if problem:
                        raise RuntimeError(problem)
                    await self._run_target(workload, self.targets[name], rep)
        return self.records

    async def _run_target(self, workload: Workload, target: TargetHandle, rep: int) -> None:
        datas = [PatternData(object_seed(workload.name, target.name, rep, i), workload.size)
                 for i in range(workload.objects)]
        keys = [f"{workload.name}/{target.name}/{i}" for i in range(workload.objects)]
        digests: dict[int, str] = {}
        try:
            for op in workload.ops:
                self._step += 1
                record = await self._phase(workload, target, rep, op, datas, keys, digests)
                self.records.append(record)
        finally:
            await self._bounded(min(workload.objects, 16), len(keys),
                                lambda i: target.client.delete(self.bucket, keys[i]), time.monotonic() + 120)

    # --- one phase ---------------------------------------------------------------------------------------------
    async def _phase(self, workload: Workload, target: TargetHandle, rep: int, op: str, datas: list[PatternData],
                     keys: list[str], digests: dict[int, str]) -> PhaseRecord:
        client = target.client
        count = workload.ranges if op == "range" else workload.objects
        record = PhaseRecord(workload.name, op, target.name, rep, count)
        precomputed: dict[int, str | int] = {}
        if op == "put" and workload.payload == "signed":
            precomputed = {i: d.digest("sha256") for i, d in enumerate(datas)}
        elif op == "put" and workload.payload == "crc32":
            precomputed = {i: d.crc32() for i, d in enumerate(datas)}
        ranges: list[tuple[int, int, int]] = []
        if op == "range":
            rng = random.Random(object_seed(workload.name, "ranges", rep))
            for j in range(count):
                i = j % workload.objects
                length = min(workload.range_bytes, workload.size)
                start = rng.randrange(0, workload.size - length + 1)
                ranges.append((i, start, start + length - 1))

        discard = {"x-amz-meta-bench-discard": "1"}

        async def one(j: int) -> OpResult:
            if op == "put":
                # Shared: only object 0 is stored; the sink counts and drops the others (the proxy does not know).
                extra = discard if workload.shared and j else None
                result = await client.put(self.bucket, keys[j], datas[j], workload.payload, precomputed.get(j),
                                          extra)
            elif op == "multipart":
                result = await client.multipart_put(self.bucket, keys[j], datas[j], workload.part_bytes)
            elif op == "get":
                i = 0 if workload.shared else j
                expected = digests.get(i) or datas[i].digest(self.digest)
                return await client.get(self.bucket, keys[i], workload.size, expected)
            else:
                i, first, last = ranges[j]
                i = 0 if workload.shared else i
                result = await client.get(self.bucket, keys[i], last - first + 1, None, (first, last))
                if result.ok and result.digest != datas[i].digest(self.digest, first, last + 1):
                    result.ok, result.error = False, "verify"
                return result
            if result.ok and result.digest:
                digests[j] = result.digest
            return result

        label = (f"[{self._step}/{self._steps}] {workload.name} rep {rep + 1}/{workload.reps} {target.name:<8} "
                 f"{op:<9}")
        kms_before = _kms_totals(target.admin_url) if op in ("put", "multipart", "get", "range") else {}
        if target.pid is not None:
            record.proxy_peak_rss_exact = procstat.reset_peak_rss(target.pid)
            proxy_before = procstat.Snapshot.of(target.pid)
        sink_before = procstat.Snapshot.of(self.sink_pid) if self.sink_pid else None
        client_before = procstat.Snapshot.of(os.getpid())
        machine_before = procstat.machine_cpu()
        client.progress.bytes = client.progress.ops = 0
        rss_samples: list[int] = []
        started = time.perf_counter()
        phase_deadline = min(self.deadline, time.monotonic() + self.phase_timeout_seconds)
        profiling = self.profiled_pid is not None and self.profiled_pid == target.pid
        if profiling:
            os.kill(target.pid, signal.SIGUSR1)
        ticker = asyncio.create_task(self._tick(label, client.progress, count, started, target.pid, rss_samples,
                                                sample_rss=target.pid is not None and not record.proxy_peak_rss_exact))
        try:
            results = await self._bounded(workload.concurrency, count, one, phase_deadline)
        finally:
            if profiling:
                os.kill(target.pid, signal.SIGUSR2)
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        record.wall_seconds = time.perf_counter() - started
        machine_after = procstat.machine_cpu()
        record.machine_busy_seconds = machine_after[0] - machine_before[0]
        record.steal_seconds = machine_after[1] - machine_before[1]
        client_spent = procstat.Snapshot.of(os.getpid()).since(client_before)
        record.client_cpu_seconds, record.client_faults = client_spent.cpu, client_spent.faults
        if sink_before is not None:
            sink_spent = procstat.Snapshot.of(self.sink_pid).since(sink_before)
            record.sink_cpu_seconds, record.sink_faults = sink_spent.cpu, sink_spent.faults
        if target.pid is not None:
            spent = procstat.Snapshot.of(target.pid).since(proxy_before)
            record.proxy_cpu_seconds = spent.cpu
            record.proxy_faults = spent.faults
            record.proxy_system_cpu_seconds = spent.system
            record.proxy_main_thread_cpu_seconds = spent.main
            record.proxy_other_threads_cpu_seconds = spent.other
            peak = procstat.peak_rss_bytes(target.pid)
            if not record.proxy_peak_rss_exact:
                peak = max([*rss_samples, procstat.rss_bytes(target.pid) or 0])
            record.proxy_peak_rss_bytes = peak
        if target.admin_url:
            record.kms = _kms_delta(kms_before, _kms_totals(target.admin_url))
        record.timed_out = len(results) < count
        for result in results:
            record.ops += 1
            if result.ok:
                record.ok += 1
                record.payload_bytes += result.payload_bytes
                record.latencies.append(result.latency)
                if result.ttfb is not None:
                    record.ttfbs.append(result.ttfb)
            else:
                record.errors[result.error or "unknown"] += 1
        if record.timed_out:
            record.errors["not-run:timeout"] += count - len(results)
        self.progress.done(f"{label} {phase_line(record, count)}")
        return record

    async def _tick(self, label: str, progress: Progress, count: int, started: float, pid: int | None,
                    rss_samples: list[int], sample_rss: bool) -> None:
        interval = 0.1 if sample_rss else 0.5
        while True:  # cancelled by the phase when it ends (phases are bounded in time)
            await asyncio.sleep(interval)
            if sample_rss and pid is not None:
                rss = procstat.rss_bytes(pid)
                if rss:
                    rss_samples.append(rss)
            elapsed = time.perf_counter() - started
            rate = progress.bytes / elapsed / 1e6 if elapsed > 0 else 0
            self.progress.show(f"{label} {progress.ops}/{count} ops  {progress.bytes / 1e6:10.1f} MB  "
                               f"{rate:8.1f} MB/s  {elapsed:6.1f} s")

    @staticmethod
    async def _bounded(concurrency: int, count: int, fn: Callable[[int], Awaitable], deadline: float) -> list:
        """fn(0..count-1) on `concurrency` workers; no new call starts after `deadline`. Results in call order
        (only the calls that ran)."""
        results: dict[int, object] = {}
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < count and time.monotonic() < deadline:
                index = next_index
                next_index += 1
                results[index] = await fn(index)

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
        return [results[i] for i in sorted(results)]
