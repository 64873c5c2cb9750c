"""Evaluate a trained model: ``python -m mnist_exp.tools.evaluate <run dir or checkpoint> [--split val] [--device cpu]``.

Prints the loss, the accuracy, the accuracy per class and the confusion matrix. A run directory
means its ``checkpoints/best.pt``. It evaluates the way the run did (same data, batch size,
precision and memory format, the weight average and test-time averaging where the run had
them), so on the run's device ``best.pt`` gives the run's own ``test/acc`` exactly.
"""

from pathlib import Path
from typing import Any

import torch

from mnist_exp.errors import UserError
from mnist_exp.tools import cli
from mnist_exp.data import TensorLoader
from mnist_exp.tools.trained import check_same_images, load_trained_model, rebuilt_dataset
from mnist_exp.run.debugging import limited
from mnist_exp.run.runtime import place_model, select_device, set_cpu_threads, use_bf16
from mnist_exp.run.figures import confusion_matrix
from mnist_exp.run.trainer import evaluate

SPLITS = ("test", "val", "train")
PRECISIONS = ("auto", "fp32", "bf16")


def evaluate_checkpoint(path: str | Path, split: str = "test", *, device: torch.device | str = "cpu",
                        batch_size: int | None = None, precision: str | None = None,
                        channels_last: bool | None = None, tta: bool = True) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix of a trained model on one split.

    ``batch_size``, ``precision`` and ``channels_last`` default to the run's own; ``tta=False`` evaluates the
    plain model of a run that tested with test-time averaging. A run averages its test images' views only: its
    validation and training images are evaluated as it evaluated them, each once.
    """
    device = torch.device(device)
    averaged = tta and split == "test"
    trained = load_trained_model(path, device, tta=averaged)
    config = trained.config
    run_tta = config["trainer"].get("tta", False)
    if not tta and not (run_tta and split == "test"):
        tested = "was tested without it" if split == "test" else f"evaluated its {split} images without it"
        raise UserError(f"--no-tta leaves out test-time averaging, and {path} {tested}: leave out --no-tta.")
    bf16 = use_bf16(precision or config["device"]["precision"], device)
    if channels_last is None:
        channels_last = config["device"]["channels_last"]
    model, channels_last = place_model(trained.model, device, channels_last)
    trainer = config["trainer"]  # a debug run's batches (limit_batches, overfit_batches) are its splits
    data = limited(rebuilt_dataset(config, path), trainer.get("limit_batches"), trainer.get("overfit_batches"),
                   trainer["batch_size"], trainer["eval_batch_size"])
    images = getattr(data, split)
    if not len(images):  # dataset.val_size=0: the run kept no validation images
        raise UserError(f"The run's dataset has no {split} images ({path}): evaluate another split, e.g. --split test.")
    check_same_images(trained, images, split, path)
    loader = TensorLoader(images, batch_size or trainer["eval_batch_size"], mean=data.mean, std=data.std,
                          flatten=data.flatten, device=device)
    result = evaluate(model, loader, device=device, bf16=bf16, channels_last=channels_last, keep_predictions=True)
    matrix = confusion_matrix(images.labels, result["predictions"], len(data.class_names))
    counts = matrix.sum(dim=1)
    per_class = [None if count == 0 else right / count for right, count in zip(matrix.diag().tolist(), counts.tolist())]
    return {"split": split, "loss": result["loss"], "acc": result["acc"], "count": len(images),
            "per_class_acc": dict(zip(data.class_names, per_class)), "confusion_matrix": matrix.tolist(),
            "class_names": data.class_names, "epoch": trained.epoch, "epochs": trainer["epochs"],
            "without_tta": run_tta and not averaged}


def format_report(report: dict[str, Any]) -> str:
    names = report["class_names"]
    width = max(6, *(len(n) + 1 for n in names))
    correct = round(report["acc"] * report["count"])
    lines = [f"{report['split']}: loss {report['loss']:.4f}  accuracy {100 * report['acc']:.2f}% "
             f"({correct}/{report['count']})  after epoch {report['epoch']} of {report['epochs']}", "",
             "accuracy per class:"]
    lines += [f"  {name:<{width}}" + ("   n/a (no images in this split)" if acc is None else f"{100 * acc:6.2f}%")
              for name, acc in report["per_class_acc"].items()]
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * width + "".join(f"{name[:width - 1]:>{width}}" for name in names)]
    lines += [f"{name[:width - 1]:<{width}}" + "".join(f"{n:>{width}}" for n in row)
              for name, row in zip(names, report["confusion_matrix"])]
    return "\n".join(lines)


def arguments():
    parser = cli.parser("evaluate", "Loss, accuracy, accuracy per class and confusion matrix of a trained model, "
                                    "evaluated as its run evaluated it.")
    parser.add_argument("checkpoint", metavar="run_dir_or_checkpoint",
                        help="a run directory (its checkpoints/best.pt) or a checkpoint file a run wrote")
    parser.add_argument("--split", choices=SPLITS, default="test", help="the split to evaluate (default: test)")
    parser.add_argument("--batch-size", type=cli.positive_int, metavar="N",
                        help="images per batch (default: the run's trainer.eval_batch_size)")
    cli.add_device_option(parser)
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto: bf16 where the hardware computes in it (default: the run's device.precision)")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="the plain model: each image once, without the test-time averaging of a run with "
                             "trainer.tta=true")
    return parser


def command(args) -> None:
    device = select_device(args.device, "--device ")
    set_cpu_threads(0)
    report = evaluate_checkpoint(args.checkpoint, args.split, device=device, batch_size=args.batch_size,
                                 precision=args.precision, tta=args.tta)
    print(f"{args.checkpoint} on {device}{', without test-time averaging' if report['without_tta'] else ''}", flush=True)
    print(format_report(report), flush=True)


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, arguments(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
