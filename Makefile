# `make run`  : set up .venv and de-identify sample_data/ into out/ with the default profile.
# `make test` : set up .venv and run the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KEY    := .anonymizer-key

.PHONY: run test lint bench sample-data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The key lives outside out/ and is created once; it never reaches the output or the audit log.
$(KEY): | $(STAMP)
	$(BIN)/anonymizer keygen $(KEY)

run: $(STAMP) $(KEY)
	rm -rf out
	$(BIN)/anonymizer run --profile default --key-file $(KEY) sample_data out; \
	  rc=$$?; echo "output: out/   audit log: out/audit.jsonl"; exit $$rc

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check anonymizer tests scripts

sample-data: $(STAMP)
	$(BIN)/python scripts/make_sample_data.py sample_data

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf out $(VENV) *.egg-info
