# envelope-gateway container image.
#
#   docker build -t envelope-gateway:0.1.0 .
#   docker run --read-only --tmpfs /tmp -p 127.0.0.1:8080:8080 \
#     -v "$PWD/gateway.yaml:/etc/envelope-gateway/gateway.yaml:ro" envelope-gateway:0.1.0
#
# Reproducible: runtime dependencies come from uv.lock only (hash-checked, `--frozen`: the lock is never
# re-resolved), the build tools from hash-pinned files in deploy/docker/. For bit-identical rebuilds also pin the
# base image by digest (python:3.11-slim-bookworm@sha256:...) where your registry policy allows.
#
# The image holds no configuration and no credentials: mount gateway.yaml (a ConfigMap in Kubernetes, see
# deploy/), pass client secrets as ENVELOPE_CLIENTS, and let the AWS SDK's default chain (IRSA, EKS Pod Identity,
# instance metadata) supply the credentials for S3 and KMS.

# --- build: a virtual environment at its final path, /opt/venv -------------------------------------------------
FROM python:3.11-slim-bookworm AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1

WORKDIR /src

COPY deploy/docker/build-tools.txt deploy/docker/build-constraints.txt ./deploy/docker/
RUN pip install --no-cache-dir --require-hashes -r deploy/docker/build-tools.txt

# Runtime dependencies only, exactly as locked (uv checks every hash recorded in uv.lock). `--no-default-groups`
# matters: pyproject.toml makes the `test` group (pytest, moto, awscli ...) a default group, which `--no-dev`
# alone would still install; the `dev` extra (moto) is never requested.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-dev --no-install-project --no-editable

# The project itself: a wheel built by the hash-pinned hatchling, installed without touching the dependencies.
COPY gateway/ ./gateway/
RUN uv build --wheel --out-dir /tmp/dist --build-constraints deploy/docker/build-constraints.txt --require-hashes \
 && uv pip install --python /opt/venv/bin/python --no-deps /tmp/dist/*.whl \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; \
bad = [m for m in ('moto', 'pytest', 'hypothesis', 'awscli') if u.find_spec(m)]; \
sys.exit('test-only packages in the image: %s' % bad if bad else 0)" \
 && /opt/venv/bin/envelope-gateway --help > /dev/null

# --- runtime ---------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="envelope-gateway" \
      org.opencontainers.image.description="S3 gateway that stores only AES-256-GCM envelope-encrypted objects" \
      org.opencontainers.image.licenses="Apache-2.0"

# A numeric, unprivileged identity (the distroless "nonroot" numbers), so that Kubernetes' runAsNonRoot can
# verify it; the passwd entry is for tools that look the user up.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin nonroot \
 && mkdir -p /etc/envelope-gateway

COPY --from=build /opt/venv /opt/venv

# Read-only root filesystem: nothing is written outside /tmp (mount a tmpfs / emptyDir there). Bytecode was
# compiled at build time; PYTHONDONTWRITEBYTECODE stops any attempt to write more.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    GATEWAY_HEALTHCHECK_URL=http://127.0.0.1:9090/livez

USER 65532:65532
EXPOSE 8080 9090
STOPSIGNAL SIGTERM

# /livez on the admin port (admin_listen, default 127.0.0.1:9090; set GATEWAY_HEALTHCHECK_URL if you move it).
# Python's urllib because the slim image has no curl; proxies are bypassed on purpose. Kubernetes ignores
# HEALTHCHECK: the manifests in deploy/ declare their own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-I", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open(os.environ['GATEWAY_HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["envelope-gateway", "serve"]
CMD ["--config", "/etc/envelope-gateway/gateway.yaml"]
