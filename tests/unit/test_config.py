"""Settings: YAML + ENVELOPE_* overrides, all problems at once, secrets never shown, CPU quota detection."""
from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ValidationError

from gateway.config import (ConfigError, HostPort, Settings, effective_cpu_count, load_settings,
                            redacted_dict)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "gateway.example.yaml"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"

README_YAML = """\
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090   # /metrics, /livez, /readyz — never on the S3 port
tls: {cert_file: cert.pem, key_file: key.pem}   # optional; without it the S3 port speaks plain HTTP
upstream: {endpoint: http://127.0.0.1:9000, region: us-east-1}
kms: {key_id: alias/envelope, endpoint: http://127.0.0.1:9000}   # endpoint optional
clients:                       # who may call the gateway (SigV4); one or more
  - {access_key_id: AKIAIOSFODNN7EXAMPLE, secret_access_key: %s}
""" % SECRET

MINIMAL = {"kms": {"key_id": "alias/envelope"},
           "clients": [{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET}]}


def write(directory: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def write_yaml(directory: Path, data: dict) -> Path:
    return write(directory, json.dumps(data))  # JSON is YAML


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def key_and_cert(directory: Path, prefix: str = "") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


# --- the documented configurations --------------------------------------------------------------------------------

def test_readme_yaml_parses(tmp_path: Path) -> None:
    key_and_cert(tmp_path)  # cert.pem / key.pem next to the file: relative paths are relative to the file
    settings = load_settings(write(tmp_path, README_YAML), {})
    assert settings.listen == HostPort("127.0.0.1", 8080)
    assert (settings.admin_listen.host, settings.admin_listen.port) == ("127.0.0.1", 9090)
    assert settings.tls is not None and settings.tls.cert_file == tmp_path / "cert.pem"
    assert settings.tls.key_file == tmp_path / "key.pem"
    assert settings.upstream.endpoint == "http://127.0.0.1:9000"
    assert settings.upstream.region == "us-east-1"
    assert settings.kms.key_id == "alias/envelope" and settings.kms.endpoint == "http://127.0.0.1:9000"
    assert settings.kms.region is None
    [client] = settings.clients
    assert client.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert client.secret_access_key.get_secret_value() == SECRET


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path, MINIMAL), {})
    assert str(settings.listen) == "127.0.0.1:8080" and str(settings.admin_listen) == "127.0.0.1:9090"
    assert settings.tls is None
    up = settings.upstream
    assert (up.endpoint, up.region, up.addressing_style) == (None, None, "path")
    assert (up.connect_timeout_seconds, up.read_timeout_seconds, up.max_connections, up.pool_wait_seconds) \
        == (10, 60, 256, 5)
    assert (settings.kms.endpoint, settings.kms.region) == (None, None)
    assert settings.virtual_host_domains == []
    assert (settings.crypto.workers, settings.crypto.batch_bytes, settings.crypto.inflight_batches_per_request,
            settings.crypto.buffer_budget_bytes, settings.socket_send_buffer_bytes) \
        == (None, 4194304, 2, 25165824, 4194304)
    assert (settings.max_skew_seconds, settings.log_level, settings.log_format) == (900, "INFO", "json")


def test_example_file_is_valid_and_documents_every_setting() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings.kms.key_id == "alias/envelope"
    text = EXAMPLE.read_text()

    def paths(model: type[BaseModel], prefix: str = "") -> list[tuple[str, bool]]:
        """(variable-style path, settable by its own variable); list items are not."""
        out = []
        for name, field in model.model_fields.items():
            out.append((prefix + name, "[]" not in prefix))
            for sub in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    nested = "[]" if getattr(field.annotation, "__origin__", None) is list else ""
                    out += paths(sub, f"{prefix}{name}{nested}__")
        return out

    for path, own_variable in paths(Settings):
        leaf = path.rsplit("__", 1)[-1]
        assert re.search(rf"^\s*#?\s*-?\s*{leaf}:", text, re.M), f"{leaf} is not in the example file"
        if own_variable:
            assert f"ENVELOPE_{path.upper()}" in text, f"ENVELOPE_{path.upper()} is not in the example file"


def test_dev_mode_style_model_validate() -> None:
    settings = Settings.model_validate({**MINIMAL, "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                                        "virtual_host_domains": ["localhost"], "log_format": "text"})
    assert settings.listen.port == 0 == settings.admin_listen.port
    with pytest.raises(ValidationError):
        settings.log_level = "DEBUG"  # type: ignore[misc]  # settings are immutable


# --- environment overrides ----------------------------------------------------------------------------------------

def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {**MINIMAL, "kms": {"key_id": "alias/file", "region": "eu-west-1"},
                                 "upstream": {"endpoint": "http://file:9000", "region": "us-east-1"},
                                 "crypto": {"workers": 2}})
    settings = load_settings(path, {
        "ENVELOPE_UPSTREAM__ENDPOINT": "http://127.0.0.1:9001/",
        "ENVELOPE_KMS__KEY_ID": "alias/x",
        "ENVELOPE_LISTEN": "127.0.0.1:8081",
        "ENVELOPE_CRYPTO__BATCH_BYTES": "262144",
        "ENVELOPE_LOG_LEVEL": "debug",
        "ENVELOPE_VIRTUAL_HOST_DOMAINS": '["localhost", "S3.Internal"]',
        "ENVELOPE_CLIENTS": json.dumps([{"access_key_id": "env-a", "secret_access_key": "env-secret-a"},
                                        {"access_key_id": "env-b", "secret_access_key": "env-secret-b"}]),
        "ENVELOPE_BUCKET": "not-a-setting",  # other ENVELOPE_* variables (dev mode prints some) are ignored
        "AWS_REGION": "ap-south-1",  # not ours
    })
    assert settings.upstream.endpoint == "http://127.0.0.1:9001"
    assert settings.upstream.region == "us-east-1"  # the rest of the section still comes from the file
    assert settings.kms.key_id == "alias/x" and settings.kms.region == "eu-west-1"
    assert settings.listen == HostPort("127.0.0.1", 8081)
    assert (settings.crypto.workers, settings.crypto.batch_bytes) == (2, 262144)
    assert settings.log_level == "DEBUG"
    assert settings.virtual_host_domains == ["localhost", "s3.internal"]
    assert [(c.access_key_id, c.secret_access_key.get_secret_value()) for c in settings.clients] == \
        [("env-a", "env-secret-a"), ("env-b", "env-secret-b")]


def test_environment_alone_without_a_file() -> None:
    settings = load_settings(None, {
        "ENVELOPE_KMS__KEY_ID": "alias/x",
        "ENVELOPE_CLIENTS": '[{"access_key_id": "a", "secret_access_key": "s"}]',
        "ENVELOPE_ADMIN_LISTEN": "[::1]:9091",
        "ENVELOPE_TLS": "",
    })
    assert settings.kms.key_id == "alias/x" and settings.admin_listen == HostPort("::1", 9091)


def test_environment_section_as_json_then_field(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "upstream": {"region": "eu-west-1"}}), {
        "ENVELOPE_UPSTREAM": '{"endpoint": "https://minio.internal:9000", "addressing_style": "virtual"}',
        "ENVELOPE_UPSTREAM__ADDRESSING_STYLE": "path",  # the more specific variable wins
    })
    assert settings.upstream.endpoint == "https://minio.internal:9000"
    assert settings.upstream.region == "eu-west-1"  # a JSON section is merged into the file's, not replacing it
    assert settings.upstream.addressing_style == "path"


def test_empty_environment_value_restores_the_default(tmp_path: Path) -> None:
    cert, key = key_and_cert(tmp_path)
    path = write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(cert), "key_file": str(key)},
                                 "upstream": {"endpoint": "http://file:9000"}})
    settings = load_settings(path, {"ENVELOPE_TLS": "", "ENVELOPE_UPSTREAM__ENDPOINT": ""})
    assert settings.tls is None and settings.upstream.endpoint is None


def test_environment_tls_paths_are_relative_to_the_working_directory(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    key_and_cert(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {"ENVELOPE_KMS__KEY_ID": "k", "ENVELOPE_CLIENTS": '[{"access_key_id": "a", '
                                    '"secret_access_key": "s"}]', "ENVELOPE_TLS__CERT_FILE": "cert.pem",
                                    "ENVELOPE_TLS__KEY_FILE": "key.pem"})
    assert settings.tls is not None and settings.tls.cert_file == Path("cert.pem")


def test_environment_problems_name_the_variable(tmp_path: Path) -> None:
    problems = problems_of(write_yaml(tmp_path, MINIMAL), {
        "ENVELOPE_KMS__KEYID": "alias/typo",
        "ENVELOPE_CLIENTS": '[{"access_key_id": "a"',
        "ENVELOPE_LISTEN__PORT": "8080",
        "ENVELOPE_CRYPTO__WORKERS": "many",
        "ENVELOPE_UPSTREAM__NOPE__DEEPER": "x",
    })
    assert "ENVELOPE_CLIENTS: invalid JSON (Expecting ',' delimiter at character 23)" in problems
    assert any(p.startswith("ENVELOPE_LISTEN__PORT: listen is not a section") for p in problems)
    assert "kms.keyid: unknown setting; did you mean 'key_id'? (from ENVELOPE_KMS__KEYID)" in problems
    assert any(p.startswith("crypto.workers: ") and p.endswith("(from ENVELOPE_CRYPTO__WORKERS)") for p in problems)
    assert any(p.startswith("upstream.nope: unknown setting") and p.endswith("(from ENVELOPE_UPSTREAM__NOPE__DEEPER)")
               for p in problems)
    assert len(problems) == 5


# --- every problem at once ----------------------------------------------------------------------------------------

def test_all_problems_in_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: localhost\nkms: {endpoint: http://127.0.0.1:9000}\nclients: []\n"
                           "upstraem: {endpoint: http://127.0.0.1:9000}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert message.splitlines() == caught.value.problems
    assert len(caught.value.problems) == 4
    assert "listen: expected 'host:port' (the port is missing), e.g. 127.0.0.1:8080" in message
    assert "kms.key_id: field required" in message
    assert "clients: at least one client is required" in message
    assert "upstraem: unknown setting; did you mean 'upstream'?" in message


def test_many_problems_with_paths(tmp_path: Path) -> None:
    problems = problems_of(write_yaml(tmp_path, {
        "listen": "127.0.0.1:70000",
        "tls": {"cert_file": "missing-cert.pem"},
        "upstream": {"endpoint": "ftp://store", "addressing_style": "sideways", "max_connections": 0,
                     "read_timeout_seconds": -1},
        "kms": {"key_id": "   "},
        "clients": [{"access_key_id": "a"}, {"access_key_id": "has space", "secret_access_key": ""}],
        "virtual_host_domains": ["ok.example", "https://bad.example"],
        "crypto": {"workers": 0, "batch_bytes": 300000, "inflight_batches_per_request": 65,
                   "buffer_budget_bytes": 1},
        "max_skew_seconds": 0,
        "socket_send_buffer_bytes": -1,
        "log_level": "TRACE",
        "log_format": "xml",
        "endpoint": "http://x",
    }))
    where = {p.split(": ", 1)[0] for p in problems}
    assert where == {
        "listen", "tls.cert_file", "tls.key_file", "upstream.endpoint", "upstream.addressing_style",
        "upstream.max_connections", "upstream.read_timeout_seconds", "kms.key_id", "clients[0].secret_access_key",
        "clients[1].access_key_id", "clients[1].secret_access_key", "virtual_host_domains[1]", "crypto.workers",
        "crypto.batch_bytes", "crypto.inflight_batches_per_request", "crypto.buffer_budget_bytes", "max_skew_seconds",
        "socket_send_buffer_bytes", "log_level", "log_format", "endpoint"}, problems
    assert any(re.fullmatch(r"tls\.cert_file: file not found: .*missing-cert\.pem", p) for p in problems)
    assert "tls.key_file: field required" in problems
    assert "clients[0].secret_access_key: field required" in problems
    assert "endpoint: unknown setting here; did you mean upstream.endpoint or kms.endpoint or kms.secondary.endpoint?" in problems
    assert "crypto.batch_bytes: must be a multiple of 65536 (64 KiB, the segment size)" in problems


# --- secrets ------------------------------------------------------------------------------------------------------

def test_secrets_never_in_str_or_repr(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path, MINIMAL), {})
    for text in (str(settings), repr(settings), repr(settings.clients), str(settings.clients[0]),
                 repr(settings.clients[0].secret_access_key), f"{settings}", settings.model_dump_json()):
        assert SECRET not in text


def test_secrets_never_in_error_messages(tmp_path: Path) -> None:
    cases = [
        # a typo in the key name
        {"kms": {"key_id": "k"}, "clients": [{"access_key_id": "a", "secret_acces_key": SECRET}]},
        # the secret pasted into the wrong field (it contains '/', which access key ids may not)
        {"kms": {"key_id": "k"}, "clients": [{"access_key_id": SECRET, "secret_access_key": "a"}]},
        # the secret given where a section is expected
        {"kms": SECRET, "clients": [{"access_key_id": "a", "secret_access_key": 12345}], "listen": SECRET},
    ]
    for data in cases:
        assert not any(SECRET in p for p in problems_of(write_yaml(tmp_path, data)))
    # a YAML syntax error on the secret's line: reported by line and column, without the source snippet
    broken = write(tmp_path, f'clients:\n  - {{access_key_id: a, secret_access_key: "{SECRET}}}\n')
    [problem] = problems_of(broken)
    assert "invalid YAML at line" in problem and SECRET not in problem
    # invalid JSON in the environment
    env = {"ENVELOPE_CLIENTS": f'[{{"access_key_id": "a", "secret_access_key": "{SECRET}"]'}
    assert not any(SECRET in p for p in problems_of(write_yaml(tmp_path, MINIMAL), env))


def test_redacted_dict(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "listen": "[::1]:8443"}), {})
    data = redacted_dict(settings)
    assert data["clients"] == [{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "***",
                                "buckets": None}]
    assert data["listen"] == "[::1]:8443" and data["admin_listen"] == "127.0.0.1:9090"
    assert data["kms"] == {"key_id": "alias/envelope", "endpoint": None, "region": None, "key_policy": [],
                           "decrypt_key_ids": [], "secondary": None,
                           "cache": {"ttl_seconds": 300, "max_entries": 10000, "max_bytes": 16777216,
                                     "max_uses": 100000, "write_through": True},
                           "retry": {"deadline_seconds": 5, "base_delay_seconds": 0.05, "max_delay_seconds": 1},
                           "breaker": {"failure_threshold": 5, "open_seconds": 10}, "bucket_keys": None}
    assert data["crypto"] == {"workers": None, "batch_bytes": 4194304, "inflight_batches_per_request": 2,
                              "buffer_budget_bytes": 25165824, "budget_wait_seconds": 5}
    assert set(data) == set(Settings.model_fields)
    text = json.dumps(data)  # plain JSON, no default= needed
    assert SECRET not in text


def test_redacted_dict_tls_paths(tmp_path: Path) -> None:
    cert, key = key_and_cert(tmp_path)
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(cert),
                                                                      "key_file": str(key)}}), {})
    assert redacted_dict(settings)["tls"] == {"cert_file": str(cert), "key_file": str(key)}


# --- individual settings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("0.0.0.0:1", "0.0.0.0", 1),
    ("localhost:0", "localhost", 0),
    ("Gateway.Example.COM:65535", "gateway.example.com", 65535),
    ("[::1]:8080", "::1", 8080),
    ("[::]:9090", "::", 9090),
    ("[0:0::1]:80", "::1", 80),
])
def test_host_port_parses(text: str, host: str, port: int) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)
    assert HostPort.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["127.0.0.1", ":8080", "::1:8080", "[::1]8080", "[127.0.0.1]:80",
                                  "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http", "bad_host:80",
                                  "300.1.1.1:80", "127.0.0.1:８０", ""])
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        HostPort.parse(text)


def test_unquoted_ipv6_in_yaml_gets_a_hint(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, "listen: [::1]:8080\n"))
    assert "line 1" in problem and 'quote IPv6 addresses' in problem


@pytest.mark.parametrize("listen, admin, ok", [
    ("127.0.0.1:8080", "127.0.0.1:8080", False),
    ("0.0.0.0:8080", "127.0.0.1:8080", False),
    ("localhost:8080", "127.0.0.1:8080", False),
    ("[::]:8080", "[::1]:8080", False),
    ("127.0.0.1:0", "127.0.0.1:0", True),
    ("127.0.0.1:8080", "127.0.0.2:8080", True),
    ("0.0.0.0:8080", "[::1]:8080", True),
    ("127.0.0.1:8080", "127.0.0.1:8081", True),
])
def test_listen_and_admin_listen_must_differ(tmp_path: Path, listen: str, admin: str, ok: bool) -> None:
    path = write_yaml(tmp_path, {**MINIMAL, "listen": listen, "admin_listen": admin})
    if ok:
        load_settings(path, {})
    else:
        [problem] = problems_of(path)
        assert problem.startswith("admin_listen: must differ from listen")


def test_admin_listen_default_collides_with_listen(tmp_path: Path) -> None:
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "listen": "127.0.0.1:9090"}))
    assert problem.startswith("admin_listen: must differ from listen")


def test_tls_files_must_exist_and_load(tmp_path: Path) -> None:
    cert, key = key_and_cert(tmp_path, "a-")
    _, other_key = key_and_cert(tmp_path, "b-")
    problems = problems_of(write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(tmp_path / "nope.pem"),
                                                                     "key_file": str(tmp_path)}}))
    assert problems == [f"tls.cert_file: file not found: {tmp_path / 'nope.pem'}",
                        f"tls.key_file: not a regular file: {tmp_path}"]
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(cert),
                                                                      "key_file": str(other_key)}}))
    assert problem.startswith("tls: cannot load the certificate and key")
    encrypted = tmp_path / "encrypted.pem"  # must fail, not prompt for a passphrase
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(cert),
                                                                      "key_file": str(encrypted)}}))
    assert problem.startswith("tls: cannot load the certificate and key")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_tls_unreadable_file(tmp_path: Path) -> None:
    cert, key = key_and_cert(tmp_path)
    key.chmod(0)
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "tls": {"cert_file": str(cert),
                                                                      "key_file": str(key)}}))
    assert problem.startswith("tls.key_file: cannot read")


@pytest.mark.parametrize("endpoint, expected", [
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("https://s3.eu-west-1.amazonaws.com/", "https://s3.eu-west-1.amazonaws.com"),
    ("HTTPS://store.internal:443/prefix/", "https://store.internal:443/prefix"),
    ("http://[::1]:9000", "http://[::1]:9000"),
])
def test_upstream_endpoint_normalised(tmp_path: Path, endpoint: str, expected: str) -> None:
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "upstream": {"endpoint": endpoint}}), {})
    assert settings.upstream.endpoint == expected


@pytest.mark.parametrize("endpoint, reason", [
    ("store:9000", "expected an http:// or https:// URL"),
    ("http://user:pass@store:9000", "must not contain credentials"),
    ("http://store:99999", "the port must be a number"),
    ("http://store:9000/?x=1", "must not contain a query"),
    ("http://", "the host is missing"),
    ("", "must not be empty"),
])
def test_upstream_endpoint_rejected(tmp_path: Path, endpoint: str, reason: str) -> None:
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "upstream": {"endpoint": endpoint}}))
    assert problem.startswith(f"upstream.endpoint: {reason}")
    assert "pass" not in problem


def test_virtual_addressing_needs_a_dns_name(tmp_path: Path) -> None:
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "upstream": {
        "endpoint": "http://127.0.0.1:9000", "addressing_style": "virtual"}}))
    assert problem.startswith("upstream.addressing_style: 'virtual' needs a DNS name")
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "upstream": {
        "endpoint": "http://minio.internal:9000", "addressing_style": "Virtual"}}), {})
    assert settings.upstream.addressing_style == "virtual"


def test_client_access_key_ids_unique(tmp_path: Path) -> None:
    clients = [{"access_key_id": "a", "secret_access_key": "1"}, {"access_key_id": "b", "secret_access_key": "2"},
               {"access_key_id": "a", "secret_access_key": "3"}]
    [problem] = problems_of(write_yaml(tmp_path, {**MINIMAL, "clients": clients}))
    assert problem == "clients: access_key_id must be unique: clients[0] and clients[2] have the same one"


def test_missing_clients_and_kms_sections(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, ""))  # an empty file is an empty mapping
    assert problems[0] == "kms.key_id: field required"
    assert problems[1].startswith("clients: at least one client is required")


@pytest.mark.parametrize("batch_bytes, ok", [(262144, True), (16 * 1024 * 1024, True), (5 * 65536, True),
                                             (0, False), (65536, False), (3 * 65536, False), (262145, False),
                                             (16 * 1024 * 1024 + 65536, False), ("1MiB", False), (True, False)])
def test_batch_bytes(tmp_path: Path, batch_bytes: object, ok: bool) -> None:
    path = write_yaml(tmp_path, {**MINIMAL, "crypto": {"batch_bytes": batch_bytes,
                                                       "buffer_budget_bytes": 64 * 1024 * 1024}})
    if ok:
        assert load_settings(path, {}).crypto.batch_bytes == batch_bytes
    else:
        [problem] = problems_of(path)
        assert problem.startswith("crypto.batch_bytes: ")


def test_the_budget_holds_a_batch(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {**MINIMAL, "crypto": {"buffer_budget_bytes": 1024 * 1024}})
    [problem] = problems_of(path)
    assert problem == ("crypto: buffer_budget_bytes (1048576) must hold at least one batch of batch_bytes "
                       "(4194304)")


def test_kms_cache_retry_and_breaker_names_are_kept(tmp_path: Path) -> None:
    """The names issue 8 promised operators: kms.cache.{ttl_seconds, max_entries, max_uses}."""
    yaml_text = ("kms:\n  key_id: alias/envelope\n  cache: {ttl_seconds: 30, max_entries: 50, max_uses: 7}\n"
                 "clients: [{access_key_id: AKIAIOSFODNN7EXAMPLE, secret_access_key: s}]\n")
    settings = load_settings(write(tmp_path, yaml_text), {"ENVELOPE_KMS__RETRY__DEADLINE_SECONDS": "2.5",
                                                          "ENVELOPE_KMS__BREAKER__OPEN_SECONDS": "4"})
    cache = settings.kms.cache
    assert (cache.ttl_seconds, cache.max_entries, cache.max_uses, cache.max_bytes) == (30, 50, 7, 16 * 1024 * 1024)
    assert settings.kms.retry.deadline_seconds == 2.5 and settings.kms.breaker.open_seconds == 4
    assert settings.kms.breaker.failure_threshold == 5


def test_kms_cache_retry_and_breaker_problems_all_at_once(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {**MINIMAL, "kms": {
        "key_id": "alias/envelope", "cache": {"ttl_seconds": -1, "max_entries": 0, "max_uses": True, "ttl": 5},
        "retry": {"deadline_seconds": 0, "base_delay_seconds": 2, "max_delay_seconds": 1},
        "breaker": {"failure_threshold": 0}}})
    problems = problems_of(path)
    assert [p.split(":")[0] for p in problems] == [
        "kms.cache.ttl_seconds", "kms.cache.max_entries", "kms.cache.max_uses", "kms.cache.ttl",
        "kms.retry.deadline_seconds", "kms.breaker.failure_threshold"], problems
    assert "known here: ttl_seconds" in problems[3]
    ordered = write_yaml(tmp_path, {**MINIMAL, "kms": {"key_id": "k", "retry": {"base_delay_seconds": 2,
                                                                                "max_delay_seconds": 1}}})
    assert problems_of(ordered) == ["kms.retry: base_delay_seconds (2.0) must not exceed max_delay_seconds (1.0)"]


def test_log_settings_case_insensitive(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "log_level": "warning", "log_format": "TEXT"}), {})
    assert (settings.log_level, settings.log_format) == ("WARNING", "text")


def test_unquoted_number_secret_gets_a_hint(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, "kms: {key_id: k}\nclients: [{access_key_id: a, "
                                            "secret_access_key: 0123}]\n"))
    assert problem == "clients[0].secret_access_key: input should be a valid string (quote it in YAML)"


# --- the file itself ----------------------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "absent.yaml") == [f"{tmp_path / 'absent.yaml'}: configuration file not found"]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, "kms:\n  key_id: [unclosed\nclients: []\n"))
    assert problem.startswith(f"{tmp_path / 'gateway.yaml'}: invalid YAML at line ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, "- listen: 127.0.0.1:8080\n"))
    assert "the top level must be a mapping" in problem


def test_duplicate_keys_reported_with_the_rest(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "kms: {key_id: a}\nlisten: 127.0.0.1:1\nkms: {key_id: b}\n"))
    assert problems[0] == f"{tmp_path / 'gateway.yaml'}: line 3: duplicate key 'kms' (only one may be given)"
    assert problems[1].startswith("clients: at least one client is required")


def test_yaml_anchors_and_merge_keys_are_fine(tmp_path: Path) -> None:
    text = ("upstream: &up {region: eu-west-1, endpoint: http://s:9000}\n"
            "kms: {<<: *up, key_id: k, region: eu-central-1}\n"
            "clients: [{access_key_id: a, secret_access_key: s}]\n")
    settings = load_settings(write(tmp_path, text), {})
    assert (settings.kms.endpoint, settings.kms.region) == ("http://s:9000", "eu-central-1")


# --- CPU count ----------------------------------------------------------------------------------------------------

@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))


def cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content + "\n")
    return root


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize("files, expected", [
    ({}, 8),                                                      # no cgroup files: the affinity mask
    ({"cpu.max": "max 100000"}, 8),                               # v2, unlimited
    ({"cpu.max": "200000 100000"}, 2),                            # v2, 2 CPUs
    ({"cpu.max": "150000 100000"}, 2),                            # 1.5 CPUs: rounded up
    ({"cpu.max": "50000 100000"}, 1),                             # half a CPU: at least 1
    ({"cpu.max": "1600000 100000"}, 8),                           # a quota above the affinity mask
    ({"cpu.max": "garbage"}, 8),                                  # unreadable: ignored
    ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3),            # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 8),                # v1, unlimited
])
def test_effective_cpu_count(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    assert effective_cpu_count(cgroup(tmp_path, files), tmp_path / "no-proc-file") == expected


@pytest.mark.usefixtures("eight_cpus")
def test_effective_cpu_count_follows_proc_self_cgroup(tmp_path: Path) -> None:
    root = cgroup(tmp_path / "fs", {"kubepods/cpu.max": "300000 100000", "kubepods/pod1/c1/cpu.max": "max 100000",
                                    "cpu/kubepods/pod1/cpu.cfs_quota_us": "500000",
                                    "cpu/kubepods/pod1/cpu.cfs_period_us": "100000"})
    proc = cgroup(tmp_path, {"proc": "0::/kubepods/pod1/c1"}) / "proc"
    assert effective_cpu_count(root, proc) == 3  # v2: an ancestor's quota limits its descendants
    proc.write_text("4:cpu,cpuacct:/kubepods/pod1\n")
    assert effective_cpu_count(root, proc) == 5  # v1, mounted at <root>/cpu
    proc.write_text("4:cpu,cpuacct:/kubepods/pod1\n0::/kubepods/pod1/c1\n")
    assert effective_cpu_count(root, proc) == 3  # hybrid: the tightest quota
    proc.write_text("0::/../../escape\n")
    assert effective_cpu_count(root, proc) == 8  # never leaves the mount


def test_effective_cpu_count_on_this_machine() -> None:
    assert 1 <= effective_cpu_count() <= len(os.sched_getaffinity(0))


def test_client_bucket_grants(tmp_path: Path) -> None:
    clients = [{"access_key_id": "a", "secret_access_key": "1", "buckets": {"reports": "read", "logs-*": "write"}},
               {"access_key_id": "b", "secret_access_key": "2"}]
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "clients": clients}), environ={})
    restricted, unrestricted = (client.bucket_policy() for client in settings.clients)
    assert restricted.grants is not None and unrestricted.grants is None


def test_client_bucket_grants_are_validated(tmp_path: Path) -> None:
    clients = [{"access_key_id": "a", "secret_access_key": "1", "buckets": {"reports": "admin"}},
               {"access_key_id": "b", "secret_access_key": "2", "buckets": {"": "read"}}]
    assert problems_of(write_yaml(tmp_path, {**MINIMAL, "clients": clients})) == [
        "clients[0].buckets.reports: input should be 'read', 'write' or 'read-write'",
        "clients[1].buckets: bucket names and patterns must be non-empty and contain no '/'"]


def test_bucket_keys(tmp_path: Path) -> None:
    kms = {"key_id": "alias/envelope", "bucket_keys": {"buckets": ["logs", "ingest-*"], "max_objects": 10}}
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "kms": kms}), environ={})
    assert settings.kms.bucket_keys.buckets == ["logs", "ingest-*"]
    assert settings.kms.bucket_keys.max_age_seconds == 300 and settings.kms.bucket_keys.max_objects == 10
    kms["bucket_keys"] = {"buckets": [], "max_age_seconds": 0, "max_objects": 0}
    assert problems_of(write_yaml(tmp_path, {**MINIMAL, "kms": kms})) == [
        "kms.bucket_keys.buckets: list should have at least 1 item after validation, not 0",
        "kms.bucket_keys.max_age_seconds: input should be greater than 0",
        "kms.bucket_keys.max_objects: input should be greater than or equal to 1"]


def test_master_key_policy_and_secondary(tmp_path: Path) -> None:
    kms = {"key_id": "alias/envelope", "decrypt_key_ids": ["alias/old"],
           "key_policy": [{"bucket": "finance", "prefix": "payroll/", "key_id": "alias/payroll"},
                          {"bucket": "logs-*", "key_id": "alias/logs"}],
           "secondary": {"key_id": "arn:aws:kms:eu-west-1:111122223333:key/mrk-1", "region": "eu-west-1"}}
    settings = load_settings(write_yaml(tmp_path, {**MINIMAL, "kms": kms}), environ={})
    assert settings.kms.key_policy[1].prefix == "" and settings.kms.secondary.region == "eu-west-1"
    kms["key_policy"] = [{"bucket": "a/b", "key_id": " "}]
    kms["secondary"] = {"region": "eu-west-1"}
    assert problems_of(write_yaml(tmp_path, {**MINIMAL, "kms": kms})) == [
        "kms.key_policy[0].bucket: must be a bucket name or pattern (non-empty, no '/')",
        "kms.key_policy[0].key_id: must not be empty (a key id, key ARN, alias/<name> or alias ARN)",
        "kms.secondary.key_id: field required"]
