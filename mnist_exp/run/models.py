"""Registered models. Each takes images [B, 1, H, W] (or already flat [B, H*W]) and returns logits.

The first parameter, ``num_classes``, comes from the dataset; the others are config keys
(``conf/model/*.yaml``). Add your own with ``@MODELS.register("name")``.
"""

import torch
from torch import nn

from mnist_exp.errors import UserError, check_range, first_line
from mnist_exp.registry import MODELS


def check_sizes(dropouts: dict[str, float] | None = None, **sizes) -> None:
    """Refuse, before a layer is made, a size below 1 (torch would build an empty net, or fail mid-run) or a
    dropout outside [0, 1); keys are the model's config keys."""
    for key, value in sizes.items():
        if min(value if isinstance(value, (list, tuple)) else [value], default=1) < 1:
            raise UserError(f"model.{key}={value} is out of range: every size must be at least 1.")
    for key, value in (dropouts or {}).items():
        check_range(f"model.{key}", value, 0 <= value < 1, "a fraction in [0, 1), e.g. 0.2")


def check_dropout_follows_a_layer(dropout: float, hidden: list[int]) -> None:
    """Dropout follows each hidden layer: with none it would drop nothing, and a sweep over it would change nothing."""
    if dropout > 0 and not hidden:
        raise UserError(f"model.dropout={dropout} takes no effect: model.hidden=[] has no hidden layer for it to "
                        "follow. Give model.dropout=0 with it.")


@MODELS.register("logreg")
def logreg(num_classes: int, in_features: int = 784) -> nn.Module:
    """Multinomial logistic regression: one linear layer on the flattened image."""
    check_sizes(in_features=in_features)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


@MODELS.register("mlp")
def mlp(num_classes: int, hidden: list[int] = (128, 64), in_features: int = 784, dropout: float = 0.0) -> nn.Module:
    """Fully connected layers with ReLU; ``hidden`` lists the widths (the Udacity tutorial's MLP: 128, 64)."""
    check_sizes({"dropout": dropout}, hidden=list(hidden), in_features=in_features)
    check_dropout_follows_a_layer(dropout, hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """The side of a conv or pooling layer's output (tutorial_jumpml_cnn's get_conv_size, from torch's Conv2d docs)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 pool: bool = False, norm: bool = True) -> nn.Sequential:
    """Conv, batch norm, ReLU; with ``pool``, a 2x2 max pool right after the conv; without ``norm``, the conv
    has a bias instead of the norm.

    Pooling before the norm and ReLU leaves them a quarter of the pixels: on a CPU, where these
    memory-bound layers cost as much as the convs, the block runs about 1.5x faster.
    """
    # No bias where a norm follows: the norm's own shift makes it redundant.
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not norm)
    return nn.Sequential(conv, *([nn.MaxPool2d(2)] if pool else []), *([nn.BatchNorm2d(out_channels)] if norm else []),
                         nn.ReLU(inplace=True))


@MODELS.register("cnn")
def cnn(num_classes: int, width: int = 16, stem_width: int | None = None, in_channels: int = 1, image_size: int = 28,
        dropout: float = 0.0, stem_norm: bool = True) -> nn.Module:
    """The default: a 5x5 conv with stride 2, then two unpadded 3x3 convs (width, 2x, 4x channels), each with
    batch norm and ReLU, the second one max-pooled; a linear head on the last map. ``stem_width`` gives the
    first conv other channels than ``width`` (``experiment=fast``: 8, then 24 and 48 at width 12);
    ``stem_norm=false`` gives it a bias instead of its batch norm (``fast``: on a CPU, torch's batch norm of
    8 channels in the channels-last layout takes about a fifth of its training step).

    28x28 -> 12x12 -> 10x10, pooled to 5x5 -> 3x3 -> linear. The strided first conv hands every later layer a
    quarter of the pixels, and unpadded convs shrink the maps further: at width 16 it costs 1.4 MFLOPs per
    image (vgg_cnn: 8.5), and batch norm lets a one-cycle schedule with a high peak train it in 2 epochs.
    """
    stem_width = width if stem_width is None else stem_width
    check_sizes({"dropout": dropout}, width=width, in_channels=in_channels, image_size=image_size,
                stem_width=stem_width)
    def map_size(side: int) -> int:
        return conv_output_size(conv_output_size(conv_output_size(side, 5, stride=2), 3) // 2, 3)

    if (size := map_size(image_size)) < 1:
        smallest = next(side for side in range(image_size, 64) if map_size(side) >= 1)
        raise UserError(f"model.image_size={image_size} is too small for the cnn's convs, which take {smallest} pixels a "
                        "side or more: give larger images (dataset.image_size=28 in the datasets that have the key), "
                        f"or {model_for_small_images(image_size)}.")
    return nn.Sequential(conv_bn_relu(in_channels, stem_width, kernel_size=5, stride=2, padding=0, norm=stem_norm),
                         conv_bn_relu(stem_width, 2 * width, padding=0, pool=True),
                         conv_bn_relu(2 * width, 4 * width, padding=0),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * size * size, num_classes))


VGG_SMALLEST = 8  # vgg_cnn's three 2x2 pools leave a pixel of 8x8 and nothing of 7x7


def model_for_small_images(side: int) -> str:
    """A shipped model of images that take no cnn: each image side at least 1 is someone's."""
    if side >= VGG_SMALLEST:
        return f"model=vgg_cnn, which takes {VGG_SMALLEST} pixels a side or more"
    return "model=strided_cnn, which takes any size"


@MODELS.register("vgg_cnn")
def vgg_cnn(num_classes: int, width: int = 24, in_channels: int = 1, dropout: float = 0.0,
            convs_per_stage: list[int] = (1, 1, 1), pool_before_norm: bool = True) -> nn.Module:
    """Three stages of padded 3x3 conv-BN-ReLU blocks (width, 2x, 4x channels), each halving the image, then a
    linear head; ``experiment=best``'s net (width 32, two convs a stage).

    28x28 -> 14x14 -> 7x7 -> 3x3, global max pool, linear. At width 24 it has 53k parameters.
    ``convs_per_stage`` deepens the stages (more capacity for more compute). ``pool_before_norm`` pools right
    after each stage's first conv, before its norm and ReLU, and the stage's other convs work on the pooled
    image: the same kind of net, faster. ``false``: each stage is the classic convs, then a pool.
    """
    check_sizes({"dropout": dropout}, width=width, in_channels=in_channels)
    if isinstance(convs_per_stage, int) or len(convs_per_stage) != 3 or min(convs_per_stage) < 1:
        raise UserError(f"model.convs_per_stage needs 3 counts of at least 1 (one per stage, e.g. [1, 1, 2]), "
                        f"got {convs_per_stage}.")
    layers: list[nn.Module] = []
    channels = in_channels
    for stage_width, convs in zip((width, 2 * width, 4 * width), convs_per_stage):
        for conv in range(convs):
            layers.append(conv_bn_relu(channels, stage_width, pool=conv == 0 and pool_before_norm))
            channels = stage_width
        if not pool_before_norm:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(4 * width, num_classes))


@MODELS.register("strided_cnn")
def strided_cnn(num_classes: int, channels: list[int] = (16, 16), in_channels: int = 1,
                relu_on_logits: bool = True) -> nn.Module:
    """The all-convolutional net of the tutorial_scratch_cnn and tutorial_basics_cnn recipes: 3x3 stride-2
    convs, the last one has a map per class.

    28x28 -> 14x14 -> 7x7 -> 4x4 (channels 16, 16, num_classes), ReLU after each conv, then the
    average over the 4x4 map is each class's logit. Both tutorials also put a ReLU after the last conv
    (``relu_on_logits: true``, the default, to reproduce them): a logit can then never be negative,
    and a class whose map goes all negative gets no gradient of its own, so it may never be predicted.
    ``false`` drops it: no class can die, but conv and average pool then make a linear last layer.
    """
    check_sizes(channels=list(channels), in_channels=in_channels)
    layers: list[nn.Module] = []
    for out_channels in [*channels, num_classes]:
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        in_channels = out_channels
    if not relu_on_logits:
        layers.pop()
    # The tutorials' avg_pool2d(x, 4) on the 4x4 map: a global average, also for other image sizes.
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@MODELS.register("conv_fc")
def conv_fc(num_classes: int, channels: list[int] = (32, 64), kernel_sizes: list[int] = (3, 3),
            strides: list[int] = (1, 1), pool: list[bool] = (False, True), conv_dropout: float = 0.25,
            hidden: list[int] = (128,), dropout: float = 0.5, log_softmax: bool = True, in_channels: int = 1, image_size: int = 28,
            batch_norm: bool = False) -> nn.Module:
    """Unpadded convs with ReLU (a 2x2 max pool after those ``pool`` marks), then fully connected layers.

    The defaults are pytorch/examples' mnist/main.py net (conv 32, conv 64, pool, dropout 0.25,
    fc 9216->128, dropout 0.5, fc 128->10, log-softmax); tutorial_jumpml_cnn's is ``channels [32, 16],
    kernel_sizes [5, 3], pool [true, true], conv_dropout 0, hidden [100]``. Both end in
    log-softmax, as they train with NLL loss: cross-entropy of log-probabilities is the same loss.
    Each pool comes right after its conv, before the ReLU (they commute: the same output), so the ReLU, and
    with ``batch_norm`` a batch norm before it, see a quarter of the pixels: on a CPU these memory-bound
    layers cost about as much as the convs.
    """
    if not len(channels) == len(kernel_sizes) == len(strides) == len(pool):
        raise UserError(f"model.channels, model.kernel_sizes, model.strides and model.pool need one entry per conv "
                        f"layer, got {len(channels)}, {len(kernel_sizes)}, {len(strides)} and {len(pool)}.")
    check_sizes({"conv_dropout": conv_dropout, "dropout": dropout}, channels=list(channels),
                kernel_sizes=list(kernel_sizes), strides=list(strides), hidden=list(hidden), in_channels=in_channels,
                image_size=image_size)
    check_dropout_follows_a_layer(dropout, hidden)
    layers: list[nn.Module] = []
    size = image_size
    for out_channels, kernel_size, stride, pooled in zip(channels, kernel_sizes, strides, pool):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=not batch_norm))  # the norm shifts
        size = conv_output_size(size, kernel_size, stride)
        if pooled:
            layers.append(nn.MaxPool2d(2))
            size = conv_output_size(size, 2, stride=2)
        layers += [*([nn.BatchNorm2d(out_channels)] if batch_norm else []), nn.ReLU()]
        in_channels = out_channels
    if size < 1:
        raise UserError(f"model: the convs leave nothing of a {image_size}x{image_size} image; use fewer or smaller.")
    if conv_dropout > 0:
        layers.append(nn.Dropout(conv_dropout))
    layers.append(nn.Flatten())
    width = in_channels * size * size  # 9216 = 64 * 12 * 12 for the examples net, 400 = 16 * 5 * 5 for the jumpml one
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_classes))
    if log_softmax:
        layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, int]:
    """A table of each leaf layer's output shape and parameter count, and the floating-point operations of one
    image's forward pass (as torch's flop counter counts them: a multiply-add is two), from one forward pass on
    zeros in eval mode, which changes nothing of the model."""
    from torch.utils.flop_counter import FlopCounterMode

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
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            first = next(model.parameters(), torch.empty(0))
            model(torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype))
    except RuntimeError as error:  # the first forward pass of a run: sizes that do not fit the data show here
        raise UserError(f"The model does not take the dataset's input of shape {tuple(input_shape)}: "
                        f"{first_line(error)}. {misfit_advice(input_shape, error)}") from error
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    lines = [f"{'layer':<14}{'type':<20}{'output shape':<18}{'params':>10}"]
    lines += [f"{name:<14}{kind:<20}{shape:<18}{params:>10,}" for name, kind, shape, params in rows]
    lines.append(f"{'total':<52}{count_parameters(model):>10,}")
    return "\n".join(lines), flops.get_total_flops()


def misfit_advice(input_shape: tuple[int, ...], error: RuntimeError) -> str:
    """What to change where a model's first forward pass fails on the dataset's input."""
    if len(input_shape) == 1:
        return "Give it images: leave dataset.flatten out (dataset.flatten=true makes flat vectors of them)."
    if "Output size is too small" in str(error):  # torch's words for a pool of a map smaller than its window
        return (f"Its pools leave nothing of the images: give larger ones (dataset.image_size where the dataset has "
                f"the key), or {model_for_small_images(min(input_shape[1:]))}.")
    return "Check the model's sizes (in_features, in_channels, image_size) against the dataset."
