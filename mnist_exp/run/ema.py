"""The moving average of a model's weights that ``trainer.ema_decay`` evaluates instead of the weights themselves."""

import copy
import math

import torch
from torch import nn

from mnist_exp.errors import UserError


def warmed_up_decay(step: int) -> float:
    """The most a decay can be at ``step``: early, poor weights are soon forgotten."""
    return (1 + step) / (10 + step)


def check_decay(decay: float, steps: int) -> None:
    """A decay above what the warm-up reaches by the run's last step averages just as the warm-up does."""
    reached = warmed_up_decay(steps)
    if decay > reached:
        most = math.floor(reached * 1e4) / 1e4
        raise UserError(f"trainer.ema_decay={decay} is never reached: the average's warm-up, (1 + step) / (10 + step), "
                        f"rises to {most} by this run's last step ({steps} steps), so any decay from there up averages "
                        f"the same; give at most {most}, or train more steps.")


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics, in a copy of the model.

    The decay ramps up as (1 + step) / (10 + step) until it reaches ``decay``, so the early, poor
    weights are soon forgotten. It depends on the step alone: a resumed run averages the same way.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1 - min(self.decay, warmed_up_decay(step))
        averaged, current = self.model.state_dict(), model.state_dict()
        floats = [name for name, value in averaged.items() if value.is_floating_point()]
        torch._foreach_lerp_([averaged[n] for n in floats], [current[n] for n in floats], weight)
        for name, value in averaged.items():
            if not value.is_floating_point():  # batch counts: taken as they are
                value.copy_(current[name])
