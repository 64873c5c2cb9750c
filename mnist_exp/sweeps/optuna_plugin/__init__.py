"""mnist_exp's Optuna sweeper as a Hydra plugin: ``hydra/sweeper=optuna`` (see optuna_sweeper.py).

pyproject.toml maps this directory to ``hydra_plugins.mnist_exp_optuna``: Hydra instantiates only
plugin classes defined under ``hydra_plugins``.
"""
