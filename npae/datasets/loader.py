"""Finding, downloading and loading the IDX data sets.

Where ``load_data`` looks, in order (the first folder holding the files wins):
  1. ``path=`` (one data set's folder) or ``data_dir=`` (a root with one folder per data set);
     an explicit location without the files is an error, not skipped;
  2. ``$NPAE_DATA_DIR/<name>``;
  3. the user cache ``$XDG_CACHE_HOME/npae/<name>`` (default ``~/.cache/npae/<name>``);
  4. Debian's system data sets ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist``);
  5. a download from the public mirrors into the cache, each file verified by MD5.
Each file may be stored gzip-compressed (``.gz``) or already decompressed.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .download import DownloadError, download_verified
from .idx import IDXError, read_idx

__all__ = ["DATASETS", "DatasetNotFoundError", "load", "load_split", "cache_dir", "SYSTEM_DIR", "MAX_IMAGES"]

SYSTEM_DIR = Path("/usr/share/datasets")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
# https mirrors first (the MD5s protect the plain-http ones too); "size" is each canonical file's
# length in bytes: a download that goes past it is stopped at once
DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "size": {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
                 "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542},
        "classes": ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
    },
    "fashion-mnist": {
        "mirrors": ["https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "size": {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
                 "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148},
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"),
    },
}
IMAGE_SHAPE = (28, 28)
MAX_IMAGES = 70000  # both data sets hold 70,000 images: refuse files that claim more


class DatasetNotFoundError(FileNotFoundError):
    """No folder held the files and the download failed; the message says what to do."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/npae`` or ``~/.cache/npae``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "npae"


def _find(folder: Path, gz_name: str) -> Path | None:
    for candidate in (folder / gz_name, folder / gz_name[:-3]):
        if candidate.is_file():
            return candidate
    return None


def _files_in(folder: Path, names) -> list[Path] | None:
    found = [_find(folder, n) for n in names]
    return found if all(found) else None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images_path, max_bytes=MAX_IMAGES * math.prod(IMAGE_SHAPE))
    y = read_idx(labels_path, max_bytes=MAX_IMAGES)
    if x.ndim != 3 or x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE:
        raise IDXError(f"{images_path}: expected uint8 images of shape (n, 28, 28), got {x.dtype} "
                       f"{x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise IDXError(f"{labels_path}: expected uint8 labels of shape (n,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise IDXError(f"{images_path} has {len(x)} images but {labels_path} has {len(y)} labels")
    return x, y


def _download(name: str, names, searched: list[str], stream=None) -> tuple[np.ndarray, np.ndarray]:
    spec = DATASETS[name]
    target = cache_dir() / name
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=target)
        probe.close()
        writable = True
    except OSError as err:
        writable = False
        warnings.warn(f"cannot write to the cache {target} ({err.strerror or err}); downloading to a temporary "
                      "folder instead, so the files will not be kept", stacklevel=3)
    if not writable:  # downloaded into a folder that is gone once the files are read
        with tempfile.TemporaryDirectory(prefix="npae-") as folder:
            return _read_pair(*_fetch_all(spec, names, Path(folder), stream))
    return _read_pair(*_fetch_all(spec, names, target, stream))


def _fetch_all(spec: dict, names, folder: Path, stream) -> list[Path]:
    return [_find(folder, n) or Path(download_verified(n, spec["mirrors"], spec["md5"][n], str(folder),
                                                       size=spec["size"][n], stream=stream)) for n in names]


def load_split(name: str, split: str, path=None, data_dir=None, download: bool = True,
               stream=None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one split ('train' or 'test'): uint8 images (n, 28, 28) and labels (n,)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: expected one of {sorted(DATASETS)}")
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
    names = FILES[split]
    explicit = Path(path) if path is not None else (Path(data_dir) / name if data_dir is not None else None)
    if explicit is not None:
        found = _files_in(explicit, names)
        if found is None:
            raise DatasetNotFoundError(f"{explicit} does not hold the {name} {split} files {', '.join(names)} "
                                       "(each may also be stored without .gz)")
        return _read_pair(*found)
    searched = []
    env = os.environ.get("NPAE_DATA_DIR")
    candidates = ([Path(env) / name] if env else []) + [cache_dir() / name, SYSTEM_DIR / name]
    for folder in candidates:
        found = _files_in(folder, names)
        if found is not None:
            return _read_pair(*found)
        searched.append(str(folder))
    failure = "downloading is switched off (download=False)"
    if download:
        try:
            return _download(name, names, searched, stream)
        except DownloadError as err:
            failure = str(err)
    raise DatasetNotFoundError(
        f"the {name} {split} files were not found and could not be downloaded: set NPAE_DATA_DIR to a folder "
        f"holding {name}/, or copy the files into {cache_dir() / name}\n"
        f"Searched: {', '.join(searched)}\n{failure}\n"
        f"Fix it either way:\n"
        f"  1. point NPAE_DATA_DIR at a folder holding {name}/{names[0]} and {name}/{names[1]}, or\n"
        f"  2. copy those files into {cache_dir() / name}"
    )


def load(name: str, path=None, data_dir=None, download: bool = True, stream=None):
    """``((x_train, y_train), (x_test, y_test))`` as uint8 arrays, exactly like Keras."""
    return (load_split(name, "train", path, data_dir, download, stream),
            load_split(name, "test", path, data_dir, download, stream))
