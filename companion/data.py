"""Open-set splits and the datasets of the book, behind one function: ``load_osr``.

Splits
------
``SPLITS`` holds the standard known-class lists (five splits per benchmark), read from the packaged
``osr_splits.json``. Each list gives the KNOWN classes in the order that defines the labels: the
class ``known[k]`` gets label ``k``. The unknown classes are the rest of the label space (sorted),
except for CIFAR+N, whose unknowns are CIFAR-100 classes listed explicitly. ``known_unknown`` turns
a dataset name and a split index into both lists.

Some splits repeat a known-class set (``duplicate_splits`` finds them from the lists): cifar10
splits 0 and 1, svhn splits 0 and 1, and the CIFAR+N known lists 1 and 2 (for CIFAR+N the unknown
sets of those two splits still differ). This comes from earlier work and is kept so that results
stay comparable; always record the split index with a result. ``SPLIT_CAVEATS`` has the details.

Datasets and label conventions
------------------------------
``load_osr`` returns an ``OSRData`` with three sets, each a ``TensorSet`` held in memory:
``train`` and ``test_known`` hold only known classes, labelled ``0..K-1``; ``test_unknown`` holds
only unknown classes, every sample labelled ``-1``. Unknowns come from the test part, as in the
standard protocol. A ``TensorSet`` keeps ``inputs`` (``(N, *input_shape)``) and ``targets``
(``(N,)``, int64); indexing it yields ``(x, y)`` with ``x`` float32 and ``y`` an int64 scalar
tensor, and ``batches()`` streams float32 batches, converting one batch at a time.

- ``toy2d``: ten Gaussian clusters on a ring inside the paper's bounded input space ``[-1, 1]^2``;
  ``x`` has shape ``(2,)``, stored as float32. Offline.
- ``digits``: scikit-learn's bundled 8x8 digits, ``x`` of shape ``(1, 8, 8)`` in ``[0, 1]``, stored
  as float32; a seeded, stratified 70/30 train/test split. Offline.
- ``mnist``, ``svhn``, ``cifar10``, ``cifar+10``, ``cifar+50``, ``tiny_imagenet``: decoded once,
  when loaded, into uint8 tensors of shape ``(N, 3, S, S)`` (0..255); ``x`` is that image as
  float32 in ``[0, 1]``, without augmentation (training adds it). ``S`` is ``image_size``; by
  default the protocol's size: 32 for MNIST, SVHN and CIFAR, 64 (the native size) for
  TinyImageNet. MNIST is resized from 28 and its gray channel repeated three times, so one RGB
  backbone serves every benchmark (ARPL and Vaze et al. feed MNIST to the same 32x32 networks).

On disk (under ``root``, default ``runtime.data_dir()``), torchvision's own formats:

- ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the uncompressed idx files)
- ``svhn/{train,test}_32x32.mat`` (a ``svhn/`` subfolder, so SVHN's files do not litter ``root``)
- ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` and, for CIFAR+N,
  ``cifar-100-python/test`` (the python pickles; only the CIFAR-100 test set is read)
- ``tiny-imagenet-200/`` as distributed: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
  ``val/images/*.JPEG`` and ``val/val_annotations.txt``; or with ``val/`` already sorted into class
  folders, as ARPL's and Vaze et al.'s scripts leave it (``val/<wnid>/images/*.JPEG`` or
  ``val/<wnid>/*.JPEG``, no annotations file needed). Class ids are positions in the sorted list
  of the ``train/`` folder names, in both layouts. Nothing is moved or copied.

Nothing is downloaded unless ``download=True`` (the command line's ``--download``); then
torchvision's downloaders fetch and md5-check MNIST, SVHN and CIFAR, and ``tiny-imagenet-200.zip``
is md5-checked, extracted with path-traversal protection, then deleted. Without the files,
``load_osr`` raises ``FileNotFoundError`` saying how to get them.

Protocol B: out-of-distribution sets
------------------------------------
``load_osr(dataset, ood=name)`` makes every class of ``dataset`` known and takes the unknowns from
another source, ``OOD_SETS``:

- with ``cifar10``, the four sets of the ODIN release (Liang et al. 2018, links in the README of
  https://github.com/facebookresearch/odin), 10,000 32x32 JPEGs each: ``imagenet_crop``
  (``Imagenet.tar.gz``), ``imagenet_resize`` (``Imagenet_resize.tar.gz``), ``lsun_crop``
  (``LSUN.tar.gz``), ``lsun_resize`` (``LSUN_resize.tar.gz``). Each archive extracts to a folder
  of that name holding one folder of images (``LSUN/test/*.jpg``,
  ``LSUN_resize/LSUN_resize/*.jpg``, ...), which ODIN reads with torchvision's ``ImageFolder``;
  ``load_osr`` reads every image under ``root/<folder>/<subfolder>/``, sorted by path. They are
  never downloaded for you (no checksums are published): extract them under ``root``.
- with ``digits``, two offline analogues cut from scikit-learn's bundled sample photos:
  ``photo_crop`` (8x8 windows) and ``photo_resize`` (64x64 windows averaged down to 8x8), gray,
  on digits' 17 levels, drawn from ``seed``; 540 images each, as many as digits' test knowns.

``val_fraction`` holds out a stratified, seeded fraction of the known training samples as
``OSRData.val``, on which Protocol B sets its rejection threshold.

Integrity
---------
The files are read by this module's own readers, never by code the files could choose:

- MNIST: the idx header (magic number, dimensions) and the file length are checked.
- SVHN: read with ``scipy.io.loadmat`` (plain arrays), shapes and labels checked.
- CIFAR: the pickles are read by a restricted unpickler that builds only dicts, lists, numbers,
  strings and numpy arrays: the only globals it accepts are the three an official file (written by
  Python 2) names, ``numpy.core.multiarray._reconstruct`` (also under numpy 2's
  ``numpy._core.multiarray``), ``numpy.ndarray`` and ``numpy.dtype``. Any other global, such as
  ``os.system`` in a crafted file, is refused with ``pickle.UnpicklingError`` before anything
  runs.
- TinyImageNet: every image ``load_osr`` returns is fully decoded at load, so a truncated JPEG
  fails there (train images of classes it does not return are not opened).

``verify=True`` (the default, unless ``COMPANION_VERIFY=0``) also checks the md5 of every SVHN and CIFAR file read against the
official values (the tables of torchvision's ``SVHN``, ``CIFAR10`` and ``CIFAR100`` classes), which
rejects anything but the official release. ``verify=False`` skips only that md5 check, for files
you made or trust (``tests/fabricate.py`` writes tiny datasets in these formats); the restricted
unpickler and the format checks always apply, and a download is always md5-checked. A file that
fails a check raises ``ValueError`` naming it and the fix: delete it and download again.

Memory
------
Images are kept as uint8 and converted to float32 one batch at a time (``TensorSet.batches``), or
all at once by ``as_tensors``, which takes four times the memory. At the default sizes: MNIST
70,000 images x 3 x 32 x 32 = 215 MB, SVHN 99,289 images = 305 MB, CIFAR-10 60,000 images = 184
MB (CIFAR+N adds 31 MB of CIFAR-100 test images). TinyImageNet at 64 px would be 110,000 x 3 x 64 x
64 = 1.35 GB (1.26 GiB) in full; ``load_osr`` decodes only the images it returns (the known
classes' 500 train images each and the 10,000 validation images), about 250 MB for 20 known
classes. Loading briefly needs about twice a dataset's final size, before unknown classes are
dropped from the train part.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import pickle
import shutil
import struct
import tempfile
import urllib.request
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PureWindowsPath
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.datasets import utils as tv_utils
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from . import runtime

# --------------------------------------------------------------------------------------------------
# Splits

_SPLITS_FILE = json.loads(
    resources.files(__package__).joinpath("osr_splits.json").read_text(encoding="utf-8")
)
SPLIT_SOURCE: str = _SPLITS_FILE["_source"]
SPLIT_CAVEATS: tuple[str, ...] = tuple(_SPLITS_FILE["_caveats"])
SPLITS: dict[str, list[list[int]]] = {
    key: lists for key, lists in _SPLITS_FILE.items() if not key.startswith("_")
}

DATASETS = ("toy2d", "digits", "mnist", "svhn", "cifar10", "cifar+10", "cifar+50", "tiny_imagenet")
"""Every dataset ``load_osr`` knows: two offline ones (``toy2d``, ``digits``), then the paper's."""

# Which lists of SPLITS a dataset uses. Unknowns are the complement of the knowns in
# range(num_classes), except where _UNKNOWN_KEY names an explicit list.
_KNOWN_KEY = {
    "toy2d": "mnist",
    "digits": "mnist",
    "mnist": "mnist",
    "svhn": "svhn",
    "cifar10": "cifar10",
    "cifar+10": "cifar_plus_known",
    "cifar+50": "cifar_plus_known",
    "tiny_imagenet": "tiny_imagenet",
}
_UNKNOWN_KEY = {"cifar+10": "cifar_plus_10", "cifar+50": "cifar_plus_50"}
_NUM_CLASSES = {"tiny_imagenet": 200}  # every other dataset has 10


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")


def _check_split(split: int, num_splits: int) -> int:
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
        raise ValueError(f"split must be an int in 0..{num_splits - 1}, got {split!r}")
    if not 0 <= split < num_splits:
        raise ValueError(f"split must be in 0..{num_splits - 1}, got {split}")
    return int(split)


def known_unknown(dataset: str, split: int) -> tuple[list[int], list[int]]:
    """Known and unknown class ids of ``split`` (0..4) of ``dataset``.

    Known classes come in split-list order, which defines the labels (``known[k]`` is label ``k``).
    Unknown classes are sorted, except for CIFAR+N, where they are CIFAR-100 ids in list order
    (the knowns are CIFAR-10 ids). ``toy2d`` and ``digits`` use the MNIST lists.
    """
    _check_dataset(dataset)
    known_lists = SPLITS[_KNOWN_KEY[dataset]]
    split = _check_split(split, len(known_lists))
    known = list(known_lists[split])
    if dataset in _UNKNOWN_KEY:
        unknown = list(SPLITS[_UNKNOWN_KEY[dataset]][split])
    else:
        unknown = sorted(set(range(_NUM_CLASSES.get(dataset, 10))) - set(known))
    return known, unknown


def _custom_known(dataset: str, known: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(known, unknown)`` for a chosen list of known class ids, checked."""
    _check_dataset(dataset)
    if dataset in _UNKNOWN_KEY:
        raise ValueError(f"custom known classes are not available for {dataset}: its unknowns "
                         f"come from CIFAR-100; use a standard split")
    num_classes = _NUM_CLASSES.get(dataset, 10)
    known = list(known)
    if (not known or len(set(known)) != len(known) or len(known) >= num_classes
            or any(isinstance(k, bool) or not isinstance(k, (int, np.integer))
                   or not 0 <= k < num_classes for k in known)):
        raise ValueError(f"known must list 1 to {num_classes - 1} distinct class ids in "
                         f"0..{num_classes - 1} (at least one class stays unknown), got {known}")
    known = [int(k) for k in known]
    return known, sorted(set(range(num_classes)) - set(known))


def duplicate_splits(dataset: str) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of splits of ``dataset`` with the same known-class set.

    Such splits train on the same classes (only the label order differs); for CIFAR+N their
    unknown sets may still differ.
    """
    _check_dataset(dataset)
    lists = SPLITS[_KNOWN_KEY[dataset]]
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(lists)), 2)
        if set(lists[i]) == set(lists[j])
    ]


# --------------------------------------------------------------------------------------------------
# In-memory datasets


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _standard_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class TensorSet(Dataset):
    """An in-memory dataset: ``inputs`` of shape ``(N, *input_shape)``, float32 (toy2d, digits)
    or uint8 images ``(N, C, H, W)`` in 0..255; ``targets`` ``(N,)`` int64. Items are ``(x, y)``:
    x float32, y an int64 scalar tensor; uint8 images are read as float32 / 255, so x is in
    [0, 1].

    The tensors may live on any device; ``batches`` and ``subset`` keep them there.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        inputs, targets = torch.as_tensor(inputs), torch.as_tensor(targets)
        if inputs.dtype not in (torch.float32, torch.uint8) or inputs.ndim < 1:
            raise ValueError(f"inputs must be a float32 or uint8 tensor of shape (N, ...), got "
                             f"{inputs.dtype} of shape {tuple(inputs.shape)}; convert with "
                             ".float()")
        if (targets.ndim != 1 or targets.is_floating_point() or targets.is_complex()
                or targets.dtype == torch.bool):
            raise ValueError(f"targets must be a 1-D integer tensor, got {targets.dtype} of shape "
                             f"{tuple(targets.shape)}")
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets differ in length: {len(inputs)} inputs, "
                             f"{len(targets)} targets")
        # Standard strides: NumPy views (digits' images[:, None]) can carry odd strides on size-1
        # dims, which indexing keeps and which steer convolutions to other kernels (other
        # rounding), so the same data would train to other last bits.
        if inputs.stride() != _standard_strides(inputs.shape):
            inputs = inputs.clone(memory_format=torch.contiguous_format)
        self.inputs = inputs
        self.targets = targets.to(torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_float(self.inputs[i]), self.targets[i]

    def __repr__(self) -> str:
        return (f"TensorSet({len(self)} samples, inputs {self.inputs.dtype} "
                f"{tuple(self.inputs.shape[1:])}, on {self.inputs.device})")

    @staticmethod
    def to_float(inputs: torch.Tensor) -> torch.Tensor:
        """uint8 images (0..255) -> float32 in [0, 1], a new tensor; float inputs -> float32,
        values unchanged (float32 inputs are returned as they are, not copied)."""
        if inputs.dtype == torch.uint8:
            return inputs.to(torch.float32).div_(255)
        return inputs.to(torch.float32)

    def batches(self, batch_size: int = 512,
                device: torch.device | str | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches in order: ``x`` float32 of shape ``(B, *input_shape)``, ``y`` int64
        ``(B,)``, both on ``device`` (default: where the tensors are). The last batch may be smaller.

        Only the batch is converted, and uint8 images move to the device before the conversion,
        a quarter of the bytes a float32 copy would take.
        """
        _check_positive_int("batch_size", batch_size)
        for start in range(0, len(self), batch_size):
            x = self.inputs[start:start + batch_size]
            y = self.targets[start:start + batch_size]
            if device is not None:
                x, y = x.to(device), y.to(device)
            yield self.to_float(x), y

    def subset(self, indices) -> "TensorSet":
        """A new set with the samples at ``indices`` (ints, or a boolean mask of length N)."""
        index = torch.as_tensor(indices, device=self.targets.device)
        if index.numel() == 0:
            index = index.to(torch.int64)
        if index.is_floating_point() or index.is_complex():
            raise ValueError(f"indices must be integers or a boolean mask, got {index.dtype}")
        return TensorSet(self.inputs[index.to(self.inputs.device)], self.targets[index])


@dataclass(frozen=True)
class OSRData:
    """One open-set problem: a dataset name and split, and its three sets.

    ``train`` and ``test_known`` hold known classes only, labelled ``0..K-1`` in the order of
    ``known_classes``; ``test_unknown`` holds unknown classes only, labelled ``-1``. Class ids in
    ``known_classes`` / ``unknown_classes`` are those of the source dataset (CIFAR-100 ids for the
    unknowns of CIFAR+N). ``input_shape`` is the shape of one ``x``.

    Protocol B (``ood`` names the OOD set): every class of the dataset is known,
    ``unknown_classes`` is empty and ``test_unknown`` is the OOD set. ``val``: known training
    samples held out for choosing a rejection threshold (labels ``0..K-1``), or ``None``.
    """

    name: str
    split: int
    train: TensorSet
    test_known: TensorSet
    test_unknown: TensorSet
    known_classes: tuple[int, ...]
    unknown_classes: tuple[int, ...]
    input_shape: tuple[int, ...]
    val: TensorSet | None = None
    ood: str | None = None

    @property
    def num_classes(self) -> int:
        """K, the number of known classes."""
        return len(self.known_classes)


def _select(source: TensorSet, classes: Sequence[int], *, unknown: bool = False) -> TensorSet:
    """The samples of ``source`` (labelled with original class ids) whose class is in
    ``classes``, relabelled by position in ``classes`` (or ``-1`` for every sample when
    ``unknown``)."""
    classes_t = torch.as_tensor(list(classes), dtype=torch.int64)
    indices = torch.isin(source.targets, classes_t).nonzero().squeeze(1)
    new_label = torch.full((int(classes_t.max()) + 1,), -1, dtype=torch.int64)
    if not unknown:
        new_label[classes_t] = torch.arange(len(classes_t))
    selected = source.subset(indices)
    return TensorSet(selected.inputs, new_label[selected.targets])


def _evenly(source: TensorSet, limit: int | None) -> TensorSet:
    """``source`` itself, or ``limit`` of its samples at evenly spaced positions."""
    if limit is None or len(source) <= limit:
        return source
    return source.subset(torch.linspace(0, len(source) - 1, limit).round().long())


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a dataset into ``(X, y)``: ``X`` float32 of shape ``(N, *input_shape)``, ``y`` of
    shape ``(N,)``, int64, both new tensors (changing them leaves the dataset alone). A
    ``TensorSet`` is converted in one step (4 bytes per value: for large image sets prefer
    ``TensorSet.batches``); any other dataset is read sample by sample.
    """
    if len(dataset) == 0:
        raise ValueError("cannot stack an empty dataset")
    if isinstance(dataset, TensorSet):
        x = TensorSet.to_float(dataset.inputs)
        return (x.clone() if x is dataset.inputs else x), dataset.targets.clone()
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack([torch.as_tensor(y, dtype=torch.int64) for y in ys])


def _tensor_source(x: np.ndarray, y: np.ndarray) -> TensorSet:
    return TensorSet(torch.as_tensor(x, dtype=torch.float32),
                     torch.from_numpy(np.asarray(y, dtype=np.int64)))


# --------------------------------------------------------------------------------------------------
# toy2d

TOY2D_RING_RADIUS = 0.6
TOY2D_STD = 0.06
# Offsets longer than this are redrawn, so clusters are disjoint by construction: neighbouring
# centres are 2 * 0.6 * sin(pi / 10) = 0.37 apart, two cluster radii only 0.30. It also keeps every
# point inside [-1, 1]^2 (0.6 + 0.15 < 1).
TOY2D_CLUSTER_RADIUS = 2.5 * TOY2D_STD
_angles = 2 * np.pi * np.arange(10) / 10
TOY2D_CENTRES = TOY2D_RING_RADIUS * np.stack([np.cos(_angles), np.sin(_angles)], axis=1)


def _toy2d_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draws of N(0, TOY2D_STD^2 I_2) truncated to the disc of radius TOY2D_CLUSTER_RADIUS."""
    kept = np.empty((0, 2))
    while len(kept) < n:
        draw = rng.normal(0.0, TOY2D_STD, size=(2 * n, 2))
        kept = np.concatenate([kept, draw[np.linalg.norm(draw, axis=1) <= TOY2D_CLUSTER_RADIUS]])
    return kept[:n]


def _toy2d_sample(rng: np.random.Generator, n_per_class: int) -> TensorSet:
    y = np.repeat(np.arange(10), n_per_class)
    return _tensor_source(TOY2D_CENTRES[y] + _toy2d_offsets(rng, len(y)), y)


def _load_toy2d(seed: int, n_per_class: int, n_test_per_class: int) -> tuple[TensorSet, TensorSet]:
    # All ten classes are drawn for both parts, so a seed gives the same points for every split.
    rng = np.random.default_rng(seed)
    return _toy2d_sample(rng, n_per_class), _toy2d_sample(rng, n_test_per_class)


# --------------------------------------------------------------------------------------------------
# digits


def _load_digits(seed: int) -> tuple[TensorSet, TensorSet]:
    # Imported here: only this dataset needs scikit-learn, which takes about a second to import.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # pixel values are counts 0..16
    y = digits.target
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    return _tensor_source(x[train], y[train]), _tensor_source(x[test], y[test])


# --------------------------------------------------------------------------------------------------
# Integrity helpers

_REDOWNLOAD = "delete it and download again (load_osr(..., download=True) / --download)"


def _bad_file(path: Path, problem: str, fix: str = _REDOWNLOAD) -> ValueError:
    """The error for a dataset file that exists but cannot be used."""
    return ValueError(f"{path}: {problem}; {fix}")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, md5: str) -> None:
    actual = _md5(path)
    if actual != md5:
        raise _bad_file(path, f"md5 {actual} is not the official {md5} (corrupted, truncated or "
                              "from another release)",
                        _REDOWNLOAD + ", or pass verify=False for files you made or trust")


def _resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 images (N, C, H, W) resized to (N, C, size, size), bilinear with antialiasing.

    Done in chunks so the float intermediates stay small; returned unchanged at the right size.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = TF.resize(images[start:start + chunk], [size, size],
                                             antialias=True)
    return out


# --------------------------------------------------------------------------------------------------
# MNIST: idx files

_MNIST_FILES = {
    part: (f"MNIST/raw/{prefix}-images-idx3-ubyte", f"MNIST/raw/{prefix}-labels-idx1-ubyte")
    for part, prefix in (("train", "train"), ("test", "t10k"))
}


def _read_idx(path: Path, shape_tail: tuple[int, ...]) -> np.ndarray:
    """An idx file of unsigned bytes as an array of shape (N, *shape_tail).

    Layout: two zero bytes, type code 0x08 (ubyte), the number of dimensions, then each size as a
    big-endian uint32, then the values. Header, sizes and file length are all checked.
    """
    raw = path.read_bytes()
    ndim = 1 + len(shape_tail)
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise _bad_file(path, f"not an MNIST idx file of {ndim}-D unsigned bytes "
                              f"(magic number {raw[:4].hex() or 'missing'}, expected "
                              f"{bytes([0, 0, 0x08, ndim]).hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims[1:] != shape_tail:  # (28, 28) per MNIST image
        raise _bad_file(path, f"items of size {dims[1:]}, expected {shape_tail}")
    expected = header + math.prod(dims)  # exact: a corrupted header may announce huge sizes
    if len(raw) != expected:
        raise _bad_file(path, f"{len(raw)} bytes, but its header announces {expected} "
                              "(truncated or corrupted)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist_part(root: Path, part: str, size: int) -> TensorSet:
    images_path, labels_path = (root / name for name in _MNIST_FILES[part])
    images = _read_idx(images_path, (28, 28))
    labels = _read_idx(labels_path, ())
    if len(images) != len(labels):
        raise _bad_file(labels_path, f"{len(labels)} labels for the {len(images)} images of "
                                     f"{images_path.name}")
    if labels.max(initial=0) > 9:
        raise _bad_file(labels_path, f"label {labels.max()} is not a digit 0..9")
    # Resize the single gray channel first (a third of the work), then repeat it to RGB.
    gray = _resize(torch.from_numpy(images.copy()).unsqueeze(1), size)
    return TensorSet(gray.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(labels.copy()))


def _load_mnist(root: Path, size: int) -> tuple[TensorSet, TensorSet]:
    return _read_mnist_part(root, "train", size), _read_mnist_part(root, "test", size)


# --------------------------------------------------------------------------------------------------
# SVHN: MATLAB files


def _read_svhn_part(root: Path, part: str, size: int, verify: bool) -> TensorSet:
    import scipy.io  # only SVHN needs it

    _, filename, md5 = tvd.SVHN.split_list[part]
    path = root / "svhn" / filename
    if verify:
        _check_md5(path, md5)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises many types for a damaged file: name the file instead
        raise _bad_file(path, f"not a readable .mat file ({type(err).__name__}: {err})") from err
    images, labels = mat.get("X"), mat.get("y")
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[:3] != (32, 32, 3)):
        raise _bad_file(path, "X should be uint8 images of shape (32, 32, 3, N), got "
                              f"{getattr(images, 'dtype', None)} {getattr(images, 'shape', None)}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1) if labels is not None else None
    if labels is None or len(labels) != images.shape[3] or not np.isin(labels, range(1, 11)).all():
        raise _bad_file(path, f"y should hold one label 1..10 per image ({images.shape[3]})")
    labels[labels == 10] = 0  # SVHN stores the digit 0 as 10
    # (H, W, C, N) -> (N, C, H, W)
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
    return TensorSet(_resize(images, size), torch.from_numpy(labels))


def _load_svhn(root: Path, size: int, verify: bool) -> tuple[TensorSet, TensorSet]:
    return _read_svhn_part(root, "train", size, verify), _read_svhn_part(root, "test", size, verify)


# --------------------------------------------------------------------------------------------------
# CIFAR: python pickles, read by a restricted unpickler


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that CIFAR files never use."""


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # older numpy has no numpy._core
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The globals an official CIFAR pickle (Python 2's cPickle, numpy arrays) refers to: they rebuild an
# array from its bytes and run no code chosen by the file. numpy 2 names _reconstruct under
# numpy._core, so a Python 3 pickle of the same dict (protocol 3 or 4) is read too.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; refuses every other global."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # the official files come from Python 2
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise _RefusedGlobal(
                f"refusing to unpickle {self.path}: it asks for {module}.{name}, which a CIFAR "
                f"file never holds (only numpy arrays, lists, dicts and strings are allowed). It "
                f"is not an official CIFAR file: {_REDOWNLOAD}")
        if name == "_reconstruct":
            # Resolved here rather than by import: numpy 2 deprecates the numpy.core path.
            return _numpy_reconstruct()
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: str, num_classes: int, md5: str | None
                      ) -> TensorSet:
    """One CIFAR pickle as uint8 images (N, 3, 32, 32) and labels; ``md5=None`` skips the md5."""
    if md5 is not None:
        _check_md5(path, md5)
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, path).load()
    except _RefusedGlobal:
        raise
    except Exception as err:  # truncated or garbled: pickle raises many types
        raise _bad_file(path, f"not a readable CIFAR pickle ({type(err).__name__}: {err})") from err
    images = entry.get("data") if isinstance(entry, dict) else None
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2
            or images.shape[1] != 3 * 32 * 32):
        raise _bad_file(path, "'data' should be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(entry.get(label_key), dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if (labels.ndim != 1 or len(labels) != len(images)
            or not ((labels >= 0) & (labels < num_classes)).all()):
        raise _bad_file(path, f"{label_key!r} should hold one class 0..{num_classes - 1} per image "
                              f"({len(images)})")
    return TensorSet(torch.from_numpy(images.reshape(-1, 3, 32, 32)), torch.from_numpy(labels))


def _cifar_parts(root: Path, cls: type, files: list[list[str]], verify: bool) -> list[TensorSet]:
    folder = root / cls.base_folder
    label_key = "labels" if cls is tvd.CIFAR10 else "fine_labels"
    num_classes = 10 if cls is tvd.CIFAR10 else 100
    return [_read_cifar_batch(folder / name, label_key, num_classes, md5 if verify else None)
            for name, md5 in files]


def _concat(parts: list[TensorSet], size: int) -> TensorSet:
    return TensorSet(_resize(torch.cat([p.inputs for p in parts]), size),
                     torch.cat([p.targets for p in parts]))


def _load_cifar10(root: Path, size: int, verify: bool) -> tuple[TensorSet, TensorSet]:
    train = _concat(_cifar_parts(root, tvd.CIFAR10, tvd.CIFAR10.train_list, verify), size)
    test = _concat(_cifar_parts(root, tvd.CIFAR10, tvd.CIFAR10.test_list, verify), size)
    return train, test


def _load_cifar100_test(root: Path, size: int, verify: bool) -> TensorSet:
    return _concat(_cifar_parts(root, tvd.CIFAR100, tvd.CIFAR100.test_list, verify), size)


# --------------------------------------------------------------------------------------------------
# TinyImageNet: JPEG folders, decoded at load

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_TINY_FIX = ("delete the folder tiny-imagenet-200/ and download again "
             "(load_osr(..., download=True) / --download)")


def _tiny_class_ids(folder: Path) -> dict[str, int]:
    """WordNet id -> class id: the position in the sorted list of ``train/`` folders."""
    wnids = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    listed = set((folder / "wnids.txt").read_text().split())
    if len(wnids) != 200 or set(wnids) != listed:
        raise ValueError(
            f"{folder / 'train'} should hold one folder per WordNet id of wnids.txt (200); "
            f"found {len(wnids)} folders, {len(set(wnids) ^ listed)} ids in only one of the two; "
            + _TINY_FIX
        )
    return {wnid: i for i, wnid in enumerate(wnids)}


def _tiny_val_files(val: Path, class_id: dict[str, int]) -> list[tuple[Path, int]]:
    """``(path, class id)`` of the validation images, in either layout (see the module docs)."""
    class_folders = sorted(p for p in val.iterdir() if p.is_dir() and p.name in class_id)
    if class_folders:  # pre-organised: val/<wnid>/images/*.JPEG or val/<wnid>/*.JPEG
        if len(class_folders) != len(class_id):
            raise ValueError(f"{val} holds class folders for {len(class_folders)} of the "
                             f"{len(class_id)} WordNet ids; {_TINY_FIX}")
        return [(path, class_id[folder.name]) for folder in class_folders
                for path in sorted(folder.glob("*.JPEG")) + sorted(folder.glob("images/*.JPEG"))]
    annotations = val / "val_annotations.txt"
    if not annotations.is_file():
        raise ValueError(f"{val} holds neither val_annotations.txt with images/ (the official "
                         "layout) nor one folder per WordNet id (val/<wnid>/images/*.JPEG or "
                         f"val/<wnid>/*.JPEG); {_TINY_FIX}")
    files = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{annotations}, line {number}: expected '<file>\\t<wnid>\\t...', "
                             f"got {line!r}; {_TINY_FIX}")
        filename, wnid = fields[:2]
        if wnid not in class_id:
            raise ValueError(f"{annotations} names {wnid!r}, which has no train folder; "
                             + _TINY_FIX)
        files.append((val / "images" / filename, class_id[wnid]))
    return files


def _read_rgb(path: Path, size: int, fix: str = _TINY_FIX) -> np.ndarray:
    """One image file as RGB uint8 of shape (size, size, 3), resized bilinearly if needed."""
    try:
        with Image.open(path) as img:
            # convert() decodes the whole file, so a truncated JPEG fails here, not later.
            # A few TinyImageNet images are grayscale: convert so every x has three channels.
            rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(rgb)  # a writable copy, which torch.from_numpy wants
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _bad_file(path, f"unreadable or truncated image ({type(err).__name__}: {err})",
                        fix) from err


def _decode_images(paths: Sequence[Path], size: int, desc: str, fix: str = _TINY_FIX
                   ) -> torch.Tensor:
    """Decode ``paths`` into uint8 (N, 3, size, size), on threads (PIL releases the GIL);
    ``fix`` ends the error for an unreadable file."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def decode(i: int) -> None:
        out[i] = torch.from_numpy(_read_rgb(paths[i], size, fix)).permute(2, 0, 1)

    executor = ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) + 2))
    try:
        for _ in tqdm(executor.map(decode, range(len(paths))), total=len(paths), desc=desc,
                      unit="img", leave=False):
            pass
    finally:  # on the first bad file, drop the queued work instead of decoding it all
        executor.shutdown(wait=True, cancel_futures=True)
    return out


def _image_set(files: list[tuple[Path, int]], size: int, desc: str) -> TensorSet:
    images = _decode_images([path for path, _ in files], size, desc)
    return TensorSet(images, torch.tensor([label for _, label in files], dtype=torch.int64))


def _load_tiny_imagenet(root: Path, download: bool, size: int, train_classes: Sequence[int]
                        ) -> tuple[TensorSet, TensorSet]:
    """Train images of ``train_classes`` only (the others are never used) and every val image."""
    folder = root / "tiny-imagenet-200"
    if download and not folder.exists():
        _download_tiny_imagenet(root)
    class_id = _tiny_class_ids(folder)
    wanted = set(train_classes)
    train = [
        (path, class_id[wnid])
        for wnid in sorted(class_id)
        if class_id[wnid] in wanted
        for path in sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
    ]
    test = _tiny_val_files(folder / "val", class_id)
    return (_image_set(train, size, "TinyImageNet train"),
            _image_set(test, size, "TinyImageNet val"))


# --------------------------------------------------------------------------------------------------
# Downloads


def _download_verified(url: str, dest: str | os.PathLike, md5: str) -> Path:
    """Download ``url`` to ``dest`` and check its md5; return ``dest``.

    Nothing is fetched when ``dest`` already has the checksum. The bytes go to a temporary file
    beside ``dest``, renamed only once the checksum matches, so ``dest`` is never partial. On any
    failure the temporary file is removed; a mismatch raises ``ValueError``.
    """
    dest = Path(dest)
    if dest.is_file():
        if _md5(dest) == md5:
            return dest
        dest.unlink()  # stale or corrupted: replace it
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name) as progress:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {digest.hexdigest()}; "
                "the download was deleted"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _safe_extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract a zip archive into ``dest``, refusing the whole archive if any member is an
    absolute path or would resolve outside ``dest`` (``../`` tricks). Nothing is written then."""
    dest = Path(dest).resolve()
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
                raise ValueError(f"refusing {zip_path}: member {name!r} is an absolute path")
            if not (dest / name).resolve().is_relative_to(dest):
                raise ValueError(f"refusing {zip_path}: member {name!r} would land outside {dest}")
        archive.extractall(dest)


def _download_tiny_imagenet(root: Path) -> None:
    archive = root / "tiny-imagenet-200.zip"
    _download_verified(TINY_IMAGENET_URL, archive, TINY_IMAGENET_MD5)
    # Extract into a scratch folder and rename at the end, so an interrupted extraction never
    # leaves a half-filled tiny-imagenet-200/ that would later look complete.
    scratch = Path(tempfile.mkdtemp(prefix=".tiny-imagenet-", dir=root))
    try:
        _safe_extract_zip(archive, scratch)
        os.replace(scratch / "tiny-imagenet-200", root / "tiny-imagenet-200")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    archive.unlink()




def _download_mnist(root: Path) -> None:
    """torchvision's MNIST files (md5-checked .gz, extracted beside them), if any is missing."""
    raw = root / "MNIST" / "raw"
    if all((root / name).is_file() for pair in _MNIST_FILES.values() for name in pair):
        return
    for filename, md5 in tvd.MNIST.resources:
        errors = []
        for mirror in tvd.MNIST.mirrors:  # the same fallbacks as torchvision's MNIST.download
            try:
                tv_utils.download_and_extract_archive(f"{mirror}{filename}", download_root=raw,
                                                      filename=filename, md5=md5)
                break
            except (OSError, RuntimeError) as err:
                errors.append(f"{mirror}: {err}")
        else:
            raise RuntimeError(f"could not download {filename}:\n" + "\n".join(errors))


def _download_svhn(root: Path) -> None:
    for url, filename, md5 in (tvd.SVHN.split_list[part] for part in ("train", "test")):
        # download_url skips a file with the right md5 and replaces any other
        tv_utils.download_url(url, root / "svhn", filename, md5)


def _download_cifar(root: Path, cls: type) -> None:
    files = cls.train_list + cls.test_list
    folder = root / cls.base_folder
    if all(tv_utils.check_integrity(str(folder / name), md5) for name, md5 in files):
        return
    tv_utils.download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)


def _download(dataset: str, root: Path) -> None:
    """Fetch ``dataset``'s files into ``root`` unless they are already there (TinyImageNet is
    fetched by its loader, which knows the folder)."""
    if dataset == "mnist":
        _download_mnist(root)
    elif dataset == "svhn":
        _download_svhn(root)
    elif dataset in ("cifar10", "cifar+10", "cifar+50"):
        _download_cifar(root, tvd.CIFAR10)
        if dataset != "cifar10":
            _download_cifar(root, tvd.CIFAR100)


# --------------------------------------------------------------------------------------------------
# Missing files

_CIFAR10_FILES = [f"cifar-10-batches-py/{name}"
                  for name, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
_CIFAR100_FILES = [f"cifar-100-python/{name}" for name, _ in tvd.CIFAR100.test_list]
_REQUIRED_FILES = {
    "mnist": [name for pair in _MNIST_FILES.values() for name in pair],
    "svhn": [f"svhn/{tvd.SVHN.split_list[part][1]}" for part in ("train", "test")],
    "cifar10": _CIFAR10_FILES,
    "cifar+10": _CIFAR10_FILES + _CIFAR100_FILES,
    "cifar+50": _CIFAR10_FILES + _CIFAR100_FILES,
    "tiny_imagenet": ["tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/train/",
                      "tiny-imagenet-200/val/"],
}
_TINY_LAYOUT = """\
      tiny-imagenet-200/wnids.txt
      tiny-imagenet-200/train/<wnid>/images/*.JPEG   (one folder per class, 200)
      tiny-imagenet-200/val/images/*.JPEG and tiny-imagenet-200/val/val_annotations.txt
    or, with val/ sorted into classes (ARPL's / Vaze et al.'s scripts):
      tiny-imagenet-200/val/<wnid>/images/*.JPEG   (or val/<wnid>/*.JPEG)"""


def _require_files(dataset: str, root: Path) -> None:
    required = _REQUIRED_FILES[dataset]
    missing = [name for name in required if not (root / name).exists()]
    if not missing:
        return
    if dataset == "tiny_imagenet":
        listing = _TINY_LAYOUT
    else:
        listing = "\n".join(f"      {name}" for name in required)
    raise FileNotFoundError(
        f"dataset {dataset!r} not found under {root} (missing: {', '.join(missing)}).\n"
        "Get it in one of three ways:\n"
        f"  1. load_osr({dataset!r}, ..., download=True), or the command line flag --download,\n"
        "     downloads it there, checksum-verified;\n"
        f"  2. set {runtime.DATA_ENV} (or pass root=... / --data-dir) to a folder that already "
        "holds it;\n"
        f"  3. place the files yourself, under {root}:\n{listing}"
    )


# --------------------------------------------------------------------------------------------------
# Out-of-distribution sets (Protocol B)

ODIN_URL = "https://github.com/facebookresearch/odin"
OOD_SETS: dict[str, str | None] = {
    "imagenet_crop": "Imagenet",
    "imagenet_resize": "Imagenet_resize",
    "lsun_crop": "LSUN",
    "lsun_resize": "LSUN_resize",
    "photo_crop": None,
    "photo_resize": None,
}
"""Every out-of-distribution set ``load_osr(..., ood=...)`` knows -> the folder it is
distributed in under ``root`` (``None``: generated offline, no files)."""

OOD_DATASET: dict[str, str] = {
    "imagenet_crop": "cifar10", "imagenet_resize": "cifar10",
    "lsun_crop": "cifar10", "lsun_resize": "cifar10",
    "photo_crop": "digits", "photo_resize": "digits",
}
"""The dataset whose classes are all known when an OOD set is its unknowns."""

# ODIN's release (Liang et al. 2018): one .tar.gz per set, 10,000 32x32 JPEGs each, holding
# one folder of images inside the set's folder (e.g. LSUN/test/*.jpg).
OOD_URLS: dict[str, str] = {
    "imagenet_crop": "https://www.dropbox.com/s/avgm2u562itwpkl/Imagenet.tar.gz",
    "imagenet_resize": "https://www.dropbox.com/s/kp3my3412u5k9rl/Imagenet_resize.tar.gz",
    "lsun_crop": "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz",
    "lsun_resize": "https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz",
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PHOTO_SIZE = {"photo_crop": 8, "photo_resize": 64}
"""Side in pixels of the photo windows each offline set cuts before it shrinks them to 8x8."""
PHOTO_COUNT = 540
"""Images per offline OOD set: as many as digits' test knowns (30% of 1,797)."""


def ood_sets(dataset: str) -> list[str]:
    """The OOD set names that go with ``dataset`` (every class known); [] if none."""
    _check_dataset(dataset)
    return [name for name, pair in OOD_DATASET.items() if pair == dataset]


def _check_ood(dataset: str, ood: str) -> None:
    valid = ood_sets(dataset)
    if ood not in valid:
        for_ = (f"valid for {dataset}: {', '.join(valid)}" if valid
                else f"{dataset} has none; OOD sets go with "
                     + ", ".join(sorted(set(OOD_DATASET.values()))))
        raise ValueError(f"unknown OOD set {ood!r} for dataset {dataset!r}; {for_} "
                         f"(all: {', '.join(OOD_SETS)})")


def _photo_windows(name: str, seed: int, count: int = PHOTO_COUNT) -> TensorSet:
    """``count`` digits-like 8x8 images cut from scikit-learn's two bundled photos.

    Each image is a random ``PHOTO_SIZE[name]``-pixel square window of a photo (photo, position
    drawn from ``seed``), made gray (ITU-R 601 luma), shrunk to 8x8 by averaging 8x8 blocks
    (photo_resize) or kept as it is (photo_crop), then rounded to digits' 17 gray levels
    0..16 and divided by 16, as ``load_osr`` scales the digits: float32 ``(count, 1, 8, 8)`` in
    [0, 1], labelled -1.
    """
    from sklearn.datasets import load_sample_images  # two JPEGs shipped with scikit-learn

    photos = [np.asarray(p, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
              for p in load_sample_images().images]
    side = PHOTO_SIZE[name]
    rng = np.random.default_rng([seed, list(OOD_SETS).index(name)])
    images = np.empty((count, 8, 8))
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - side + 1)
        left = rng.integers(photo.shape[1] - side + 1)
        window = photo[top:top + side, left:left + side]
        block = side // 8
        images[i] = window.reshape(8, block, 8, block).mean(axis=(1, 3))
    levels = np.round(images / 255.0 * 16.0)  # digits' pixels are counts 0..16
    return TensorSet(torch.as_tensor(levels / 16.0, dtype=torch.float32)[:, None],
                     torch.full((count,), -1, dtype=torch.int64))


def _ood_missing(name: str, root: Path, problem: str) -> FileNotFoundError:
    folder = OOD_SETS[name]
    return FileNotFoundError(
        f"OOD set {name!r} not found: {problem}.\n"
        f"It is ODIN's {folder}.tar.gz (Liang et al. 2018; links in {ODIN_URL}'s README):\n"
        f"  wget {OOD_URLS[name]}\n"
        f"  tar -xzf {folder}.tar.gz -C {root}\n"
        f"which leaves {root / folder}/<one folder>/*.jpg (read like torchvision's ImageFolder). "
        f"Or set {runtime.DATA_ENV} (or root=... / --data-dir) to a folder that holds {folder}/."
    )


def _load_odin(name: str, root: Path, size: int) -> TensorSet:
    """An ODIN OOD set as uint8 RGB images ``(N, 3, size, size)`` labelled -1: every image in
    the subfolders of ``root/<folder>`` (sorted by path, as ImageFolder reads them)."""
    folder = root / OOD_SETS[name]
    if not folder.is_dir():
        raise _ood_missing(name, root, f"no folder {folder}")
    paths = sorted(p for sub in folder.iterdir() if sub.is_dir() for p in sub.rglob("*")
                   if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise _ood_missing(name, root, f"{folder} holds no subfolder of images "
                                       f"({', '.join(_IMAGE_SUFFIXES)})")
    images = _decode_images(paths, size, f"{name} (OOD)",
                            f"extract {Path(OOD_URLS[name]).name} from {OOD_URLS[name]} again")
    return TensorSet(images, torch.full((len(paths),), -1, dtype=torch.int64))


def load_ood(name: str, dataset: str, *, root: str | os.PathLike | None = None, seed: int = 0,
             image_size: int | None = None) -> TensorSet:
    """The OOD set ``name`` as ``dataset``'s inputs (all labelled -1), in full.

    ``photo_crop`` / ``photo_resize`` (with ``digits``): float32 ``(540, 1, 8, 8)`` in [0, 1],
    drawn from ``seed``. ODIN's sets (with ``cifar10``): uint8 RGB ``(N, 3, S, S)``, ``S`` =
    ``image_size`` (default 32, the files' own size). ``ValueError`` for a name that does not go
    with ``dataset``; ``FileNotFoundError`` with download instructions for a missing folder.
    """
    _check_ood(dataset, name)
    if OOD_SETS[name] is None:
        return _photo_windows(name, seed)
    root = Path(root).expanduser() if root is not None else runtime.data_dir()
    return _load_odin(name, root, int(image_size) if image_size is not None else 32)


# --------------------------------------------------------------------------------------------------
# Validation split


def _check_fraction(val_fraction: float) -> float:
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating))
            or not 0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def split_validation(train: TensorSet, val_fraction: float, seed: int
                     ) -> tuple[TensorSet, TensorSet | None]:
    """Hold out ``val_fraction`` of each class of ``train``: ``(rest, val)``.

    Stratified and seeded: class ``c`` with ``n_c`` samples gives ``floor(val_fraction * n_c +
    1/2)`` of them (drawn with ``seed``) to ``val``; both parts keep ``train``'s order. ``val`` is
    ``None`` for ``val_fraction = 0``. ``ValueError`` if that leaves a class without training
    samples or the hold-out is empty.
    """
    val_fraction = _check_fraction(val_fraction)
    if val_fraction == 0.0:
        return train, None
    rng = np.random.default_rng([seed, 7919])  # its own stream, apart from the data's draws
    targets = train.targets.cpu().numpy()
    held = np.zeros(len(targets), dtype=bool)
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        n_val = math.floor(val_fraction * len(members) + 0.5)
        if n_val >= len(members):
            raise ValueError(f"val_fraction={val_fraction} holds out all {len(members)} training "
                             f"samples of class {c}; choose a smaller fraction")
        held[rng.choice(members, size=n_val, replace=False)] = True
    if not held.any():
        raise ValueError(f"val_fraction={val_fraction} holds out no sample (the smallest class "
                         "has too few); choose a larger fraction or 0")
    mask = torch.from_numpy(held)
    return train.subset(~mask), train.subset(mask)


# --------------------------------------------------------------------------------------------------
# The entry point

_INPUT_SHAPE = {"toy2d": (2,), "digits": (1, 8, 8)}  # the other datasets: (3, S, S) images
_NATIVE_SIZE = {"tiny_imagenet": 64}  # the protocol's image size; 32 for the others


def load_osr(
    dataset: str,
    split: int = 0,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    verify: bool | None = None,
    image_size: int | None = None,
    n_per_class: int = 200,
    n_test_per_class: int = 100,
    known: Sequence[int] | None = None,
    test_limit: int | None = None,
    ood: str | None = None,
    val_fraction: float = 0.0,
) -> OSRData:
    """Load split ``split`` (0..4) of ``dataset`` as an open-set problem, held in memory.

    ``dataset`` is one of ``DATASETS``. Labels: ``train`` / ``test_known`` samples are labelled
    ``0..K-1`` in split-list order, ``test_unknown`` samples ``-1``. Every set is a ``TensorSet``:
    float32 inputs for toy2d ``(2,)`` and digits ``(1, 8, 8)``; uint8 images ``(3, S, S)`` for the
    others, read as float32 in ``[0, 1]``. ``input_shape`` is the shape of one ``x``.

    ``image_size`` (``S``): ``None`` keeps the protocol's size, 32 for MNIST (resized from 28),
    SVHN and CIFAR, 64 for TinyImageNet; an int resizes any image dataset once, at load
    (bilinear, antialiased). Ignored for toy2d and digits.

    ``root`` is the data folder (default ``runtime.data_dir()``); ``download=True`` fetches a
    missing dataset there (never otherwise). ``verify=False`` skips the md5 check of existing
    SVHN / CIFAR files and nothing else (see the module docstring); ``None`` (the default) means
    ``runtime.verify_data()``: True unless ``COMPANION_VERIFY=0`` (CI's runs on fabricated files). ``seed`` draws toy2d and the
    digits train/test split; the other datasets have fixed train/test sets. ``n_per_class`` and
    ``n_test_per_class`` size toy2d.

    ``known``: class ids to use as the known classes (label ``k`` is ``known[k]``) instead of a
    standard split, every other class of the dataset being unknown; ``split`` is then ignored
    and recorded as ``-1``. For experiments that vary the number of known classes; not
    available for CIFAR+N, whose unknowns come from another dataset.

    ``ood`` (Protocol B): the name of an out-of-distribution set of ``OOD_SETS`` that goes with
    ``dataset`` (``ood_sets(dataset)``: ODIN's ``imagenet_crop``, ``imagenet_resize``,
    ``lsun_crop``, ``lsun_resize`` with ``cifar10``; the offline ``photo_crop``,
    ``photo_resize`` with ``digits``). Every class of the dataset is then known (labels = class
    ids), ``test_known`` is the dataset's whole test set and ``test_unknown`` the OOD set, at
    the dataset's input shape. ``split`` must stay 0 and ``known`` unset. See ``load_ood``.

    ``val_fraction`` (in [0, 1)): a stratified hold-out of that fraction of the known training
    samples, drawn with ``seed``, removed from ``train`` and returned as ``val``
    (``split_validation``); 0 (the default) gives ``val = None``. Any protocol.

    ``test_limit`` (default ``COMPANION_TEST_LIMIT``, else none) keeps that many evenly spaced
    samples of the test knowns and of the test unknowns (or OOD set).

    Raises ``FileNotFoundError`` (with instructions) when the files are missing, ``ValueError``
    naming the file when one is corrupted, truncated or (with ``verify``) not the official one,
    and ``pickle.UnpicklingError`` for a CIFAR file that asks to build anything but arrays.
    """
    val_fraction = _check_fraction(val_fraction)
    if ood is not None:
        _check_dataset(dataset)
        _check_ood(dataset, ood)
        if known is not None or split != 0:
            raise ValueError(f"with ood={ood!r} every class of {dataset} is known: leave split "
                             f"at 0 and known unset (got split={split!r}, known={known!r})")
        known, unknown = list(range(_NUM_CLASSES.get(dataset, 10))), []
    elif known is None:
        known, unknown = known_unknown(dataset, split)
    else:
        known, unknown = _custom_known(dataset, known)
        split = -1
    if image_size is not None:
        _check_positive_int("image_size", image_size)
    from_environment = test_limit is None and runtime.test_limit() is not None
    test_limit = runtime.test_limit() if test_limit is None else test_limit
    if test_limit is not None:
        _check_positive_int("test_limit", test_limit)
    _check_positive_int("n_per_class", n_per_class)
    _check_positive_int("n_test_per_class", n_test_per_class)
    size = int(image_size) if image_size is not None else _NATIVE_SIZE.get(dataset, 32)
    root = Path(root).expanduser() if root is not None else runtime.data_dir()
    if ood is not None and OOD_SETS[ood] is not None and not (root / OOD_SETS[ood]).is_dir():
        # before downloading or decoding the dataset; --download does not fetch OOD sets
        raise _ood_missing(ood, root, f"no folder {root / OOD_SETS[ood]}")
    if dataset in _REQUIRED_FILES:
        if download:
            _download(dataset, root)
        else:
            _require_files(dataset, root)
    verify = (runtime.verify_data() if verify is None else verify) or download  # downloads: always

    if dataset == "toy2d":
        train, test = _load_toy2d(seed, n_per_class, n_test_per_class)
    elif dataset == "digits":
        train, test = _load_digits(seed)
    elif dataset == "mnist":
        train, test = _load_mnist(root, size)
    elif dataset == "svhn":
        train, test = _load_svhn(root, size, verify)
    elif dataset == "tiny_imagenet":
        train, test = _load_tiny_imagenet(root, download, size, known)
    else:  # cifar10, cifar+10, cifar+50
        train, test = _load_cifar10(root, size, verify)

    test_known = _select(test, known)
    if ood is not None:
        test_unknown = load_ood(ood, dataset, root=root, seed=seed, image_size=size)
    else:
        unknown_pool = test
        if dataset in ("cifar+10", "cifar+50"):
            unknown_pool = _load_cifar100_test(root, size, verify)
        test_unknown = _select(unknown_pool, unknown, unknown=True)
    train, val = split_validation(_select(train, known), val_fraction, seed)
    if from_environment and max(len(test_known), len(test_unknown)) > test_limit:
        # a limit nobody passed would otherwise shrink a reported result without a trace
        warnings.warn(f"{runtime.TEST_LIMIT_ENV}={test_limit}: {dataset} keeps {test_limit} of "
                      f"{len(test_known)} test knowns and of {len(test_unknown)} unknowns; "
                      "numbers measured on them are not the benchmark's", stacklevel=2)
    return OSRData(
        name=dataset,
        split=int(split),
        train=train,
        test_known=_evenly(test_known, test_limit),
        test_unknown=_evenly(test_unknown, test_limit),
        known_classes=tuple(known),
        unknown_classes=tuple(unknown),
        input_shape=_INPUT_SHAPE.get(dataset, (3, size, size)),
        val=val,
        ood=ood,
    )
