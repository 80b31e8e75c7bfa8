#!/usr/bin/env bash
# First start of the Postgres volume: one database and one login per consumer,
# so a leaked password of one service opens only that service's data.
#
#   airflow      Airflow metadata (also the Celery result backend)
#   mlflow       MLflow backend store (runs, registry)
#   optuna       Optuna studies (resumable model search)
#   predictions  the API's prediction log, read by drift_check
#
# Passwords come from the environment (the .env file); nothing has a default.
set -euo pipefail

create() {
    local name="$1" password="$2"
    if [[ -z "$password" ]]; then
        echo "init: the password for database $name is empty; set it in .env" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "init: database and role $name created"
}

create airflow "${AIRFLOW_DB_PASSWORD:-}"
create mlflow "${MLFLOW_DB_PASSWORD:-}"
create optuna "${OPTUNA_DB_PASSWORD:-}"
create predictions "${PREDICTIONS_DB_PASSWORD:-}"
