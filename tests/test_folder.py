"""``dataset=folder``: a user's images, one subfolder per class, of any format, size and polarity; decoded once and kept;
its class names everywhere a class is named; a folder that cannot work is one line."""

import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import read_metrics, run_main
from mnist_exp.data.datasets import build_dataset, fake
from mnist_exp.data.images import decoded, to_mnist_form
from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.tools import evaluate, predict

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


def test_the_folder_is_decoded_once_and_again_in_its_place_when_a_file_changes(tree):
    kept = default_data_dir() / "folders"
    build_dataset({"name": "folder", "root": str(tree)})
    before = sorted(kept.iterdir())
    build_dataset({"name": "folder", "root": str(tree)})
    assert sorted(kept.iterdir()) == before  # read from what was kept
    extra = fake(num_train=1, val_size=0, num_test=0, seed=5)
    write_images(tree, extra.train.images, extra.train.labels, seed=5)
    try:
        data = build_dataset({"name": "folder", "root": str(tree)})
        after = sorted(kept.iterdir())  # the new decoding in place of the old one
        assert len(after) == len(before) and not set(after) & set(before)
        assert len(data.train) + len(data.val) + len(data.test) == 601
        build_dataset({"name": "folder", "root": str(tree), "image_size": 20})  # another form is kept beside it
        assert set(after) < set(kept.iterdir())
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


def test_a_validation_fraction_that_holds_out_no_image_is_refused_and_the_advice_runs(tree, tmp_path, monkeypatch,
                                                                                        capsys):
    args = ("dataset=folder", f"dataset.root={tree}", "trainer.epochs=1", "device=cpu")
    code, _, err = run_main(*args, "dataset.val_size=0.0005", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and err.splitlines() == [
        "dataset.val_size=0.0005 holds out no image of the 540: give a count instead, e.g. dataset.val_size=1, or 0 "
        "for none."]
    code, out, _ = run_main(*args, "dataset.val_size=1", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0
    with pytest.raises(UserError) as refused:  # a run is tested: no "0 for none" for its test split
        build_dataset({"name": "folder", "root": str(tree), "test_size": 0.0005})
    assert str(refused.value).endswith("give a count instead, e.g. dataset.test_size=1.")
    with pytest.raises(UserError) as refused:  # the test split has taken all but one image: no count would do
        build_dataset({"name": "folder", "root": str(tree), "test_size": 599})
    assert str(refused.value) == ("dataset.val_size=0.1 holds out no image of the 1 that dataset.test_size leaves: "
                                  "give dataset.val_size=0, or a smaller dataset.test_size.")
    assert len(build_dataset({"name": "folder", "root": str(tree), "test_size": 599, "val_size": 0}).train) == 1


def test_split_folders_and_what_cannot_work(tmp_path):
    data = fake(num_train=200, val_size=0, num_test=60)
    write_images(tmp_path / "split" / "train", data.train.images, data.train.labels)
    write_images(tmp_path / "split" / "test", data.test.images, data.test.labels)
    split = build_dataset({"name": "folder", "root": str(tmp_path / "split"), "val_size": 20})
    assert (len(split.train), len(split.val), len(split.test)) == (180, 20, 60)
    for size in (2.5, float("inf"), float("nan"), 200, 0.999):  # 0.999 of 200: all of them
        said = "holds out all 200 images it is taken from" if size == 0.999 else "is out of range"
        with pytest.raises(UserError, match=rf"^dataset.val_size={size} {said}: give a fraction below 1 .* a "
                                            r"count below 200\.$"):
            build_dataset({"name": "folder", "root": str(tmp_path / "split"), "val_size": size})
    root = tmp_path / "split"  # a split the folders make is not made again by a key
    with pytest.raises(UserError, match=rf"^dataset.test_size=0.3 takes no effect: {root} has its own test/ folder\. "
                                        r"Leave dataset.test_size out\.$"):
        build_dataset({"name": "folder", "root": str(root), "test_size": 0.3})
    write_images(root / "val", data.test.images[:20], data.test.labels[:20])
    assert len(build_dataset({"name": "folder", "root": str(root)}).val) == 20
    for key, value in (("val_size", 0), ("val_size", 0.5), ("split_seed", 3)):
        with pytest.raises(UserError, match=rf"^dataset.{key}={value} takes no effect: {root} has its own train/, "
                                            r"val/ and test/ folders\."):
            build_dataset({"name": "folder", "root": str(root), key: value})
    shutil.rmtree(root / "val")
    with pytest.raises(UserError, match=r"^dataset.split_seed=3 takes no effect: dataset.val_size=0 holds out no "):
        build_dataset({"name": "folder", "root": str(root), "val_size": 0, "split_seed": 3})
    (tmp_path / "split" / "test" / "ten").mkdir()
    Image.new("L", (28, 28), 0).save(tmp_path / "split" / "test" / "ten" / "x.png")
    with pytest.raises(UserError, match=r"class 'ten' has test or validation images but none in train/"):
        build_dataset({"name": "folder", "root": str(tmp_path / "split")})
    Image.new("L", (28, 28), 0).save(root / "train" / "stray.png")
    train = root / "train"
    with pytest.raises(UserError, match=rf"^{train} has 1 image beside its class folders, in no class \(stray.png\): "
                                        rf"move each into its class's folder, or out of {train}\.$"):
        build_dataset({"name": "folder", "root": str(root)})
    (root / "train" / "stray.png").unlink()
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
    (bad / "eleven").mkdir()  # a class whose every file is unreadable: left out, it would leave a class unlearnt
    (bad / "eleven" / "a.png").write_text("not a picture")
    with pytest.raises(UserError, match=r"bad: every training image of class eleven/ is unreadable, so no model could "
                                        r"learn it: fix or remove those files, or the class's folder\.$"):
        build_dataset({"name": "folder", "root": str(bad), "skip_unreadable": True})



def test_a_file_of_several_frames_is_refused_and_a_gif_or_tiff_of_one_read(tmp_path, monkeypatch):
    """An animated GIF or a TIFF of pages was read as its first frame alone: one image of several, without a word."""
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "data"))
    data = fake(num_train=60, val_size=0, num_test=0)
    root = tmp_path / "digits"
    write_images(root, data.train.images, data.train.labels)
    folder = root / NAMES[data.train.labels[0]]
    first, second = (Image.fromarray(image) for image in data.train.images[:2].numpy())
    first.save(folder / "still.gif")
    first.save(folder / "still.tif")
    one_frame = build_dataset({"name": "folder", "root": str(root)})
    assert len(one_frame.train) + len(one_frame.val) + len(one_frame.test) == 62
    for name, frames in (("moving.gif", [second, first]), ("pages.tif", [second])):
        first.save(folder / name, save_all=True, append_images=frames)
        with pytest.raises(UserError) as refused:
            build_dataset({"name": "folder", "root": str(root)})
        assert str(refused.value) == (f"{folder / name} has {1 + len(frames)} frames: give one image per file (save "
                                      "the frame you mean as a PNG). Or set dataset.skip_unreadable=true to leave such "
                                      "files out.")
        kept = build_dataset({"name": "folder", "root": str(root), "skip_unreadable": True})
        assert len(kept.train) + len(kept.val) + len(kept.test) == 62
        (folder / name).unlink()


def test_a_folder_that_would_be_read_as_something_else_is_one_line(tmp_path, monkeypatch):
    """Split folders read as classes, one class, a link to nothing, a kept decoding that is damaged: each would train
    on something other than the folder means, or end in a traceback."""
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "data"))
    data = fake(num_train=60, val_size=0, num_test=0)
    for names, message in ((("train", "val"), "has train/, val/ but not both train/ and test/: give train/ and test/"),
                           (("Train", "Test"), "has Test/, Train/ but not both train/ and test/"),
                           (("train", "test", "validation"), "has train/ and test/, and validation/ beside them, which "
                                                              "is no split mnist_exp reads: name a validation split val/")):
        root = tmp_path / "_".join(names)
        for name in names:
            write_images(root / name, data.train.images, data.train.labels)
        with pytest.raises(UserError, match=f"^{root} {re.escape(message)}"):
            build_dataset({"name": "folder", "root": str(root)})
    one = tmp_path / "one"
    write_images(one, data.train.images[data.train.labels == 3], data.train.labels[data.train.labels == 3])
    with pytest.raises(UserError, match=rf"^{one} has one class, three/: a classifier needs at least two"):
        build_dataset({"name": "folder", "root": str(one)})
    root = tmp_path / "linked"
    write_images(root, data.train.images, data.train.labels)
    (root / "one" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(UserError, match=rf"^{root / 'one' / 'gone.png'} is a link to a file that does not exist\. "
                                        r"Remove it, or set dataset.skip_unreadable=true"):
        build_dataset({"name": "folder", "root": str(root)})
    kept = build_dataset({"name": "folder", "root": str(root), "skip_unreadable": True})
    assert len(kept.train) + len(kept.val) + len(kept.test) == 60
    [cache] = (tmp_path / "data" / "folders").glob("linked-*.pt")
    (root / "one" / "more").symlink_to(root / "two")  # a linked folder's images are the class's, and a loop ends
    (root / "two" / "again").symlink_to(root / "two")
    linked = build_dataset({"name": "folder", "root": str(root), "skip_unreadable": True})
    assert len(linked.train) + len(linked.val) + len(linked.test) == 60 + len(list((root / "two").glob("*.*")))
    for link in (root / "one" / "more", root / "two" / "again"):
        link.unlink()
    with pytest.raises(UserError, match=r"^dataset.image_size=-5 is out of range: give 4 to 256 pixels a side"):
        build_dataset({"name": "folder", "root": str(root), "image_size": -5})
    cache.write_bytes(b"not a decoded folder")  # damaged: decoded again, and kept anew
    again = build_dataset({"name": "folder", "root": str(root), "skip_unreadable": True})
    assert torch.equal(again.train.images, kept.train.images) and torch.load(cache, weights_only=True)["class_names"]
    record = torch.load(cache, weights_only=True)
    torch.save({**record, "images": record["images"][:, :20, :20]}, cache)  # of another form: never half-used
    again = build_dataset({"name": "folder", "root": str(root), "skip_unreadable": True})
    assert torch.equal(again.train.images, kept.train.images)


def test_evaluate_refuses_a_folder_that_changed_or_went_since_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "data"))
    data = fake(num_train=200, val_size=0, num_test=0)
    root, run_dir = tmp_path / "digits", tmp_path / "run"
    write_images(root, data.train.images, data.train.labels)
    code, _, err = run_main("dataset=folder", f"dataset.root={root}", "trainer.epochs=1", "trainer.batch_size=32",
                            "device=cpu", "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert evaluate.main([str(run_dir)]) == 0 and capsys.readouterr().err == ""
    extra = fake(num_train=20, val_size=0, num_test=0, seed=7)
    write_images(root, extra.train.images, extra.train.labels, seed=7)  # the seeded split now holds other images
    assert evaluate.main([str(run_dir), "--split", "val"]) == 1
    assert capsys.readouterr().err == (
        f"python -m mnist_exp.tools.evaluate: {run_dir}: its dataset (dataset.root={root}) gives other val images "
        "now than the run evaluated: the data changed since it trained, so the figures would not be the run's. Put "
        "the data back as it was, or train a new run on it.\n")
    for path in root.rglob("7_*"):
        path.unlink()
    assert evaluate.main([str(run_dir), "--split", "val"]) == 0  # put back: the run's own figures again
    root.rename(tmp_path / "moved")
    capsys.readouterr()
    assert evaluate.main([str(run_dir)]) == 1
    assert capsys.readouterr().err == (
        f"python -m mnist_exp.tools.evaluate: {run_dir}: the run's data cannot be read as the run read it: "
        f"dataset.root={root} is not a folder. Put it back where the run found it (a relative path: from the "
        "directory the run was started in).\n")

def test_evaluate_from_another_directory_refuses_what_a_relative_root_finds_there(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "data"))
    first, second = fake(num_train=120, val_size=0, num_test=0), fake(num_train=120, val_size=0, num_test=0, seed=4)
    write_images(tmp_path / "digits", first.train.images, first.train.labels)
    write_images(tmp_path / "elsewhere" / "digits", second.train.images, second.train.labels, seed=4)
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=folder", "dataset.root=digits", "trainer.epochs=1", "trainer.batch_size=32",
                            "device=cpu", "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    monkeypatch.chdir(tmp_path / "elsewhere")  # where digits/ is another folder
    assert evaluate.main([str(run_dir)]) == 1
    assert capsys.readouterr().err == (
        f"python -m mnist_exp.tools.evaluate: {run_dir}: its dataset (dataset.root=digits) gives other test images now "
        f"than the run evaluated: the data changed since it trained, or its relative path is read here, in "
        f"{tmp_path / 'elsewhere'}, not where the run was started, so the figures would not be the run's. Put the "
        "data back as it was, or train a new run on it.\n")
    monkeypatch.chdir(tmp_path)
    assert evaluate.main([str(run_dir)]) == 0

def test_a_photo_is_read_upright_and_16_bit_grey_in_its_range(tmp_path):
    bar = np.zeros((28, 40), np.uint8)
    bar[12:16, 4:36] = 255  # a wide bar, stored sideways: EXIF orientation 6 turns it upright
    image = Image.fromarray(bar)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "photo.jpg", exif=exif)
    pixels = decoded(tmp_path / "photo.jpg", lambda picture: np.asarray(picture.convert("L")), "predict")
    assert pixels.shape == (40, 28) and (pixels[4:36, 12:16] > 128).all()
    levels = np.zeros((28, 28), np.uint16)
    levels[10:18, 6:22] = 40000  # 16 bits a pixel: scaled to 8, not clipped to a white square
    Image.fromarray(levels).save(tmp_path / "sixteen.png")
    pixels = decoded(tmp_path / "sixteen.png", lambda picture: np.asarray(picture), "predict")
    assert pixels.dtype == np.uint8 and pixels[0, 0] == 0 and pixels[12, 12] == round(40000 / 65535 * 255)


def test_a_cameras_jpeg_of_several_images_is_read_as_its_photo(tmp_path):
    """A camera's JPEG (MPO) holds previews or another view after the photo: not frames to choose from."""
    photo, preview = Image.new("L", (60, 40), 255), Image.new("L", (15, 10), 0)
    photo.save(tmp_path / "photo.jpg", save_all=True, append_images=[preview], format="MPO")
    assert Image.open(tmp_path / "photo.jpg").n_frames == 2
    pixels = decoded(tmp_path / "photo.jpg", lambda picture: np.asarray(picture.convert("L")), "predict")
    assert pixels.shape == (40, 60) and pixels.min() > 250


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_a_file_of_frames_cut_off_anywhere_is_read_or_refused_in_one_line(tmp_path, suffix):
    """Counting the frames reads each one's header, where a file cut off fails in many ways (IndexError,
    struct.error, ...): each is said as a file PIL cannot read, never a traceback. Cut after a frame, it is read."""
    first, second = (Image.fromarray(image) for image in fake(num_train=2, val_size=0, num_test=0).train.images.numpy())
    whole = tmp_path / f"whole{suffix}"
    first.save(whole, save_all=True, append_images=[second])
    data, cut = whole.read_bytes(), tmp_path / f"cut{suffix}"
    said = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns of a TIFF's tags cut off
        for end in range(1, len(data), 7):
            cut.write_bytes(data[:end])
            try:
                decoded(cut, to_mnist_form, "predict")
            except UserError as refused:
                said.add(str(refused).replace(str(cut), "FILE").split(" (")[0])
    assert said == {"FILE is not an image PIL can read", "FILE has 2 frames: give one image per file"}


def test_32_bit_grey_below_zero_is_scaled_and_a_pixel_that_is_no_number_refused(tmp_path):
    levels = np.full((28, 28), -100, np.int32)  # a float or integer TIFF below zero: clipped at 0, it was blank
    levels[10:18, 6:22] = 0
    Image.fromarray(levels, "I").save(tmp_path / "below_zero.tif")
    pixels = decoded(tmp_path / "below_zero.tif", lambda picture: np.asarray(picture), "predict")
    assert pixels.dtype == np.uint8 and pixels[0, 0] == 0 and pixels[12, 12] == round(100 / 101 * 255)  # -100 to 1
    levels = levels.astype(np.float32)
    levels[0, 0] = np.nan  # it made numpy warn of an invalid cast, then a blank image
    Image.fromarray(levels, "F").save(tmp_path / "nan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError) as refused:
            decoded(tmp_path / "nan.tif", lambda picture: np.asarray(picture), "predict")
    assert str(refused.value) == (f"{tmp_path / 'nan.tif'} has pixels that are no number (NaN or infinity): save it "
                                  "with a grey level in each.")

# Pure red and this green are the same grey to PIL (L = 0.299 R + 0.587 G + 0.114 B = 76): in grey the two classes
# are one picture, in colour two.
RED, GREEN = (255, 0, 0), (0, 130, 0)


@pytest.fixture(scope="module")
def colours(tmp_path_factory, monkeypatch_module) -> Path:
    """Squares of random place and size on black, each drawn once in red (class red) and once in green (green)."""
    root = tmp_path_factory.mktemp("colours") / "squares"
    rng = random.Random(0)
    for i in range(150):
        side, size = rng.choice([28, 40, 64]), rng.randint(8, 20)
        x, y = rng.randint(0, side - size), rng.randint(0, side - size)
        for name, colour in (("red", RED), ("green", GREEN)):
            (root / name).mkdir(parents=True, exist_ok=True)
            picture = Image.new("RGB", (side, side))
            picture.paste(colour, (x, y, x + size, y + size))
            picture.save(root / name / f"{i}.png")
    return root


def test_colour_keeps_what_grey_loses(colours):
    grey = build_dataset({"name": "folder", "root": str(colours), "mnist_form": False, "val_size": 0, "test_size": 0})
    colour = build_dataset({"name": "folder", "root": str(colours), "channels": 3, "mnist_form": False,
                            "val_size": 0, "test_size": 0})
    assert grey.train.images.shape == (300, 28, 28) and colour.train.images.shape == (300, 3, 28, 28)
    red, green = (grey.train.labels == grey.class_names.index(name) for name in ("red", "green"))
    assert sorted(grey.train.images[red].tolist()) == sorted(grey.train.images[green].tolist())  # one picture
    reds, greens = colour.train.images[red].float(), colour.train.images[green].float()
    assert reds[:, 0].mean() > 5 * reds[:, 1].mean() and greens[:, 1].mean() > 5 * greens[:, 0].mean()
    assert colour.mean == pytest.approx(float(colour.train.images.float().mean() / 255))


def test_a_colour_run_learns_what_grey_cannot_and_predict_and_export_take_colour(colours, tmp_path, monkeypatch,
                                                                                 capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=folder", f"dataset.root={colours}", "dataset.channels=3",
                            "dataset.mnist_form=false", "model.in_channels=3", "augment=affine", "trainer.epochs=3",
                            "trainer.batch_size=32",
                            "device=cpu", "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert read_metrics(run_dir)["test/acc"] > 0.95  # grey: 0.5 at best, the two classes being one picture
    assert Image.open(run_dir / "predictions.png").mode == "RGB"
    square = Image.new("RGB", (50, 50))
    square.paste(GREEN, (10, 20, 30, 40))
    square.save(tmp_path / "green.png")
    assert predict.main([str(run_dir), str(tmp_path / "green.png"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == "green"
    (tmp_path / "test.csv").write_text("pixel0,pixel1,pixel2,pixel3\n0,0,0,0\n")  # a table's images are grey
    assert predict.main([str(run_dir), str(tmp_path / "test.csv"), "--submission", str(tmp_path / "s.csv")]) == 1
    assert capsys.readouterr().err == (
        "python -m mnist_exp.tools.predict: This model takes colour images, and a CSV table's are grey: classify image "
        f"files instead (python -m mnist_exp.tools.predict {run_dir} <images or folders>).\n")
    from mnist_exp.tools.export import export_model

    assert export_model(run_dir, "pt2").is_file()  # checked against the checkpoint's predictions on colour images


@pytest.mark.parametrize("args, message", [
    (["dataset.channels=2"], "dataset.channels=2 is out of range: it takes 1 (grey) or 3 (colour, RGB)."),
    (["dataset.channels=3"], "dataset.channels=3 keeps each image's colours, and dataset.mnist_form=true makes grey "
                             "digits of them: give dataset.mnist_form=false (the whole image resized) with colour."),
    (["dataset.channels=3", "dataset.mnist_form=false"], "model.in_channels=1 does not fit the dataset's 3x28x28 "
                                                         "images: give model.in_channels=3."),
])
def test_colour_that_cannot_work_is_one_line(colours, args, message, tmp_path, monkeypatch, capsys):
    code, _, err = run_main("dataset=folder", f"dataset.root={colours}", "trainer.batch_size=64", *args, "device=cpu",
                            monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith(message), err
