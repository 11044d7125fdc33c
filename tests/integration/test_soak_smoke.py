"""A short run of `make soak` (tests/soak/soak.py) in the normal suite, so the soak does not rot: its stack starts,
load and faults run, the report renders, and no wrong byte comes back. Growth is judged only by the long run."""
from __future__ import annotations

from tests.soak.soak import Soak, render


def test_a_short_soak_runs_and_never_returns_a_wrong_byte(tmp_path):
    result = Soak(seconds=20, workers=2, seed=20261208, directory=tmp_path).run()
    assert result["violations"] == []
    outcomes = result["outcomes"]
    assert outcomes.get("put ok", 0) > 0
    assert outcomes.get("get ok", 0) + outcomes.get("ranged_get ok", 0) > 0
    assert result["after"] is not None and len(result["samples"]) >= 5
    assert all(sample["tasks"] > 0 for sample in result["samples"])  # the gateway's envelope_asyncio_tasks gauge
    report = render(result, None)
    assert report.startswith("# Soak: 20 s of mixed load")
    assert "| t (s) | RSS MiB | fds | tasks |" in report
