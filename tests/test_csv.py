"""``dataset=csv``: Kaggle's "Digit Recognizer" layout in, a run, and ``predict --submission`` out; a CSV that is not
that layout is one line naming the file and the line."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import read_metrics, run_main
from mnist_exp.data.csv_table import read_pixel_csv
from mnist_exp.data.datasets import build_dataset, fake
from mnist_exp.errors import UserError
from mnist_exp.tools import predict

PIXELS = ",".join(f"pixel{i}" for i in range(784))


def write_csv(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> Path:
    rows = images.reshape(len(images), -1).numpy().astype(int)
    if labels is not None:
        rows = np.column_stack([labels.numpy(), rows])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=("label," if labels is not None else "") + PIXELS,
               comments="")
    return path


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    """train.csv (labelled) and test.csv (pixels alone) written from the fake dataset."""
    folder = tmp_path_factory.mktemp("kaggle")
    data = fake(num_train=1200, val_size=0, num_test=100)
    write_csv(folder / "train.csv", data.train.images, data.train.labels)
    write_csv(folder / "test.csv", data.test.images, None)
    return folder


def test_the_training_file_is_split_three_ways_with_its_own_normalisation(kaggle):
    data = build_dataset({"name": "csv", "train": str(kaggle / "train.csv"), "val_size": 200, "test_size": 100})
    assert (len(data.train), len(data.val), len(data.test)) == (900, 200, 100)
    assert data.class_names == [str(c) for c in range(10)] and data.train.images.shape[1:] == (28, 28)
    pixels = data.train.images.float() / 255
    assert (data.mean, data.std) == pytest.approx((float(pixels.mean()), float(pixels.std())))
    images, labels = read_pixel_csv(kaggle / "train.csv")
    seen = {tuple(image.flatten().tolist()) for split in (data.train, data.val, data.test) for image in split.images}
    assert len(seen) == len({tuple(image.flatten().tolist()) for image in images})  # every image once, none lost
    assert sorted((data.train.labels.tolist() + data.val.labels.tolist() + data.test.labels.tolist())) == sorted(
        labels.tolist())


def test_a_run_on_the_csv_then_a_submission_for_the_test_file(kaggle, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=csv", f"dataset.train={kaggle / 'train.csv'}", "dataset.val_size=200",
                            "dataset.test_size=100", "trainer.epochs=2", "device=cpu", "device.threads=1",
                            f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    assert read_metrics(run_dir)["test/acc"] > 0.8
    data = build_dataset({"name": "csv", "train": str(kaggle / "train.csv"), "val_size": 200, "test_size": 100})
    assert (f"Normalisation: mean {data.mean:.4f}, std {data.std:.4f} (dataset.mean and dataset.std null: the "
            "training split's)") in (run_dir / "train.log").read_text()  # what --cfg job shows as null, the run names
    out = tmp_path / "submission.csv"
    assert predict.main([str(run_dir), str(kaggle / "test.csv"), "--submission", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"Wrote {out}: 100 rows of ImageId,Label\n"
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 101))
    predicted = [int(line.split(",")[1]) for line in lines[1:]]
    truth = fake(num_train=1200, val_size=0, num_test=100).test.labels.tolist()
    assert sum(p == t for p, t in zip(predicted, truth)) >= 80  # the run's own model, on images it never saw


def test_a_run_is_not_continued_on_a_table_that_changed_since(kaggle, tmp_path, monkeypatch, capsys):
    table = tmp_path / "train.csv"
    table.write_text((kaggle / "train.csv").read_text())
    args = ("dataset=csv", f"dataset.train={table}", "dataset.val_size=200", "dataset.test_size=100",
            "trainer.epochs=1", "device=cpu", "device.threads=1")
    code, _, err = run_main(*args, f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys,
                            cwd=tmp_path)
    assert code == 0, err
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    # One pixel of one training image: the rows' places, and so the splits, stay as they were.
    lines = table.read_text().splitlines()
    trained_on = build_dataset({"name": "csv", "train": str(table), "val_size": 200, "test_size": 100}).train
    pixels = ",".join(str(value) for value in trained_on.images[0].flatten().tolist())
    [row] = [i for i, line in enumerate(lines) if line.endswith("," + pixels)]
    one_pixel = lines[row].rsplit(",", 1)[0] + f",{255 - int(lines[row].rsplit(',', 1)[1])}"
    for rows, said, text in ((1300, "900 train images, now 1000", None), (1200, "other train images, other val "
                             "images, other test images", None),  # more rows; the same count, others
                             (1200, "other train images", "\n".join([*lines[:row], one_pixel, *lines[row + 1:]]))):
        data = fake(num_train=rows, val_size=0, num_test=1, seed=1 if rows == 1200 else 0)
        write_csv(table, data.train.images, data.train.labels) if text is None else table.write_text(text + "\n")
        code, _, err = run_main(*args, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / str(len(said))}",
                                monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
        assert code == 1 and err.splitlines() == [
            f"Checkpoint {last} was trained on other data than the dataset gives now ({said}): continued, the run "
            "would train and be tested on other images. Put the data back as it was, or start a new run (without "
            "resume=true or ckpt_path)."]



def test_a_model_of_16x16_images_classifies_a_table_and_image_files_of_its_size(tmp_path, monkeypatch, capsys):
    """A CSV's image size is its file's, not a key: the run records it, and predict brings new images to it."""
    data = fake(num_train=300, val_size=0, num_test=20, image_size=16)
    for name, images, labels in (("train.csv", data.train.images, data.train.labels), ("test.csv", data.test.images, None)):
        rows = images.reshape(len(images), -1).numpy().astype(int)
        np.savetxt(tmp_path / name, rows if labels is None else np.column_stack([labels.numpy(), rows]), fmt="%d",
                   delimiter=",")
    run_dir = tmp_path / "run"
    code, _, err = run_main("dataset=csv", f"dataset.train={tmp_path / 'train.csv'}", "dataset.val_size=30",
                            "dataset.test_size=30", "model=mlp", "model.in_features=256", "trainer.epochs=1", "trainer.batch_size=64",
                            "device=cpu", "device.threads=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch,
                            capsys=capsys, cwd=tmp_path)
    assert code == 0, err
    out = tmp_path / "submission.csv"
    assert predict.main([str(run_dir), str(tmp_path / "test.csv"), "--submission", str(out), "--device", "cpu"]) == 0
    assert len(out.read_text().splitlines()) == 21
    Image.fromarray(data.test.images[0].numpy()).resize((64, 64)).save(tmp_path / "digit.png")
    capsys.readouterr()
    assert predict.main([str(run_dir), str(tmp_path / "digit.png"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.split("\t")[1] in data.class_names

@pytest.mark.parametrize("content, message", [
    ("label,a,b,c\n1,2,3,4\n", "has 4 columns: after the label, 3 pixels do not make a square image (784 make "
                               "28x28). Give label,pixel0,...,pixel783 (a label, then 28x28 grey levels 0-255)."),
    ("label,a,b,c,d\n1,2,3,4,5\n3.5,0,0,0,0\n", ", line 3, column 1: the label '3.5' is not a whole number (labels "
                                                 "are class numbers 0, 1, 2, ...; pixels grey levels 0-255)."),
    ("label,a,b,c,d\n1,2,3,300,5\n", ", line 2: pixels are grey levels from 0 to 255."),
    ("label,a,b,c,d\n-1,2,3,4,5\n", ", line 2: the label -1 is not a class number (0, 1, 2, ...)."),
    ("label,a,b,c,d\n", "has no rows of images. Give label,pixel0,...,pixel783 (a label, then 28x28 grey levels "
                        "0-255)."),
    ("", "is empty, or starts with an empty line. Give label,pixel0,...,pixel783 (a label, then 28x28 grey levels "
         "0-255)."),
    ("label;a;b;c;d\n1;2;3;4;5\n", "separates its columns with ';': give a CSV with commas, label,pixel0,...,pixel783 "
                                  "(a label, then 28x28 grey levels 0-255)."),
    ("label,a,b,c,d\n1,2,3,4,5\n1,2,3,4,5,6\n", ": the number of columns changed from 5 to 6 at line 3. Every row needs "
                                             "the same columns: label,pixel0,...,pixel783 (a label, then 28x28 grey "
                                             "levels 0-255)."),
    # Lines as the file numbers them: an empty line is none of numpy's rows; '#' starts no comment that drops a row.
    ("label,a,b,c,d\n1,2,3,4,5\n\n\n1,x,3,4,5\n", ", line 5, column 2: a pixel 'x' is not a whole number (labels "
                                                 "are class numbers 0, 1, 2, ...; pixels grey levels 0-255)."),
    ("label,a,b,c,d\n\n1,2,3,4,5\n1,2,3,300,5\n", ", line 4: pixels are grey levels from 0 to 255."),
    ("label,a,b,c,d\n\n-1,2,3,4,5\n", ", line 3: the label -1 is not a class number (0, 1, 2, ...)."),
    ("label,a,b,c,d\n1,2,3,4,5\n\n1,2,3,4,5,6\n", ": the number of columns changed from 5 to 6 at line 4. Every row "
                                                 "needs the same columns: label,pixel0,...,pixel783 (a label, then "
                                                 "28x28 grey levels 0-255)."),
    ("label,a,b,c,d\n1,2,3,4,5\n#1,2,3,4,5\n", ", line 3, column 1: the label '#1' is not a whole number (labels are "
                                                "class numbers 0, 1, 2, ...; pixels grey levels 0-255)."),
    # A header that puts the label elsewhere, or names none: read as written, its first pixel would be the label.
    ("pixel0,pixel1,pixel2,pixel3,label\n1,2,3,4,5\n", ": its header names the label as column 5, and the label is "
                                                       "the first column: give label,pixel0,...,pixel783 (a label, "
                                                       "then 28x28 grey levels 0-255)."),
    ("pixel0,pixel1,pixel2,pixel3,pixel4\n1,2,3,4,5\n", ": its header names the label nowhere, and the label is the "
                                                        "first column: give label,pixel0,...,pixel783 (a label, then "
                                                        "28x28 grey levels 0-255)."),
])
def test_a_csv_in_another_layout_is_one_line(content, message, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(UserError) as refused:
        read_pixel_csv(path, labelled=True)
    assert str(refused.value) == f"{path}{'' if message[0] in ',:' else ' '}{message}"


def test_a_byte_order_mark_is_no_header_and_every_row_is_an_image(tmp_path):
    """Excel's "CSV UTF-8": read as text, the mark made a header-less file's first row a header, skipped."""
    rows = "1,0,0,0,9\n2,5,6,7,8\n"
    for name, text in (("bare.csv", rows), ("header.csv", "label,a,b,c,d\n" + rows)):
        (tmp_path / name).write_text(text, encoding="utf-8-sig")
        images, labels = read_pixel_csv(tmp_path / name)
        assert labels.tolist() == [1, 2] and images.flatten().tolist() == [0, 0, 0, 9, 5, 6, 7, 8]


def test_a_compressed_file_or_a_header_of_other_columns_than_its_rows_is_one_line(tmp_path):
    compressed = tmp_path / "train.csv"
    compressed.write_bytes(gzip.compress(b"label,a,b,c,d\n1,2,3,4,5\n"))
    with pytest.raises(UserError) as refused:
        read_pixel_csv(compressed)
    assert str(refused.value).startswith(f"{compressed} is not UTF-8 text (a compressed or binary file, or another "
                                         "encoding): unpack it")
    shifted = tmp_path / "test.csv"  # a label named, the pixels alone below it: its pixels were read as 2x2 minus one
    shifted.write_text("label,a,b,c,d\n1,2,3,4\n")
    with pytest.raises(UserError) as refused:
        read_pixel_csv(shifted)
    assert str(refused.value).startswith(f"{shifted}: its header names 5 columns and its rows have 4. Every row")


def test_a_table_of_pixels_a_column_short_is_told_its_count(tmp_path):
    """Images to classify (a label column or not): named pixel columns alone are not read as a label and pixels."""
    path = tmp_path / "test.csv"
    path.write_text(",".join(f"pixel{i}" for i in range(783)) + "\n" + ",".join(["0"] * 783) + "\n")
    with pytest.raises(UserError) as refused:
        read_pixel_csv(path)
    assert str(refused.value) == (f"{path} has 783 pixel columns, which make no square image (784 make 28x28). Give "
                                  "label,pixel0,...,pixel783 (a label, then 28x28 grey levels 0-255), or the pixels "
                                  "alone.")


def test_a_folder_or_a_file_of_one_class_is_one_line(tmp_path):
    with pytest.raises(UserError) as refused:
        read_pixel_csv(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path} is a folder, not a CSV file: give a CSV file of images")
    (tmp_path / "one.csv").write_text("label,a,b,c,d\n1,2,3,4,5\n")
    with pytest.raises(UserError) as refused:
        build_dataset({"name": "csv", "train": str(tmp_path / "one.csv")})
    assert str(refused.value) == f"dataset.train={tmp_path / 'one.csv'} has one label, 1: a classifier needs at least two."


def test_labels_with_gaps_or_a_test_class_training_lacks_are_one_line(kaggle, tmp_path):
    """Each label up to the largest would be an output of the model: one of 1000000 made a net of 577M parameters."""
    data = fake(num_train=40, val_size=0, num_test=10)
    labels = data.train.labels.clone()
    labels[0] = 1000000
    wide = write_csv(tmp_path / "wide.csv", data.train.images, labels)
    with pytest.raises(UserError) as refused:
        build_dataset({"name": "csv", "train": str(wide), "val_size": 5, "test_size": 5})
    missing = 1000001 - len(labels.unique())
    assert str(refused.value) == (f"dataset.train={wide} has labels up to 1000000 and no image of {missing} of those "
                                  f"classes (10, 11, 12, 13, 14, ...): labels are class numbers 0, 1, 2, ...; number "
                                  "the classes from 0 without gaps.")
    few = write_csv(tmp_path / "few.csv", data.train.images, data.train.labels % 5)  # classes 0-4
    test = write_csv(tmp_path / "test.csv", data.test.images, data.test.labels)  # classes 0-9
    with pytest.raises(UserError) as refused:
        build_dataset({"name": "csv", "train": str(few), "test": str(test), "val_size": 5})
    assert str(refused.value).startswith(f"dataset.test={test} has images of label 5, a class no image of "
                                         f"dataset.train={few} has")


def test_a_labelled_test_file_leaves_the_held_out_test_keys_nothing_to_do(kaggle, tmp_path):
    data = fake(num_train=300, val_size=0, num_test=50)
    test = write_csv(tmp_path / "labelled.csv", data.test.images, data.test.labels)
    given = {"name": "csv", "train": str(kaggle / "train.csv"), "test": str(test), "val_size": 200}
    assert len(build_dataset({**given, "split_seed": 3}).test) == 50  # the seed splits off the validation images
    with pytest.raises(UserError, match=rf"^dataset.test_size=100 takes no effect: dataset.test={test} is the test "
                                        r"split\. Leave dataset.test_size out\.$"):
        build_dataset({**given, "test_size": 100})
    with pytest.raises(UserError, match=r"^dataset.split_seed=3 takes no effect: .* and dataset.val_size=0 holds out "
                                        r"no validation images\."):
        build_dataset({**given, "val_size": 0, "split_seed": 3})
    with pytest.raises(UserError, match=r"^dataset.test=.*train.csv is the training file, and a test of the images a "
                                        r"model trained on measures nothing"):
        build_dataset({**given, "test": given["train"]})


def test_an_unlabelled_test_file_or_no_training_file_is_one_line(kaggle):
    with pytest.raises(UserError, match=r"has no label column, so it cannot measure accuracy: predict it"):
        build_dataset({"name": "csv", "train": str(kaggle / "train.csv"), "test": str(kaggle / "test.csv")})
    with pytest.raises(UserError, match=r"^dataset=csv needs its training file: dataset.train=<path of train.csv>"):
        build_dataset({"name": "csv"})
