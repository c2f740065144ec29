# Two commands on a fresh machine: `make serve` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test protos bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

serve: $(STAMP)
	cd examples/imdb_ensemble && ../../$(PY) server.py

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=pipeserve/proto --pyi_out=pipeserve/proto \
		--grpc_python_out=pipeserve/proto protos/pipeserve/v1/*.proto
	sed -i -E 's/^from pipeserve\.v1 import /from pipeserve.proto.pipeserve.v1 import /' pipeserve/proto/pipeserve/v1/*_pb2_grpc.py

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) PipelineServingLogs
