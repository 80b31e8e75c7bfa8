# The batch side: Airflow 3 (every component, Celery workers included), the
# Spark standalone master and workers, training and monitoring, Java 17 for
# Spark. One image so the code a Spark executor runs is byte for byte the code
# the Airflow task submitted. Build from the repository root:
#   docker build -f deploy/docker/pipeline.Dockerfile .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.8
COPY requirements/pipeline.lock /tmp/pipeline.lock
# The CA bundle is a build secret: mounted for this step only, never in a layer.
RUN --mount=type=secret,id=ca_bundle,required=false \
    --mount=type=cache,target=/root/.cache \
    if [ -s /run/secrets/ca_bundle ]; then \
        export SSL_CERT_FILE=/run/secrets/ca_bundle PIP_CERT=/run/secrets/ca_bundle; \
    fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-input -q "uv==${UV_VERSION}" \
    && /opt/venv/bin/uv pip install --python /opt/venv/bin/python --link-mode=copy \
        --compile-bytecode -q -r /tmp/pipeline.lock \
    && /opt/venv/bin/uv pip uninstall --python /opt/venv/bin/python -q uv pip

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UID=50000
# Java 17 for Spark, tini as PID 1 (signals reach Celery and Spark; zombies reaped).
# The JRE's post-install script needs the man folder that slim images leave out.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${UID}" driftloop \
    && useradd --system --uid "${UID}" --gid driftloop --home-dir /opt/airflow \
        --create-home --shell /bin/bash driftloop \
    && mkdir -p /var/lib/driftloop /var/lib/mlflow/artifacts /opt/airflow/logs /opt/airflow/auth \
    && chown -R driftloop:driftloop /var/lib/driftloop /var/lib/mlflow /opt/airflow
COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/driftloop
COPY airflow/dags/ airflow/dags/
COPY contracts/ contracts/
COPY core/ core/
COPY explain/ explain/
COPY features/ features/
COPY great_expectations/ great_expectations/
COPY ingestion/ ingestion/
COPY jobs/ jobs/
COPY monitoring/ monitoring/
COPY pipelines/ pipelines/
COPY serving/ serving/
COPY synthetic/ synthetic/
COPY training/ training/
COPY usecases/ usecases/
COPY deploy/docker/pipeline-entrypoint.sh /usr/local/bin/driftloop-entrypoint
COPY deploy/docker/airflow-init.sh /usr/local/bin/driftloop-airflow-init
ARG GIT_COMMIT=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/driftloop \
    PYTHONUNBUFFERED=1 \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    DRIFTLOOP_HOME=/var/lib/driftloop \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/driftloop/airflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=false \
    GIT_COMMIT=${GIT_COMMIT}
USER ${UID}:${UID}
ENTRYPOINT ["tini", "--", "driftloop-entrypoint"]
CMD ["airflow", "version"]
