"""Registered optimizers and learning-rate schedules.

Every schedule is stepped once per optimizer step, so one rule serves per-epoch recipes (a
``step`` schedule counts epochs as ``steps // steps_per_epoch``) and per-batch ones (one-cycle).
"""

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from mnist_exp.errors import UserError, check_range
from mnist_exp.registry import AUGMENTATIONS, OPTIMIZERS, SCHEDULERS

log = logging.getLogger("mnist_exp")


@OPTIMIZERS.register("sgd")
def sgd(params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False):
    check_range("optimizer.momentum", momentum, 0 <= momentum < 1, "a fraction in [0, 1), e.g. 0.9")
    if nesterov and momentum == 0:  # torch's words name neither key nor a fix
        raise UserError(f"optimizer.nesterov=true looks ahead along the momentum, and optimizer.momentum={momentum} "
                        "has none: give optimizer.momentum above 0, e.g. 0.9, or optimizer.nesterov=false.")
    check_weight_decay_and_eps(weight_decay)
    params = list(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                           fused=fused(params))


@OPTIMIZERS.register("adam")
def adam(params, lr: float = 1e-2, betas: list[float] = (0.9, 0.999), weight_decay: float = 0.0, eps: float = 1e-8):
    check_weight_decay_and_eps(weight_decay, eps)
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=two_betas(betas), weight_decay=weight_decay, eps=eps,
                            fused=fused(params))


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float = 1e-2, betas: list[float] = (0.9, 0.999), weight_decay: float = 0.01, eps: float = 1e-8):
    check_weight_decay_and_eps(weight_decay, eps)
    params = list(params)
    return torch.optim.AdamW(params, lr=lr, betas=two_betas(betas), weight_decay=weight_decay, eps=eps,
                             fused=fused(params))


def fused(params: list) -> bool | None:
    """True where every parameter is a float tensor on the CPU or a CUDA GPU, which have torch's fused kernels: one
    pass over each parameter a step (Adam on 2 CPU cores: 0.04 s instead of 0.12 s for 235 steps of the cnn).
    None (torch's own choice) for anything else, parameter groups given as dicts among them."""
    tensors = all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in params)
    return True if tensors and {p.device.type for p in params} <= {"cpu", "cuda"} else None


def two_betas(betas) -> tuple[float, float]:
    """Adam's (beta1, beta2): two fractions in [0, 1) (torch checks the range without saying what it takes)."""
    if len(betas) != 2:
        raise UserError(f"optimizer.betas={list(betas)} takes two numbers, e.g. optimizer.betas=[0.9,0.999].")
    check_range("optimizer.betas", list(betas), all(0 <= beta < 1 for beta in betas),
                "two fractions in [0, 1), e.g. [0.9,0.999]")
    return tuple(betas)


def check_weight_decay_and_eps(weight_decay: float, eps: float | None = None) -> None:
    """The ranges torch refuses without saying what it takes (``eps``: None for an optimizer without one)."""
    check_range("optimizer.weight_decay", weight_decay, weight_decay >= 0, "0 or more, e.g. 0.01")
    if eps is not None:
        check_range("optimizer.eps", eps, eps > 0, "a small number above 0, e.g. 1e-8")


@OPTIMIZERS.register("adadelta")
def adadelta(params, lr: float = 1.0, rho: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6):
    check_range("optimizer.rho", rho, 0 <= rho <= 1, "a fraction in [0, 1], e.g. 0.9")
    check_weight_decay_and_eps(weight_decay, eps)
    return torch.optim.Adadelta(params, lr=lr, rho=rho, weight_decay=weight_decay, eps=eps)


# Schedules take the optimizer and the run's length in steps from code; the rest is config.


def check_schedule_fits(scheduler: Mapping[str, Any], epochs: int, steps_per_epoch: int,
                        given: set[str] = frozenset()) -> None:
    """Refuse a schedule's key that this run's length leaves nothing to do: a step schedule whose first step would
    come after the last epoch (its gamma would change nothing), a warm-up of no whole step or of the whole run, and
    a key ``given`` on the command line that shapes only steps this run does not have (``check_steps_reach``)."""
    if scheduler["name"] == "step" and (step_size := scheduler["step_size"]) >= epochs:
        fix = f"give a step_size below {epochs}" if epochs > 1 else "train 2 epochs or more"
        raise UserError(f"scheduler.step_size={step_size}: the rate first changes after epoch {step_size}, and this run "
                        f"has {epochs}: {fix}, or scheduler=none for a constant rate.")
    warmup_epochs = cosine_warmup(scheduler)
    warmup, total = warmup_steps(warmup_epochs, steps_per_epoch), epochs * steps_per_epoch
    if warmup_epochs > 0 and not 1 <= warmup < total:
        # A run of one step has no warm-up that ends before it: there is no range of them to offer.
        fits = (f"from {1 / steps_per_epoch:.4g} (1 step) to {(total - 1) / steps_per_epoch:.4g} ({total - 1} steps)"
                if total > 1 else "train more epochs: a warm-up ends before the run's last step, and this run has one")
        raise UserError(f"scheduler.warmup_epochs={warmup_epochs} warms up for {warmup} of this run's {total} steps "
                        f"({steps_per_epoch} an epoch): give 0 for none, or {fits}.")
    check_steps_reach(scheduler, given, total, steps_per_epoch, warmup)


# What a one-cycle key sets, which only a step between the cycle's start and end sees.
CYCLE_SHAPE = {"pct_start": "where it peaks", "base_momentum": "the momentum at its peak"}


def check_steps_reach(scheduler: Mapping[str, Any], given: set[str], total: int, steps_per_epoch: int,
                      warmup: int) -> None:
    """A run of a step or two takes the schedule at its ends alone: one-cycle's first step at its start (unless
    the warm-up is under a step) and its last at its end; a cosine decay of one step is at the full rate."""
    steps = f"{total} training step{'s' * (total > 1)} ({steps_per_epoch} an epoch"
    if scheduler["name"] == "onecycle" and (total == 1 or total == 2 and scheduler["pct_start"] * total > 1):
        needed, ends = 3, "end" if total == 1 else "start and end"
        why = {key: f"one-cycle takes this run's {steps}) at its {ends}, and scheduler.{key} sets {what}"
               for key, what in CYCLE_SHAPE.items()}
    elif scheduler["name"] == "cosine" and total - warmup < 2:
        needed, warming = warmup + 2, f", {warmup} warming up" if warmup else ""
        why = {"min_lr_ratio": f"the cosine decay of this run's {steps}{warming}) is its last step alone, at the full "
                               "rate, and scheduler.min_lr_ratio sets the rate it decays to"}
    else:
        return
    for key, reason in why.items():
        if f"scheduler.{key}" in given:
            raise UserError(f"scheduler.{key}={scheduler[key]} takes no effect: {reason}: train "
                            f"{math.ceil(needed / steps_per_epoch)} epochs or more, or leave scheduler.{key} out.")


def cosine_warmup(scheduler: Mapping[str, Any]) -> float:
    """The warm-up in epochs that a schedule's config gives: only cosine has one."""
    return scheduler.get("warmup_epochs", 0) if scheduler["name"] == "cosine" else 0


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """A warm-up's length in whole steps: the nearest to ``warmup_epochs`` (0.45 of 4 steps an epoch: 2; a half up)."""
    return math.floor(warmup_epochs * steps_per_epoch + 0.5)


def log_warmup_steps(scheduler: Mapping[str, Any], steps_per_epoch: int) -> None:
    """The run's log says what a warm-up of part of a step became."""
    warmup_epochs = cosine_warmup(scheduler)
    if not math.isclose(warmup := warmup_steps(warmup_epochs, steps_per_epoch), warmup_epochs * steps_per_epoch):
        log.info("scheduler.warmup_epochs=%g is %.4g of this run's steps (%d an epoch): it warms up for the nearest "
                 "whole number, %d steps (%.4g epochs)", warmup_epochs, warmup_epochs * steps_per_epoch,
                 steps_per_epoch, warmup, warmup / steps_per_epoch)


def check_by_building(optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], augment: Mapping[str, Any],
                      epochs: int) -> None:
    """The values only the builders of the optimizer, the schedule and the augmentation (and torch) check, refused
    before the run writes anything: each built, the optimizer for one throwaway parameter. A user's own builders are
    theirs to check, as the run builds them."""
    if AUGMENTATIONS.shipped(augment["name"]):
        AUGMENTATIONS.build(augment)
    if OPTIMIZERS.shipped(optimizer["name"]):
        built = OPTIMIZERS.build(optimizer, [torch.zeros(1, requires_grad=True)])
        if SCHEDULERS.shipped(scheduler["name"]):  # any length: the run's own is checked as it is built
            SCHEDULERS.build(scheduler, built, epochs * 100, 100)


@SCHEDULERS.register("none")
def constant(optimizer, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """The optimizer's learning rate, unchanged."""
    return LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("step")
def step(optimizer, total_steps: int, steps_per_epoch: int, step_size: int = 1, gamma: float = 0.7) -> LRScheduler:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (torch's StepLR, stepped per epoch)."""
    check_range("scheduler.step_size", step_size, step_size >= 1, "a whole number of epochs, at least 1, e.g. 1")
    check_range("scheduler.gamma", gamma, gamma > 0, "a factor above 0, e.g. 0.7")
    return LambdaLR(optimizer, lambda s: gamma ** ((s // steps_per_epoch) // step_size))


@SCHEDULERS.register("cosine")
def cosine(optimizer, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0.0, min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` times the optimizer's learning rate."""
    check_range("scheduler.warmup_epochs", warmup_epochs, warmup_epochs >= 0, "0 or more epochs, e.g. 1")
    check_range("scheduler.min_lr_ratio", min_lr_ratio, 0 <= min_lr_ratio <= 1, "a fraction in [0, 1], e.g. 0.01")
    warmup = warmup_steps(warmup_epochs, steps_per_epoch)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


@SCHEDULERS.register("onecycle")
def onecycle(optimizer, total_steps: int, steps_per_epoch: int, pct_start: float = 0.25, div_factor: float = 25.0,
             final_div_factor: float = 1e4, base_momentum: float | None = None) -> LRScheduler:
    """Smith's one-cycle: warm up to the optimizer's learning rate, then anneal far below it.

    ``base_momentum``: None holds the optimizer's momentum (Adam's beta1, SGD's momentum) as configured. A value
    cycles it as the learning rate's mirror image: from the optimizer's own value down to ``base_momentum`` at
    the peak learning rate, then back (torch's ``max_momentum`` is the optimizer's value).
    """
    check_range("scheduler.pct_start", pct_start, 0 < pct_start < 1, "a fraction in (0, 1), e.g. 0.25")
    for key, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        check_range(f"scheduler.{key}", value, value > 0, "a factor above 0, e.g. 25")
    max_lr = [group["lr"] for group in optimizer.param_groups]
    max_momentum = None
    if base_momentum is not None:
        max_momentum = [momentum_of(group) for group in optimizer.param_groups]
        top = min(max_momentum)
        if top <= 0:
            raise UserError(f"scheduler.base_momentum={base_momentum} cycles the optimizer's momentum, but "
                            f"{type(optimizer).__name__} has none to cycle: set scheduler.base_momentum=null, or "
                            "give the optimizer a momentum (optimizer.momentum=0.9, optimizer=adamw).")
        check_range("scheduler.base_momentum", base_momentum, 0 <= base_momentum <= top,
                    f"the momentum at the peak learning rate, in [0, {top:g}] (the optimizer's own), e.g. 0.85; "
                    "null holds the optimizer's")
    # torch divides by zero where the warm-up ends at exactly the first step (pct_start * total_steps == 1); a hair
    # less puts that step at the peak, the schedule's value there. A shorter warm-up peaks before the first step.
    while float(pct_start * total_steps) == 1:
        pct_start = math.nextafter(pct_start, 0)
    momentum = ({"cycle_momentum": False} if max_momentum is None
                else {"base_momentum": base_momentum, "max_momentum": max_momentum})
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start, div_factor=div_factor,
                      final_div_factor=final_div_factor, **momentum)


def momentum_of(group: dict) -> float:
    """The momentum one-cycle would cycle: Adam's beta1, SGD's and RMSprop's momentum; 0 where there is none."""
    return group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
