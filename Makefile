# Two commands on a fresh machine: `make serve` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test protos bench lint clean system-packages helm crds

# Helm for the chart tests, built from source into a project-local directory (gitignored).
HELM_VERSION := v3.22.0
# The Kubernetes version Helm $(HELM_VERSION) is built against (its client-go v0.37): what
# `helm template` and `helm lint` assume without a cluster. Helm's own release build sets it;
# a plain `go install` would leave Helm's fallback, 1.20.
HELM_KUBE_MINOR := 37
HELM_LDFLAGS := $(foreach pkg,chartutil lint/rules,-X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMinor=$(HELM_KUBE_MINOR)) -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)
TOOLS := $(CURDIR)/.tools/bin
HELM := $(TOOLS)/helm
GO_TOOLCHAIN := go1.26.8
GO_LOCAL := $(CURDIR)/.tools/go

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,local,paddle,onnx,otel]'
	@touch $(STAMP)

serve: $(STAMP)
	@echo "Once it is serving, try from another terminal:"
	@echo "  curl -s http://127.0.0.1:18070/imdb/prediction -d '{\"key\": [\"words\"], \"value\": [\"this movie was not good at all\"]}'"
	@echo "  cd examples/imdb_ensemble && ../../$(PY) client.py 127.0.0.1:18071"
	@echo
	cd examples/imdb_ensemble && exec ../../$(PY) server.py

# The status page test drives Debian's chromium; `pipeserve graph` uses Graphviz when present.
system-packages:
	@command -v chromium >/dev/null && command -v dot >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium graphviz; }

test: $(STAMP) system-packages helm
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -q

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=pipeserve/proto --pyi_out=pipeserve/proto \
		--grpc_python_out=pipeserve/proto protos/pipeserve/v1/*.proto
	sed -i -E 's/^from pipeserve\.v1 import /from pipeserve.proto.pipeserve.v1 import /' pipeserve/proto/pipeserve/v1/*_pb2*.py*

# Skipped when $(HELM) already is $(HELM_VERSION) built with $(HELM_LDFLAGS) (go records the
# module version and the flags in the binary).
# Helm $(HELM_VERSION) needs Go >= 1.26: an older go on PATH (>= 1.21) fetches that toolchain
# itself; with no go at all, $(GO_TOOLCHAIN) comes from the Go module proxy into .tools/go.
helm:
	@go=$$(command -v go || echo $(GO_LOCAL)/bin/go); \
	if [ ! -x "$$go" ]; then \
		arch=$$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/'); \
		echo "no go on PATH: fetching $(GO_TOOLCHAIN) from the Go module proxy"; \
		mkdir -p $(CURDIR)/.tools && rm -rf $(GO_LOCAL) $(CURDIR)/.tools/go-unzip && \
		curl -fsSL -o $(CURDIR)/.tools/go.zip \
			https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$(GO_TOOLCHAIN).linux-$$arch.zip && \
		$(PYTHON) -c 'import os, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [os.chmod(z.extract(i, sys.argv[2]), i.external_attr >> 16 or 0o644) for i in z.infolist() if not i.is_dir()]' \
			$(CURDIR)/.tools/go.zip $(CURDIR)/.tools/go-unzip && \
		mv $(CURDIR)/.tools/go-unzip/golang.org/toolchain@v0.0.1-$(GO_TOOLCHAIN).linux-$$arch $(GO_LOCAL) && \
		rm -rf $(CURDIR)/.tools/go.zip $(CURDIR)/.tools/go-unzip || exit 1; \
	fi; \
	built=$$("$$go" version -m $(HELM) 2>/dev/null); \
	{ echo "$$built" | grep -Eq '^\s+mod\s+helm.sh/helm/v3\s+$(HELM_VERSION)\s' \
	  && echo "$$built" | grep -Fq 'chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) '; } \
		|| { echo "building helm $(HELM_VERSION) (a few minutes, once)"; \
		     GOBIN=$(TOOLS) "$$go" install -ldflags="$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }

# The operator chart carries copies of files the operator package owns; this refreshes them.
crds: $(STAMP)
	$(PY) charts/sync_operator_files.py

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) PipelineServingLogs
