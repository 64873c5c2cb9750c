"""The tutorials' models: our registered builders against the tutorials' own code, transcribed here.

Each tutorial model below is copied from its tutorial (pytorch/examples' mnist/main.py for ``examples_mnist``).
The recipe's model, built from its experiment file, must have the tutorial's parameter count (computed from its
layers), the same parameter shapes in the same order, and, given the tutorial's weights, compute the same function.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from mnist_exp.run.config import CONF_DIR, register_schemas
from mnist_exp.errors import UserError
from mnist_exp.run.models import conv_output_size, count_parameters
from mnist_exp.registry import MODELS

register_schemas()


def conv_params(in_channels: int, out_channels: int, kernel_size: int) -> int:
    return out_channels * in_channels * kernel_size * kernel_size + out_channels  # weights + biases


def linear_params(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features


# --- the tutorials' models, as their code has them ---


class Lambda(nn.Module):  # "Learn MNIST in PyTorch from Scratch to CNN"
    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, x):
        return self.func(x)


def scratch_cnn() -> nn.Module:  # the same tutorial's CNN
    return nn.Sequential(
        Lambda(lambda x: x.view(-1, 1, 28, 28)),
        nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(4),
        Lambda(lambda x: x.view(x.size(0), -1)),
    )


class BasicsCNN(nn.Module):  # "PyTorch Basics: MNIST classification"
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1)

    def forward(self, xb):
        xb = xb.view(-1, 1, 28, 28)
        xb = F.relu(self.conv1(xb))
        xb = F.relu(self.conv2(xb))
        xb = F.relu(self.conv3(xb))
        xb = F.avg_pool2d(xb, 4)
        return xb.view(-1, xb.size(1))


class JumpmlCNN(nn.Module):  # "Tutorial on recognizing digits in PyTorch"
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 16, 3)
        self.fc1 = nn.Linear(400, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = x.view(-1, 400)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class ExamplesNet(nn.Module):  # pytorch/examples mnist/main.py
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


TUTORIAL_MODELS = {
    # experiment: (the tutorial's model, its parameter count from its layers, input is a flat 784-vector)
    "tutorial_scratch_logreg": (lambda: nn.Linear(784, 10), linear_params(784, 10), True),  # 7,850
    "tutorial_scratch_cnn": (scratch_cnn, conv_params(1, 16, 3) + conv_params(16, 16, 3) + conv_params(16, 10, 3),
                             False),  # 3,930
    "tutorial_basics_linear": (lambda: nn.Linear(784, 10), linear_params(784, 10), True),
    "tutorial_basics_cnn": (BasicsCNN, conv_params(1, 16, 3) + conv_params(16, 16, 3) + conv_params(16, 10, 3), False),
    "tutorial_udacity_mlp": (lambda: nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                                   nn.Linear(64, 10)),
                             linear_params(784, 128) + linear_params(128, 64) + linear_params(64, 10), True),  # 109,386
    "tutorial_jumpml_cnn": (JumpmlCNN, conv_params(1, 32, 5) + conv_params(32, 16, 3) + linear_params(16 * 5 * 5, 100)
                            + linear_params(100, 10), False),  # 46,566
    "examples_mnist": (ExamplesNet, conv_params(1, 32, 3) + conv_params(32, 64, 3) + linear_params(64 * 12 * 12, 128)
                       + linear_params(128, 10), False),  # 1,199,882
}


def experiment_model(experiment: str) -> nn.Module:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    return MODELS.build(cfg.model, 10)


@pytest.mark.parametrize("experiment", TUTORIAL_MODELS)
def test_recipe_models_have_the_tutorials_parameter_count(experiment):
    tutorial_model, expected, _ = TUTORIAL_MODELS[experiment]
    assert count_parameters(tutorial_model()) == expected
    assert count_parameters(experiment_model(experiment)) == expected


@pytest.mark.parametrize("experiment", TUTORIAL_MODELS)
def test_recipe_models_compute_the_tutorials_function(experiment):
    make_tutorial_model, _, flat_input = TUTORIAL_MODELS[experiment]
    torch.manual_seed(0)
    tutorial, ours = make_tutorial_model().eval(), experiment_model(experiment).eval()
    assert [p.shape for p in ours.parameters()] == [p.shape for p in tutorial.parameters()]
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), tutorial.parameters()):
            mine.copy_(theirs)
        images = torch.randn(5, 1, 28, 28)
        # The tutorials that take 784-vectors get them; so do ours, whose experiment sets dataset.flatten=true.
        inputs = images.flatten(1) if flat_input else images
        assert torch.allclose(ours(inputs), tutorial(inputs), atol=1e-5)


def test_the_strided_cnn_relu_on_logits_option_is_the_fix():
    torch.manual_seed(0)
    tutorial = MODELS.build({"name": "strided_cnn", "relu_on_logits": True}, 10)
    fixed = MODELS.build({"name": "strided_cnn", "relu_on_logits": False}, 10)
    fixed.load_state_dict(tutorial.state_dict())  # the same layers and weights: only the last ReLU differs
    images = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        clipped, logits = tutorial(images), fixed(images)
    assert (clipped >= 0).all() and (logits < 0).any()
    # ReLU after the conv, then the average: the logits of the fixed net are not simply clipped either.
    assert not torch.allclose(clipped, logits.clamp(min=0))


def test_conv_fc_sizes_its_first_linear_layer_from_the_image_size():
    model = MODELS.build({"name": "conv_fc", "image_size": 32}, 10)  # 32 -> 30 -> 28 -> 14: 64 * 14 * 14
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert conv_output_size(28, 5) == 24 and conv_output_size(24, 2, stride=2) == 12  # jumpml's get_conv_size
    with pytest.raises(UserError, match="one entry per conv layer"):
        MODELS.build({"name": "conv_fc", "channels": [8, 8, 8]}, 10)
    with pytest.raises(UserError, match="leave nothing"):
        MODELS.build({"name": "conv_fc", "kernel_sizes": [15, 15], "image_size": 28}, 10)


def test_conv_fc_strides_pools_before_the_norm_and_relu_and_drops_the_biases_the_norm_replaces():
    fast = {"name": "conv_fc", "channels": [24, 32], "kernel_sizes": [5, 3], "strides": [2, 1], "pool": [False, True],
            "conv_dropout": 0, "hidden": [256], "log_softmax": False, "batch_norm": True}
    model = MODELS.build(fast, 10)  # 28 -> 12 (5x5, stride 2) -> 10 -> 5 (pool): 32 * 5 * 5 = 800
    assert [type(m) for m in model[:8]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.MaxPool2d,
                                            nn.BatchNorm2d, nn.ReLU, nn.Flatten]
    assert model[0].stride == (2, 2) and model[0].bias is None and model[8].in_features == 800
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(UserError, match="model.strides"):
        MODELS.build({"name": "conv_fc", "strides": [1]}, 10)


@pytest.mark.parametrize("name", ["strided_cnn", "conv_fc"])
def test_tutorial_cnns_take_other_class_counts_and_channels(name):
    model = MODELS.build({"name": name, "in_channels": 3}, 7)
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 7)


def test_pooling_before_the_norm_is_the_same_function_while_the_norm_is_increasing():
    # Max pooling commutes with ReLU and with any increasing map, such as a batch norm in eval mode
    # whose scales are positive: the two orders then compute the same, from the same weights.
    torch.manual_seed(0)
    plain = MODELS.build({"name": "vgg_cnn", "width": 8, "pool_before_norm": False}, 10).eval()
    early = MODELS.build({"name": "vgg_cnn", "width": 8, "pool_before_norm": True}, 10).eval()
    for norm in (m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)):
        norm.weight.data.uniform_(0.5, 2.0)
        norm.bias.data.normal_()
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    weights = list(plain.state_dict().values())
    assert [w.shape for w in weights] == [w.shape for w in early.state_dict().values()]
    early.load_state_dict(dict(zip(early.state_dict(), weights)))
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(plain(x), early(x), atol=1e-5)
    assert [type(m) for m in early[0]] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in plain[:2]] == [nn.Sequential, nn.MaxPool2d]  # the classic order: conv block, then pool


def test_deeper_stages_pool_first_and_refine_the_pooled_image():
    model = MODELS.build({"name": "vgg_cnn", "width": 8, "convs_per_stage": [1, 1, 2]}, 10)  # pools before the norm
    sizes = []
    model[3].register_forward_hook(lambda _m, inputs, output: sizes.append((inputs[0].shape, output.shape)))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sizes == [(torch.Size([2, 32, 3, 3]), torch.Size([2, 32, 3, 3]))]  # the extra conv works at 3x3
    assert [type(m) for m in model[3]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    classic = MODELS.build({"name": "vgg_cnn", "width": 8, "convs_per_stage": [2, 1, 1], "pool_before_norm": False}, 10)
    assert [type(m) for m in classic[:3]] == [nn.Sequential, nn.Sequential, nn.MaxPool2d]  # convs, then the pool
    for wrong in ([1, 2], [1, 0, 1], 1):
        with pytest.raises(UserError, match=rf"3 counts of at least 1 \(one per stage, e.g. \[1, 1, 2\]\), "
                                            rf"got {re.escape(str(wrong))}\.$"):
            MODELS.build({"name": "vgg_cnn", "convs_per_stage": wrong}, 10)


def test_the_cnn_strides_at_once_and_shrinks_its_maps_without_padding():
    model = MODELS.build({"name": "cnn", "width": 8}, 10)
    sizes = []
    for block in model[:3]:
        block.register_forward_hook(lambda _m, _inputs, output: sizes.append(tuple(output.shape[1:])))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sizes == [(8, 12, 12), (16, 5, 5), (32, 3, 3)]
    assert [type(m) for m in model[1]] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]  # pooled before its norm
    narrow_stem = MODELS.build({"name": "cnn", "width": 12, "stem_width": 8}, 10)
    assert [block[0].out_channels for block in narrow_stem[:3]] == [8, 24, 48]
    no_stem_norm = MODELS.build({"name": "cnn", "width": 12, "stem_width": 8, "stem_norm": False}, 10)
    assert [type(m) for m in no_stem_norm[0]] == [nn.Conv2d, nn.ReLU] and no_stem_norm[0][0].bias is not None
    assert [type(m) for m in narrow_stem[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] and narrow_stem[0][0].bias is None
    bigger = MODELS.build({"name": "cnn", "width": 8, "image_size": 32}, 10)
    assert bigger(torch.zeros(2, 1, 32, 32)).shape == (2, 10) and bigger[-1].in_features == 32 * 4 * 4
    with pytest.raises(UserError, match=r"^model.image_size=16 is too small for the cnn's convs, which take 19 pixels "
                                        r"a side or more: give larger images \(dataset.image_size=28 in the datasets "
                                        r"that have the key\), or model=vgg_cnn"):
        MODELS.build({"name": "cnn", "image_size": 16}, 10)
    MODELS.build({"name": "cnn", "image_size": 19}, 10)
    with pytest.raises(UserError, match=r"^model.image_size=18 is too small"):
        MODELS.build({"name": "cnn", "image_size": 18}, 10)


@pytest.mark.parametrize("name, options, message", [
    ("cnn", {"width": 0}, "model.width=0 is out of range: every size must be at least 1."),
    ("cnn", {"stem_width": 0}, "model.stem_width=0 is out of range: every size must be at least 1."),
    ("mlp", {"hidden": [32, 0]}, "model.hidden=[32, 0] is out of range: every size must be at least 1."),
    ("cnn", {"dropout": 1.5}, "model.dropout=1.5 is out of range: it takes a fraction in [0, 1), e.g. 0.2."),
    ("strided_cnn", {"channels": [16, -1]}, "model.channels=[16, -1] is out of range: every size must be at least 1."),
    ("mlp", {"hidden": [], "dropout": 0.5}, "model.dropout=0.5 takes no effect: model.hidden=[] has no hidden layer "
                                            "for it to follow. Give model.dropout=0 with it."),
    ("conv_fc", {"hidden": []}, "model.dropout=0.5 takes no effect: model.hidden=[] has no hidden layer for it to "
                                "follow. Give model.dropout=0 with it."),
])
def test_sizes_out_of_range_are_refused_before_a_layer_is_built(name, options, message):
    with pytest.raises(UserError) as refused:
        MODELS.build({"name": name, **options}, 10)
    assert str(refused.value) == message
