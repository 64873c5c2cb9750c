"""Export a trained model: ``python -m mnist_exp.tools.export <checkpoint or run dir> [--format pt2|onnx|torchscript]``.

``pt2`` (the default) is a ``torch.export`` program, PyTorch's own format, which ``torch.export.load`` reads and
AOTInductor compiles; ``onnx`` goes through torch.onnx's dynamo exporter and is checked with onnxruntime;
``torchscript``, which PyTorch deprecates, stays for libtorch (C++) loaders and says so. The exported model takes
what a deployment has: float images in [0, 1], shape [B, C, H, W] in the dataset's form (MNIST's: [B, 1, 28, 28],
a white digit on black; ``mnist_exp.data.images.dataset_form`` makes them from any image file), and returns
logits. The normalisation the run trained with is inside it, and so are the weight average and test-time
averaging where the run had them. After writing, the export is run on test images and must give the same
predictions as the checkpoint's model.
"""

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from mnist_exp.tools import cli
from mnist_exp.errors import UserError, first_line, write_problem
from mnist_exp.data.loader import model_input
from mnist_exp.run.checkpoint import checkpoint_file
from mnist_exp.runs import atomic_path
from mnist_exp.tools.trained import load_trained_model, rebuilt_dataset

FORMATS = ("pt2", "onnx", "torchscript")
SUFFIXES = {"pt2": ".pt2", "torchscript": ".ts.pt", "onnx": ".onnx"}  # of a file written beside the checkpoint
ENDINGS = {"pt2": ".pt2", "torchscript": ".pt", "onnx": ".onnx"}  # of a file each format may be written to


class NormalizedModel(nn.Module):
    """Pixels in [0, 1], [B, C, H, W] (C = 1: grey) -> the input it was trained on (``model_input``) -> logits."""

    def __init__(self, model: nn.Module, mean: float, std: float, flatten: bool):
        super().__init__()
        self.model, self.mean, self.std, self.flatten = model, mean, std, flatten

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(model_input(images, self.mean, self.std, self.flatten))


def sample_images(config: dict, path: Path, count: int = 512) -> torch.Tensor:
    """[count, C, H, W] test images in [0, 1] from the run's own dataset."""
    images = rebuilt_dataset(config, path).test.images[:count]
    return (images.unsqueeze(1) if images.dim() == 3 else images).float() / 255


def export_format(format: str | None, out: Path | None) -> str:
    """``format`` as given, else the one ``out``'s ending names, else pt2; an ending of another format is refused."""
    if out is None:
        return format or "pt2"
    named = next((name for name, ending in ENDINGS.items() if out.name.endswith(ending)), None)
    if named and out.name == ENDINGS[named]:  # '.pt2' alone: a hidden file's name, which torch refuses
        raise UserError(f"--out {out}: give the file a name before its ending, e.g. {out.with_name('model' + out.name)}.")
    if format and named != format:
        raise UserError(f"--out {out} does not end in {ENDINGS[format]}, the ending of --format {format}: name it "
                        f"{out.with_name(out.stem + ENDINGS[format])}, or leave out --format.")
    if not named:
        raise UserError(f"--out {out}: end its name in the format's ending: .pt2, .onnx or .pt (torchscript).")
    return named


def export_model(checkpoint: str | Path, format: str | None = None, out: str | Path | None = None) -> Path:
    """Write the model (default: beside the checkpoint, as pt2) and check it against the checkpoint."""
    path = checkpoint_file(checkpoint)
    out = cli.file_to_write(out, "--out", path.with_suffix(SUFFIXES[format or "pt2"]).name) if out else None
    format = export_format(format, out)
    trained = load_trained_model(checkpoint)  # first: a file that is no checkpoint is refused as such
    if out is None:  # beside the checkpoint; an earlier export there stays, as any file a tool did not just make
        out = path.with_suffix(SUFFIXES[format])
        if out.exists() and out.stat().st_mtime < path.stat().st_mtime:  # the run wrote a newer checkpoint since
            raise UserError(f"{out} exists, an export of an earlier {path.name}, which has changed since: delete it "
                            "first to export again, or give --out a new name.")
        if out.exists():
            raise UserError(f"{out} exists, an earlier export of {path.name}: use it, or give --out a new name, or "
                            "delete it first to export again.")
        if problem := write_problem(out.parent):  # before the minutes of tracing, and named as the user can act on
            raise UserError(f"Cannot write {out}: {out.parent} {problem}. Give --out a file elsewhere.")
    wrapped = NormalizedModel(trained.model, trained.mean, trained.std, trained.config["dataset"]["flatten"]).eval()
    images = sample_images(trained.config, path)
    with torch.inference_mode():
        expected = wrapped(images)
    # A refused, stopped or cut export leaves no file.
    with cli.full_disk_said(out, "--out"), atomic_path(out, suffix=out.suffix) as written:
        exported = export_as(format, wrapped, images, written)
        same = int((exported.argmax(1) == expected.argmax(1)).sum())
        if same != len(images):
            raise UserError(f"The {format} export disagrees with the checkpoint on {len(images) - same} of "
                            f"{len(images)} test images: not safe to use, so {out} was not written.")
    print(f"Wrote {out}; it predicts the same class as the checkpoint on {len(images)} test images (largest logit "
          f"difference {float((exported - expected).abs().max()):.2g}).")
    return out


def export_as(format: str, model: nn.Module, images: torch.Tensor, out: Path) -> torch.Tensor:
    """Write ``model`` in ``format`` to ``out``; returns what the written file computes for ``images``."""
    if format == "pt2":
        return export_program(model, images, out)
    if format == "onnx":
        return export_onnx(model, images, out)
    print("TorchScript is deprecated in PyTorch; --format pt2 (torch.export) is its successor. Written for "
          "libtorch (C++) loaders.")
    with warnings.catch_warnings(), torch.no_grad():  # the deprecation, said once above
        warnings.simplefilter("ignore", FutureWarning)
        write_through_memory(torch.jit.save, torch.jit.trace(model, images[:2]), out)
        return torch.jit.load(str(out))(images)


def export_program(model: nn.Module, images: torch.Tensor, out: Path) -> torch.Tensor:
    """Write a torch.export program with a dynamic batch size; returns what the program read back computes."""
    try:
        program = torch.export.export(model, (images[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as error:  # torch's tracing errors have no common base class
        raise UserError(f"torch.export could not trace this model ({first_line(error)}); try "
                        "--format onnx or --format torchscript.") from error
    write_through_memory(torch.export.save, program, out)
    with torch.inference_mode():
        return torch.export.load(str(out)).module()(images)


def write_through_memory(save, exported, out: Path) -> None:
    """``save(exported, file)`` into memory, then the bytes to ``out`` by Python: torch's own file writer aborts the
    process on a full disk, where Python's raises an OSError that says so in one line."""
    buffer = io.BytesIO()
    save(exported, buffer)
    out.write_bytes(buffer.getvalue())


def export_onnx(model: nn.Module, images: torch.Tensor, out: Path) -> torch.Tensor:
    """Write ONNX through torch.export (the dynamo exporter) with a dynamic batch size; returns what onnxruntime
    computes for ``images``."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401 (the dynamo exporter's translator)
    except ImportError as error:
        raise UserError("--format onnx needs onnx, onnxscript and onnxruntime: pip install -e '.[export]'.") from error
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines; an error still comes through
        torch.onnx.export(model, (images[:2],), str(out), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: "batch"},), dynamo=True, external_data=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def arguments():
    parser = cli.parser("export", "Write a trained model as a torch.export program, ONNX or TorchScript: pixels in "
                                  "[0, 1] in, logits out.")
    parser.add_argument("checkpoint", metavar="checkpoint_or_run_dir",
                        help="a checkpoint file a run wrote, or a run directory (its checkpoints/best.pt)")
    parser.add_argument("--format", choices=FORMATS,
                        help="pt2: torch.export (the default); onnx; torchscript (deprecated by PyTorch); without it, "
                             "the one --out's ending names")
    parser.add_argument("--out", type=cli.file_name, metavar="FILE",
                        help="where to write it, ending in .pt2, .onnx or .pt (default: beside the checkpoint, "
                             "best.pt2, best.onnx or best.ts.pt)")
    return parser


def command(args) -> None:
    export_model(args.checkpoint, args.format, args.out)


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, arguments(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
