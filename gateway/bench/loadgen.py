"""`envelope-gateway bench`: a load tester for S3 endpoints, and the gateway's benchmark harness.

By default it starts, on 127.0.0.1, the in-repo sink (a fast in-memory S3 upstream), a plain pass-through proxy
(the baseline) in front of it, and the gateway in front of it (with KMS from a moto server), then runs the same
workloads straight against the sink, through the baseline and through the gateway, in interleaved repetitions.
The load client (this process) and the sink are pinned to one CPU; the proxies are left free.

With `--endpoint URL` it load-tests that S3 endpoint instead (give `--pid` of its process for CPU and RSS).

Exit status: 0 all good; 1 a threshold given on the command line was missed; 2 bad arguments; 3 operations
failed (errors, failed verifications) or the harness could not run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from typing import TYPE_CHECKING

# Only what the argument parser needs is imported here: `envelope-gateway --help` stays fast. The harness
# itself is imported by run().
from gateway.bench.scenario import BUCKET, CANDIDATE, OPS, PAYLOADS, PRESETS, REGION, TARGETS, Workload, \
    parse_size, parse_workload, preset, with_overrides

if TYPE_CHECKING:
    from gateway.bench.runner import ProgressLine, Runner
    from gateway.bench.stack import Stack

DIGESTS = ("crc64nvme", "sha256")
DEFAULT_CHUNK_BYTES = 1 << 20

EXIT_OK, EXIT_THRESHOLD, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bench` sub-command's arguments (for gateway/cli.py: `add_arguments(sub); sub.set_defaults(
    func=gateway.bench.loadgen.run)`)."""
    what = parser.add_argument_group("what to run")
    what.add_argument("--preset", choices=sorted(PRESETS), default="standard",
                      help="named set of workloads (default: standard — what `make bench` runs)")
    what.add_argument("--workload", action="append", default=[], metavar="SPEC",
                      help="a workload instead of the preset, repeatable: NAME:size=1GiB,objects=1,concurrency=1,"
                           "ops=put+get+range,ranges=16,range_bytes=1MiB,payload=unsigned,reps=5,kind=throughput")
    what.add_argument("--size", type=parse_size, help="shortcut for one workload: object size (1MiB … 5GiB)")
    what.add_argument("--objects", type=int, default=None, help="with --size: objects per repetition (default 1)")
    what.add_argument("--concurrency", "-c", type=int, default=None,
                      help="with --size: concurrent workers (default 1)")
    what.add_argument("--ops", default=None, help=f"with --size: phases, e.g. put,get,range ({', '.join(OPS)})")
    what.add_argument("--ranges", type=int, default=None, help="with --size: ranged GETs per repetition")
    what.add_argument("--range-size", type=parse_size, default=None, help="with --size: bytes per ranged GET")
    what.add_argument("--reps", type=int, default=None, help="repetitions (overrides the workloads'; best of N)")
    what.add_argument("--payload", choices=PAYLOADS, default=None,
                      help="how PUT bodies are sent (overrides the workloads')")
    what.add_argument("--targets", default=None,
                      help=f"comma-separated subset of {','.join(TARGETS)} (default: all)")

    where = parser.add_argument_group("an external endpoint instead of the local stack")
    where.add_argument("--endpoint", help="S3 endpoint URL to load-test (no local stack is started)")
    where.add_argument("--bucket", default=None, help=f"bucket to use (default {BUCKET!r}; must exist)")
    where.add_argument("--access-key-id", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    where.add_argument("--secret-access-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    where.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", REGION))
    where.add_argument("--pid", type=int, help="process id of the endpoint, for its CPU time and peak RSS")

    how = parser.add_argument_group("how")
    how.add_argument("--digest", choices=DIGESTS, default="crc64nvme",
                     help="digest verifying every GET (default crc64nvme: fast; sha256: cryptographic)")
    how.add_argument("--chunk-size", type=parse_size, default=DEFAULT_CHUNK_BYTES,
                     help="client write size (default 1MiB)")
    how.add_argument("--no-pin", action="store_true", help="do not pin the load client and the sink to one CPU")
    how.add_argument("--pin-cpu", type=int, default=None, help="the CPU for the instruments (default: the last)")
    how.add_argument("--sink-memory-mib", type=int, default=4096,
                     help="sink keeps bodies in memory up to this total, in a temp dir beyond (default 4096)")
    how.add_argument("--candidate", metavar="DIR",
                     help="also run a second gateway from the source tree DIR (e.g. a git worktree with a change) "
                          "as target 'candidate', interleaved with the others")
    how.add_argument("--kms", choices=("moto", "stub"), default="moto",
                     help="the gateway's KMS: moto server (default) or the in-repo fast stub "
                          "(gateway/bench/kms_stub.py)")
    how.add_argument("--gateway-set", action="append", default=[], metavar="KEY=VALUE",
                     help="a gateway setting, dotted, e.g. crypto.batch_bytes=4194304 (repeatable)")
    how.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                     help="an environment variable for the gateway process, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    how.add_argument("--profile-gateway", metavar="PSTATS",
                     help="run the gateway under cProfile and write its stats here (figures are then not "
                          "measurements; the breakdown is)")
    how.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                     help="first wait up to this long for the machine to be idle (< 0.2 CPUs busy for 3 s)")
    how.add_argument("--max-seconds", type=float, default=3600,
                     help="stop starting phases after this long (default 3600)")
    how.add_argument("--phase-timeout", type=float, default=900, help="seconds per phase at most (default 900)")

    out = parser.add_argument_group("output and thresholds")
    out.add_argument("--out-dir", type=Path, default=None,
                     help="write bench.json, bench.svg and bench.md here (default: only print)")
    out.add_argument("--json", type=Path, default=None, help="the JSON report path (overrides --out-dir)")
    out.add_argument("--svg", type=Path, default=None, help="the SVG chart path (overrides --out-dir)")
    out.add_argument("--markdown", type=Path, default=None, help="the markdown summary (overrides --out-dir)")
    out.add_argument("--command-label", default=None, help="how to show the command in the report")
    out.add_argument("--min-ratio", type=float, default=None,
                     help="fail unless gateway/baseline throughput ≥ this for every unsigned PUT/GET phase")
    out.add_argument("--max-cpu-per-gib", type=float, default=None,
                     help="fail unless gateway CPU-seconds per GiB ≤ this (unsigned PUT/GET phases)")
    out.add_argument("--max-rss-mib", type=float, default=None, help="fail unless gateway peak RSS ≤ this")
    out.add_argument("--max-added-p50-ms", type=float, default=None,
                     help="fail unless gateway p50 − direct p50 ≤ this on latency workloads")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress line and no summary")


def _workloads(args: argparse.Namespace) -> list[Workload]:
    if args.size is not None:
        fields: dict = {"size": args.size}
        for name in ("objects", "concurrency", "ranges"):
            if getattr(args, name) is not None:
                fields[name] = getattr(args, name)
        if args.range_size is not None:
            fields["range_bytes"] = args.range_size
        if args.ops:
            fields["ops"] = tuple(o.strip() for o in args.ops.split(",") if o.strip())
        if "range" in fields.get("ops", ()) and "ranges" not in fields:
            fields["ranges"] = 16
        workloads = [Workload("custom", **fields)]
    elif args.workload:
        workloads = [parse_workload(spec) for spec in args.workload]
    else:
        workloads = preset(args.preset)
    targets = None
    if args.endpoint:
        workloads = [replace(w, targets=("endpoint",)) for w in workloads]
    elif args.targets:
        targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        unknown = [t for t in targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown targets: {', '.join(unknown)}")
    workloads = with_overrides(workloads, reps=args.reps, targets=targets, payload=args.payload,
                               candidate=bool(args.candidate) and not args.endpoint)
    if not workloads:
        raise ValueError("no workload left to run for these targets")
    return workloads


def _gateway_settings(items: list[str]) -> dict:
    import yaml

    settings: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--gateway-set {item!r}: expected KEY=VALUE")
        node = settings
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return settings


def _paths(args: argparse.Namespace) -> dict[str, Path | None]:
    """--out-dir DIR writes DIR/<name>.json|svg|md, <name> being the preset's (or `custom`)."""
    base = args.out_dir
    name = "custom" if (args.size is not None or args.workload or args.endpoint) else args.preset
    return {"json": args.json or (base / f"{name}.json" if base else None),
            "svg": args.svg or (base / f"{name}.svg" if base else None),
            "markdown": args.markdown or (base / f"{name}.md" if base else None)}


async def _drive(args: argparse.Namespace, workloads: list[Workload], stack: Stack | None,
                 progress: ProgressLine, holder: dict) -> Runner:
    from gateway.bench.client import S3Client
    from gateway.bench.runner import Runner, TargetHandle
    from gateway.s3.sigv4 import Credentials

    connections = max(w.concurrency for w in workloads)
    common = dict(connections=connections, digest=args.digest, chunk_bytes=args.chunk_size)
    handles: list[TargetHandle] = []
    if stack is None:
        credentials = Credentials(args.access_key_id or "", args.secret_access_key or "")
        handles.append(TargetHandle("endpoint", args.endpoint, S3Client(args.endpoint, credentials, args.region,
                                                                        **common), pid=args.pid))
    else:
        credentials = Credentials(stack.client_access_key_id, stack.client_secret)
        wanted = {t for w in workloads for t in w.targets}
        for name in (*TARGETS, CANDIDATE):
            if name not in wanted:
                continue
            url = stack.url("sink" if name == "direct" else name)
            child = stack.children.get(name)
            handles.append(TargetHandle(name, url, S3Client(url, credentials, REGION, **common),
                                        pid=child.pid if child else None,
                                        admin_url=child.admin_url if child else None))

    def alive() -> str | None:
        if stack is None:
            return None
        for child in stack.children.values():
            if not child.alive():
                return f"{child.name} exited unexpectedly (code {child.process.returncode}):\n{child.log_tail()}"
        return None

    runner = Runner(handles, args.bucket or BUCKET, sink_pid=stack.pid("sink") if stack else None,
                    deadline=time.monotonic() + args.max_seconds, phase_timeout_seconds=args.phase_timeout,
                    progress=progress, digest=args.digest, alive=alive,
                    profiled_pid=stack.pid("gateway") if stack is not None and args.profile_gateway else None)
    holder["runner"] = runner  # what ran so far is reported even if the run fails or is interrupted
    try:
        await runner.warm_up()
        await runner.run(workloads)
    finally:
        for handle in handles:
            await handle.client.close()
    return runner


def machine_busy_cpus(window_seconds: float = 3.0) -> float:
    """CPUs kept busy by anything on the machine over the next `window_seconds`."""
    from gateway.bench.procstat import machine_cpu

    before = machine_cpu()[0]
    time.sleep(window_seconds)
    return (machine_cpu()[0] - before) / window_seconds


def wait_quiet(max_seconds: float, progress: ProgressLine, threshold_cpus: float = 0.2) -> float:
    """Wait (at most `max_seconds`) until the machine is idle; the busy CPUs last seen."""
    deadline = time.monotonic() + max_seconds
    busy = machine_busy_cpus(1.0)
    while busy >= threshold_cpus and time.monotonic() < deadline:
        progress.show(f"waiting for a quiet machine: {busy:.2f} CPUs busy")
        busy = machine_busy_cpus(3.0)
    if max_seconds and busy >= threshold_cpus:
        print(f"envelope-gateway bench: the machine is still busy ({busy:.2f} CPUs); measuring anyway",
              file=sys.stderr)
    return busy


def _command_line() -> str:
    """How this run was invoked, as `envelope-gateway bench …` (from the CLI or `python -m gateway.bench`)."""
    argv = sys.argv[1:]
    if argv[:1] == ["bench"]:
        argv = argv[1:]
    return shlex.join(["envelope-gateway", "bench", *argv])


def run(args: argparse.Namespace) -> int:
    try:
        workloads = _workloads(args)
        settings = _gateway_settings(args.gateway_set)
        gateway_env = dict(item.split("=", 1) for item in args.gateway_env if "=" in item)
        if len(gateway_env) != len(args.gateway_env):
            raise ValueError("--gateway-env takes NAME=VALUE")
        if args.endpoint and not (args.access_key_id and args.secret_access_key):
            raise ValueError("--endpoint needs --access-key-id and --secret-access-key (or AWS_* variables)")
    except ValueError as exc:
        print(f"envelope-gateway bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    import uvloop

    from gateway.bench import report as reports
    from gateway.bench.runner import ProgressLine
    from gateway.bench.stack import start_stack
    from gateway.bench.tuning import keep_heap_memory

    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    wanted = tuple(sorted({t for w in workloads for t in w.targets}))
    stack: Stack | None = None
    holder: dict = {}
    failure: str | None = None
    pinned: int | None = None
    original_affinity = os.sched_getaffinity(0)
    progress = ProgressLine(sys.stdout.isatty() and not args.quiet)
    busy_before = wait_quiet(args.wait_quiet, progress)
    try:
        if not args.endpoint:
            profile = str(Path(args.profile_gateway).resolve()) if args.profile_gateway else None
            stack = start_stack(wanted, pin=not args.no_pin, pin_cpu=args.pin_cpu,
                                sink_memory_mib=args.sink_memory_mib, gateway_profile=profile,
                                gateway_settings=settings, gateway_env=gateway_env, kms=args.kms,
                                candidate_dir=str(Path(args.candidate).resolve()) if args.candidate else None)
            pinned = stack.pin_cpu
        elif not args.no_pin:
            from gateway.bench.stack import instrument_cpu

            pinned = instrument_cpu(args.pin_cpu)
        if pinned is not None:
            os.sched_setaffinity(0, {pinned})
        keep_heap_memory()
        uvloop.run(_drive(args, workloads, stack, progress, holder))
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as exc:  # noqa: BLE001 - reported, then a non-zero exit
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        os.sched_setaffinity(0, original_affinity)
        if stack is not None:
            stack.stop()
    if progress.enabled:
        progress.done("")
    runner: Runner | None = holder.get("runner")
    if runner is None or not runner.records:
        print(f"envelope-gateway bench: {failure or 'no phase ran'}", file=sys.stderr)
        return EXIT_FAILED
    context = reports.Context(
        started_at=started_at, duration_seconds=time.monotonic() - started,
        command=args.command_label or _command_line(),
        pinned_cpu=pinned, digest=args.digest, chunk_bytes=args.chunk_size,
        targets={h.name: h.url for h in runner.targets.values()}, gateway_settings=settings,
        gateway_env=gateway_env, machine_busy_cpus_before=busy_before, kms=args.kms,
        truncated=runner.truncated, failure=failure, profile_path=args.profile_gateway)
    report = reports.build(runner.records, workloads, context, reports.Thresholds(
        min_ratio=args.min_ratio, max_cpu_per_gib=args.max_cpu_per_gib, max_rss_mib=args.max_rss_mib,
        max_added_p50_ms=args.max_added_p50_ms))
    paths = _paths(args)
    reports.write(report, json_path=paths["json"], svg_path=paths["svg"], markdown_path=paths["markdown"])
    if not args.quiet:
        print(reports.text_summary(report))
        for kind, path in paths.items():
            if path is not None:
                print(f"{kind}: {path}")
    if failure or report["errors_total"]:
        if failure:
            print(f"envelope-gateway bench: {failure}", file=sys.stderr)
        return EXIT_FAILED
    if any(t["ok"] is False for t in report["thresholds"]):
        return EXIT_THRESHOLD
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="envelope-gateway bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args(argv)))
