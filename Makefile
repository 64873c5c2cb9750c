# The two commands a newcomer types: `make train` and `make test`.
# Both set up what is missing (.venv, the package, verified MNIST) and reuse what is there.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Re-run pip only when pyproject.toml changes; pip then keeps the installed torch.
STAMP  := $(VENV)/.installed

.PHONY: setup data train test test-fast clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --editable '.[dev,export]'
	@touch $@

data: $(STAMP)
	$(PY) -m mnist_exp.data

train: data
	$(PY) -m mnist_exp

test: data
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow'

clean-outputs:
	rm -rf outputs
