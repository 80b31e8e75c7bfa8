#!/usr/bin/env bash
# Entrypoint of the pipeline image (Airflow components, Spark master/workers).
#
# Spark executors connect back to the driver (the Airflow task) and the master
# to its workers by address: advertise this container's address on the compose
# network rather than a hostname other containers might not resolve.
set -euo pipefail
if [[ -z "${SPARK_LOCAL_IP:-}" ]]; then
    SPARK_LOCAL_IP="$(hostname -i | awk '{print $1}')"
    export SPARK_LOCAL_IP
fi
exec "$@"
