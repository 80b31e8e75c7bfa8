# Stand-ins for the observability profile's prom/prometheus, prom/pushgateway
# and prom/alertmanager images, built from Debian bookworm's packages
# (Prometheus 2.42, Pushgateway 1.5, Alertmanager 0.25: the versions
# docker-compose.yml names). Like the official images: the binary as the
# entrypoint (the compose file passes only flags), user nobody, the same data
# paths, and wget for the health checks. One target per service:
#   docker build --target prometheus|pushgateway|alertmanager -f prometheus.Dockerfile .
ARG DEBIAN_IMAGE=driftloop/debian:bookworm
FROM ${DEBIAN_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Package scripts must not try to start services inside a build.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d

FROM base AS prometheus
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

FROM base AS pushgateway
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-pushgateway wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown 65534:65534 /data
USER 65534:65534
WORKDIR /data
EXPOSE 9091
ENTRYPOINT ["/usr/bin/prometheus-pushgateway"]

FROM base AS alertmanager
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /alertmanager && chown 65534:65534 /alertmanager
USER 65534:65534
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
