"""A trained model as its run evaluated it: rebuilt from its checkpoint, with its input and test-time averaging.

evaluate, predict and export load models through here, and normalise with the loader's own
``model_input``, so a model sees the same input after training as during it. No Hydra: a
checkpoint's config is a plain dict.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_exp.data import DataBundle, Split, build_dataset, split_fingerprint
from mnist_exp.data.loader import model_input
from mnist_exp.errors import UserError
from mnist_exp.run.checkpoint import load_run_checkpoint, misfit
from mnist_exp.run.tta import check_tta, view_averaged
from mnist_exp.registry import MODELS


@dataclass
class TrainedModel:
    model: nn.Module  # in eval mode, on its device: the weights and test-time averaging the run tested
    config: dict[str, Any]  # the run's composed config
    class_names: list[str]
    epoch: int  # epochs completed when the checkpoint was written
    mean: float  # the normalisation the run trained with
    std: float
    image_shape: tuple[int, int, int]  # [channels, height, width] of the images it trained on
    fingerprints: dict[str, str]  # {split: split_fingerprint} of the splits it evaluated, where recorded

    @property
    def image_form(self) -> dict[str, Any]:
        """The dataset's keys that bring an image file to the model's input, with the channels and size it trained on."""
        channels, size, _ = self.image_shape
        return {**self.config["dataset"], "channels": channels, "image_size": size}

    def input(self, pixels: torch.Tensor) -> torch.Tensor:
        """``model_input`` with the normalisation the run trained with."""
        return model_input(pixels, self.mean, self.std, self.config["dataset"]["flatten"])


def load_trained_model(path: str | Path, device: torch.device | str = "cpu", *,
                       tta: bool = True) -> TrainedModel:
    """The model of a checkpoint (or of a run directory's best.pt), rebuilt from its config, as the run tested it
    (``tta=False``: without the test-time averaging a run with ``trainer.tta`` tested with)."""
    path, checkpoint = load_run_checkpoint(path)
    config = checkpoint["config"]
    class_names = checkpoint["class_names"]
    if (name := config["model"]["name"]) not in MODELS.names():  # a user's own, registered by the script that trained
        raise UserError(f"{path} holds a model '{name}', which is registered where it was trained, not here: import "
                        "the module that registers it, then call the tool's main([...]) from Python, e.g. "
                        "mnist_exp.tools.evaluate.main(['<run>']).")
    model = MODELS.build(config["model"], len(class_names))
    try:
        model.load_state_dict(checkpoint["weights"])  # the weights the run evaluated
    except RuntimeError as error:
        raise UserError(f"Checkpoint {path} does not fit the model its config names ({config['model']['name']}): "
                        f"{misfit(error)}.") from error
    dataset, trainer = config["dataset"], config.get("trainer", {})
    # As used: a dataset whose config says mean: null computed it (older checkpoints: the config's numbers).
    mean, std = checkpoint.get("normalisation") or (dataset["mean"], dataset["std"])
    run_tta, scales = trainer.get("tta", False), trainer.get("tta_scales", [1.0])
    check_tta(run_tta, scales, dataset["flatten"])
    if run_tta and tta:
        model = view_averaged(model, mean, std, scales)
    size = dataset.get("image_size", 28)  # where the checkpoint does not record its images' shape
    shape = checkpoint.get("image_shape") or (dataset.get("channels", 1), size, size)
    return TrainedModel(model.to(device).eval(), config, class_names, checkpoint["epoch"], mean, std, tuple(shape),
                        checkpoint.get("fingerprints", {}))


def rebuilt_dataset(config: dict[str, Any], path: str | Path) -> DataBundle:
    """The run's dataset, built again from its config. A user's folder or files that are no longer there are one
    line without the training-time advice, which names keys a tool does not take (MNIST's own refusals say which
    files to place, and stand)."""
    try:
        return build_dataset(config["dataset"])
    except UserError as error:
        if config["dataset"]["name"] not in ("folder", "csv"):
            raise
        what = str(error).split(". ")[0].rstrip(".")
        raise UserError(f"{path}: the run's data cannot be read as the run read it: {what}. Put it back where the run "
                        "found it (a relative path: from the directory the run was started in).") from None


def check_same_images(trained: TrainedModel, images: Split, split: str, path: str | Path) -> None:
    """Refuse a split that the run's dataset, rebuilt now, gives otherwise than when the run evaluated it."""
    recorded = trained.fingerprints.get(split)
    if recorded is None or recorded == split_fingerprint(images):
        return
    dataset = trained.config["dataset"]
    files = {key: str(dataset[key]) for key in ("root", "train", "test") if dataset.get(key)}
    source = ", ".join(f"dataset.{key}={value}" for key, value in files.items()) or dataset["name"]
    relative = any(not Path(value).expanduser().is_absolute() for value in files.values())
    elsewhere = f", or its relative path is read here, in {Path.cwd()}, not where the run was started" if relative else ""
    raise UserError(f"{path}: its dataset ({source}) gives other {split} images now than the run evaluated: the data "
                    f"changed since it trained{elsewhere}, so the figures would not be the run's. Put the data back as "
                    "it was, or train a new run on it.")


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
