"""`make fuzz`: the fuzz properties with a total number of examples, one pytest session per core.

    python -m tests.fuzz.run --total 1000000 --jobs 2

Every property gets the same number of examples (the total shared out, rounded up); the property files are
dealt out to the sessions so that each has about as many properties; the examples each session actually ran are
read back (tests/fuzz/conftest.py writes them), added up and reported. It fails if any property failed or if
fewer examples than the total ran.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _properties() -> dict[str, int]:
    """Property count per fuzz file, from pytest's own collection."""
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             str(HERE)], capture_output=True, text=True, check=True).stdout
    per_file: dict[str, int] = {}
    for line in listed.splitlines():
        match = re.match(r"(tests/fuzz/test_\w+\.py)::", line)
        if match:
            per_file[match.group(1)] = per_file.get(match.group(1), 0) + 1
    return per_file


def _shards(per_file: dict[str, int], jobs: int) -> list[list[str]]:
    shards: list[list[str]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for path, count in sorted(per_file.items(), key=lambda item: -item[1]):
        least = load.index(min(load))
        shards[least].append(path)
        load[least] += count
    return [shard for shard in shards if shard]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    per_file = _properties()
    properties = sum(per_file.values())
    each = math.ceil(args.total / properties)
    print(f"fuzz: {properties} properties, {each:,} examples each, {args.jobs} sessions", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        sessions = []
        for number, shard in enumerate(_shards(per_file, args.jobs)):
            counts = Path(directory) / f"counts-{number}.json"
            env = {**os.environ, "ENVELOPE_FUZZ_EACH": str(each), "ENVELOPE_FUZZ_COUNTS": str(counts)}
            env.pop("ENVELOPE_FUZZ_TOTAL", None)
            log = open(Path(directory) / f"session-{number}.log", "w")
            sessions.append((subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                               *shard], env=env, stdout=log, stderr=subprocess.STDOUT),
                             counts, log))
        ran: dict[str, int] = {}
        failed = False
        for process, counts, log in sessions:
            failed |= process.wait() != 0
            log.close()
            if counts.exists():
                ran.update(json.loads(counts.read_text())["examples"])
            else:
                failed = True
            if process.returncode != 0:
                print(Path(log.name).read_text()[-4000:])
    for test_id, count in sorted(ran.items()):
        print(f"  {count:>9,}  {test_id}")
    total = sum(ran.values())
    print(f"fuzz: {total:,} examples over {len(ran)} properties in {time.monotonic() - started:.0f} s; "
          f"{'some properties FAILED' if failed else '0 failed: no unexpected exception type, no broken round trip'}")
    if total < args.total:
        print(f"fuzz: fewer examples than the {args.total:,} asked for")
    return 1 if failed or total < args.total else 0


if __name__ == "__main__":
    sys.exit(main())
