"""Conditional search spaces for ``hydra.sweeper.custom_search_space``: a key searched only where another key's
drawn value uses it. Each is called as ``f(config, trial)`` after the trial's ``params`` are drawn."""


def momentum_for_sgd(config, trial) -> None:
    """SGD's momentum (and Nesterov's) where the trial drew SGD; Adam and AdamW have no momentum key to search."""
    if trial.params.get("optimizer") == "sgd":
        trial.suggest_float("optimizer.momentum", 0.5, 0.99)
        trial.suggest_categorical("optimizer.nesterov", [False, True])
