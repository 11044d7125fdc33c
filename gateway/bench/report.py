"""The benchmark report: JSON (everything), an SVG chart (hand-written), a markdown summary, a terminal table.

Aggregation across repetitions: throughput is best-of-N (and the median is kept); CPU-seconds per GiB is the
median over repetitions; peak RSS is the maximum; latency and TTFB percentiles pool every successful operation of
every repetition. "Added latency" is a target's pooled p50 minus the direct (no proxy) pooled p50.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from xml.sax.saxutils import escape

from gateway.bench.runner import PhaseRecord
from gateway.bench.scenario import Workload, format_size
from gateway.bench.stats import best, latency_summary, median, per_gib, ratio, throughput_mb_s

SCHEMA = "envelope-gateway-bench/1"
MiB = 1 << 20
TARGET_ORDER = ("direct", "baseline", "gateway", "candidate", "endpoint")
COLORS = {"direct": "#8c8c8c", "baseline": "#4c78a8", "gateway": "#f58518", "candidate": "#54a24b",
          "endpoint": "#b279a2"}
# The project's goals (issue 5), evaluated in every report; enforced only when given as thresholds.
GOAL_MIN_RATIO = 0.7
GOAL_MAX_CPU_PER_GIB = 1.0
GOAL_MAX_RSS_MIB = 150.0
GOAL_MAX_ADDED_P50_MS = 2.0
GOAL_RSS_SPREAD = 0.10
GOAL_MIN_BYTES_PER_REP = 256 << 20
LIBRARIES = ("aiohttp", "uvloop", "cryptography", "awscrt", "multidict", "yarl", "aioboto3", "botocore", "moto")


@dataclass
class Context:
    started_at: datetime.datetime
    duration_seconds: float
    command: str
    pinned_cpu: int | None
    digest: str
    chunk_bytes: int
    targets: dict[str, str]
    gateway_settings: dict = field(default_factory=dict)
    gateway_env: dict = field(default_factory=dict)
    machine_busy_cpus_before: float | None = None
    kms: str = "moto"
    truncated: bool = False
    failure: str | None = None
    profile_path: str | None = None


@dataclass
class Thresholds:
    min_ratio: float | None = None
    max_cpu_per_gib: float | None = None
    max_rss_mib: float | None = None
    max_added_p50_ms: float | None = None


# --- machine -----------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": model,
            "cpu_flags": sorted(flags & {"aes", "vaes", "sha_ni", "avx2", "avx512f", "pclmulqdq", "vpclmulqdq"}),
            "memory_bytes": memory, "kernel": platform.release(), "python": platform.python_version(),
            "libraries": versions, "git": _git()}


def _git() -> dict | None:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "dirty": bool(dirty)} if commit else None


# --- aggregation -------------------------------------------------------------------------------------------------
def _rep_summary(r: PhaseRecord) -> dict:
    moved = r.payload_bytes
    out = {"rep": r.rep, "ops": r.ops, "ok": r.ok, "planned": r.planned, "errors": dict(r.errors),
           "bytes": r.payload_bytes, "wall_s": round(r.wall_seconds, 4),
           "mb_s": _r(throughput_mb_s(r.payload_bytes, r.wall_seconds), 1),
           "ops_s": _r(r.ok / r.wall_seconds if r.wall_seconds > 0 else None, 2),
           "p50_ms": latency_summary(r.latencies)["p50_ms"],
           "client_cpu_s": _r(r.client_cpu_seconds, 3), "sink_cpu_s": _r(r.sink_cpu_seconds, 3),
           "client_faults": r.client_faults, "sink_faults": r.sink_faults}
    instruments = (r.client_cpu_seconds or 0) + (r.sink_cpu_seconds or 0)
    out["instrument_cpu_s_per_gib"] = _r(per_gib(instruments, moved), 3)
    if r.machine_busy_seconds is not None:
        # CPU busy on the machine but not in the client, the sink or the proxy under test: other processes,
        # interrupts, moto. A large share means a noisy repetition.
        ours = instruments + (r.proxy_cpu_seconds or 0)
        out["unattributed_cpu_s"] = _r(max(0.0, r.machine_busy_seconds - ours), 3)
        out["steal_s"] = _r(r.steal_seconds, 3)
    if r.proxy_cpu_seconds is not None:
        out.update({"cpu_s": _r(r.proxy_cpu_seconds, 3),
                    "cpu_s_per_gib": _r(per_gib(r.proxy_cpu_seconds, moved), 3),
                    "loop_cpu_s_per_gib": _r(per_gib(r.proxy_main_thread_cpu_seconds, moved), 3),
                    "threads_cpu_s_per_gib": _r(per_gib(r.proxy_other_threads_cpu_seconds, moved), 3),
                    "system_cpu_s_per_gib": _r(per_gib(r.proxy_system_cpu_seconds, moved), 3),
                    "cpu_ms_per_op": _r(r.proxy_cpu_seconds * 1000 / r.ok if r.ok else None, 3),
                    "minor_faults": r.proxy_faults,
                    "minor_faults_per_mib": _r(r.proxy_faults / (moved / MiB) if moved and
                                               r.proxy_faults is not None else None, 1),
                    "peak_rss_mib": _r(r.proxy_peak_rss_bytes / MiB if r.proxy_peak_rss_bytes else None, 1),
                    "peak_rss_exact": r.proxy_peak_rss_exact})
    if r.kms:
        out["kms"] = {op: {"count": int(v["count"]), "mean_ms": _r(v["seconds"] * 1000 / v["count"], 3)}
                      for op, v in r.kms.items()}
    if r.timed_out:
        out["timed_out"] = True
    return out


def _target_summary(records: list[PhaseRecord]) -> dict:
    reps = [_rep_summary(r) for r in records]
    latencies = [x for r in records for x in r.latencies]
    ttfbs = [x for r in records for x in r.ttfbs]
    errors: Counter = Counter()
    for r in records:
        errors.update(r.errors)
    out = {"reps": reps, "best_mb_s": best(x["mb_s"] for x in reps),
           "median_mb_s": _r(median(x["mb_s"] for x in reps), 1),
           "best_ops_s": best(x["ops_s"] for x in reps), "latency": latency_summary(latencies),
           "ttfb": latency_summary(ttfbs), "errors": dict(errors), "ops": sum(r.ops for r in records),
           "instrument_cpu_s_per_gib": _r(median(x["instrument_cpu_s_per_gib"] for x in reps), 3)}
    if any("cpu_s" in x for x in reps):
        out["cpu_s_per_gib"] = _r(median(x.get("cpu_s_per_gib") for x in reps), 3)
        out["loop_cpu_s_per_gib"] = _r(median(x.get("loop_cpu_s_per_gib") for x in reps), 3)
        out["threads_cpu_s_per_gib"] = _r(median(x.get("threads_cpu_s_per_gib") for x in reps), 3)
        out["system_cpu_s_per_gib"] = _r(median(x.get("system_cpu_s_per_gib") for x in reps), 3)
        out["minor_faults_per_mib"] = _r(median(x.get("minor_faults_per_mib") for x in reps), 1)
        out["cpu_ms_per_op"] = _r(median(x.get("cpu_ms_per_op") for x in reps), 3)
        out["peak_rss_mib"] = best(x.get("peak_rss_mib") for x in reps)
    out["unattributed_cpu_s"] = _r(median(x.get("unattributed_cpu_s") for x in reps), 3)
    kms: dict[str, list[float]] = {}
    for r in records:
        for op, v in r.kms.items():
            kms.setdefault(op, [0, 0.0])
            kms[op][0] += v["count"]
            kms[op][1] += v["seconds"]
    if kms:
        out["kms"] = {op: {"count": int(c), "mean_ms": _r(s * 1000 / c, 3)} for op, (c, s) in kms.items() if c}
    return out


def _phase_summary(records: list[PhaseRecord]) -> dict:
    by_target: dict[str, list[PhaseRecord]] = {}
    for r in records:
        by_target.setdefault(r.target, []).append(r)
    targets = {name: _target_summary(by_target[name]) for name in TARGET_ORDER if name in by_target}
    out: dict = {"targets": targets}

    def mb(name: str) -> float | None:
        return targets[name]["best_mb_s"] if name in targets else None

    def p50(name: str) -> float | None:
        return targets[name]["latency"]["p50_ms"] if name in targets else None

    out["ratios"] = {k: _r(v, 3) for k, v in {
        "gateway/baseline": ratio(mb("gateway"), mb("baseline")), "gateway/direct": ratio(mb("gateway"), mb("direct")),
        "baseline/direct": ratio(mb("baseline"), mb("direct")),
        "candidate/baseline": ratio(mb("candidate"), mb("baseline")),
        "candidate/gateway": ratio(mb("candidate"), mb("gateway"))}.items() if v is not None}
    added = {}
    for name in ("baseline", "gateway", "candidate"):
        if p50(name) is not None and p50("direct") is not None:
            added[f"{name}-direct"] = _r(p50(name) - p50("direct"), 3)
    if p50("gateway") is not None and p50("baseline") is not None:
        added["gateway-baseline"] = _r(p50("gateway") - p50("baseline"), 3)
    out["added_p50_ms"] = added
    return out


def build(records: list[PhaseRecord], workloads: list[Workload], context: Context,
          thresholds: Thresholds | None = None) -> dict:
    thresholds = thresholds or Thresholds()
    out_workloads = []
    for w in workloads:
        phases = {}
        for op in w.ops:
            chosen = [r for r in records if r.workload == w.name and r.op == op]
            if chosen:
                phases[op] = _phase_summary(chosen)
        out_workloads.append({**w.describe(), "phases": phases})
    errors_total = sum(sum(r.errors.values()) for r in records)
    report = {
        "schema": SCHEMA,
        "started_at": context.started_at.isoformat(timespec="seconds"),
        "duration_s": round(context.duration_seconds, 1),
        "command": context.command,
        "machine": machine_info(),
        "setup": {"pinned_cpu": context.pinned_cpu, "digest": context.digest, "client_chunk_bytes": context.chunk_bytes,
                  "targets": context.targets, "gateway_settings": context.gateway_settings,
                  "gateway_env": context.gateway_env,
                  "machine_busy_cpus_before": _r(context.machine_busy_cpus_before, 2),
                  "kms": context.kms,
                  "profiled": context.profile_path is not None},
        "workloads": out_workloads,
        "errors_total": errors_total,
        "truncated": context.truncated,
        "failure": context.failure,
    }
    # A profiled gateway runs slower than it would: its figures say nothing about the goals.
    report["goals"] = [] if context.profile_path else evaluate_goals(report)
    report["thresholds"] = evaluate_thresholds(report, thresholds)
    if context.profile_path:
        report["profile"] = profile_summary(context.profile_path)
    return report


# --- goals and thresholds ----------------------------------------------------------------------------------------
def _checks(report: dict, min_ratio: float, max_cpu: float, max_rss: float, max_added: float) -> list[dict]:
    checks = []
    rss_by_memory_workload = {}
    for w in report["workloads"]:
        for op, phase in w["phases"].items():
            gw = phase["targets"].get("gateway")
            if gw is None:
                continue
            where = f"{w['name']} {op}"
            unsigned_transfer = w["payload"] == "unsigned" and op in ("put", "get", "multipart")
            # Throughput and CPU per GiB need enough bytes per repetition to mean anything (CPU time is read in
            # 10 ms ticks): the goals are about 1 GiB objects.
            big_enough = w["size"] * w["objects"] >= GOAL_MIN_BYTES_PER_REP
            if w["kind"] == "throughput" and unsigned_transfer and big_enough and "gateway/baseline" in phase["ratios"]:
                value = phase["ratios"]["gateway/baseline"]
                checks.append({"kind": "ratio", "where": where, "what": "gateway / baseline throughput (best of N)",
                               "value": value, "limit": min_ratio, "ok": value >= min_ratio})
            if (w["kind"] in ("throughput", "memory") and unsigned_transfer and big_enough
                    and gw.get("cpu_s_per_gib") is not None):
                value = gw["cpu_s_per_gib"]
                checks.append({"kind": "cpu", "where": where, "what": "gateway CPU-seconds per GiB (median)",
                               "value": value, "limit": max_cpu, "ok": value <= max_cpu})
            if w["kind"] == "memory" and gw.get("peak_rss_mib") is not None:
                value = gw["peak_rss_mib"]
                checks.append({"kind": "rss", "where": where,
                               "what": f"gateway peak RSS, {w['concurrency']} concurrent transfers (MiB)",
                               "value": value, "limit": max_rss, "ok": value <= max_rss})
                rss_by_memory_workload[w["name"]] = max(value, rss_by_memory_workload.get(w["name"], 0))
            if w["kind"] == "latency" and "gateway-direct" in phase["added_p50_ms"]:
                value = phase["added_p50_ms"]["gateway-direct"]
                checks.append({"kind": "latency", "where": where, "what": "p50 added over direct (ms)",
                               "value": value, "limit": max_added, "ok": value <= max_added})
    if len(rss_by_memory_workload) > 1:
        low, high = min(rss_by_memory_workload.values()), max(rss_by_memory_workload.values())
        spread = (high - low) / low if low else None
        checks.append({"kind": "rss-spread", "where": ", ".join(rss_by_memory_workload),
                       "what": "peak RSS spread across object sizes", "value": _r(spread, 3),
                       "limit": GOAL_RSS_SPREAD, "ok": spread is not None and spread <= GOAL_RSS_SPREAD})
    return checks


def evaluate_goals(report: dict) -> list[dict]:
    """The project's goals, whatever the command line asked: informational."""
    return _checks(report, GOAL_MIN_RATIO, GOAL_MAX_CPU_PER_GIB, GOAL_MAX_RSS_MIB, GOAL_MAX_ADDED_P50_MS)


def evaluate_thresholds(report: dict, thresholds: Thresholds) -> list[dict]:
    """The checks the command line asked for; any `ok: False` makes the exit status 1."""
    limits = {"ratio": thresholds.min_ratio, "cpu": thresholds.max_cpu_per_gib, "rss": thresholds.max_rss_mib,
              "latency": thresholds.max_added_p50_ms}
    checks = _checks(report, thresholds.min_ratio or 0, thresholds.max_cpu_per_gib or 0,
                     thresholds.max_rss_mib or 0, thresholds.max_added_p50_ms or 0)
    chosen = [c for c in checks if limits.get(c["kind"]) is not None]
    for kind, limit in limits.items():
        if limit is not None and not any(c["kind"] == kind for c in chosen):
            # A threshold nothing in this run could measure is a miss, not a silent pass.
            chosen.append({"kind": kind, "where": "-", "what": "no phase of this run measures it", "value": None,
                           "limit": limit, "ok": False})
    return chosen


# --- profile -----------------------------------------------------------------------------------------------------
def profile_summary(path: str, top: int = 30) -> dict:
    import pstats

    try:
        stats = pstats.Stats(path)
    except (OSError, TypeError, EOFError) as exc:
        return {"file": path, "error": f"{type(exc).__name__}: {exc}"}
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": _function_name(filename, line, name), "calls": nc, "tottime_s": round(tt, 3),
                     "cumtime_s": round(ct, 3), "tottime_share": round(tt / total, 4) if total else None})
    by_self = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    by_cumulative = sorted(rows, key=lambda r: r["cumtime_s"], reverse=True)[:top]
    return {"file": path, "total_s": round(total, 3), "by_self_time": by_self, "by_cumulative_time": by_cumulative}


_LIBRARY_PREFIX = re.compile(r"^.*(?:site-packages/|lib/python3\.\d+/)")


def _function_name(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a built-in: "<method 'join' of 'bytes' objects>"
    if "/gateway/" in filename and "site-packages" not in filename:
        filename = "gateway/" + filename.rsplit("/gateway/", 1)[1]
    else:
        filename = _LIBRARY_PREFIX.sub("", filename)
    return f"{filename}:{line}({name})"


# --- writing -----------------------------------------------------------------------------------------------------
def write(report: dict, *, json_path: Path | None, svg_path: Path | None, markdown_path: Path | None) -> None:
    for path in (json_path, svg_path, markdown_path):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=1) + "\n")
    if svg_path is not None:
        svg_path.write_text(svg_chart(report))
    if markdown_path is not None:
        markdown_path.write_text(markdown(report, svg_name=svg_path.name if svg_path else None))


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, spec: str = ".0f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _rows(report: dict, kinds: tuple[str, ...]):
    for w in report["workloads"]:
        if w["kind"] not in kinds:
            continue
        for op, phase in w["phases"].items():
            yield w, op, phase


def _label(w: dict, op: str) -> str:
    extra = f", {w['payload']}" if w["payload"] != "unsigned" else ""
    conc = f", ×{w['concurrency']}" if w["concurrency"] > 1 else ""
    size = f"{format_size(w['range_bytes'])} ranges of {w['size_text']}" if op == "range" else w["size_text"]
    return f"{op.upper()} {size}{conc}{extra}"


def _cpu_text(w: dict, t: dict) -> str:
    if w["kind"] == "latency":
        return f"{t['cpu_ms_per_op']:.2f} ms/op" if t.get("cpu_ms_per_op") is not None else "–"
    return f"{t['cpu_s_per_gib']:.2f} s/GiB" if t.get("cpu_s_per_gib") is not None else "–"


def text_summary(report: dict) -> str:
    lines = []
    header = f"{'phase':<40} {'target':<9} {'best MB/s':>10} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9} " \
             f"{'TTFB p50':>9} {'proxy CPU':>12} {'RSS MiB':>8} {'errors':>7}"
    lines.append(header)
    lines.append("-" * len(header))
    for w in report["workloads"]:
        for op, phase in w["phases"].items():
            for name, t in phase["targets"].items():
                lines.append(f"{_label(w, op):<40} {name:<9} {_fmt(t['best_mb_s'], '.1f'):>10} "
                             f"{_fmt(t['best_ops_s'], '.1f'):>9} {_fmt(t['latency']['p50_ms'], '.2f'):>9} "
                             f"{_fmt(t['latency']['p99_ms'], '.2f'):>9} {_fmt(t['ttfb']['p50_ms'], '.2f'):>9} "
                             f"{_cpu_text(w, t):>12} {_fmt(t.get('peak_rss_mib'), '.1f'):>8} "
                             f"{sum(t['errors'].values()):>7}")
            notes = []
            if w["kind"] != "latency":
                notes += [f"{k} {v:.2f}" for k, v in phase["ratios"].items()]
            else:
                notes += [f"+{k} {v:.2f} ms" for k, v in phase["added_p50_ms"].items()]
            if notes:
                lines.append(f"{'':<40} " + "  ".join(notes))
    if report["goals"]:
        lines.append("")
        lines.append("goals (issue 5):")
        for g in report["goals"]:
            lines.append(f"  [{'ok ' if g['ok'] else 'MISS'}] {g['where']}: {g['what']} = {_fmt(g['value'], '.3f')} "
                         f"(limit {g['limit']})")
    for t in report["thresholds"]:
        if t["ok"] is False:
            lines.append(f"THRESHOLD MISSED: {t['where']}: {t['what']} = {_fmt(t['value'], '.3f')} "
                         f"(limit {t['limit']})")
    if report["errors_total"]:
        lines.append(f"ERRORS: {report['errors_total']} operations failed (see the JSON report, errors by status)")
    if report["truncated"]:
        lines.append("TRUNCATED: --max-seconds reached before every phase ran")
    return "\n".join(lines)


def markdown(report: dict, svg_name: str | None = None) -> str:
    m = report["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    git = m.get("git") or {}
    out = ["# Benchmark: envelope-gateway vs a plain pass-through proxy vs direct",
           "",
           f"Run {report['started_at']} ({report['duration_s']:.0f} s), commit "
           f"`{(git.get('commit') or '?')[:12]}`{' (with local changes)' if git.get('dirty') else ''}.",
           "",
           "```sh", report["command"], "```", "",
           "## Machine", "",
           f"- `nproc`: {m['nproc']} ({m['cpu_count']} CPUs); CPU: {m['cpu_model']} "
           f"(flags: {', '.join(m['cpu_flags']) or 'none of aes/vaes/sha_ni'})",
           f"- memory: {(m['memory_bytes'] or 0) / 2**30:.1f} GiB; kernel {m['kernel']}; Python {m['python']}",
           f"- {libs}",
           f"- instruments (load client + sink) pinned to CPU {report['setup']['pinned_cpu']}; proxies unpinned; "
           f"GETs verified with {report['setup']['digest']}; gateway KMS: {report['setup'].get('kms', 'moto')} "
           f"on 127.0.0.1; machine busy before the run: "
           f"{_fmt(report['setup'].get('machine_busy_cpus_before'), '.2f')} CPUs",
           ""]
    if report["setup"]["profiled"]:
        out += ["> **Profiled run**: the gateway ran under cProfile; its figures are not measurements.", ""]
    if report["setup"]["gateway_settings"]:
        out += [f"Gateway settings: `{json.dumps(report['setup']['gateway_settings'])}`", ""]
    if report["setup"].get("gateway_env"):
        out += [f"Gateway environment: `{json.dumps(report['setup']['gateway_env'])}`", ""]
    if svg_name:
        out += [f"![throughput and latency]({svg_name})", ""]
    candidate = any("candidate" in p["targets"] for w in report["workloads"] for p in w["phases"].values())
    extra_head = " candidate MB/s | candidate/gateway | candidate CPU-s/GiB | candidate RSS MiB |" if candidate else ""
    out += ["## Throughput (best of N interleaved repetitions)", "",
            "| phase | direct MB/s | baseline MB/s | gateway MB/s | gateway/baseline | gateway/direct "
            "| gateway CPU-s/GiB (loop + threads) | baseline CPU-s/GiB | gateway peak RSS MiB |" + extra_head + " N |",
            "|---|" + "---:|" * (9 + (4 if candidate else 0))]
    for w, op, phase in _rows(report, ("throughput", "memory")):
        t = phase["targets"]
        gw, bl, dr, cd = t.get("gateway", {}), t.get("baseline", {}), t.get("direct", {}), t.get("candidate", {})
        cpu = "–"
        if gw.get("cpu_s_per_gib") is not None:
            cpu = (f"{gw['cpu_s_per_gib']:.2f} ({_fmt(gw.get('loop_cpu_s_per_gib'), '.2f')} + "
                   f"{_fmt(gw.get('threads_cpu_s_per_gib'), '.2f')})")
        extra = ""
        if candidate:
            extra = (f" {_fmt(cd.get('best_mb_s'))} | {_fmt(phase['ratios'].get('candidate/gateway'), '.2f')} | "
                     f"{_fmt(cd.get('cpu_s_per_gib'), '.2f')} | {_fmt(cd.get('peak_rss_mib'), '.0f')} |")
        out.append(f"| {_label(w, op)} | {_fmt(dr.get('best_mb_s'))} | {_fmt(bl.get('best_mb_s'))} | "
                   f"{_fmt(gw.get('best_mb_s'))} | {_fmt(phase['ratios'].get('gateway/baseline'), '.2f')} | "
                   f"{_fmt(phase['ratios'].get('gateway/direct'), '.2f')} | {cpu} | "
                   f"{_fmt(bl.get('cpu_s_per_gib'), '.2f')} | {_fmt(gw.get('peak_rss_mib'), '.0f')} |{extra} "
                   f"{w['reps']} |")
    latency_rows = list(_rows(report, ("latency",)))
    if latency_rows:
        out += ["", "## Latency (all repetitions pooled; ms)", "",
                "| phase | direct p50 / p90 / p99 | baseline p50 / p90 / p99 | gateway p50 / p90 / p99 "
                "| gateway added p50 | gateway KMS mean per call | gateway CPU ms/op |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for w, op, phase in latency_rows:
            t = phase["targets"]

            def pct(name: str, t: dict = t) -> str:
                s = t.get(name, {}).get("latency")
                if not s:
                    return "–"
                return f"{_fmt(s['p50_ms'], '.2f')} / {_fmt(s['p90_ms'], '.2f')} / {_fmt(s['p99_ms'], '.2f')}"

            kms = t.get("gateway", {}).get("kms", {})
            kms_text = ", ".join(f"{k} {v['mean_ms']:.2f}" for k, v in kms.items()) or "–"
            out.append(f"| {_label(w, op)} | {pct('direct')} | {pct('baseline')} | {pct('gateway')} | "
                       f"{_fmt(phase['added_p50_ms'].get('gateway-direct'), '+.2f')} | {kms_text} | "
                       f"{_fmt(t.get('gateway', {}).get('cpu_ms_per_op'), '.2f')} |")
    if report["goals"]:
        out += ["", "## Goals (issue 5)", "", "| | where | what | value | limit |", "|---|---|---|---:|---:|"]
        for g in report["goals"]:
            out.append(f"| {'✅' if g['ok'] else '❌'} | {g['where']} | {g['what']} | {_fmt(g['value'], '.3f')} | "
                       f"{g['limit']} |")
    errors = [(w["name"], op, name, t["errors"]) for w in report["workloads"] for op, p in w["phases"].items()
              for name, t in p["targets"].items() if t["errors"]]
    out += ["", "## Errors", ""]
    if errors:
        out += [f"- {w} {op} {name}: {e}" for w, op, name, e in errors]
    else:
        out.append("None: every operation succeeded and every GET matched its digest.")
    if report.get("truncated"):
        out.append("\n**Truncated**: the time budget ran out before every phase ran.")
    if report.get("profile") and "by_self_time" in report["profile"]:
        p = report["profile"]
        out += ["", f"## Profile of the gateway's event-loop thread (cProfile, {p['total_s']:.1f} s)", "",
                "| function | calls | self s | share | cumulative s |", "|---|---:|---:|---:|---:|"]
        for row in p["by_self_time"][:25]:
            out.append(f"| `{row['function']}` | {row['calls']} | {row['tottime_s']:.3f} | "
                       f"{(row['tottime_share'] or 0) * 100:.1f}% | {row['cumtime_s']:.3f} |")
        out += ["", "By cumulative time (coroutines count one call per resumption):", "",
                "| function | calls | cumulative s | share |", "|---|---:|---:|---:|"]
        for row in p["by_cumulative_time"][:25]:
            share = row["cumtime_s"] / p["total_s"] * 100 if p["total_s"] else 0
            out.append(f"| `{row['function']}` | {row['calls']} | {row['cumtime_s']:.3f} | {share:.0f}% |")
    out += ["", "Method: see `gateway/bench/report.py` (best-of-N throughput, median CPU-s/GiB, max peak RSS, "
            "pooled latency percentiles). Compare ratios within one run, never absolute figures across runs.", ""]
    return "\n".join(out)


# --- SVG ---------------------------------------------------------------------------------------------------------
def svg_chart(report: dict) -> str:
    """Grouped horizontal bars: throughput (best MB/s) per phase and target; then latency p50 with a p99 tick."""
    width, left, right = 980, 290, 210
    plot = width - left - right
    bar, gap = 14, 10
    parts: list[str] = []
    y = 56

    def text(x: float, ty: float, content: str, size: int = 12, anchor: str = "start", weight: str = "normal",
             fill: str = "#222") -> None:
        parts.append(f'<text x="{x:.1f}" y="{ty:.1f}" font-size="{size}" text-anchor="{anchor}" '
                     f'font-weight="{weight}" fill="{fill}">{escape(content)}</text>')

    def section(title: str, rows: list[tuple[str, dict[str, tuple[float | None, float | None]], str]],
                unit: str) -> None:
        nonlocal y
        text(16, y, title, 15, weight="bold")
        y += 14
        top = max((x for _, bars, _ in rows for pair in bars.values() for x in pair if x), default=1.0)
        scale = plot / (top * 1.05)
        axis_top = y
        for label, bars, note in rows:
            group_top = y
            for name in TARGET_ORDER:
                if name not in bars:
                    continue
                value, whisker = bars[name]
                length = (value or 0) * scale
                parts.append(f'<rect x="{left}" y="{y:.1f}" width="{length:.1f}" height="{bar}" '
                             f'fill="{COLORS[name]}"><title>{escape(name)}: {_fmt(value, ".2f")} {unit}</title></rect>')
                if whisker:
                    wx = left + whisker * scale
                    parts.append(f'<line x1="{left + length:.1f}" y1="{y + bar / 2:.1f}" x2="{wx:.1f}" '
                                 f'y2="{y + bar / 2:.1f}" stroke="#333" stroke-width="1"/>')
                    parts.append(f'<line x1="{wx:.1f}" y1="{y + 2:.1f}" x2="{wx:.1f}" y2="{y + bar - 2:.1f}" '
                                 f'stroke="#333" stroke-width="1.5"/>')
                end = left + max(length, (whisker or 0) * scale)
                text(end + 4, y + bar - 3, f"{_fmt(value, '.0f' if unit == 'MB/s' else '.2f')}", 11)
                y += bar + 2
            text(left - 8, (group_top + y) / 2 + 4, label, 12, anchor="end")
            if note:
                text(width - 8, (group_top + y) / 2 + 4, note, 11, anchor="end", fill="#555")
            y += gap
        parts.append(f'<line x1="{left}" y1="{axis_top - 4}" x2="{left}" y2="{y - gap + 2}" stroke="#999"/>')
        y += 18

    throughput_rows = []
    for w, op, phase in _rows(report, ("throughput", "memory")):
        bars = {n: (t["best_mb_s"], None) for n, t in phase["targets"].items()}
        r = phase["ratios"].get("gateway/baseline")
        throughput_rows.append((_label(w, op), bars, f"gateway/baseline {r:.2f}" if r is not None else ""))
    latency_rows = []
    for w, op, phase in _rows(report, ("latency",)):
        bars = {n: (t["latency"]["p50_ms"], t["latency"]["p99_ms"]) for n, t in phase["targets"].items()}
        added = phase["added_p50_ms"].get("gateway-direct")
        latency_rows.append((_label(w, op), bars, f"added p50 {added:+.2f} ms" if added is not None else ""))

    if throughput_rows:
        section("Throughput, MB/s (best of N interleaved repetitions; higher is better)", throughput_rows, "MB/s")
    if latency_rows:
        section("Latency, ms: bar = p50, whisker = p99 (lower is better)", latency_rows, "ms")
    legend_x = left
    for name in TARGET_ORDER:
        if any(name in p["targets"] for w in report["workloads"] for p in w["phases"].values()):
            parts.append(f'<rect x="{legend_x}" y="{y - 10}" width="12" height="12" fill="{COLORS[name]}"/>')
            text(legend_x + 16, y, name, 12)
            legend_x += 110
    y += 22
    m = report["machine"]
    text(16, y, f"{m['nproc']} × {m['cpu_model']}, Python {m['python']}, {report['started_at']}; "
                f"instruments pinned to CPU {report['setup']['pinned_cpu']}", 11, fill="#555")
    y += 16
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0f}" '
            f'viewBox="0 0 {width} {y:.0f}" font-family="Helvetica, Arial, sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>')
    title = ('<text x="16" y="28" font-size="18" font-weight="bold" fill="#111">'
             'envelope-gateway vs plain proxy vs direct</text>')
    return head + title + "".join(parts) + "</svg>\n"
