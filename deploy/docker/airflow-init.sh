#!/usr/bin/env bash
# One-shot set-up of the Airflow deployment, run by the `airflow-init` service
# before any other Airflow component starts (they wait for it to succeed):
# migrate the metadata database, create the Optuna schema, then write the admin's login for the
# SimpleAuthManager from AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD (the env
# file). Re-running it is safe and applies a changed password.
set -euo pipefail
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is empty: set it in .env}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the passwords file location is not configured}"

echo "airflow-init: migrating the metadata database"
airflow db migrate

# Parallel `tune` tasks would otherwise race to create Optuna's tables in a
# fresh database (one of them fails on a duplicate type and burns a retry).
if [[ -n "${DRIFTLOOP_OPTUNA_STORAGE:-}" ]]; then
    echo "airflow-init: creating the Optuna schema"
    python -c 'import os, optuna; optuna.storages.RDBStorage(os.environ["DRIFTLOOP_OPTUNA_STORAGE"])'
fi

echo "airflow-init: writing the login of ${AIRFLOW_ADMIN_USER:-admin}"
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
tmp = path.with_suffix(".tmp")
tmp.touch(mode=0o600)
tmp.write_text(json.dumps({os.environ.get("AIRFLOW_ADMIN_USER", "admin"): os.environ["AIRFLOW_ADMIN_PASSWORD"]}))
tmp.replace(path)
PY
echo "airflow-init: done"
