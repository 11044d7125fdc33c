"""Workloads and the named presets (`standard` is what `make bench` runs). Pure."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

PAYLOADS = ("unsigned", "signed", "crc32", "chunked-crc32")
"""How PUT bodies are sent: UNSIGNED-PAYLOAD (boto3 over HTTPS without checksums), a signed hex SHA-256 of the
body (boto3 over HTTP, older defaults), UNSIGNED-PAYLOAD with an x-amz-checksum-crc32 header, or aws-chunked
with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER: boto3's current default)."""

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BUCKET = "bench"       # the bucket every workload uses (the sink accepts any)
REGION = "us-east-1"
OPS = ("put", "multipart", "get", "range")
TARGETS = ("direct", "baseline", "gateway")
CANDIDATE = "candidate"  # a second gateway, from another source tree (A/B a change in one interleaved run)
KINDS = ("throughput", "latency", "memory")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": KiB, "ki": KiB, "m": 1000**2, "mb": 1000**2, "mib": MiB,
          "mi": MiB, "g": 1000**3, "gb": 1000**3, "gib": GiB, "gi": GiB, "t": 1000**4, "tb": 1000**4,
          "tib": 1 << 40, "ti": 1 << 40}


def parse_size(text: str) -> int:
    """'4KiB' → 4096, '64MiB', '1GiB', '5GiB', '1MB' → 1000000, '123' → 123."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 4KiB, 64MiB, 1GiB)")
    number, unit = match.groups()
    value = float(number) * _UNITS[(unit or "").lower()]
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def format_size(size: int) -> str:
    """4096 → '4KiB', 1 GiB → '1GiB', 2 MiB + 12345 → '2.01MiB', 100 → '100B'."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            if size % factor == 0:
                return f"{size // factor}{unit}"
            return f"{size / factor:.2f}{unit}"
    return f"{size}B"


@dataclass(frozen=True)
class Workload:
    """One workload, run against every target in every repetition: its upload phase (`put` or `multipart`),
    then `get` (whole objects) and `range` (ranged GETs) of the objects just uploaded."""
    name: str
    size: int
    objects: int = 1
    concurrency: int = 1
    ops: tuple[str, ...] = ("put", "get")
    reps: int = 5
    kind: str = "throughput"
    payload: str = "unsigned"
    ranges: int = 0              # ranged GETs per repetition
    range_bytes: int = MiB
    part_bytes: int = 16 * MiB   # multipart
    targets: tuple[str, ...] = TARGETS
    shared: bool = False         # one stored object: the sink drops the other uploads, every GET reads it

    def __post_init__(self) -> None:
        problems = []
        if self.size < 0:
            problems.append("size must not be negative")
        if self.objects < 1 or self.concurrency < 1 or self.reps < 1:
            problems.append("objects, concurrency and reps must be at least 1")
        if not self.ops or any(op not in OPS for op in self.ops):
            problems.append(f"ops must be among {', '.join(OPS)}")
        if sum(op in ("put", "multipart") for op in self.ops) != 1 or self.ops[0] not in ("put", "multipart"):
            problems.append("ops must start with exactly one upload: put or multipart")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}")
        if self.payload not in PAYLOADS:
            problems.append(f"payload must be one of {', '.join(PAYLOADS)}")
        if "range" in self.ops and (self.ranges < 1 or self.range_bytes < 1):
            problems.append("a range phase needs ranges ≥ 1 and range_bytes ≥ 1")
        if self.part_bytes < 5 * MiB and "multipart" in self.ops and self.size > self.part_bytes:
            problems.append("parts other than the last must be at least 5 MiB")
        if self.shared and "multipart" in self.ops:
            problems.append("shared works with put uploads only")
        if not self.targets or any(t not in (*TARGETS, CANDIDATE, "endpoint") for t in self.targets):
            problems.append(f"targets must be among {', '.join(TARGETS)}")
        if problems:
            raise ValueError(f"workload {self.name!r}: " + "; ".join(problems))

    @property
    def upload_op(self) -> str:
        return self.ops[0]

    def describe(self) -> dict:
        out = asdict(self)
        out["size_text"] = format_size(self.size)
        return out


def _standard() -> list[Workload]:
    return [
        Workload("1GiB", GiB, objects=1, concurrency=1, ops=("put", "get"), reps=5),
        Workload("64MiB", 64 * MiB, objects=8, concurrency=4, ops=("put", "get", "range"), reps=5, ranges=64,
                 range_bytes=MiB),
        Workload("4KiB", 4 * KiB, objects=200, concurrency=1, ops=("put", "get"), reps=5, kind="latency"),
        Workload("1GiB-multipart", GiB, ops=("multipart", "get", "range"), reps=3, ranges=32, range_bytes=MiB),
        Workload("1GiB-signed", GiB, ops=("put",), reps=3, payload="signed"),
        Workload("1GiB-chunked-crc32", GiB, ops=("put",), reps=3, payload="chunked-crc32"),
        Workload("16x64MiB", 64 * MiB, objects=16, concurrency=16, ops=("put", "get"), reps=1, kind="memory",
                 targets=("gateway",), shared=True),
        Workload("16x1GiB", GiB, objects=16, concurrency=16, ops=("put", "get"), reps=1, kind="memory",
                 targets=("gateway",), shared=True),
    ]


def _quick() -> list[Workload]:
    return [
        Workload("256MiB", 256 * MiB, ops=("put", "get"), reps=3),
        Workload("16MiB", 16 * MiB, objects=4, concurrency=4, ops=("put", "get", "range"), reps=3, ranges=16),
        Workload("4KiB", 4 * KiB, objects=50, ops=("put", "get"), reps=3, kind="latency"),
    ]


def _smoke() -> list[Workload]:
    return [
        Workload("2MiB", 2 * MiB + 12345, objects=2, concurrency=2, ops=("put", "get", "range"), reps=1, ranges=3,
                 range_bytes=100_000),
        Workload("4KiB", 4 * KiB, objects=3, ops=("put", "get"), reps=1, kind="latency"),
        Workload("1MiB-crc32", MiB, ops=("put", "get"), reps=1, payload="chunked-crc32"),
        # Parts of 5 MiB and a short last one: the gateway stashes it and appends the part table at Complete.
        Workload("11MiB-multipart", 11 * MiB + 12345, ops=("multipart", "get", "range"), reps=1, ranges=3,
                 range_bytes=100_000, part_bytes=5 * MiB),
    ]


def _memory() -> list[Workload]:
    return [Workload(f"16x{format_size(size)}", size, objects=16, concurrency=16, ops=("put", "get"), reps=1,
                     kind="memory", targets=("gateway",), shared=True) for size in (64 * MiB, GiB, 4 * GiB)]


PRESETS = {"standard": _standard, "quick": _quick, "smoke": _smoke, "memory": _memory}


def preset(name: str) -> list[Workload]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})")
    return PRESETS[name]()


_INT_FIELDS = {"objects", "concurrency", "reps", "ranges"}
_SIZE_FIELDS = {"size", "range_bytes", "part_bytes"}


def parse_workload(spec: str) -> Workload:
    """`NAME:size=1GiB,objects=4,concurrency=4,ops=put+get+range,ranges=16,payload=signed,reps=5,kind=throughput`.
    Unnamed fields keep Workload's defaults; `size` is required."""
    name, sep, rest = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"workload spec {spec!r}: expected NAME:size=…,…")
    values: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise ValueError(f"workload spec {spec!r}: {item!r} is not key=value")
        if key in _INT_FIELDS:
            values[key] = int(value)
        elif key in _SIZE_FIELDS:
            values[key] = parse_size(value)
        elif key in ("ops", "targets"):
            values[key] = tuple(v for v in value.split("+") if v)
        elif key in ("payload", "kind"):
            values[key] = value
        elif key == "shared":
            values[key] = value.lower() in ("1", "true", "yes")
        else:
            raise ValueError(f"workload spec {spec!r}: unknown field {key!r}")
    if "size" not in values:
        raise ValueError(f"workload spec {spec!r}: size is required")
    return Workload(name, **values)


def with_overrides(workloads: list[Workload], reps: int | None = None, targets: tuple[str, ...] | None = None,
                   payload: str | None = None, candidate: bool = False) -> list[Workload]:
    out = []
    for w in workloads:
        changes: dict = {}
        if candidate and "gateway" in w.targets and CANDIDATE not in w.targets:
            w = replace(w, targets=(*w.targets, CANDIDATE))
            if targets is not None and CANDIDATE not in targets:
                targets = (*targets, CANDIDATE)
        if reps is not None:
            changes["reps"] = reps
        if targets is not None:
            kept = tuple(t for t in w.targets if t in targets) or None
            if kept is None:
                continue
            changes["targets"] = kept
        if payload is not None:
            changes["payload"] = payload
        out.append(replace(w, **changes) if changes else w)
    return out


@dataclass
class Plan:
    workloads: list[Workload] = field(default_factory=list)

    def total_bytes(self) -> int:
        total = 0
        for w in self.workloads:
            per_rep = w.size * w.objects * sum(op in ("put", "multipart", "get") for op in w.ops)
            per_rep += w.ranges * min(w.range_bytes, w.size) if "range" in w.ops else 0
            total += per_rep * w.reps * len(w.targets)
        return total
