"""The whole benchmark harness, tiny: sink + baseline proxy + gateway (with moto KMS), one repetition.

No timed assertions: the figures are whatever this machine gives; the test checks that every target ran every
phase, every operation succeeded and verified, the outputs were written, and a missed threshold exits 1.
"""
from __future__ import annotations

import json
import subprocess
import sys
import xml.dom.minidom


def test_smoke_run_against_sink_baseline_and_gateway(tmp_path):
    out = tmp_path / "bench"
    # An unreachable latency threshold: the run must complete, write its report, and exit 1 (threshold missed).
    result = subprocess.run([sys.executable, "-m", "gateway.bench", "--preset", "smoke", "--reps", "1",
                             "--out-dir", str(out), "--max-added-p50-ms", "-1000", "--max-seconds", "120"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "smoke.json").read_text())
    assert report["errors_total"] == 0 and not report["truncated"] and report["failure"] is None
    ran = {(w["name"], op, target) for w in report["workloads"] for op, phase in w["phases"].items()
           for target in phase["targets"]}
    for w in report["workloads"]:
        for op in w["ops"]:
            for target in ("direct", "baseline", "gateway"):
                assert (w["name"], op, target) in ran
    gateway_put = report["workloads"][0]["phases"]["put"]["targets"]["gateway"]
    assert gateway_put["peak_rss_mib"] > 0 and gateway_put["reps"][0]["ok"] == report["workloads"][0]["objects"]
    assert gateway_put["kms"]["GenerateDataKey"]["count"] == report["workloads"][0]["objects"]
    assert [t["ok"] for t in report["thresholds"]] == [False, False]
    xml.dom.minidom.parse(str(out / "smoke.svg"))
    assert "## Machine" in (out / "smoke.md").read_text()
    assert "THRESHOLD MISSED" in result.stdout


def test_bad_arguments_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gateway.bench", "--workload", "broken"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "workload spec" in result.stderr
