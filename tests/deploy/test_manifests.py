"""deploy/: each overlay rendered and checked.

Rendering uses `kubectl kustomize` (or `kustomize build`) when one is installed, else a small Python renderer of
the kustomization features deploy/ uses (it refuses any other). Every check below is plain Python on the rendered
documents; on top of that, when installed: `kubernetes-validate --strict` (PyPI; it bundles the Kubernetes
schemas, so it needs no network) checks every built-in kind, and `promtool` (Debian's `prometheus`) checks and
unit-tests the alerting rules.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_settings
from gateway.observability import admin as admin_module
from gateway.observability import metrics as metrics_module

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = {"sidecar": DEPLOY / "overlays" / "sidecar", "standalone": DEPLOY / "overlays" / "standalone"}
MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMTOOL_TESTS = Path(__file__).resolve().parent / "promtool" / "alerts_test.yaml"
OPERATING = REPO / "docs" / "OPERATING.md"

GATEWAY_UID = 65532
CLIENTS_SECRET = "envelope-gateway-clients"
# Labels Prometheus (target discovery, the Operator's monitors) adds to every series it scrapes.
TARGET_LABELS = {"namespace", "job", "pod", "instance", "container", "service", "endpoint"}
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up": set(), "scrape_duration_seconds": set()}
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")  # native sidecars: on by default from 1.29


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), str(REPO / ".tools" / "bin")]))


# --- rendering ------------------------------------------------------------------------------------------------

def _kustomize_command() -> list[str] | None:
    if find_tool("kubectl"):
        return [find_tool("kubectl"), "kustomize"]
    if find_tool("kustomize"):
        return [find_tool("kustomize"), "build"]
    return None


def _load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


_SUPPORTED = {"apiVersion", "kind", "resources", "components", "configMapGenerator", "images"}


def python_render(directory: Path) -> list[dict]:
    """The subset of kustomize that deploy/ uses: resources, components, configMapGenerator (files), images.
    Generated ConfigMaps keep their plain names (kustomize adds a content hash unless disableNameSuffixHash)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - _SUPPORTED
    assert not unsupported, f"{directory}: {sorted(unsupported)} need a real kustomize (install kubectl)"
    docs: list[dict] = []
    for entry in kustomization.get("resources", []) + kustomization.get("components", []):
        path = (directory / entry).resolve()
        docs += python_render(path) if path.is_dir() else _load_docs(path)
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for file in generator.get("files", []):
            key, _, source = file.rpartition("=") if "=" in file else (Path(file).name, "", file)
            data[key] = (directory / source).read_text()
        options = generator.get("options", {})
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"], **({"labels": options["labels"]}
                                                                 if "labels" in options else {})},
                     "data": data})
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for doc in docs:
        for container in _containers(doc):
            image = images.get(container.get("image", "").split(":")[0])
            if image:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def kustomize_render(directory: Path) -> list[dict] | None:
    command = _kustomize_command()
    if command is None:
        return None
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request) -> str:
    return request.param


_RENDERED: dict[str, list[dict]] = {}


def rendered(name: str) -> list[dict]:
    if name not in _RENDERED:
        _RENDERED[name] = kustomize_render(OVERLAYS[name]) or python_render(OVERLAYS[name])
    return _RENDERED[name]


@pytest.fixture(scope="module")
def docs(overlay) -> list[dict]:
    return rendered(overlay)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc.get("kind") == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [doc for doc in by_kind(docs, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc.get("kind") == "Pod":
        return doc["spec"]
    return None


def _containers(doc: dict) -> Iterator[dict]:
    spec = _pod_spec(doc)
    if spec:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def _is_gateway(container: dict) -> bool:
    return "envelope-gateway" in container.get("image", "")


def gateway_workloads(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, gateway container) pairs."""
    pairs = [(doc, c) for doc in docs for c in _containers(doc) if _is_gateway(c)]
    assert pairs, "no gateway container"
    return pairs


def _configmap(docs: list[dict], reference: str) -> dict:
    """The ConfigMap a volume refers to (kustomize appends a content hash to generated names)."""
    found = [cm for cm in by_kind(docs, "ConfigMap") if cm["metadata"]["name"] == reference]
    assert len(found) == 1, f"ConfigMap {reference} is not in the rendering"
    return found[0]


def _admin_routes() -> set[str]:
    return set(re.findall(r'add_get\("(/[a-z]+)"', Path(admin_module.__file__).read_text()))


def _dockerfile(keyword: str) -> str:
    """The arguments of the Dockerfile's last `keyword` instruction (USER, CMD: single-line instructions)."""
    lines = re.findall(rf"^{keyword}\s+(.+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert lines, f"no {keyword} in the Dockerfile"
    return lines[-1].strip()


def _port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"port {port!r} is not a named port of container {container['name']}"
    return numbers[0]


# --- every document -------------------------------------------------------------------------------------------

def test_kustomize_renders_like_the_python_renderer(overlay):
    """The Python renderer (used where no kustomize is installed) must see what kustomize builds."""
    real = kustomize_render(OVERLAYS[overlay])
    if real is None:
        pytest.skip("neither kubectl nor kustomize installed")
    simple = python_render(OVERLAYS[overlay])

    def key(doc: dict) -> tuple[str, str]:
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        return doc["kind"], name
    def unhashed(doc: dict) -> dict:
        return json.loads(re.sub(r'(envelope-gateway-config)-[a-z0-9]{10}"', r'\1"', json.dumps(doc)))
    assert sorted(map(key, real)) == sorted(map(key, simple))
    for doc in real:
        twin = next(d for d in simple if key(d) == key(doc))
        if doc["kind"] == "ConfigMap":
            assert doc["data"] == twin["data"]
        else:
            assert unhashed(doc) == twin, f"{key(doc)} differs"


def test_every_document_is_a_named_kubernetes_object(docs):
    seen = set()
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], doc
        assert isinstance(doc.get("kind"), str) and doc["kind"], doc
        name = doc.get("metadata", {}).get("name")
        assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name), doc
        assert (doc["kind"], name) not in seen, f"duplicate {doc['kind']}/{name}"
        seen.add((doc["kind"], name))
        assert "namespace" not in doc["metadata"], "the namespace is the user's choice (kubectl -n / kustomize)"


def test_the_expected_objects(docs, overlay):
    kinds = {doc["kind"] for doc in docs}
    assert {"ServiceAccount", "ConfigMap", "Deployment", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    if overlay == "standalone":
        assert {"Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds


# --- the gateway container ------------------------------------------------------------------------------------

def test_sidecar_is_a_native_sidecar():
    docs = rendered("sidecar")
    deployment = one(docs, "Deployment")
    spec = _pod_spec(deployment)
    init = [c for c in spec.get("initContainers", []) if _is_gateway(c)]
    assert len(init) == 1, "the gateway is an init container"
    assert init[0].get("restartPolicy") == "Always", "restartPolicy: Always makes an init container a sidecar"
    assert not any(_is_gateway(c) for c in spec["containers"])
    assert spec["containers"], "next to an application container"
    assert spec["initContainers"].index(init[0]) == 0, "first, so that other init containers can use it too"


def test_probes_hit_existing_admin_routes_on_the_admin_port(docs):
    routes = _admin_routes()
    expected = {"livenessProbe": {"/livez"}, "readinessProbe": {"/readyz"}, "startupProbe": {"/startupz", "/livez"}}
    for workload, container in gateway_workloads(docs):
        settings = effective_settings(docs, workload, container)
        for probe, paths in expected.items():
            get = container[probe]["httpGet"]
            assert get["path"] in paths and get["path"] in routes, f"{probe} {get['path']} (routes: {routes})"
            assert _port_number(container, get["port"]) == settings.admin_listen.port, probe
            assert get.get("scheme", "HTTP") == "HTTP"
        assert settings.admin_listen.host in ("0.0.0.0", "::"), \
            "kubelet probes come from outside the pod: admin_listen must not be loopback"
        liveness = container["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 20, "no restart on a short hiccup"


def test_security_context(docs):
    assert int(_dockerfile("USER").split(":")[0]) == GATEWAY_UID, "the image's USER is the uid the pods run as"
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for container in _containers(doc):
            context = container.get("securityContext", {})
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser") == GATEWAY_UID, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert not context.get("privileged"), where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")


def test_writable_tmp_and_read_only_config(docs):
    config_path = Path(json.loads(_dockerfile("CMD"))[-1])
    for workload, container in gateway_workloads(docs):
        volumes = {v["name"]: v for v in _pod_spec(workload).get("volumes", [])}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], "/tmp: an emptyDir"
        assert volumes[mounts["/tmp"]["name"]]["emptyDir"].get("sizeLimit")
        config = mounts[str(config_path.parent)]
        assert config.get("readOnly") is True
        configmap = _configmap(docs, volumes[config["name"]]["configMap"]["name"])
        assert config_path.name in configmap["data"], "the ConfigMap holds the file the image's CMD names"
        args = container.get("args", [])
        assert args in ([], ["--config", str(config_path)]), args
        assert "command" not in container, "keep the image's ENTRYPOINT (envelope-gateway serve)"


def test_resources(docs):
    units = {"": 1, "m": 0.001, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30}

    def quantity(value: Any) -> float:
        number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()
        return float(number) * units[unit]
    for _, container in gateway_workloads(docs):
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request, limit = resources["requests"][kind], resources["limits"][kind]
            assert quantity(request) <= quantity(limit), (kind, request, limit)
        # crypto.workers defaults to the CPU limit: without one the pool would size itself to the node.
        assert quantity(resources["limits"]["cpu"]) >= 1
        assert quantity(resources["limits"]["memory"]) >= 256 * 2 ** 20


def test_graceful_shutdown_fits_the_grace_period(docs):
    for workload, container in gateway_workloads(docs):
        settings = effective_settings(docs, workload, container)
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        pause = 0
        if pre_stop:
            command = pre_stop.get("exec", {}).get("command") or ["sleep", str(pre_stop.get("sleep", {})
                                                                             .get("seconds", 0))]
            assert command[0] == "sleep", command
            pause = int(command[1])
        grace = _pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        assert pause + settings.shutdown_grace_seconds + 5 <= grace, (pause, settings.shutdown_grace_seconds, grace)


# --- configuration and credentials ----------------------------------------------------------------------------

DUMMY_CLIENTS = json.dumps([{"access_key_id": "test-client", "secret_access_key": "not-a-real-secret-0123456789"}])


def effective_settings(docs: list[dict], workload: dict, container: dict):
    """The settings the gateway container would load: its ConfigMap's file plus the container's literal ENVELOPE_*
    variables; ENVELOPE_CLIENTS (from the Secret in a cluster) is a dummy here."""
    import tempfile

    volumes = {v["name"]: v for v in _pod_spec(workload).get("volumes", [])}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/envelope-gateway")
    configmap = _configmap(docs, volumes[mount["name"]]["configMap"]["name"])
    environ = {"ENVELOPE_CLIENTS": DUMMY_CLIENTS}
    for variable in container.get("env", []):
        if variable["name"].startswith("ENVELOPE_") and "value" in variable:
            environ[variable["name"]] = variable["value"]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "gateway.yaml"
        path.write_text(configmap["data"]["gateway.yaml"])
        return load_settings(path, environ)


def test_the_configmap_is_a_valid_gateway_configuration(docs, overlay):
    for workload, container in gateway_workloads(docs):
        settings = effective_settings(docs, workload, container)  # raises ConfigError listing every problem
        assert [c.access_key_id for c in settings.clients] == ["test-client"], "clients come from the environment"
        assert settings.kms.key_id
        assert settings.upstream.endpoint is None or settings.upstream.endpoint.startswith("https://")
        if overlay == "sidecar":
            assert settings.listen.host == "127.0.0.1", "a sidecar serves S3 to its own pod only"
        else:
            assert settings.listen.host == "0.0.0.0"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["s3"] == settings.listen.port and ports["admin"] == settings.admin_listen.port


def test_clients_come_from_the_secret(docs):
    for _, container in gateway_workloads(docs):
        env = {v["name"]: v for v in container.get("env", [])}
        clients = env["ENVELOPE_CLIENTS"]
        assert "value" not in clients
        assert clients["valueFrom"]["secretKeyRef"]["name"] == CLIENTS_SECRET
        # The gateway's own AWS credentials come from the SDK chain (IRSA / Pod Identity): a static key here
        # would silently take precedence over the web identity.
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} & set(env)
        assert not container.get("envFrom"), "only named variables: nothing unexpected lands in the gateway's env"


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE|CREDENTIAL|_KEY$", re.I)
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_AWS_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[0-9])(?=[A-Za-z0-9/+]*[a-z])"
                               r"(?=[A-Za-z0-9/+]*[A-Z])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def test_no_literal_secrets(docs):
    assert not by_kind(docs, "Secret"), "Secrets are created by the operator (docs/OPERATING.md), never shipped"
    text = yaml.safe_dump_all(docs)
    assert not _AWS_ACCESS_KEY_ID.search(text), _AWS_ACCESS_KEY_ID.search(text)
    assert not _AWS_SECRET_SHAPE.search(text), _AWS_SECRET_SHAPE.search(text)
    for doc in docs:
        for container in _containers(doc):
            for variable in container.get("env", []):
                if _SECRET_NAME.search(variable["name"]):
                    assert "value" not in variable, f"{container['name']}: {variable['name']} has a literal value"
    for configmap in by_kind(docs, "ConfigMap"):
        for key, value in configmap.get("data", {}).items():
            assert not re.search(r"secret_access_key\s*[:=]\s*\S", value), f"{configmap['metadata']['name']}/{key}"
            if key.endswith((".yaml", ".yml")):
                assert "clients" not in (yaml.safe_load(value) or {}), "clients belong in the Secret"


def test_the_literal_secret_checks_catch_secrets():
    leaky = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
              "data": {"gateway.yaml": "clients:\n- access_key_id: a\n  secret_access_key: hunter2\n"}}]
    with pytest.raises(AssertionError):
        test_no_literal_secrets(leaky)
    with pytest.raises(AssertionError):
        test_no_literal_secrets([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                                  "data": {"k": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}])
    with pytest.raises(AssertionError):
        test_no_literal_secrets([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                                  "spec": {"template": {"spec": {"containers": [
                                      {"name": "a", "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}]}}}}])


def test_identity_is_irsa_ready(docs):
    account = one(docs, "ServiceAccount", "envelope-gateway")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role), role
    for workload, _ in gateway_workloads(docs):
        spec = _pod_spec(workload)
        assert spec["serviceAccountName"] == "envelope-gateway"
        assert spec.get("automountServiceAccountToken") is False, "no Kubernetes API token in the pod"


# --- the standalone gateway -----------------------------------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def test_standalone_service_pdb_and_hpa():
    docs = rendered("standalone")
    deployment = one(docs, "Deployment", "envelope-gateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"], pod_labels)
    container = next(c for c in _containers(deployment) if _is_gateway(c))

    service = one(docs, "Service", "envelope-gateway")
    assert _selects(service["spec"]["selector"], pod_labels)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {"s3", "admin"} <= set(ports)
    for port in ports.values():
        _port_number(container, port["targetPort"])

    pdb = one(docs, "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"], pod_labels)
    hpa = one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "envelope-gateway")
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    budget = pdb["spec"].get("maxUnavailable", hpa["spec"]["minReplicas"] - pdb["spec"].get("minAvailable", 0))
    assert budget < hpa["spec"]["minReplicas"], "a drain never takes every gateway at once"
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


# --- monitoring -----------------------------------------------------------------------------------------------

def test_servicemonitor_scrapes_the_standalone_admin_port():
    docs = rendered("standalone")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "envelope-gateway")
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    deployment = one(docs, "Deployment", "envelope-gateway")
    container = next(c for c in _containers(deployment) if _is_gateway(c))
    settings = effective_settings(docs, deployment, container)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics" and "/metrics" in _admin_routes()
        assert _port_number(container, ports[endpoint["port"]]["targetPort"]) == settings.admin_listen.port


def test_podmonitor_scrapes_the_sidecars_admin_port():
    docs = rendered("sidecar")
    monitor = one(docs, "PodMonitor")
    deployment = one(docs, "Deployment")
    assert _selects(monitor["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    container = next(c for c in _containers(deployment) if _is_gateway(c))
    settings = effective_settings(docs, deployment, container)
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["path"] == "/metrics"
        assert _port_number(container, endpoint["port"]) == settings.admin_listen.port
    # ... and the standalone gateway's pods are not scraped twice.
    standalone = one(rendered("standalone"), "Deployment", "envelope-gateway")
    assert not _selects(monitor["spec"]["selector"], standalone["spec"]["template"]["metadata"]["labels"])


def exposed_metrics() -> dict[str, set[str]]:
    """Series names the gateway exposes, with their labels, read from gateway/observability/metrics.py."""
    tree = ast.parse(Path(metrics_module.__file__).read_text())
    series: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("Counter", "Gauge", "Histogram", "Summary", "Info", "Enum")):
            continue
        name = node.args[0].value
        label_node = node.args[2] if len(node.args) > 2 else next(
            (k.value for k in node.keywords if k.arg == "labelnames"), None)
        labels = {e.value for e in label_node.elts} if isinstance(label_node, (ast.List, ast.Tuple)) else set()
        kind = node.func.id
        if kind == "Counter":
            base = name.removesuffix("_total")
            series.update({f"{base}_total": labels, f"{base}_created": labels})
        elif kind == "Histogram":
            series.update({name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels,
                           name + "_created": labels})
        elif kind == "Summary":
            series.update({name: labels | {"quantile"}, name + "_sum": labels, name + "_count": labels})
        elif kind == "Info":
            series[name + "_info"] = labels
        else:
            series[name] = labels
    assert "envelope_requests_total" in series and "envelope_request_duration_seconds_bucket" in series
    return series


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def promql_references(expr: str) -> list[tuple[str | None, set[str]]]:
    """(metric name or None for a grouping clause, label names) for every selector and grouping in expr."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries ([5m], [$__rate_interval])
    references: list[tuple[str | None, set[str]]] = []

    def selector(match: re.Match) -> str:
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
        references.append((match.group(1), labels))
        return f" {match.group(1) or ''} "
    text = re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", selector, text)

    def grouping(match: re.Match) -> str:
        references.append((None, set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", match.group(2)))))
        return " "
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", grouping, text)
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()[:1]
        if word.lower() in _KEYWORDS or following == "(":
            continue  # operators, functions, aggregations
        if not any(name == word for name, _ in references):
            references.append((word, set()))
    return references


def check_promql(expr: str, where: str) -> set[str]:
    """Every metric exists and every label name is one the metrics (or Prometheus' targets) have."""
    known = {**exposed_metrics(), **PROMETHEUS_SERIES}
    references = promql_references(expr)
    metrics = {name for name, _ in references if name}
    assert metrics, f"{where}: no metric in {expr!r}"
    unknown = metrics - set(known)
    assert not unknown, f"{where}: unknown metric(s) {sorted(unknown)} (not in {metrics_module.__file__})"
    available = set().union(*(known[m] for m in metrics)) | TARGET_LABELS
    for name, labels in references:
        allowed = (known[name] | TARGET_LABELS) if name else available
        assert labels <= allowed, f"{where}: label(s) {sorted(labels - allowed)} not on {name or sorted(metrics)}"
    return metrics


def test_promql_checker_catches_mistakes():
    check_promql('sum by (le, operation) (rate(envelope_request_duration_seconds_bucket{job="x"}[5m]))', "ok")
    for bad in ('rate(envelope_request_total[5m])',                               # no such metric
                'rate(envelope_requests_total{bucket="b"}[5m])',                   # no such label
                'sum by (outcome) (rate(envelope_requests_total[5m]))',            # grouping by a foreign label
                'envelope_request_duration_seconds'):                              # a histogram's base name
        with pytest.raises(AssertionError):
            check_promql(bad, bad)


def _rule_groups() -> list[dict]:
    rule = _load_docs(MONITORING / "prometheusrule.yaml")[0]
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def _anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATING.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_alerts_reference_existing_metrics_and_are_documented():
    alerts = [rule for group in _rule_groups() for rule in group["rules"] if "alert" in rule]
    assert len({a["alert"] for a in alerts}) == len(alerts), "alert names are unique"
    used: set[str] = set()
    for alert in alerts:
        used |= check_promql(alert["expr"], alert["alert"])
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        page, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert (REPO / page).is_file() and anchor in _anchors(), f"{alert['alert']}: runbook {page}#{anchor}"
    for required in ("envelope_kms_requests_total", "envelope_tamper_detections_total", "envelope_requests_total",
                     "envelope_request_duration_seconds_bucket", "envelope_auth_failures_total"):
        assert required in used, f"no alert on {required}"
    text = json.dumps(alerts)
    assert 'outcome!=\\"ok\\"' in text and 'status=~\\"5..\\"' in text


def _promtool() -> str:
    path = find_tool("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    promtool = _promtool()
    groups = _rule_groups()
    (tmp_path / "full.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "full.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool compares annotations verbatim: the unit tests check the firing logic on the rules without them.
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(PROMTOOL_TESTS, tmp_path / "alerts_test.yaml")
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", PROMTOOL_TESTS.read_text()))
    defined = {rule["alert"] for group in _rule_groups() for rule in group["rules"] if "alert" in rule}
    assert defined <= tested, f"alerts without a unit test: {sorted(defined - tested)}"


# --- the Grafana dashboard ------------------------------------------------------------------------------------

def _dashboard_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\)\s*", query)
            assert match, f"${variable['name']}: {query}"
            metrics = check_promql(match.group(1), f"${variable['name']}")
            assert match.group(2) in exposed_metrics()[next(iter(metrics))] | TARGET_LABELS


def test_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids, cells, used = set(), set(), set()
    queries = list(_dashboard_queries(dashboard))
    assert len(queries) >= 10
    for title, expr in queries:
        used |= check_promql(expr, f"panel {title!r}")
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    all_metrics = {m for m in exposed_metrics() if not m.endswith(("_created", "_sum"))}
    shown = {re.sub(r"_(bucket|count)$", "", m) for m in used}
    missing = {m for m in all_metrics if re.sub(r"_(bucket|count)$", "", m) not in shown}
    assert not missing, f"metrics with no panel: {sorted(missing)}"


def test_dashboard_configmap_carries_the_file(docs):
    configmap = one(docs, "ConfigMap", "envelope-gateway-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["grafana-dashboard.json"]) == json.loads(DASHBOARD.read_text())


# --- schema validation with external tools --------------------------------------------------------------------

def _rendered_file(overlay: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(rendered(overlay), sort_keys=False))
    return path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict(overlay, version, tmp_path):
    tool = find_tool("kubernetes-validate")
    if tool is None:
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    path = _rendered_file(overlay, tmp_path)
    result = subprocess.run([tool, "--strict", "--quiet", "-k", version, str(path)],
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output
    # Only the Prometheus Operator's kinds (no schema bundled) may be skipped.
    skipped = set(re.findall(r"Couldn't find schema for kind (\w+)", output))
    assert skipped <= {"ServiceMonitor", "PodMonitor", "PrometheusRule"}, skipped

