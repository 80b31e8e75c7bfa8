# Stand-in for python:3.11-slim-bookworm where no image registry is reachable:
# Debian bookworm's own Python 3.11 on the locally imported bookworm base.
# The driftloop Dockerfiles only need `python3 -m venv` and a matching runtime.
ARG DEBIAN_IMAGE=driftloop/debian:bookworm
FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
CMD ["python3"]
