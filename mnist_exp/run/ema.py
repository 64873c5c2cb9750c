"""The moving average of a model's weights that ``trainer.ema_decay`` evaluates instead of the weights themselves."""

import copy

import torch
from torch import nn


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
        weight = 1 - min(self.decay, (1 + step) / (10 + step))
        averaged, current = self.model.state_dict(), model.state_dict()
        floats = [name for name, value in averaged.items() if value.is_floating_point()]
        torch._foreach_lerp_([averaged[n] for n in floats], [current[n] for n in floats], weight)
        for name, value in averaged.items():
            if not value.is_floating_point():  # batch counts: taken as they are
                value.copy_(current[name])
