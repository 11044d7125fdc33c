"""The /metrics exposition follows Prometheus' rules (`promtool check metrics`, from Debian's `prometheus`)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
import uuid

import pytest

from gateway.observability import metrics as metrics_module


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_promtool_accepts_the_exposition(s3, stack):
    s3.put_object(Bucket=stack.bucket, Key=f"metrics/{uuid.uuid4().hex}", Body=b"x")
    exposition = urllib.request.urlopen(stack.http.admin_url + "/metrics", timeout=10).read()
    result = subprocess.run([_promtool(), "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_no_label_can_carry_a_bucket_or_key():
    source = open(metrics_module.__file__).read()
    labels = set(re.findall(r'\[((?:"[a-z_]+",?\s*)+)\]', source))
    names = {name for group in labels for name in re.findall(r'"([a-z_]+)"', group)}
    assert names <= {"operation", "status", "direction", "method", "status_class", "outcome", "code", "version",
                     "python", "reason", "stalled", "resource"}, names
