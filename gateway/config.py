"""Settings: one validated, immutable object from a YAML file plus `ENVELOPE_*` environment overrides.

- The environment overrides the file. `__` separates nesting levels (`ENVELOPE_UPSTREAM__ENDPOINT`,
  `ENVELOPE_KMS__KEY_ID`); lists and whole sections are given as JSON (`ENVELOPE_CLIENTS='[{...}]'`); an empty
  value removes the setting, so its default applies. `ENVELOPE_*` variables whose first part names no setting
  are ignored (dev mode prints `ENVELOPE_BUCKET`, `ENVELOPE_ADMIN_URL` … for the user's shell).
- Every problem is reported at once, one per line, each with the setting's path (`clients[0].secret_access_key:
  field required`) and, for values from the environment, the variable's name. Unknown keys are errors.
- Secrets (client secret keys) are `SecretStr`: never in repr/str, never in error messages (values are not
  echoed; YAML syntax errors are reported by line and column only, without the usual source snippet).
- The gateway's own credentials for the store and KMS are not configured here: they come from the AWS SDK's
  default chain, as do the store/KMS endpoints and region when they are not set.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import ssl
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError,
                      ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError, core_schema

from gateway.s3.access import ACCESS_WORDS, BucketPolicy

__all__ = ["ConfigError", "HostPort", "TLS", "Upstream", "KMS", "KeyCache", "KMSRetry", "KMSBreaker",
           "BucketKeySettings", "KeyRuleSettings", "SecondaryKMS", "Migration", "Client", "Crypto", "Settings",
           "load_settings", "redacted_dict",
           "effective_cpu_count", "ENV_PREFIX"]

T = TypeVar("T", list[str], dict[str, str])
ENV_PREFIX = "ENVELOPE_"
ENV_NESTING = "__"
SEGMENT_BYTES = 64 * 1024
MiB = 1024 * 1024
DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_PROC_SELF_CGROUP = Path("/proc/self/cgroup")
REDACTED = "***"


class ConfigError(Exception):
    """An unusable configuration. `problems` lists every problem found; str() is them, one per line."""

    def __init__(self, problems: list[str] | tuple[str, ...] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


def _invalid(reason: str) -> PydanticCustomError:
    # The reason goes in the context, so braces in it are never taken for format fields.
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


# --- value types -----------------------------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_WILDCARD = {"0.0.0.0": 4, "::": 6}


def _validate_hostname(host: str) -> str:
    """A DNS name (RFC 1123 labels). Returns it lower-cased, without a trailing dot."""
    name = host.rstrip(".").lower()
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError("not a valid host name")
    if re.fullmatch(r"[0-9.]+", name):
        raise ValueError("not a valid IPv4 address")
    return name


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listening address: "host:port" or "[ipv6]:port". Port 0 means "any free port" (tests)."""
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: object) -> HostPort:
        if isinstance(value, HostPort):
            return value
        if isinstance(value, list):
            raise ValueError("expected a 'host:port' string; quote IPv6 addresses in YAML: \"[::1]:8080\"")
        if not isinstance(value, str):
            raise ValueError("expected a 'host:port' string, e.g. 127.0.0.1:8080")
        text = value.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError("expected '[ipv6]:port', e.g. [::1]:8080")
            if _ip_version(host) != 6:
                raise ValueError("not a valid IPv6 address in brackets")
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError("expected 'host:port' (the port is missing), e.g. 127.0.0.1:8080")
            if ":" in host:
                raise ValueError("IPv6 addresses must be in brackets: [::1]:8080")
            if not host:
                raise ValueError("the host is missing (0.0.0.0:PORT listens on every interface)")
            if _ip_version(host) is None:
                host = _validate_hostname(host)
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise ValueError("the port must be a number from 0 to 65535 (0: any free port)")
        return cls(str(ipaddress.ip_address(host)) if _ip_version(host) else host, int(port))

    @classmethod
    def _validate(cls, value: object) -> HostPort:
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "examples": ["127.0.0.1:8080", "[::1]:8080"]}


def _addresses_overlap(a: str, b: str) -> bool:
    """Whether listening on a and on b (the same port) would collide."""
    if a == b:
        return True
    for x, y in ((a, b), (b, a)):
        if x in _WILDCARD and _ip_version(y) in (_WILDCARD[x], None):
            return True
        if x == "localhost" and y in ("127.0.0.1", "::1"):
            return True
    return False


def _no_bool(value: object) -> object:
    # YAML turns yes/no/on/off into booleans; pydantic would then read them as 1/0.
    if isinstance(value, bool):
        raise _invalid("expected a number, not a boolean")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]


def _validate_endpoint(value: str | None) -> str | None:
    """An http(s) URL of a store or KMS endpoint, without credentials, query or fragment; no trailing '/'."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise _invalid("must not be empty (leave it out for the SDK's default)")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid("expected an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise _invalid("must not contain credentials (the AWS SDK's default chain provides them)")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise _invalid("the port must be a number from 1 to 65535") from None
    if not host:
        raise _invalid("the host is missing")
    if _ip_version(host) is None:
        try:
            _validate_hostname(host)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise _invalid("must not contain a query or a fragment")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path}".rstrip("/")


def _validate_region(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or any(c.isspace() or c == "/" for c in value) or not value.isascii():
        raise _invalid("not a valid region name")
    return value


def _validate_readable_file(value: Path) -> Path:
    if not value.exists():
        raise _invalid(f"file not found: {value}")
    if not value.is_file():
        raise _invalid(f"not a regular file: {value}")
    try:
        with value.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise _invalid(f"cannot read {value}: {exc.strerror}") from None
    return value


def _validate_domain(value: str) -> str:
    try:
        return _validate_hostname(value.strip())
    except ValueError:
        raise _invalid("not a host name (no scheme, port or wildcard: s3.example.com)") from None


Domain = Annotated[str, AfterValidator(_validate_domain)]


def _bucket_patterns(value: T) -> T:
    """Bucket names or shell-style patterns (`logs-*`): the keys of a mapping, or the items of a list."""
    if any(not name.strip() or "/" in name for name in value):
        raise _invalid("bucket names and patterns must be non-empty and contain no '/'")
    return value


# --- the settings ----------------------------------------------------------------------------------------------

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLS(_Section):
    """HTTPS on the S3 port. Relative paths in the file are relative to the file's directory."""
    cert_file: Path
    key_file: Path

    @field_validator("cert_file", "key_file", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise _invalid("must not be empty")
        return value

    @field_validator("cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        return _validate_readable_file(value)

    @model_validator(mode="after")
    def _loadable(self) -> TLS:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            # A password callback: an encrypted key fails here instead of prompting on the terminal.
            context.load_cert_chain(str(self.cert_file), str(self.key_file), password=lambda: b"")
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            raise _invalid(f"cannot load the certificate and key ({reason}); they must be PEM, match each other, "
                           "and the key must not be encrypted") from None
        return self


class _Service(_Section):
    """An AWS-API service the gateway calls: endpoint and region (None: the SDK's default chain decides)."""
    endpoint: str | None = None
    region: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _validate_endpoint(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _validate_region(value)


class Upstream(_Service):
    """The object store. Its credentials come from the AWS SDK's default chain."""
    addressing_style: Literal["path", "virtual"] = "path"
    connect_timeout_seconds: Float = Field(10.0, gt=0)
    # The store's first response byte (after the request's last) and every gap after it (aiohttp sock_read);
    # also the longest the store may leave a chunk of a streamed upload untaken.
    read_timeout_seconds: Float = Field(60.0, gt=0)
    max_connections: Int = Field(256, ge=1)
    # How long a request waits for a free pool connection before it is answered 503 SlowDown.
    pool_wait_seconds: Float = Field(5.0, gt=0, le=600)

    @field_validator("addressing_style", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("addressing_style")
    @classmethod
    def _virtual_needs_dns(cls, value: str, info: ValidationInfo) -> str:
        endpoint = info.data.get("endpoint")
        if value == "virtual" and endpoint and _ip_version(urlsplit(endpoint).hostname or "") is not None:
            raise _invalid("'virtual' needs a DNS name in upstream.endpoint (buckets become <bucket>.<host>), "
                           "not an IP address; use 'path'")
        return value


class KeyCache(_Section):
    """Plaintext data keys of recent reads and writes (gateway.keys.cache). `ttl_seconds` bounds how long a
    disabled or deleted master key keeps working for objects used recently (docs/KEYS.md); 0 turns the cache off."""
    ttl_seconds: Float = Field(300.0, ge=0, le=86_400)
    max_entries: Int = Field(10_000, ge=1)
    max_bytes: Int = Field(16 * MiB, ge=4096)
    max_uses: Int = Field(100_000, ge=1)
    # Also cache the data key of every object (or bucket key) the gateway writes, so that reading an object back
    # soon after writing it makes no KMS call. Off: only keys unwrapped for reads are cached.
    write_through: bool = True


class KMSRetry(_Section):
    """Throttled or failed KMS calls are retried with jittered exponential backoff until `deadline_seconds`
    (the whole key operation, attempts included) has passed."""
    deadline_seconds: Float = Field(5.0, gt=0, le=300)
    base_delay_seconds: Float = Field(0.05, gt=0, le=60)
    max_delay_seconds: Float = Field(1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _ordered(self) -> KMSRetry:
        if self.base_delay_seconds > self.max_delay_seconds:
            raise _invalid(f"base_delay_seconds ({self.base_delay_seconds}) must not exceed max_delay_seconds "
                           f"({self.max_delay_seconds})")
        return self


class KMSBreaker(_Section):
    """After `failure_threshold` consecutive KMS failures (no answer, timeout, KMS 5xx), key operations fail at
    once with 503 for `open_seconds`; then one probe call decides."""
    failure_threshold: Int = Field(5, ge=1)
    open_seconds: Float = Field(10.0, gt=0, le=3600)


class BucketKeySettings(_Section):
    """Bucket-key mode (docs/KEYS.md): for these buckets one KMS data key per bucket and window gives every
    object its own derived DEK, instead of one KMS call per object."""
    buckets: list[str] = Field(min_length=1)  # names or shell-style patterns
    # A bucket key is replaced after this long or this many objects (the age also bounds how long new objects
    # keep being encrypted under a master key that was disabled meanwhile).
    max_age_seconds: Float = Field(300.0, gt=0, le=86400)
    max_objects: Int = Field(100_000, ge=1)

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        return _bucket_patterns(value)


def _check_key_id(value: str) -> str:
    value = value.strip()
    if not value:
        raise _invalid("must not be empty (a key id, key ARN, alias/<name> or alias ARN)")
    if any(c.isspace() for c in value):
        raise _invalid("must not contain whitespace")
    return value


KeyId = Annotated[str, AfterValidator(_check_key_id)]


class KeyRuleSettings(_Section):
    """One rule of the master-key policy: objects of `bucket` (a name or pattern) under `prefix` get their data
    keys from `key_id`. The longest matching prefix wins."""
    bucket: str
    prefix: str = ""
    key_id: KeyId

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not value.strip() or "/" in value:
            raise _invalid("must be a bucket name or pattern (non-empty, no '/')")
        return value


class SecondaryKMS(_Service):
    """A second KMS key (another region's replica, or another key): every new data key is also wrapped under it,
    and reads fall back to it when the first KMS fails or times out."""
    key_id: KeyId


class KMS(_Service):
    """The KMS key that wraps every object's data key. Credentials: the AWS SDK's default chain."""
    key_id: KeyId
    # Which master key encrypts which bucket/prefix (longest prefix wins; key_id is the default).
    key_policy: list[KeyRuleSettings] = Field(default_factory=list)
    # More keys to accept when reading (e.g. the previous key while `envelope-gateway rewrap` moves objects away
    # from it); never used to write.
    decrypt_key_ids: list[KeyId] = Field(default_factory=list)
    secondary: SecondaryKMS | None = None
    cache: KeyCache = Field(default_factory=KeyCache)
    retry: KMSRetry = Field(default_factory=KMSRetry)
    breaker: KMSBreaker = Field(default_factory=KMSBreaker)
    bucket_keys: BucketKeySettings | None = None


class Migration(_Section):
    """Migrating buckets that hold objects written around the gateway (docs/KEYS.md, "Migrating existing
    plaintext buckets"): in these buckets an object with no `envelope-*` metadata at all is served as it is
    stored (read-only, counted and audited) instead of being refused."""
    plaintext_read_buckets: list[str] = Field(default_factory=list)  # names or shell-style patterns

    @field_validator("plaintext_read_buckets")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        return _bucket_patterns(value)


class Client(_Section):
    """A SigV4 identity allowed to call the gateway."""
    access_key_id: str
    secret_access_key: SecretStr

    @field_validator("access_key_id")
    @classmethod
    def _access_key_id(cls, value: str) -> str:
        # Never echo the value: a secret pasted into the wrong field must not end up in an error message.
        if not value:
            raise _invalid("must not be empty")
        if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
            raise _invalid("must be printable ASCII without whitespace")
        if any(c in "/,=" for c in value):
            raise _invalid("must not contain '/', ',' or '=' (it is part of the SigV4 credential scope)")
        return value

    # Bucket name or shell-style pattern → "read" | "write" | "read-write"; absent: every bucket, read and write.
    buckets: dict[str, Literal["read", "write", "read-write"]] | None = None

    @field_validator("secret_access_key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise _invalid("must not be empty")
        return value

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else _bucket_patterns(value)

    def bucket_policy(self) -> BucketPolicy:
        return BucketPolicy(None if self.buckets is None
                            else {name: ACCESS_WORDS[word] for name, word in self.buckets.items()})


class Crypto(_Section):
    workers: Int | None = Field(None, ge=1)
    # The largest batch (a transfer starting alone); beside others a transfer gets a smaller one (budget.py).
    batch_bytes: Int = Field(4 * MiB, ge=4 * SEGMENT_BYTES, le=16 * MiB)
    inflight_batches_per_request: Int = Field(2, ge=1, le=64)
    # Plaintext bytes of batches in flight in the whole process (gateway.proxy.budget): bounds memory under
    # concurrency; it must hold at least one batch of batch_bytes.
    buffer_budget_bytes: Int = Field(24 * MiB, ge=4 * SEGMENT_BYTES, le=4096 * MiB)
    # How long a transfer waits for its first batch's share of that budget before it is answered 503 SlowDown.
    budget_wait_seconds: Float = Field(5.0, gt=0, le=600)

    @field_validator("batch_bytes")
    @classmethod
    def _whole_segments(cls, value: int) -> int:
        if value % SEGMENT_BYTES:
            raise _invalid(f"must be a multiple of {SEGMENT_BYTES} (64 KiB, the segment size)")
        return value

    @model_validator(mode="after")
    def _budget_holds_a_batch(self) -> Crypto:
        if self.buffer_budget_bytes < self.batch_bytes:
            raise _invalid(f"buffer_budget_bytes ({self.buffer_budget_bytes}) must hold at least one batch of "
                           f"batch_bytes ({self.batch_bytes})")
        return self


class Timeouts(_Section):
    """How long the gateway waits on a client before it gives up (the store's and KMS's waits are theirs)."""
    # From a connection's first byte (or the end of the previous request) to a complete request head.
    request_head_seconds: Float = Field(10.0, gt=0, le=3600)
    # A body that stops arriving (400 RequestTimeout, as S3 after ~20 s), or a response the client stops reading
    # (the connection is closed): the longest the gateway waits without a byte moving. Slow but moving is fine.
    client_idle_seconds: Float = Field(20.0, gt=0, le=3600)
    # A connection idle between requests (keep-alive) is closed after this long: aiohttp's default of an hour
    # would let any peer hold descriptors with a request a minute.
    keepalive_seconds: Float = Field(60.0, gt=0, le=3600)


class Settings(_Section):
    listen: HostPort = Field(HostPort("127.0.0.1", 8080), validate_default=True)
    admin_listen: HostPort = Field(HostPort("127.0.0.1", 9090), validate_default=True)
    tls: TLS | None = None
    upstream: Upstream = Field(default_factory=Upstream)
    # Defaults validated on purpose: a missing section is reported as "kms.key_id: field required".
    kms: KMS = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    clients: list[Client] = Field(default_factory=list, validate_default=True)
    virtual_host_domains: list[Domain] = Field(default_factory=list)
    crypto: Crypto = Field(default_factory=Crypto)
    migration: Migration = Field(default_factory=Migration)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_skew_seconds: Int = Field(900, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Key operations and integrity failures, one JSON object per line; None: standard error.
    audit_log_file: Path | None = None
    # After SIGTERM: stop being ready, stop accepting, let transfers run this long, then abort the rest.
    shutdown_grace_seconds: Float = Field(25.0, ge=0, le=3600)
    # SO_SNDBUF of client and store connections (gateway.proxy.sockets); 0: the kernel's autotuning.
    socket_send_buffer_bytes: Int = Field(4 * MiB, ge=0, le=64 * MiB)

    @field_validator("admin_listen")
    @classmethod
    def _apart_from_listen(cls, value: HostPort, info: ValidationInfo) -> HostPort:
        listen = info.data.get("listen")
        if listen is not None and value.port != 0 and value.port == listen.port \
                and _addresses_overlap(value.host, listen.host):
            raise _invalid(f"must differ from listen ({listen} and {value} collide); the admin port serves "
                           "/metrics and health, never S3")
        return value

    @field_validator("clients")
    @classmethod
    def _clients(cls, value: list[Client]) -> list[Client]:
        if not value:
            raise _invalid("at least one client is required: [{access_key_id: ..., secret_access_key: ...}]")
        first: dict[str, int] = {}
        clashes = []
        for index, client in enumerate(value):
            if client.access_key_id in first:
                clashes.append(f"clients[{first[client.access_key_id]}] and clients[{index}]")
            else:
                first[client.access_key_id] = index
        if clashes:
            raise _invalid("access_key_id must be unique: " + "; ".join(clashes) + " have the same one")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value


# --- loading ---------------------------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (PyYAML silently keeps the last one)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    self.duplicates.append((key_node.value, key_node.start_mark.line + 1))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _unshared(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _read_yaml(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The file's settings and non-fatal problems; raises ConfigError when the file cannot be used at all."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror or exc})") from None
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        # Line and column only: the usual snippet of the offending line could show a secret.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = "; ".join(part for part in (exc.context, exc.problem) if part)
        lines = text.splitlines()
        line = lines[mark.line] if mark and mark.line < len(lines) else ""
        unquoted_ipv6 = re.search(r":\s*\[[0-9A-Fa-f:.]*\]:\d", line)
        hint = ' (quote IPv6 addresses: listen: "[::1]:8080")' if unquoted_ipv6 else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {reason}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    finally:
        loader.dispose()
    problems = [f"{path}: line {line}: duplicate key '{key}' (only one may be given)"
                for key, line in loader.duplicates]
    data = _unshared(data)  # YAML aliases share objects; environment overrides must change one place only
    if data is None:
        return {}, problems
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings (listen: ..., kms: ..., ...)")
    tls = data.get("tls")
    if isinstance(tls, dict):
        # Certificate paths in the file are relative to the file, not to the working directory.
        base = path.resolve().parent
        data["tls"] = {k: str(base / Path(v).expanduser()) if k in ("cert_file", "key_file") and isinstance(v, str)
                       and v.strip() else v for k, v in tls.items()}
    return data, problems


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_optional(args[0])
    if typing.get_origin(annotation) is Annotated:
        return _unwrap_optional(typing.get_args(annotation)[0])
    return annotation


def _section_type(annotation: Any) -> type[BaseModel] | None:
    inner = _unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _is_structured(annotation: Any) -> bool:
    """Sections, lists and mappings are given as JSON in the environment; everything else as plain text."""
    inner = _unwrap_optional(annotation)
    return _section_type(inner) is not None or typing.get_origin(inner) in (list, tuple, dict, set) \
        or inner in (list, tuple, dict, set)


_UNSET = object()


def _merge(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set data[path] (creating sections on the way); dicts are merged into dicts, _UNSET removes the key."""
    for part in path[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    last = path[-1]
    if value is _UNSET:
        data.pop(last, None)
    elif isinstance(value, dict) and isinstance(data.get(last), dict):
        for key, item in value.items():
            _merge(data[last], (key,), item)
    else:
        data[last] = value


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[tuple, str], list[str]]:
    """Merge ENVELOPE_* variables into data. Returns (setting path -> variable name, problems)."""
    origins: dict[tuple, str] = {}
    problems: list[str] = []
    overrides = []
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split(ENV_NESTING))
        if path[0] not in Settings.model_fields:
            continue  # not ours: other ENVELOPE_* variables (dev mode's ENVELOPE_BUCKET, ENVELOPE_ADMIN_URL, ...)
        if not all(path):
            problems.append(f"{name}: malformed name (an empty part around '{ENV_NESTING}')")
            continue
        overrides.append((path, name, raw))
    # Whole sections first, then their fields: the more specific variable wins.
    for path, name, raw in sorted(overrides, key=lambda o: (len(o[0]), o[0], o[1])):
        model: type[BaseModel] | None = Settings
        structured = usable = True
        for depth, part in enumerate(path):
            if model is None:
                whole = ENV_PREFIX + ENV_NESTING.join(path[:depth]).upper()
                problems.append(f"{name}: {'.'.join(path[:depth])} is not a section; give its whole value "
                                f"(JSON for lists) in {whole}")
                usable = False
                break
            field = model.model_fields.get(part)
            if field is None:
                # An unknown key: set it anyway, so that validation reports it, naming the variable.
                path, structured = path[:depth + 1], False
                break
            model, structured = _section_type(field.annotation), _is_structured(field.annotation)
        if not usable:
            continue
        value: Any = raw
        if raw == "":
            value = _UNSET
        elif structured:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"{name}: invalid JSON ({exc.msg} at character {exc.pos + 1})")
                continue
        _merge(data, path, value)
        origins[path] = name
    return origins, problems


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "settings"


def _element_model(annotation: Any) -> type[BaseModel] | None:
    """The section type of a field (or of its list items), if it is one."""
    inner = _unwrap_optional(annotation)
    if typing.get_origin(inner) is list:
        inner = typing.get_args(inner)[0]
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _fields_at(loc: tuple) -> list[str]:
    """The setting names valid inside the section at loc."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _element_model(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _paths_by_name() -> dict[str, list[str]]:
    """Every setting's dotted path, by its last name."""
    by_name: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for key, field in model.model_fields.items():
            by_name.setdefault(key, []).append(prefix + key)
            section = _element_model(field.annotation)
            if section is not None:
                walk(section, f"{prefix}{key}.")
    walk(Settings, "")
    return by_name


def _message(error: Any) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        key, here = str(loc[-1]), _fields_at(loc[:-1])
        close = difflib.get_close_matches(key, here, n=1, cutoff=0.6)
        if close:
            return f"unknown setting; did you mean '{close[0]}'?"
        elsewhere = _paths_by_name().get(key)
        if elsewhere:
            return f"unknown setting here; did you mean {' or '.join(elsewhere)}?"
        return "unknown setting" + (f" (known here: {', '.join(here)})" if here else "")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind == "string_type":
        message += " (quote it in YAML)"
    if message[:2].istitle():
        message = message[0].lower() + message[1:]
    return message


def _problems(exc: ValidationError, origins: Mapping[tuple, str]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(error["loc"])
        line = f"{_location(loc)}: {_message(error)}"
        matches = [path for path in origins if loc[:len(path)] == path]
        if matches:
            line += f" (from {origins[max(matches, key=len)]})"
        problems.append(line)
    return problems


def load_settings(path: str | os.PathLike[str] | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings from `path` (optional YAML) overridden by ENVELOPE_* variables; raises ConfigError listing
    every problem."""
    data: dict[str, Any] = {}
    problems: list[str] = []
    if path is not None:
        data, problems = _read_yaml(Path(path))
    origins, env_problems = _apply_environment(data, environ)
    problems += env_problems
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, origins)
    if problems:
        raise ConfigError(problems)
    return settings


def redacted_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain JSON-able data, every secret replaced by "***"."""
    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return REDACTED
        if isinstance(value, BaseModel):
            return {key: plain(getattr(value, key)) for key in type(value).model_fields}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (HostPort, Path)):
            return str(value)
        return value
    return plain(settings)


# --- CPU quota -------------------------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dirs(mount: Path, relative: str | None) -> list[Path]:
    """The process's cgroup directory under mount and its ancestors, then mount itself (inside a container the
    mount is the container's own cgroup)."""
    dirs = []
    if relative:
        parts = [p for p in relative.split("/") if p]
        if ".." not in parts:
            dirs = [mount.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return dirs + [mount]


def _cgroup_cpu_limit(root: Path, proc_self_cgroup: Path) -> float | None:
    """The tightest CPU quota (in CPUs) of cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us / cpu.cfs_period_us)."""
    v2_path = v1_path = None
    for line in (_read(proc_self_cgroup) or "").splitlines():
        _, controllers, cgroup_path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            v2_path = cgroup_path
        elif "cpu" in controllers.split(","):
            v1_path = cgroup_path
    limits = []
    for directory in _cgroup_dirs(root, v2_path):
        fields = (_read(directory / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
        for directory in _cgroup_dirs(mount, v1_path):
            try:
                quota = int(_read(directory / "cpu.cfs_quota_us") or "-1")
                period = int(_read(directory / "cpu.cfs_period_us") or "0")
            except ValueError:
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def effective_cpu_count(cgroup_root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT,
                        proc_self_cgroup: str | os.PathLike[str] = DEFAULT_PROC_SELF_CGROUP) -> int:
    """CPUs this process may really use: the CPUs it may run on (affinity), capped by the container's CPU quota
    (cgroup v2 cpu.max or v1 CFS quota, rounded up). At least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(Path(cgroup_root), Path(proc_self_cgroup))
    if limit is not None:
        available = min(available, math.ceil(limit))
    return max(1, available)
