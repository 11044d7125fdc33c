"""The processes a benchmark run starts and stops: the sink, the baseline proxy, moto (KMS) and the gateway.

All bind 127.0.0.1, on free ports. The sink is pinned to the instrument CPU (with the load client); the proxies
and moto get every CPU explicitly, whatever the affinity of this process. Each child gets SIGTERM if this
process dies (PR_SET_PDEATHSIG), and `stop()` ends only the processes started here, by their Popen handles.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gateway.bench.scenario import REGION
from gateway.devstore import free_port, wait_until_serving

STORE_KEY_ID = "bench-store-key"
STORE_SECRET = "bench-store-secret"
_PR_SET_PDEATHSIG = 1


def all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


def instrument_cpu(requested: int | None = None) -> int:
    """The CPU for the load client and the sink: the one asked for, or the highest one we may use."""
    allowed = os.sched_getaffinity(0)
    if requested is not None:
        if requested not in all_cpus():
            raise ValueError(f"CPU {requested} does not exist (0..{(os.cpu_count() or 1) - 1})")
        return requested
    return max(allowed)


def _child_setup(cpus: set[int]):
    def setup() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
        os.sched_setaffinity(0, cpus)
    return setup


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path | None = None
    admin_url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_seconds: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    """What `start_stack` started. `children` are in start order; stop() ends them in reverse."""
    directory: Path
    client_access_key_id: str
    client_secret: str
    pin_cpu: int | None
    children: dict[str, Child] = field(default_factory=dict)
    kms_key_arn: str | None = None
    _tempdir: tempfile.TemporaryDirectory | None = None

    def url(self, name: str) -> str:
        return self.children[name].url

    def pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.pid if child else None

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()


def _spawn(stack: Stack, name: str, argv: list[str], url: str, ready_url: str, cpus: set[int],
           env: dict[str, str] | None = None, timeout_seconds: float = 60, cwd: str | None = None) -> Child:
    log_path = stack.directory / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, preexec_fn=_child_setup(cpus), cwd=cwd or os.getcwd())
    child = Child(name, process, url, log_path)
    stack.children[name] = child
    try:
        wait_until_serving(ready_url, process, timeout_seconds, name)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- {name} log ---\n{child.log_tail()}") from None
    return child


def start_stack(targets: tuple[str, ...], *, pin: bool = True, pin_cpu: int | None = None,
                sink_memory_mib: int = 4096, gateway_profile: str | None = None,
                gateway_settings: dict | None = None, gateway_env: dict[str, str] | None = None,
                kms: str = "moto", candidate_dir: str | None = None, directory: str | None = None) -> Stack:
    """Start the sink, and the baseline proxy / moto + gateway when those targets are wanted."""
    tempdir = None
    if directory is None:
        tempdir = tempfile.TemporaryDirectory(prefix="envelope-bench-")
        directory = tempdir.name
    cpu = instrument_cpu(pin_cpu) if pin else None
    stack = Stack(Path(directory), "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), cpu,
                  _tempdir=tempdir)
    everywhere = all_cpus()
    instruments = {cpu} if cpu is not None else everywhere
    py = sys.executable
    try:
        port = free_port()
        sink_url = f"http://127.0.0.1:{port}"
        _spawn(stack, "sink", [py, "-m", "gateway.bench.sink", "--port", str(port), "--memory-budget-mib",
                               str(sink_memory_mib), "--keep-heap"], sink_url, f"{sink_url}/probe/x", instruments)
        if "baseline" in targets:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            _spawn(stack, "baseline", [py, "-m", "gateway.bench.baseline", "--port", str(port), "--upstream",
                                       sink_url], url, f"{url}/probe/x", everywhere)
        if "gateway" in targets or candidate_dir:
            kms_url = _start_kms(stack, everywhere, kms)
            if "gateway" in targets:
                _start_gateway(stack, "gateway", sink_url, kms_url, everywhere, gateway_profile,
                               gateway_settings or {}, gateway_env or {})
            if candidate_dir:
                _start_gateway(stack, "candidate", sink_url, kms_url, everywhere, None, gateway_settings or {},
                               gateway_env or {}, cwd=candidate_dir)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start_kms(stack: Stack, cpus: set[int], kind: str) -> str:
    """moto (KMS as the tests use it) or the in-repo stub (fast); the URL, with stack.kms_key_arn set."""
    py = sys.executable
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if kind == "stub":
        from gateway.bench.kms_stub import DEFAULT_KEY_ARN

        _spawn(stack, "kms", [py, "-m", "gateway.bench.kms_stub", "--port", str(port)], url, f"{url}/", cpus)
        stack.kms_key_arn = DEFAULT_KEY_ARN
        return url
    if kind != "moto":
        raise ValueError(f"unknown KMS {kind!r} (moto or stub)")
    import boto3

    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    _spawn(stack, "kms", [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, f"{url}/moto-api/",
           cpus, env=env)
    client = boto3.client("kms", endpoint_url=url, region_name=REGION, aws_access_key_id=STORE_KEY_ID,
                          aws_secret_access_key=STORE_SECRET)
    stack.kms_key_arn = client.create_key()["KeyMetadata"]["Arn"]
    return url


def _merged(base: dict, changes: dict) -> dict:
    """base with changes applied section by section (`--gateway-set kms.bucket_keys.buckets=[b]` keeps kms.key_id)."""
    out = dict(base)
    for name, value in changes.items():
        out[name] = _merged(out[name], value) if isinstance(value, dict) and isinstance(out.get(name), dict) \
            else value
    return out


def _start_gateway(stack: Stack, name: str, sink_url: str, kms_url: str, cpus: set[int], profile: str | None,
                   settings: dict, extra_env: dict[str, str], cwd: str | None = None) -> None:
    """`envelope-gateway serve` as `name`; from another source tree when `cwd` is given (its `gateway` package
    is imported first: `python -m` puts the working directory at the head of sys.path)."""
    py = sys.executable

    port, admin_port = free_port(), free_port()
    config = _merged({"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin_port}",
                      "upstream": {"endpoint": sink_url, "region": REGION}, "kms": {"key_id": stack.kms_key_arn},
                      "clients": [{"access_key_id": stack.client_access_key_id,
                                   "secret_access_key": stack.client_secret}],
                      "log_format": "text"}, settings)
    config_path = stack.directory / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENVELOPE_"))}
    env.update(AWS_ACCESS_KEY_ID=STORE_KEY_ID, AWS_SECRET_ACCESS_KEY=STORE_SECRET, AWS_DEFAULT_REGION=REGION,
               AWS_ENDPOINT_URL_KMS=kms_url, AWS_EC2_METADATA_DISABLED="true")
    env.update(extra_env)
    serve = ["serve", "--config", str(config_path)]
    argv = [py, "-m", "gateway.bench.profiled", "--out", profile, "--", *serve] if profile else \
        [py, "-m", "gateway.cli", *serve]
    admin_url = f"http://127.0.0.1:{admin_port}"
    child = _spawn(stack, name, argv, f"http://127.0.0.1:{port}", f"{admin_url}/readyz", cpus, env=env, cwd=cwd)
    child.admin_url = admin_url
    _wait_ready(child, f"{admin_url}/readyz", 30)


def _wait_ready(child: Child, url: str, timeout_seconds: float) -> None:
    """Until /readyz answers 200 (it answers 503 while the S3 listener is being set up)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} not ready within {timeout_seconds} s\n{child.log_tail()}")
