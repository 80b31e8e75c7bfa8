# Kubernetes targets, included from the Makefile.
#   make k8s-render OVERLAY=local|production   print the rendered manifests
#   make test-k8s                               manifests and task-pod specs, validated offline
#   make test-k8s-pods                          task pods run under docker (needs `make images`)

OVERLAY ?= local

.PHONY: k8s-render test-k8s test-k8s-pods

k8s-render: setup ## print deploy/k8s/overlays/$(OVERLAY) rendered by kustomize
	@$(VENV)/bin/kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

test-k8s: setup ## validate both overlays and every task pod spec offline (part of `make test`)
	$(PY) -m pytest tests/k8s tests/dags -m "not docker"

test-k8s-pods: setup ## run task pods and one kubernetes-mode training run under docker
	@docker image inspect $${DRIFTLOOP_PIPELINE_IMAGE:-driftloop/pipeline:dev} >/dev/null 2>&1 || { \
	  echo "image $${DRIFTLOOP_PIPELINE_IMAGE:-driftloop/pipeline:dev} missing: run \`make images\` first"; exit 1; }
	DRIFTLOOP_REQUIRE_DOCKER=1 $(PY) -m pytest tests/k8s -m docker
