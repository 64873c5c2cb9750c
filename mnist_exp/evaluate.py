"""Evaluate a checkpoint: ``python -m mnist_exp.evaluate ckpt=<run>/checkpoints/best.pt [split=val]``.

Prints the loss, the accuracy, the accuracy per class and the confusion matrix. It evaluates the
way the run did (same data, batch size and memory format), so on the run's device ``best.pt``
gives the run's own ``test/acc`` exactly.
"""

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from mnist_exp.checkpoint import load_trained_model
from mnist_exp.config import CONF_DIR, register_schemas
from mnist_exp.data import TensorLoader, build_dataset
from mnist_exp.runtime import place_model, select_device, set_cpu_threads, use_bf16
from mnist_exp.tracking import confusion_matrix
from mnist_exp.trainer import evaluate

log = logging.getLogger("mnist_exp.evaluate")


def evaluate_checkpoint(path: str | Path, split: str = "test", *, device: torch.device | str = "cpu",
                        batch_size: int | None = None, bf16: bool = False,
                        channels_last: bool | None = None) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix of a checkpoint's model on one split."""
    device = torch.device(device)
    model, checkpoint = load_trained_model(path, device)
    config = checkpoint["config"]
    if channels_last is None:
        channels_last = config["device"]["channels_last"]
    model, channels_last = place_model(model, device, channels_last)
    data = build_dataset(config["dataset"])
    images = getattr(data, split)
    loader = TensorLoader(images, batch_size or config["trainer"]["eval_batch_size"], mean=data.mean, std=data.std,
                          flatten=data.flatten, device=device)
    result = evaluate(model, loader, device=device, bf16=bf16, channels_last=channels_last, keep_predictions=True)
    matrix = confusion_matrix(images.labels, result["predictions"], len(data.class_names))
    per_class = matrix.diag() / matrix.sum(dim=1).clamp(min=1)
    return {"split": split, "loss": result["loss"], "acc": result["acc"], "count": len(images),
            "per_class_acc": dict(zip(data.class_names, per_class.tolist())), "confusion_matrix": matrix.tolist(),
            "class_names": data.class_names, "epoch": checkpoint["state"]["epoch"]}


def format_report(report: dict[str, Any]) -> str:
    names = report["class_names"]
    width = max(6, *(len(n) + 1 for n in names))
    correct = round(report["acc"] * report["count"])
    lines = [f"{report['split']}: loss {report['loss']:.4f}  accuracy {100 * report['acc']:.2f}% "
             f"({correct}/{report['count']})  after epoch {report['epoch']}", "", "accuracy per class:"]
    lines += [f"  {name:<{width}}{100 * acc:6.2f}%" for name, acc in report["per_class_acc"].items()]
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * width + "".join(f"{name[:width - 1]:>{width}}" for name in names)]
    lines += [f"{name[:width - 1]:<{width}}" + "".join(f"{n:>{width}}" for n in row)
              for name, row in zip(names, report["confusion_matrix"])]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def hydra_main(cfg: DictConfig) -> float:
    device = select_device(cfg.device.name.value)
    set_cpu_threads(cfg.device.threads)
    report = evaluate_checkpoint(cfg.ckpt, cfg.split.value, device=device, batch_size=cfg.batch_size,
                                 bf16=use_bf16(cfg.device.precision.value, device))
    log.info("Checkpoint %s on %s", cfg.ckpt, device)
    print(format_report(report), flush=True)
    return report["acc"]


def main() -> None:
    register_schemas()
    hydra_main()


if __name__ == "__main__":
    main()
