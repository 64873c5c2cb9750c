"""A run that starts from another run's trained weights (``init_from=<checkpoint or run directory>``): fine-tuning.

A resume (``resume=true``, ``ckpt_path=``) continues one run with its own config. Here only the model's weights come
over; the new run has its own data, optimizer, schedule and epochs. Weights trained for another number of classes
give every layer but the last: the classifier starts anew, and the log says so.
"""

import logging

from torch import nn

from mnist_exp.errors import UserError
from mnist_exp.run.checkpoint import load_run_checkpoint
from mnist_exp.run.config import with_builder_defaults
from mnist_exp.runs import as_override

log = logging.getLogger("mnist_exp")


def classifier_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of the model's last module with parameters of its own: its classifier."""
    named = [(name, module) for name, module in model.named_modules() if list(module.parameters(recurse=False))]
    name, module = named[-1]
    return [f"{name}.{key}" if name else key for key, _ in module.named_parameters(recurse=False)]


def load_initial_weights(model: nn.Module, init_from: str, num_classes: int) -> None:
    """Copy a checkpoint's weights into ``model``, all of them, or all but the classifier's where the number of
    classes differs; anything else that does not fit is refused in one line, naming the first difference."""
    path, checkpoint = load_run_checkpoint(init_from)
    weights, own = checkpoint["weights"], model.state_dict()
    trained_classes = len(checkpoint["class_names"])
    differ = [key for key in own if key in weights and weights[key].shape != own[key].shape]
    replaced = classifier_keys(model) if trained_classes != num_classes else []
    misfits = ([f"{key} is missing there" for key in own if key not in weights]
               + [f"{key} is not in this model" for key in weights if key not in own]
               + [f"{key} is {list(weights[key].shape)} there, {list(own[key].shape)} here" for key in differ
                  if key not in replaced])
    if misfits:
        trained_as = with_builder_defaults(checkpoint["config"])["model"]
        raise UserError(f"init_from={init_from}: its weights do not fit this model ({misfits[0]}). It was trained as "
                        + " ".join(as_override(f"model.{key}", value) for key, value in trained_as.items()).replace(
                            "model.name=", "model=") + "; give the same model and sizes.")
    model.load_state_dict({**own, **{key: value for key, value in weights.items() if key not in replaced}})
    if replaced:
        log.info("Weights from %s (epoch %d), all but the classifier's: %s start anew for %d classes (%d there)",
                 path, checkpoint["epoch"], ", ".join(replaced), num_classes, trained_classes)
    else:
        log.info("Weights from %s (epoch %d)", path, checkpoint["epoch"])
