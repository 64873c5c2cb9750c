"""``dataset=folder``: a user's images, one subfolder per class, of any format, size and polarity; decoded once and kept;
its class names everywhere a class is named; a folder that cannot work is one line."""

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import read_metrics, run_main
from mnist_exp.data.datasets import build_dataset, fake
from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.tools import predict

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_images(root: Path, images, labels, seed: int = 0) -> None:
    """PNGs and JPEGs of random sizes, half of them dark on light, under root/<class name>/."""
    rng = random.Random(seed)
    for i, (image, label) in enumerate(zip(images.numpy(), labels.tolist())):
        folder = root / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        side = rng.choice([20, 28, 45, 90])
        picture = Image.fromarray(image).resize((side, side), Image.BILINEAR)
        if rng.random() < 0.5:
            picture = Image.fromarray(255 - np.asarray(picture))
        picture.save(folder / f"{seed}_{i}.{'jpg' if i % 4 == 0 else 'png'}")


@pytest.fixture(scope="module")
def tree(tmp_path_factory, monkeypatch_module) -> Path:
    root = tmp_path_factory.mktemp("tree") / "digits"
    data = fake(num_train=600, val_size=0, num_test=0)
    write_images(root, data.train.images, data.train.labels)
    return root


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path_factory.mktemp("data")))  # the decoded folders go here
        yield monkeypatch


def test_one_tree_is_split_with_its_class_names_and_normalisation(tree):
    data = build_dataset({"name": "folder", "root": str(tree)})
    assert (len(data.train), len(data.val), len(data.test)) == (486, 54, 60)  # test 10%, then val 10% of the rest
    assert data.class_names == sorted(NAMES) and data.train.images.shape[1:] == (28, 28)
    pixels = data.train.images.float() / 255
    assert data.mean == pytest.approx(float(pixels.mean())) and data.std == pytest.approx(float(pixels.std()))
    border = data.train.images[:, [0, -1]].float().mean()
    assert border < 10  # every image white on black, whichever way it was saved


def test_the_folder_is_decoded_once_and_again_when_a_file_changes(tree):
    kept = default_data_dir() / "folders"
    build_dataset({"name": "folder", "root": str(tree)})
    before = sorted(kept.iterdir())
    build_dataset({"name": "folder", "root": str(tree)})
    assert sorted(kept.iterdir()) == before  # read from what was kept
    extra = fake(num_train=1, val_size=0, num_test=0, seed=5)
    write_images(tree, extra.train.images, extra.train.labels, seed=5)
    try:
        data = build_dataset({"name": "folder", "root": str(tree)})
        assert len(sorted(kept.iterdir())) == len(before) + 1
        assert len(data.train) + len(data.val) + len(data.test) == 601
    finally:
        for path in tree.rglob("5_*"):
            path.unlink()


def test_a_run_and_predict_name_the_folders_classes(tree, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=folder", f"dataset.root={tree}", "trainer.epochs=3", "device=cpu",
                            "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err
    assert read_metrics(run_dir)["test/acc"] > 0.8
    image = next((tree / "seven").glob("*.png"))
    assert predict.main([str(run_dir), str(image), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == "seven"


def test_split_folders_and_what_cannot_work(tmp_path):
    data = fake(num_train=200, val_size=0, num_test=60)
    write_images(tmp_path / "split" / "train", data.train.images, data.train.labels)
    write_images(tmp_path / "split" / "test", data.test.images, data.test.labels)
    split = build_dataset({"name": "folder", "root": str(tmp_path / "split"), "val_size": 20})
    assert (len(split.train), len(split.val), len(split.test)) == (180, 20, 60)
    (tmp_path / "split" / "test" / "ten").mkdir()
    Image.new("L", (28, 28), 0).save(tmp_path / "split" / "test" / "ten" / "x.png")
    with pytest.raises(UserError, match=r"class 'ten' has test or validation images but none in train/"):
        build_dataset({"name": "folder", "root": str(tmp_path / "split")})
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match=r"empty/a has no images"):
        build_dataset({"name": "folder", "root": str(tmp_path / "empty")})
    with pytest.raises(UserError, match=r"has no class subfolders"):
        build_dataset({"name": "folder", "root": str(tmp_path / "empty" / "a")})
    bad = tmp_path / "bad"
    write_images(bad, data.test.images, data.test.labels)
    (bad / "one" / "notes.png").write_text("not a picture")
    with pytest.raises(UserError, match=r"notes.png is not an image PIL can read .* dataset.skip_unreadable=true"):
        build_dataset({"name": "folder", "root": str(bad)})
    skipped = build_dataset({"name": "folder", "root": str(bad), "skip_unreadable": True})
    assert len(skipped.train) + len(skipped.val) + len(skipped.test) == 60
