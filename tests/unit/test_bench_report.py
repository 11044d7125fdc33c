"""Workload specs, report aggregation, goals/thresholds, and the JSON / SVG / markdown outputs of the harness."""
from __future__ import annotations

import datetime
import json
import xml.dom.minidom
from collections import Counter

import pytest

from gateway.bench import report as reports
from gateway.bench.runner import PhaseRecord
from gateway.bench.scenario import GiB, KiB, MiB, Plan, Workload, format_size, parse_size, parse_workload, preset


def test_sizes_parse_and_format():
    assert parse_size("4KiB") == 4 * KiB
    assert parse_size("64MiB") == 64 * MiB
    assert parse_size("5GiB") == 5 * GiB
    assert parse_size("1MB") == 1_000_000
    assert parse_size(" 123 ") == 123
    assert parse_size("1.5KiB") == 1536
    for bad in ("", "x", "1.3B", "-1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(GiB) == "1GiB" and format_size(4 * KiB) == "4KiB" and format_size(100) == "100B"
    assert format_size(2 * MiB + 12345) == "2.01MiB"


def test_workload_spec_parses_and_validates():
    w = parse_workload("big:size=5GiB,concurrency=4,objects=8,ops=put+get+range,ranges=16,range_bytes=1MiB,"
                       "payload=signed,reps=7,kind=throughput,targets=baseline+gateway")
    assert (w.name, w.size, w.concurrency, w.objects, w.ops, w.ranges, w.payload, w.reps, w.targets) == (
        "big", 5 * GiB, 4, 8, ("put", "get", "range"), 16, "signed", 7, ("baseline", "gateway"))
    for bad in ("nosize:objects=1", "x:size=1MiB,ops=get", "x:size=1MiB,ops=put+put", "x:size=1MiB,payload=gzip",
                "x:size=1MiB,ops=put+range", "x:size=1MiB,targets=moto", "x:size=1MiB,colour=blue", "size=1MiB"):
        with pytest.raises(ValueError):
            parse_workload(bad)


def test_presets_are_valid_and_the_standard_one_matches_the_issue():
    standard = preset("standard")
    names = {w.name for w in standard}
    assert {"1GiB", "64MiB", "4KiB"} <= names
    one_gib = next(w for w in standard if w.name == "1GiB")
    assert one_gib.size == GiB and one_gib.reps >= 5 and one_gib.ops == ("put", "get")
    assert any(w.kind == "memory" and w.concurrency == 16 and w.size == GiB for w in standard)
    for name in ("quick", "smoke", "memory"):
        assert preset(name)
    assert Plan(standard).total_bytes() > 0
    with pytest.raises(ValueError):
        preset("nope")


def _record(workload: str, op: str, target: str, rep: int, mb_s: float, *, size: int = GiB, objects: int = 1,
            cpu: float | None = None, rss: int | None = None, latencies: list[float] | None = None,
            errors: Counter | None = None) -> PhaseRecord:
    payload = size * objects
    wall = payload / (mb_s * 1e6)
    record = PhaseRecord(workload, op, target, rep, planned=objects, ops=objects, ok=objects, payload_bytes=payload,
                         wall_seconds=wall, latencies=latencies or [wall / objects] * objects,
                         ttfbs=[0.001] * objects, client_cpu_seconds=0.2, sink_cpu_seconds=0.2,
                         machine_busy_seconds=0.4 + (cpu or 0), steal_seconds=0.0)
    if errors:
        record.errors = errors
    if cpu is not None:
        record.proxy_cpu_seconds = cpu
        record.proxy_main_thread_cpu_seconds = cpu * 0.75
        record.proxy_other_threads_cpu_seconds = cpu * 0.25
        record.proxy_system_cpu_seconds = cpu * 0.4
        record.proxy_faults = 10
        record.proxy_peak_rss_bytes = rss or 100 * MiB
    return record


def _context() -> reports.Context:
    return reports.Context(started_at=datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc),
                           duration_seconds=12.0, command="envelope-gateway bench", pinned_cpu=1,
                           digest="crc64nvme", chunk_bytes=MiB, targets={"direct": "http://x", "baseline": "http://y",
                                                                          "gateway": "http://z"})


def _report(thresholds: reports.Thresholds | None = None, gateway_mb_s: float = 800, errors=None) -> dict:
    workloads = [Workload("1GiB", GiB, ops=("put", "get"), reps=2),
                 Workload("4KiB", 4 * KiB, objects=4, ops=("put", "get"), reps=1, kind="latency")]
    records = []
    for rep, scale in ((0, 1.0), (1, 0.5)):
        for op in ("put", "get"):
            records.append(_record("1GiB", op, "direct", rep, 2000 * scale))
            records.append(_record("1GiB", op, "baseline", rep, 1000 * scale, cpu=0.6))
            records.append(_record("1GiB", op, "gateway", rep, gateway_mb_s * scale, cpu=1.2 + rep * 0.2,
                                   errors=errors if (rep, op) == (1, "get") else None))
    for op in ("put", "get"):
        records.append(_record("4KiB", op, "direct", 0, 10, size=4 * KiB, objects=4,
                               latencies=[0.0005, 0.0006, 0.0007, 0.0008]))
        records.append(_record("4KiB", op, "gateway", 0, 1, size=4 * KiB, objects=4, cpu=0.01,
                               latencies=[0.0030, 0.0031, 0.0032, 0.0033]))
    return reports.build(records, workloads, _context(), thresholds)


def test_best_of_n_ratios_medians_and_added_latency():
    report = _report()
    put = report["workloads"][0]["phases"]["put"]
    assert put["targets"]["direct"]["best_mb_s"] == pytest.approx(2000, rel=1e-3)
    assert put["targets"]["gateway"]["best_mb_s"] == pytest.approx(800, rel=1e-3)
    assert put["targets"]["gateway"]["median_mb_s"] == pytest.approx(600, rel=1e-3)
    assert put["ratios"]["gateway/baseline"] == pytest.approx(0.8, abs=1e-3)
    assert put["ratios"]["gateway/direct"] == pytest.approx(0.4, abs=1e-3)
    # CPU per GiB: the median over repetitions (1.2 and 1.4).
    assert put["targets"]["gateway"]["cpu_s_per_gib"] == pytest.approx(1.3, abs=1e-3)
    assert put["targets"]["gateway"]["peak_rss_mib"] == pytest.approx(100)
    latency = report["workloads"][1]["phases"]["get"]
    assert latency["added_p50_ms"]["gateway-direct"] == pytest.approx(3.15 - 0.65, abs=1e-3)
    assert report["errors_total"] == 0


def test_goals_are_informational_and_thresholds_decide():
    report = _report()
    kinds = {(g["kind"], g["where"]): g["ok"] for g in report["goals"]}
    assert kinds[("ratio", "1GiB put")] is True          # 0.8 ≥ 0.7
    assert kinds[("cpu", "1GiB put")] is False           # 1.3 > 1.0
    assert kinds[("latency", "4KiB put")] is False       # 2.5 ms > 2 ms
    assert report["thresholds"] == []
    strict = _report(reports.Thresholds(min_ratio=0.9))
    assert [t["ok"] for t in strict["thresholds"]] == [False, False]
    loose = _report(reports.Thresholds(min_ratio=0.5, max_added_p50_ms=5))
    assert all(t["ok"] for t in loose["thresholds"]) and len(loose["thresholds"]) == 4
    unmeasurable = _report(reports.Thresholds(max_rss_mib=150))   # no memory workload in this run
    assert [t["ok"] for t in unmeasurable["thresholds"]] == [False]


def test_errors_are_counted_by_status():
    report = _report(errors=Counter({"500": 1, "verify": 2}))
    assert report["errors_total"] == 3
    assert report["workloads"][0]["phases"]["get"]["targets"]["gateway"]["errors"] == {"500": 1, "verify": 2}


def test_outputs_json_svg_markdown_and_text(tmp_path):
    report = _report()
    paths = {"json_path": tmp_path / "b.json", "svg_path": tmp_path / "b.svg", "markdown_path": tmp_path / "b.md"}
    reports.write(report, **paths)
    assert json.loads(paths["json_path"].read_text())["schema"] == reports.SCHEMA
    svg = xml.dom.minidom.parse(str(paths["svg_path"]))
    assert svg.documentElement.tagName == "svg"
    assert len(svg.getElementsByTagName("rect")) > 6
    markdown = paths["markdown_path"].read_text()
    assert "`nproc`" in markdown and "b.svg" in markdown and "| PUT 1GiB |" in markdown
    assert "gateway/baseline" in reports.text_summary(report)
    assert report["machine"]["nproc"] >= 1 and report["machine"]["python"]


def test_profile_summary_reads_pstats(tmp_path):
    import cProfile

    profile = cProfile.Profile()
    profile.runcall(sum, range(1000))
    path = tmp_path / "p.prof"
    profile.dump_stats(str(path))
    summary = reports.profile_summary(str(path))
    assert summary["by_self_time"] and "function" in summary["by_self_time"][0]
    assert "error" in reports.profile_summary(str(tmp_path / "missing.prof"))


def test_a_candidate_gateway_joins_every_gateway_workload_and_gets_ratios():
    from gateway.bench.scenario import with_overrides

    workloads = with_overrides([Workload("1GiB", GiB), Workload("mem", GiB, kind="memory", targets=("gateway",)),
                                Workload("plain", MiB, targets=("direct", "baseline"))],
                               targets=("baseline", "gateway"), candidate=True)
    assert [w.targets for w in workloads] == [("baseline", "gateway", "candidate"), ("gateway", "candidate"),
                                              ("baseline",)]
    records = [_record("1GiB", "put", "baseline", 0, 1000, cpu=0.6), _record("1GiB", "put", "gateway", 0, 500, cpu=1.5),
               _record("1GiB", "put", "candidate", 0, 600, cpu=1.2)]
    report = reports.build(records, [workloads[0]], _context())
    ratios = report["workloads"][0]["phases"]["put"]["ratios"]
    assert ratios["candidate/gateway"] == pytest.approx(1.2, abs=1e-3)
    assert ratios["candidate/baseline"] == pytest.approx(0.6, abs=1e-3)
    assert "candidate/gateway" in reports.markdown(report)
