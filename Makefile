# The two commands a newcomer types: `make train` and `make test`.
# Both set up what is missing (.venv, the package, verified MNIST) and reuse what is there.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Re-run pip only when pyproject.toml changes; pip then keeps the installed torch.
STAMP  := $(VENV)/.installed
DIR    ?= $$(ls -d outputs/multirun/*/* 2>/dev/null | tail -1)

.PHONY: setup data train test test-fast sweep search dashboard compare clean-outputs test-cluster test-browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --editable '.[dev,export,sweep,mlflow]'
	@touch $@

data: $(STAMP)
	$(PY) -m mnist_exp.data

train: data
	$(PY) -m mnist_exp

# The test files run in parallel, one per core (most tests use one thread); a file's tests stay together, and the
# files of most slow tests go first (tests/conftest.py orders them; --no-loadscope-reorder keeps that order).
test: data
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder

# Without the slow tests (real MNIST, separate processes: see tests/conftest.py); verified MNIST first, as for test.
test-fast: data
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder -m 'not slow'

# A 2x2 grid, two jobs at a time (hydra-joblib-launcher), then its leaderboard.
sweep: data
	$(PY) -m mnist_exp -m hydra/launcher=joblib hydra.launcher.n_jobs=2 model.width=16,24 optimizer.lr=1e-3,3e-3 trainer.epochs=1 $(ARGS)
	$(PY) -m mnist_exp.tools.compare $(DIR)

# An Optuna search (conf/hparams_search/cnn_optuna.yaml); TRIALS=N for more or fewer trials,
# ARGS="trainer.epochs=2 hydra/sweeper/pruner=median ..." for other overrides (sweep too).
TRIALS ?= 20
search: data
	$(PY) -m mnist_exp -m hparams_search=cnn_optuna hydra.sweeper.n_trials=$(TRIALS) $(ARGS)

# optuna-dashboard on the latest search's study, or on STUDY=<storage URL or journal file>: http://127.0.0.1:8080
STUDY ?= $$(ls -d outputs/multirun/*/*/optuna.db 2>/dev/null | tail -1 | sed "s|^|sqlite:///|")
dashboard: $(STAMP)
	@test -n "$(STUDY)" || { echo "make dashboard: no search in outputs/multirun yet: run make search, or give" \
		"STUDY=<storage URL or journal file>." >&2; exit 1; }
	$(VENV)/bin/optuna-dashboard $(STUDY)

# The leaderboard of the latest sweep (names sort by time), or of DIR=<runs or sweeps>.
compare: $(STAMP)
	@test -n "$(DIR)" || { echo "make compare: no sweep in outputs/multirun yet: run make sweep, or give" \
		"DIR=<a run, a sweep or a folder of runs>." >&2; exit 1; }
	$(PY) -m mnist_exp.tools.compare $(DIR)

clean-outputs:
	rm -rf outputs

# A one-node SLURM cluster and a PostgreSQL server on this machine (tests/cluster/*.sh: Debian's slurm-wlm, munge
# and postgresql, as root), then the tests that need them: requeues, time limits, arrays and shared studies.
test-cluster: data
	$(PY) -m pip install --quiet --editable '.[dev,export,sweep,mlflow,postgres]'
	bash tests/cluster/slurm.sh start
	bash tests/cluster/postgres.sh start
	$(PY) -m pytest tests/cluster -m cluster

# Debian's Chromium (installed as root where it is missing), then the tests that drive it: mlflow ui's pages.
test-browser: data
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) -m pytest tests/browser -m browser
