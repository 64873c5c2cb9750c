"""Registered models. Each takes images [B, 1, H, W] (or already flat [B, H*W]) and returns logits.

The first parameter, ``num_classes``, comes from the dataset; the others are config keys
(``conf/model/*.yaml``). Add your own with ``@MODELS.register("name")``.
"""

import torch
from torch import nn

from mnist_exp.registry import MODELS


@MODELS.register("logreg")
def logreg(num_classes: int, in_features: int = 784) -> nn.Module:
    """Multinomial logistic regression: one linear layer on the flattened image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


@MODELS.register("mlp")
def mlp(num_classes: int, hidden: list[int] = (128, 64), in_features: int = 784, dropout: float = 0.0) -> nn.Module:
    """Fully connected layers with ReLU; ``hidden`` lists the widths (the seeds use 128, 64)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # No conv bias: batch norm's shift makes it redundant.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@MODELS.register("cnn")
def cnn(num_classes: int, width: int = 24, in_channels: int = 1, dropout: float = 0.0) -> nn.Module:
    """The default: three conv-BN-ReLU blocks (width, 2x, 4x channels), each halving the image, then a linear head.

    28x28 -> 14x14 -> 7x7 -> 3x3, global max pool, linear. Batch norm lets it train fast at high
    learning rates; at width 24 it has 53k parameters.
    """
    return nn.Sequential(
        conv_bn_relu(in_channels, width),
        nn.MaxPool2d(2),
        conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        conv_bn_relu(2 * width, 4 * width),
        nn.MaxPool2d(2),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * width, num_classes),
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """A table of each leaf layer's output shape and parameter count, from one forward pass on zeros."""
    rows: list[tuple[str, str, str, int]] = []

    def record(name: str):
        def hook(module, _inputs, output):
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else "?"
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((name, type(module).__name__, str(shape), params))

        return hook

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(record(name or type(m).__name__)) for name, m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            first = next(model.parameters(), torch.empty(0))
            model(torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    lines = [f"{'layer':<14}{'type':<20}{'output shape':<18}{'params':>10}"]
    lines += [f"{name:<14}{kind:<20}{shape:<18}{params:>10,}" for name, kind, shape, params in rows]
    lines.append(f"{'total':<52}{count_parameters(model):>10,}")
    return "\n".join(lines)
