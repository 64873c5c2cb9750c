"""What a search checks before it asks its first trial: settings that fit together, a space each trial's config
takes, and a continued study that is the search it continues (its direction, metric, fixed overrides and kinds of
distribution; no seed that would draw its trials again)."""

import copy
import logging
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from mnist_exp.errors import UserError, did_you_mean, first_line
from mnist_exp.hydra_errors import one_line
from mnist_exp.paths import CONF_DIR
from mnist_exp.runs import RESUME_MAY_CHANGE, check_objectives, objectives, split_override
from mnist_exp.sweeps.space import describe
from mnist_exp.sweeps.trial import EPOCH_OBJECTIVES, without_password

log = logging.getLogger("mnist_exp")

DIRECTIONS = ("maximize", "minimize")
# Samplers that draw from what the study has done, not from their seed alone: the grid's unvisited points, QMC's
# next index (kept in the study). A seed is theirs to keep in a continued or shared study.
STUDY_AWARE_SAMPLERS = ("GridSampler", "QMCSampler")


def better_direction(metric: str) -> str:
    """Accuracies are better higher; losses, seconds and parameter counts lower (``OBJECTIVES``)."""
    return "maximize" if metric.endswith("acc") else "minimize"


def check_settings(search) -> None:
    """The settings of ``search`` (an ``OptunaSearch``) as the sweeper's config gave them, before it opens its study."""
    check_parts(search.sampler, search.pruner)
    for direction in search.directions:
        if direction not in DIRECTIONS:
            shown = "null" if direction is None else direction
            raise UserError(f"hydra.sweeper.direction={shown} is not one of: {', '.join(DIRECTIONS)}."
                            f"{did_you_mean(shown, DIRECTIONS)}")
    metrics = search.config.get("optimized_metric")
    if search.own:
        check_objectives(metrics)  # a trial would fail only once it has trained
    if metrics is not None and len(objectives(metrics)) != len(search.directions):
        raise UserError(f"hydra.sweeper.direction has {len(search.directions)} direction(s) and optimized_metric "
                        f"{len(objectives(metrics))} metric(s): give one direction per metric, e.g. "
                        "hydra.sweeper.direction=[maximize,minimize] optimized_metric=[best_val/acc,train_time_s].")
    if len(search.directions) > 1 and search.sampler._target_.endswith("CmaEsSampler"):  # Optuna refuses it at an ask
        raise UserError(f"hydra/sweeper/sampler=cmaes searches one objective, and hydra.sweeper.direction has "
                        f"{len(search.directions)}: give a sampler of several, hydra/sweeper/sampler=tpe (or gp, "
                        "nsgaii, qmc, random, grid).")
    wanted = [better_direction(metric) for metric in objectives(metrics)] if search.own else search.directions
    if wanted != search.directions:  # the search would look for the worst trial
        metric, direction = next((m, d) for m, d, w in zip(objectives(metrics), search.directions, wanted) if d != w)
        advice = wanted[0] if len(wanted) == 1 else f"[{','.join(wanted)}]"
        raise UserError(f"optimized_metric={metric} is better {'lower' if direction == 'maximize' else 'higher'}, and "
                        f"to {direction} it would search for the worst trial: give hydra.sweeper.direction={advice}.")
    if search.n_trials < 0 or search.n_jobs < 1 or not 0 <= search.max_failure_rate <= 1:
        raise UserError(f"hydra.sweeper needs n_trials >= 0, n_jobs >= 1 and max_failure_rate in [0, 1] (got "
                        f"{search.n_trials}, {search.n_jobs}, {search.max_failure_rate}).")
    reduction = search.pruner.get("reduction_factor")  # Optuna's Hyperband divides by its log, after an epoch
    if reduction is not None and not (isinstance(reduction, (int, float)) and reduction >= 2):
        raise UserError(f"hydra.sweeper.pruner.reduction_factor={reduction} is out of range: each round keeps one "
                        "trial in that many, at least 2, e.g. 3.")
    pruning = not search.pruner._target_.endswith("NopPruner")
    if pruning and len(search.directions) > 1:
        raise UserError("Optuna prunes single-objective searches only: with several directions, "
                        "hydra/sweeper/pruner=none.")
    if pruning and not search.storage:
        raise UserError("A pruner needs a study its jobs can reach, and hydra.sweeper.storage=null keeps it in "
                        "this process: give a storage (the default, SQLite in the sweep directory) or "
                        "hydra/sweeper/pruner=none.")
    # One metric, given as a key or as a list of one ([best_val/acc]), is what a trial reports after every epoch.
    if pruning and (metrics is None or objectives(metrics)[0] not in EPOCH_OBJECTIVES):
        raise UserError(f"optimized_metric={metrics} is not measured after every epoch, so a pruner cannot "
                        f"compare trials by it: optimise one of {', '.join(EPOCH_OBJECTIVES)}, or "
                        "hydra/sweeper/pruner=none.")


def check_seed_is_read(sampler, space: dict) -> None:
    """Optuna's QMC sampler reads its seed only to scramble its sequence (and for its first trial, and for choices,
    which it draws at random): unscrambled, every seed draws the same numbers."""
    numbers = [key for key, distribution in space.items() if not hasattr(distribution, "choices")]
    if (sampler._target_.endswith("QMCSampler") and sampler.get("seed") is not None and not sampler.get("scramble")
            and numbers):
        raise UserError(f"hydra.sweeper.sampler.seed={sampler.seed}: after its first trial, the QMC sampler draws "
                        f"{', '.join(numbers)} from one sequence whatever its seed, unless it scrambles it: give "
                        "hydra.sweeper.sampler.scramble=true too, or leave the seed out.")


def warn_of_startup_trials(search, study) -> None:
    """The sampler's first trials are drawn at random (NSGA-II's first generation), and the pruner's never pruned:
    said where that is all of the trials the study will have."""
    for part, node, built in (("sampler", search.sampler, study.sampler), ("pruner", search.pruner, study.pruner)):
        key = "population_size" if type(built).__name__ == "NSGAIISampler" else "n_startup_trials"
        startup, total = (node or {}).get(key), len(study.trials) + search.n_trials
        if startup and total <= startup:
            does = "draws at random" if part == "sampler" else "prunes none of"
            log.warning("%s %s the study's first %d trials (hydra.sweeper.%s.%s), and it will have %d: give more "
                        "trials, or a smaller %s", type(built).__name__, does, startup, part, key, total, key)


def check_parts(sampler, pruner) -> None:
    """The sampler and pruner are nodes that their groups choose, each naming the Optuna class to build: a name or
    null given to the key itself (hydra.sweeper.sampler=tpe) leaves no class to build."""
    from mnist_exp.run.options import group_options

    for part, value in (("sampler", sampler), ("pruner", pruner)):
        if OmegaConf.is_dict(value) and "_target_" in value:
            continue
        options = group_options(f"hydra/sweeper/{part}")
        choose = f"hydra/sweeper/{part}={value}" if value in options else \
            f"one of its options, hydra/sweeper/{part}={'|'.join(options)}"
        raise UserError(f"hydra.sweeper.{part}={'null' if value is None else value}: a search's {part} is chosen with "
                        f"its group: give {choose} (its settings: hydra.sweeper.{part}.<key>=<value>).")


def check_same_search(sweep_dir: Path, study_name: str) -> None:
    """A sweep directory is one study's: the jobs of another, numbered from 0 as well, would sit beside its own, and
    its multirun.yaml and best_trial.yaml be written over. Its multirun.yaml, written as a search starts, names it."""
    try:
        recorded = OmegaConf.select(OmegaConf.load(sweep_dir / "multirun.yaml"), "hydra.sweeper.study_name",
                                    throw_on_resolution_failure=False)
    except (OSError, ValueError, OmegaConfBaseException, yaml.YAMLError):  # none yet, or not Hydra's
        return
    if isinstance(recorded, str) and recorded != study_name:
        raise UserError(f"{sweep_dir} is the directory of study {recorded} (its multirun.yaml), and this search's "
                        f"study is {study_name}: give this search a new hydra.sweep.dir (or leave it out), or continue "
                        f"that one with hydra.sweeper.study_name={recorded}.")


def experiment_overrides(fixed: list[str]) -> list[str]:
    """A search's fixed overrides less those that say where or how its trials run (device, progress, loggers)."""
    # A group counts as its keys do: device=cpu as device.<key>. In order of keys, as typed in any order.
    return sorted(line for line in fixed if not f"{split_override(line)[0]}.".startswith(RESUME_MAY_CHANGE))


def check_epochs_to_prune(search, space: dict) -> None:
    """A pruner stops a trial between its epochs, from the first it judges on (Optuna's median's n_warmup_steps,
    hyperband's min_resource): trials of one epoch, or that end before that one (not searched over), leave it nothing
    to do; and hyperband's max_resource past their last epoch makes brackets that judge none of their trials."""
    epochs = search.config.trainer.epochs if search.own and "trainer.epochs" not in space else None
    if search.pruner._target_.endswith("NopPruner") or epochs is None:
        return
    if epochs < 2:
        raise UserError(f"hydra.sweeper.pruner stops a trial between its epochs, and trainer.epochs={epochs} has "
                        "none: train 2 epochs or more, or hydra/sweeper/pruner=none.")
    for key in ("n_warmup_steps", "min_resource"):
        if isinstance(first := search.pruner.get(key), int) and first >= epochs:
            judged = "epoch 1" if epochs == 2 else f"epochs 1 to {epochs - 1}"
            raise UserError(f"hydra.sweeper.pruner.{key}={first}: the pruner judges a trial from epoch {first} on, and "
                            f"a trial of trainer.epochs={epochs} is judged after {judged} only: give at most "
                            f"{epochs - 1}, or train more epochs (trainer.epochs={first + 1}).")
    if isinstance(last := search.pruner.get("max_resource"), int) and last > epochs:  # "auto": the epochs trained
        raise UserError(f"hydra.sweeper.pruner.max_resource={last}: Hyperband's brackets that judge trials past epoch "
                        f"{epochs} never prune, and a trial of trainer.epochs={epochs} ends there: give "
                        f"hydra.sweeper.pruner.max_resource={epochs}, or auto (the epochs of the first finished "
                        "trial).")


def check_validation_split(search, space: dict) -> None:
    """A validation metric (one a trial reports after every epoch) needs a validation split: without one every trial
    would train, then return nan."""
    config = search.config
    metric = next((m for m in objectives(config.get("optimized_metric") or []) if m in EPOCH_OBJECTIVES), None)
    if (not search.own or metric is None or OmegaConf.select(config, "dataset.val_size") != 0
            or OmegaConf.select(config, "trainer.overfit_batches") is not None
            or {"dataset", "dataset.val_size"} & set(space)):
        return
    option = CONF_DIR / "dataset" / f"{OmegaConf.select(config, 'hydra.runtime.choices.dataset')}.yaml"
    default = OmegaConf.load(option).get("val_size") if option.is_file() else None
    example = f"dataset.val_size={default}" if default else "a size above 0"
    raise UserError(f"optimized_metric={metric} is measured on the validation split, and dataset.val_size=0 leaves "
                    f"none: give {example}, so that the trials are compared on images none of them trained on.")


ABSENT = object()


def check_space_fits(config, space: dict) -> None:
    """A key the config does not have would fail every trial, an interval of numbers over a key that takes whole
    numbers too, a choice the key does not take the trials that draw it: refused before the study is made, as a grid
    sweep's values are."""
    for key, distribution in space.items():
        if OmegaConf.select(config, key, default=ABSENT) is ABSENT:  # a misspelt key: refused before the study is made
            try:
                OmegaConf.update(copy.deepcopy(config), key, None)
            except OmegaConfBaseException as error:  # not in the config's struct
                from mnist_exp.run.config import schema_keys  # the close match among its node's keys

                raise UserError(one_line(str(error), schema_keys)) from None
        if (value := OmegaConf.select(config, key)) is None or OmegaConf.is_config(value):  # a group: its options
            continue
        for choice in getattr(distribution, "choices", ()):
            try:
                OmegaConf.update(copy.deepcopy(config), key, choice)
            except ValidationError as error:
                raise UserError(one_line(str(error))) from None
        if type(distribution).__name__ != "FloatDistribution":
            continue
        probe = copy.deepcopy(config)
        try:
            OmegaConf.update(probe, key, (distribution.low + distribution.high) / 2 + 0.1)
        except ValidationError:
            low, high = (f"{end:g}" for end in (distribution.low, distribution.high))
            raise UserError(f"{key} takes whole numbers, and the search would draw numbers such as "
                            f"{(distribution.low + distribution.high) / 2 + 0.1:g} for it: give "
                            f"{key}=int(interval({low},{high})).") from None


def trials_precision(search, space: dict) -> str | None:
    """What a mnist_exp search's trials compute in (what auto becomes on this machine); None for another app's,
    where the search draws it, where its trials run on other machines (SLURM) or on a device this one lacks."""
    device = search.config.get("device") if search.own else None
    on_cluster = "slurm" in str(search.config.hydra.launcher.get("_target_", "")).lower()
    if device is None or on_cluster or any(key == "device" or key.startswith("device.") for key in space):
        return None
    from mnist_exp.run.runtime import select_device, use_bf16  # torch: a mnist_exp search trains in this process

    precision, name = (getattr(value, "value", value) for value in (device.precision, device.name))  # enums
    try:
        return "bf16" if use_bf16(precision, select_device(name)) else "fp32"
    except UserError:  # device=cuda here without one: each trial says so
        return None


def kind(distribution) -> str:
    """A distribution as a user wrote it: a choice, an interval of whole numbers or of numbers."""
    words = {"CategoricalDistribution": "as a choice", "IntDistribution": "as whole numbers"}
    return f"{words.get(type(distribution).__name__, 'as numbers')} {describe(distribution)}"


def check_continued_study(study, search, metric: str, fixed: list[str], space: dict) -> None:
    """A study keeps its directions and metric: Optuna loads it as it was, whatever the command says, and would rank
    values of two metrics as one; and its fixed overrides, or it would rank trials of two experiments as one. A
    key's kind of distribution stays (Optuna refuses another once a trial has begun). A seeded sampler, made anew,
    would draw the study's first trials again."""
    where = f"Study {search.study_name} in {without_password(search.storage)}"
    new_place = "start another in a new hydra.sweep.dir (and a new study_name where the storage is not in it)"
    stored, recorded = [direction.name.lower() for direction in study.directions], study.user_attrs.get("metric")
    if stored != search.directions or recorded not in (None, metric):  # None: a study of another sweeper
        raise UserError(f"{where} is a search to {', '.join(stored)} {recorded or 'its metric'}, and this command "
                        f"would {', '.join(search.directions)} {metric}. Continue it with its own direction and "
                        f"metric, or {new_place}.")
    began = study.user_attrs.get("fixed")  # None: a study from before it was recorded
    before, now = experiment_overrides(began or []), experiment_overrides(fixed)
    if began is not None and before != now:
        raise UserError(f"{where} searches with {' '.join(before) or 'no fixed overrides'}, and "
                        f"this command gives {' '.join(now) or 'none'}: its trials would be "
                        f"ranked with trials of another experiment. Continue it with the same overrides, or {new_place}.")
    before, now = study.user_attrs.get("precision"), trials_precision(search, space)
    if None not in (before, now) and before != now:  # bf16 and fp32 trials ranked as one: the kernels differ
        raise UserError(f"{where} trains its trials in {before}, and this command would in {now}: continue it with "
                        f"device.precision={before}, or {new_place}.")
    from optuna.distributions import check_distribution_compatibility  # Optuna is an extra: imported by a search

    searched = {key: distribution for trial in study.trials for key, distribution in trial.distributions.items()}
    for key, distribution in space.items():
        try:
            if key in searched:
                check_distribution_compatibility(searched[key], distribution)
        except ValueError as error:
            raise UserError(f"{key}: {where} searched it {kind(searched[key])}, and this command "
                            f"{kind(distribution)}, which Optuna cannot mix in one study "
                            f"({first_line(error).rstrip('.')}). Continue it with its own space, or "
                            f"{new_place}.") from error
    seed = search.sampler.get("seed")
    if seed is not None and study.trials and not search.sampler._target_.endswith(STUDY_AWARE_SAMPLERS):
        raise UserError(f"hydra.sweeper.sampler.seed={seed}: {where} has {len(study.trials)} trial(s), and a sampler "
                        "made anew with a seed repeats its draws, proposing trials the study has run: leave the seed "
                        "out to continue it.")
