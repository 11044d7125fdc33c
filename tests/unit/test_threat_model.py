"""docs/THREAT_MODEL.md names, for every promise, the test that checks it: each named test must exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `unit/test_x.py`, `integration/test_y.py::test_z`, and `::test_z` (another test of the file named last).
_REFERENCE = re.compile(r"`((?:unit|integration|fuzz|deploy)/test_\w+\.py)?(?:::(\w+))?(?:\[[^\]]*\])?`")


def _references() -> list[tuple[str, str | None]]:
    found, current = [], None
    for match in _REFERENCE.finditer((ROOT / "docs" / "THREAT_MODEL.md").read_text()):
        path, test = match.groups()
        if path:
            current = path
        if path or test:
            assert current is not None, f"{match.group(0)} names a test before naming its file"
            found.append((current, test))
    return found


def test_every_test_the_threat_model_names_exists():
    references = _references()
    assert len(references) > 60
    missing = []
    for path, test in references:
        source = ROOT / "tests" / path
        if not source.exists():
            missing.append(path)
        elif test and not re.search(rf"^(async )?def {test}\(", source.read_text(), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"THREAT_MODEL.md names tests that do not exist: {missing}"
