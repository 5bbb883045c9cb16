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
``load_osr`` returns an ``OSRData`` with three sets: ``train`` and ``test_known`` hold only known
classes, labelled ``0..K-1``; ``test_unknown`` holds only unknown classes, every sample labelled
``-1``. Unknowns come from the test part, as in the standard protocol. Every set yields
``(x, y)`` with ``x`` a float32 tensor and ``y`` an int64 scalar tensor, and has a ``targets``
attribute (the labels of all samples, without reading any image).

- ``toy2d``: ten Gaussian clusters on a ring inside the paper's bounded input space ``[-1, 1]^2``;
  ``x`` has shape ``(2,)``. Offline.
- ``digits``: scikit-learn's bundled 8x8 digits, ``x`` of shape ``(1, 8, 8)`` in ``[0, 1]``; a
  seeded, stratified 70/30 train/test split. Offline.
- ``mnist``, ``svhn``, ``cifar10``, ``cifar+10``, ``cifar+50``, ``tiny_imagenet``: ``x`` of shape
  ``(3, 32, 32)`` in ``[0, 1]``, no augmentation (training adds it). MNIST is resized to 32x32 and
  its gray channel repeated three times, so one 32x32 RGB backbone serves every benchmark (ARPL and
  Vaze et al. feed MNIST to the same 32x32 networks). TinyImageNet is resized from 64 to
  ``image_size`` (32 by default; 64 keeps the native size).

On disk (under ``root``, default ``runtime.data_dir()``), torchvision's own formats:

- ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
- ``svhn/{train,test}_32x32.mat`` (a ``svhn/`` subfolder, so SVHN's files do not litter ``root``)
- ``cifar-10-batches-py/`` and, for CIFAR+N, ``cifar-100-python/`` (the python pickles)
- ``tiny-imagenet-200/`` as distributed: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
  ``val/images/*.JPEG`` and ``val/val_annotations.txt``. Class ids are positions in the sorted list
  of the ``train/`` folder names. The validation images stay where they are: their classes are
  read from ``val_annotations.txt``, nothing is moved or copied.

Nothing is downloaded unless ``download=True``; then torchvision's downloaders fetch and md5-check
MNIST, SVHN and CIFAR, and ``tiny-imagenet-200.zip`` is md5-checked, extracted with
path-traversal protection, then deleted. Without the files, ``load_osr`` raises
``FileNotFoundError`` saying how to get them.

Integrity: torchvision checks the md5 of the SVHN and CIFAR files each time it opens them, which
rejects anything but the official release. ``verify=True`` (the default) keeps that check;
``verify=False`` checks only that the files exist, through small subclasses that drop the
checksums. It is meant for files you made or trust (the tests fabricate tiny datasets in these
formats) and never applies to a download: with ``download=True`` the checks always run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PureWindowsPath
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets as tvd
from torchvision import transforms as T
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
# Datasets: a common shape for every source, then class filtering and relabelling


@dataclass(frozen=True)
class OSRData:
    """One open-set problem: a dataset name and split, and its three sets.

    ``train`` and ``test_known`` hold known classes only, labelled ``0..K-1`` in the order of
    ``known_classes``; ``test_unknown`` holds unknown classes only, labelled ``-1``. Class ids in
    ``known_classes`` / ``unknown_classes`` are those of the source dataset (CIFAR-100 ids for the
    unknowns of CIFAR+N). ``input_shape`` is the shape of one ``x``.
    """

    name: str
    split: int
    train: Dataset
    test_known: Dataset
    test_unknown: Dataset
    known_classes: tuple[int, ...]
    unknown_classes: tuple[int, ...]
    input_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of known classes."""
        return len(self.known_classes)


class _Source(NamedTuple):
    """A dataset yielding ``(x, original class)`` and its classes as an array (no image reads)."""

    dataset: Dataset
    targets: np.ndarray


class _Remapped(Dataset):
    """Samples ``indices`` of ``base``, each with a new label from ``targets``."""

    def __init__(self, base: Dataset, indices: np.ndarray, targets: np.ndarray) -> None:
        self.base = base
        self.indices = indices
        self.targets = torch.as_tensor(targets, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.base[int(self.indices[i])]
        return x, self.targets[i]


def _select(source: _Source, classes: Sequence[int], *, unknown: bool = False) -> _Remapped:
    """The samples of ``source`` whose class is in ``classes``, labelled by position in
    ``classes`` (or ``-1`` for every sample when ``unknown``)."""
    indices = np.flatnonzero(np.isin(source.targets, classes))
    new_label = np.full(max(classes) + 1, -1, dtype=np.int64)
    if not unknown:
        new_label[list(classes)] = np.arange(len(classes))
    return _Remapped(source.dataset, indices, new_label[source.targets[indices]])


def _tensor_source(x: np.ndarray, y: np.ndarray) -> _Source:
    y = np.asarray(y, dtype=np.int64)
    return _Source(TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.from_numpy(y)), y)


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a small dataset into ``(X, y)``: ``X`` of shape ``(N, *input_shape)``, ``y`` of
    shape ``(N,)``, int64. It reads every sample: meant for toy2d, digits, a few thousand images.
    """
    if len(dataset) == 0:
        raise ValueError("cannot stack an empty dataset")
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack([torch.as_tensor(y, dtype=torch.int64) for y in ys])


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


def _toy2d_sample(rng: np.random.Generator, n_per_class: int) -> _Source:
    y = np.repeat(np.arange(10), n_per_class)
    return _tensor_source(TOY2D_CENTRES[y] + _toy2d_offsets(rng, len(y)), y)


def _load_toy2d(seed: int, n_per_class: int, n_test_per_class: int) -> tuple[_Source, _Source]:
    # All ten classes are drawn for both parts, so a seed gives the same points for every split.
    rng = np.random.default_rng(seed)
    return _toy2d_sample(rng, n_per_class), _toy2d_sample(rng, n_test_per_class)


# --------------------------------------------------------------------------------------------------
# digits


def _load_digits(seed: int) -> tuple[_Source, _Source]:
    # Imported here: only this dataset needs scikit-learn, which takes about a second to import.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # pixel values are counts 0..16
    y = digits.target
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    return _tensor_source(x[train], y[train]), _tensor_source(x[test], y[test])


# --------------------------------------------------------------------------------------------------
# torchvision datasets


class _CIFAR10Unverified(tvd.CIFAR10):
    """CIFAR-10 that checks only that its files exist (``verify=False``)."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100Unverified(tvd.CIFAR100):
    """CIFAR-100 that checks only that its files exist (``verify=False``)."""

    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _SVHNUnverified(tvd.SVHN):
    """SVHN that checks only that its files exist (``verify=False``)."""

    split_list = {split: [url, name, None] for split, (url, name, _) in tvd.SVHN.split_list.items()}


def _open(cls: type, name: str, root: Path, **kwargs) -> _Source:
    """Instantiate a torchvision dataset, turning its terse errors into actionable ones."""
    try:
        data = cls(root, **kwargs)
    except RuntimeError as err:
        raise RuntimeError(
            f"torchvision could not load {name} from {root}: {err}\nIf the files are corrupted or "
            "from another release, delete them and call load_osr(..., download=True); "
            "verify=False skips the md5 check for files you trust."
        ) from err
    targets = data.labels if isinstance(data, tvd.SVHN) else data.targets
    return _Source(data, np.asarray(targets, dtype=np.int64))


def _load_mnist(root: Path, download: bool) -> tuple[_Source, _Source]:
    tf = T.Compose([T.Resize(32), T.Grayscale(num_output_channels=3), T.ToTensor()])
    # torchvision checks only that the uncompressed MNIST files exist: there is no md5 to skip.
    train = _open(tvd.MNIST, "mnist", root, train=True, transform=tf, download=download)
    test = _open(tvd.MNIST, "mnist", root, train=False, transform=tf, download=download)
    return train, test


def _load_svhn(root: Path, download: bool, verify: bool) -> tuple[_Source, _Source]:
    cls = tvd.SVHN if verify else _SVHNUnverified
    root = root / "svhn"  # torchvision keeps SVHN's files at the top of root; we give them a folder
    train = _open(cls, "svhn", root, split="train", transform=T.ToTensor(), download=download)
    test = _open(cls, "svhn", root, split="test", transform=T.ToTensor(), download=download)
    return train, test


def _load_cifar10(name: str, root: Path, download: bool, verify: bool) -> tuple[_Source, _Source]:
    cls = tvd.CIFAR10 if verify else _CIFAR10Unverified
    train = _open(cls, name, root, train=True, transform=T.ToTensor(), download=download)
    test = _open(cls, name, root, train=False, transform=T.ToTensor(), download=download)
    return train, test


def _load_cifar100_test(name: str, root: Path, download: bool, verify: bool) -> _Source:
    cls = tvd.CIFAR100 if verify else _CIFAR100Unverified
    return _open(cls, name, root, train=False, transform=T.ToTensor(), download=download)


# --------------------------------------------------------------------------------------------------
# TinyImageNet

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


class _ImageFiles(Dataset):
    """Images read from files, as RGB, then ``transform``; yields ``(x, class)``."""

    def __init__(self, paths: Sequence[Path], targets: np.ndarray, transform) -> None:
        self.paths = list(paths)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # A few TinyImageNet images are grayscale; convert so every x has three channels.
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), int(self.targets[i])


def _image_source(files: list[tuple[Path, int]], transform) -> _Source:
    paths = [path for path, _ in files]
    targets = np.array([label for _, label in files], dtype=np.int64)
    return _Source(_ImageFiles(paths, targets, transform), targets)


def _load_tiny_imagenet(root: Path, download: bool, image_size: int) -> tuple[_Source, _Source]:
    folder = root / "tiny-imagenet-200"
    if download and not folder.exists():
        _download_tiny_imagenet(root)
    wnids = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    listed = set((folder / "wnids.txt").read_text().split())
    if len(wnids) != 200 or set(wnids) != listed:
        raise ValueError(
            f"{folder / 'train'} should hold one folder per WordNet id of wnids.txt (200); "
            f"found {len(wnids)} folders, {len(set(wnids) ^ listed)} ids in only one of the two"
        )
    class_id = {wnid: i for i, wnid in enumerate(wnids)}

    train = [
        (path, class_id[wnid])
        for wnid in wnids
        for path in sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
    ]
    test = []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        filename, wnid = line.split("\t")[:2]
        if wnid not in class_id:
            raise ValueError(f"val_annotations.txt names {wnid!r}, which has no train folder")
        test.append((folder / "val" / "images" / filename, class_id[wnid]))

    tf = T.Compose([T.Resize((image_size, image_size)), T.ToTensor()])
    return _image_source(train, tf), _image_source(test, tf)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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


# --------------------------------------------------------------------------------------------------
# Missing files

_CIFAR10_FILES = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + [
    "cifar-10-batches-py/test_batch",
    "cifar-10-batches-py/batches.meta",
]
# torchvision opens CIFAR-100's train file even when only the test set is wanted.
_CIFAR100_FILES = [f"cifar-100-python/{name}" for name in ("train", "test", "meta")]
_EXPECTED_FILES = {
    "mnist": [
        f"MNIST/raw/{part}-{kind}-ubyte"
        for part in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    ],
    "svhn": ["svhn/train_32x32.mat", "svhn/test_32x32.mat"],
    "cifar10": _CIFAR10_FILES,
    "cifar+10": _CIFAR10_FILES + _CIFAR100_FILES,
    "cifar+50": _CIFAR10_FILES + _CIFAR100_FILES,
    "tiny_imagenet": [
        "tiny-imagenet-200/wnids.txt",
        "tiny-imagenet-200/train/",  # then <wnid>/images/*.JPEG, one folder per class
        "tiny-imagenet-200/val/images/",
        "tiny-imagenet-200/val/val_annotations.txt",
    ],
}


def _require_files(dataset: str, root: Path) -> None:
    expected = _EXPECTED_FILES[dataset]
    missing = [name for name in expected if not (root / name).exists()]
    if not missing:
        return
    listing = "\n".join(f"      {name}" for name in expected)
    if dataset == "tiny_imagenet":
        listing += "\n    (train/<wnid>/images/*.JPEG for the 200 classes, as in the official zip)"
    raise FileNotFoundError(
        f"dataset {dataset!r} not found under {root} (missing: {', '.join(missing)}).\n"
        "Get it in one of three ways:\n"
        f"  1. load_osr({dataset!r}, ..., download=True) downloads it there, checksum-verified;\n"
        f"  2. set {runtime.DATA_ENV} (or pass root=...) to a folder that already holds it;\n"
        f"  3. place the files yourself, under {root}:\n{listing}"
    )


# --------------------------------------------------------------------------------------------------
# The entry point

_INPUT_SHAPE = {"toy2d": (2,), "digits": (1, 8, 8)}  # every image dataset: (3, 32, 32) by default


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def load_osr(
    dataset: str,
    split: int = 0,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    verify: bool = True,
    image_size: int = 32,
    n_per_class: int = 200,
    n_test_per_class: int = 100,
    known: Sequence[int] | None = None,
) -> OSRData:
    """Load split ``split`` (0..4) of ``dataset`` as an open-set problem.

    ``dataset`` is one of ``DATASETS``. Labels: ``train`` / ``test_known`` samples are labelled
    ``0..K-1`` in split-list order, ``test_unknown`` samples ``-1``; ``x`` is float32 with shape
    ``input_shape``: ``(2,)`` for toy2d, ``(1, 8, 8)`` for digits, ``(3, 32, 32)`` otherwise (or
    ``(3, image_size, image_size)`` for tiny_imagenet), image values in ``[0, 1]``.

    ``root`` is the data folder (default ``runtime.data_dir()``); ``download=True`` fetches a
    missing dataset there (never otherwise). ``verify=False`` skips torchvision's md5 check of
    existing SVHN / CIFAR files (see the module docstring). ``seed`` draws toy2d and the digits
    train/test split; the other datasets have fixed train/test sets. ``n_per_class`` and
    ``n_test_per_class`` size toy2d; ``image_size`` applies to tiny_imagenet.

    ``known``: class ids to use as the known classes (label ``k`` is ``known[k]``) instead of a
    standard split, every other class of the dataset being unknown; ``split`` is then ignored
    and recorded as ``-1``. For experiments that vary the number of known classes; not
    available for CIFAR+N, whose unknowns come from another dataset.
    """
    if known is None:
        known, unknown = known_unknown(dataset, split)
    else:
        known, unknown = _custom_known(dataset, known)
        split = -1
    _check_positive_int("image_size", image_size)
    _check_positive_int("n_per_class", n_per_class)
    _check_positive_int("n_test_per_class", n_test_per_class)
    root = Path(root).expanduser() if root is not None else runtime.data_dir()
    if dataset in _EXPECTED_FILES and not download:
        _require_files(dataset, root)
    verify = verify or download  # downloads are always checked

    if dataset == "toy2d":
        train, test = _load_toy2d(seed, n_per_class, n_test_per_class)
    elif dataset == "digits":
        train, test = _load_digits(seed)
    elif dataset == "mnist":
        train, test = _load_mnist(root, download)
    elif dataset == "svhn":
        train, test = _load_svhn(root, download, verify)
    elif dataset == "tiny_imagenet":
        train, test = _load_tiny_imagenet(root, download, image_size)
    else:  # cifar10, cifar+10, cifar+50
        train, test = _load_cifar10(dataset, root, download, verify)

    unknown_pool = test
    if dataset in ("cifar+10", "cifar+50"):
        unknown_pool = _load_cifar100_test(dataset, root, download, verify)

    if dataset == "tiny_imagenet":
        input_shape = (3, image_size, image_size)
    else:
        input_shape = _INPUT_SHAPE.get(dataset, (3, 32, 32))
    return OSRData(
        name=dataset,
        split=int(split),
        train=_select(train, known),
        test_known=_select(test, known),
        test_unknown=_select(unknown_pool, unknown, unknown=True),
        known_classes=tuple(known),
        unknown_classes=tuple(unknown),
        input_shape=input_shape,
    )
