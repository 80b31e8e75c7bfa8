# The prediction API: FastAPI + the shared feature code, nothing of the batch
# side (no Airflow, Spark, Evidently, Great Expectations). Build from the
# repository root:  docker build -f deploy/docker/serving.Dockerfile .
# The model is not baked in: at start the server pulls <model>@champion from
# the MLflow server named by MLFLOW_TRACKING_URI and hot-swaps new champions.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.8
COPY requirements/serving.lock /tmp/serving.lock
# The CA bundle (for registries behind a TLS-inspecting proxy) is a build
# secret: mounted for this step only, never written to a layer.
RUN --mount=type=secret,id=ca_bundle,required=false \
    --mount=type=cache,target=/root/.cache \
    if [ -s /run/secrets/ca_bundle ]; then \
        export SSL_CERT_FILE=/run/secrets/ca_bundle PIP_CERT=/run/secrets/ca_bundle; \
    fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-input -q "uv==${UV_VERSION}" \
    && /opt/venv/bin/uv pip install --python /opt/venv/bin/python --link-mode=copy \
        --compile-bytecode -q -r /tmp/serving.lock \
    && /opt/venv/bin/uv pip uninstall --python /opt/venv/bin/python -q uv pip

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UID=10001
RUN groupadd --system --gid "${UID}" driftloop \
    && useradd --system --uid "${UID}" --gid driftloop --home-dir /var/lib/driftloop \
        --create-home --shell /usr/sbin/nologin driftloop
COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/driftloop
COPY contracts/ contracts/
COPY core/ core/
COPY explain/ explain/
COPY features/ features/
COPY serving/ serving/
COPY usecases/ usecases/
# The use-case registry (core/usecases.yaml) names these files; serving reads only YAML there.
COPY training/config/ training/config/
COPY monitoring/config/ monitoring/config/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/driftloop \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRIFTLOOP_HOME=/var/lib/driftloop \
    DRIFTLOOP_HOST=0.0.0.0 \
    DRIFTLOOP_PORT=8000 \
    DRIFTLOOP_WORKERS=2
USER ${UID}:${UID}
EXPOSE 8000
# Ready = a model is loaded (503 before that): an orchestrator routes traffic only then.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('DRIFTLOOP_PORT', '8000')}/ready\", timeout=4)"]
CMD ["python", "-m", "serving"]
