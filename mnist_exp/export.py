"""Export a trained model: ``python -m mnist_exp.export ckpt=<checkpoint> [format=torchscript|onnx] [out=<file>]``.

The exported model takes what a deployment has: float images in [0, 1], shape [B, 1, H, W], a
white digit on black as in MNIST (``mnist_exp.predict.to_mnist_form`` makes them from any image
file), and returns logits. The normalisation the run trained with is inside it. After writing,
the export is run on test images and must give the same predictions as the checkpoint's model.
"""

import logging
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from mnist_exp.checkpoint import load_trained_model
from mnist_exp.config import CONF_DIR, register_schemas
from mnist_exp.data import build_dataset
from mnist_exp.errors import UserError

log = logging.getLogger("mnist_exp.export")


class NormalizedModel(nn.Module):
    """Pixels in [0, 1] -> the normalised input the model was trained on -> logits."""

    def __init__(self, model: nn.Module, mean: float, std: float, flatten: bool):
        super().__init__()
        self.model, self.mean, self.std, self.flatten = model, mean, std, flatten

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        return self.model(x.flatten(1) if self.flatten else x)


def sample_images(config: dict, count: int = 512) -> torch.Tensor:
    """[count, 1, H, W] test images in [0, 1] from the run's own dataset."""
    test = build_dataset(config["dataset"]).test
    return test.images[:count].unsqueeze(1).float() / 255


def export_model(ckpt: str | Path, format: str = "torchscript", out: str | Path | None = None) -> Path:
    model, checkpoint = load_trained_model(ckpt)
    dataset = checkpoint["config"]["dataset"]
    wrapped = NormalizedModel(model, dataset["mean"], dataset["std"], dataset["flatten"]).eval()
    images = sample_images(checkpoint["config"])
    out = Path(out) if out else Path(ckpt).with_suffix(".onnx" if format == "onnx" else ".ts.pt")
    with torch.inference_mode():
        expected = wrapped(images)
    if format == "torchscript":
        # TorchScript is deprecated in favour of torch.export, but it is what C++ (libtorch) and most
        # serving tools load today; its FutureWarnings would only alarm the user.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.trace(wrapped, images[:2]).save(str(out))
            exported = torch.jit.load(str(out))(images)
    else:
        exported = export_onnx(wrapped, images, out)
    same = int((exported.argmax(1) == expected.argmax(1)).sum())
    if same != len(images):
        raise UserError(f"The {format} export at {out} disagrees with the checkpoint on {len(images) - same} of "
                        f"{len(images)} test images; it is not safe to use.")
    log.info("Wrote %s; it predicts the same class as the checkpoint on %d test images (largest logit difference "
             "%.2g)", out, len(images), float((exported - expected).abs().max()))
    return out


def export_onnx(model: nn.Module, images: torch.Tensor, out: Path) -> torch.Tensor:
    """Write ONNX with a dynamic batch size; returns what onnxruntime computes for ``images``."""
    try:
        import onnxruntime
    except ImportError as error:
        raise UserError("format=onnx needs onnx and onnxruntime: pip install -e '.[export]'") from error
    with warnings.catch_warnings():  # the TorchScript-based exporter: no onnxscript needed, but it warns
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (images[:2],), str(out), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    export_model(cfg.ckpt, cfg.format.value, cfg.out)


def main() -> None:
    register_schemas()
    hydra_main()


if __name__ == "__main__":
    main()
