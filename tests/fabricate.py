"""Tiny copies of the real datasets, in their on-disk formats, for tests and CI.

Every image is one flat colour that encodes its class and whether it comes from the train or the
test part, so a test can check which image landed in which set (``decode``, ``tiny_decode``).

    python tests/fabricate.py DIR [--per-class N]

writes MNIST, SVHN, CIFAR-10, CIFAR-100 (all 100 classes), TinyImageNet (200 WordNet ids) and
ODIN's four OOD folders (Protocol B) under ``DIR``, laid out as
``companion.data.load_osr(root=DIR)`` expects. The CIFAR pickles are written like the official
ones (protocol 2, numpy arrays), but their md5s differ from the official files: load them with
``verify=False``.
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

# --------------------------------------------------------------------------------------------------
# Colour coding


def flat_value(cls: int, is_test: bool) -> int:
    """The grey level of a fabricated MNIST / SVHN / CIFAR image: class and part (0..255)."""
    return 10 + 2 * cls + int(is_test)


def decode(x: torch.Tensor) -> tuple[int, int]:
    """``(class, is_test)`` back from an image made by ``flat_value`` (float32 in [0, 1]), after
    checking that it is flat."""
    assert torch.all(x == x.flatten()[0]), "a fabricated image should be one flat colour"
    v = round(float(x.flatten()[0]) * 255) - 10
    return v // 2, v % 2


def tiny_colour(cls: int, is_test: bool) -> tuple[int, int, int]:
    """The RGB colour of a fabricated TinyImageNet image; steps of 16 per channel survive JPEG."""
    return 8 + 16 * (cls // 16), 8 + 16 * (cls % 16), 8 + 16 * int(is_test)


def tiny_decode(x: torch.Tensor) -> tuple[int, int]:
    """``(class, is_test)`` back from a TinyImageNet image made with ``tiny_colour``."""
    r, g, b = (round((float(x[c].mean()) * 255 - 8) / 16) for c in range(3))
    return 16 * r + g, b


def labels_per_part(num_classes: int, per_class: int) -> np.ndarray:
    """``per_class`` labels of each class, grouped: 0, 0, 1, 1, ..."""
    return np.repeat(np.arange(num_classes), per_class)


def flat_images(labels: np.ndarray, is_test: bool, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images (N, *shape), each filled with ``flat_value`` of its label."""
    values = np.array([flat_value(c, is_test) for c in labels], dtype=np.uint8)
    return np.broadcast_to(values.reshape(-1, *[1] * len(shape)), (len(labels), *shape)).copy()


# --------------------------------------------------------------------------------------------------
# How many images


@dataclass(frozen=True)
class Counts:
    """Images per class that ``fabricate_all`` writes."""

    train: int  # MNIST, SVHN, CIFAR-10 train
    test: int  # MNIST, SVHN, CIFAR-10 and CIFAR-100 test
    cifar100_train: int
    tiny_train: int
    tiny_val: int


def counts_for(per_class: int) -> Counts:
    """The counts ``fabricate_all(root, per_class)`` uses.

    With the default 8: 6 known classes x 8 = 48 train images for MNIST / SVHN / CIFAR-10, 4 x 8 =
    32 for CIFAR+N, 20 x 2 = 40 for TinyImageNet; 4 test images per class (2 for TinyImageNet).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    return Counts(train=per_class, test=max(2, per_class // 2), cifar100_train=1,
                  tiny_train=max(1, per_class // 4), tiny_val=max(1, per_class // 4))


# --------------------------------------------------------------------------------------------------
# Writers, one per format


def write_mnist(root: Path, n_train: int = 8, n_test: int = 4) -> None:
    """``MNIST/raw/*-ubyte``: idx files of 28x28 gray images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for part, per_class, is_test in (("train", n_train, False), ("t10k", n_test, True)):
        labels = labels_per_part(10, per_class)
        images = flat_images(labels, is_test, (28, 28))
        # idx format: big-endian magic (0x08 = ubyte, then the number of dims), sizes, raw bytes
        (raw / f"{part}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, len(labels), 28, 28) + images.tobytes())
        (raw / f"{part}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes())


def write_svhn(root: Path, n_train: int = 8, n_test: int = 4) -> None:
    """``svhn/{train,test}_32x32.mat``: X of shape (32, 32, 3, N), digit 0 stored as 10."""
    (root / "svhn").mkdir(parents=True)
    for part, per_class, is_test in (("train", n_train, False), ("test", n_test, True)):
        labels = labels_per_part(10, per_class)
        images = flat_images(labels, is_test, (32, 32, 3))
        stored = np.where(labels == 0, 10, labels)
        scipy.io.savemat(root / "svhn" / f"{part}_32x32.mat", {
            "X": images.transpose(1, 2, 3, 0),  # (32, 32, 3, N)
            "y": stored.reshape(-1, 1).astype(np.uint8),
        })


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the official CIFAR files (protocol 2): byte strings as
    BINSTRING, which Python 3 writes as a call to ``_codecs.encode`` instead, and numpy's
    ``_reconstruct`` under its old module name ``numpy.core.multiarray``. The file then names the
    same globals as an official one, which is what the loader's restricted unpickler allows."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file) -> None:
        super().__init__(file, protocol=2)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def pickle_to(path: Path, obj: dict) -> None:
    """Pickle like the official CIFAR files (see ``Python2Pickler``)."""
    with open(path, "wb") as f:
        Python2Pickler(f).dump(obj)


def cifar_rows(labels: np.ndarray, is_test: bool) -> np.ndarray:
    """CIFAR's ``data``: one uint8 row of 3 * 32 * 32 values per image, channel-major."""
    return flat_images(labels, is_test, (3 * 32 * 32,))


def write_cifar10(root: Path, n_train: int = 8, n_test: int = 4) -> None:
    """``cifar-10-batches-py/``: five train batches sharing ``n_train`` images per class, a test
    batch and ``batches.meta``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(5):  # image i of a class goes to batch i % 5
        labels = labels_per_part(10, len(range(batch, n_train, 5)))
        pickle_to(folder / f"data_batch_{batch + 1}", {
            "batch_label": f"training batch {batch + 1} of 5",
            "data": cifar_rows(labels, False), "labels": labels.tolist()})
    labels = labels_per_part(10, n_test)
    pickle_to(folder / "test_batch", {"batch_label": "testing batch 1 of 1",
                                      "data": cifar_rows(labels, True), "labels": labels.tolist()})
    pickle_to(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})


def write_cifar100(root: Path, n_train: int = 1, n_test: int = 4) -> None:
    """``cifar-100-python/{train,test,meta}`` with all 100 fine classes."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for part, per_class, is_test in (("train", n_train, False), ("test", n_test, True)):
        labels = labels_per_part(100, per_class)
        pickle_to(folder / part, {
            "data": cifar_rows(labels, is_test),
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
        })
    pickle_to(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)]})


# 200 made-up WordNet ids, not in sorted order (like the real wnids.txt)
TINY_WNIDS = [f"n{n:08d}" for n in np.random.default_rng(0).choice(10**8, size=200, replace=False)]


def tiny_class_of() -> dict[str, int]:
    """WordNet id -> class id: the position in the sorted ids, as ``load_osr`` assigns them."""
    return {wnid: i for i, wnid in enumerate(sorted(TINY_WNIDS))}


def _jpeg(colour: tuple[int, int, int], size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_tiny_imagenet(root: Path, n_train: int = 2, n_val: int = 2) -> None:
    """``tiny-imagenet-200/`` in the official layout: wnids.txt, train/<wnid>/images/*.JPEG,
    val/images/*.JPEG with val/val_annotations.txt. Images are 64x64 flat-colour JPEGs."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    class_of = tiny_class_of()
    for wnid in TINY_WNIDS:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        jpeg = _jpeg(tiny_colour(class_of[wnid], False))  # encoded once per class: fast
        for i in range(n_train):
            (images / f"{wnid}_{i}.JPEG").write_bytes(jpeg)
    # val images in a shuffled class order: only the annotations say which class each one is
    order = np.random.default_rng(1).permutation(np.repeat(TINY_WNIDS, n_val))
    jpegs = {wnid: _jpeg(tiny_colour(class_of[wnid], True)) for wnid in TINY_WNIDS}
    lines = []
    for i, wnid in enumerate(order):
        (folder / "val" / "images" / f"val_{i}.JPEG").write_bytes(jpegs[wnid])
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def preorganise_tiny_imagenet_val(folder: Path, with_images_folder: bool = True) -> None:
    """Sort the official ``val/`` of ``folder`` (a tiny-imagenet-200/) into class folders, as
    ARPL's and Vaze et al.'s scripts do: ``val/<wnid>/images/*.JPEG`` (or ``val/<wnid>/*.JPEG``),
    then remove ``val/images/`` and ``val_annotations.txt``."""
    val = folder / "val"
    for line in (val / "val_annotations.txt").read_text().splitlines():
        if line.strip():
            filename, wnid = line.split("\t")[:2]
            target = val / wnid / "images" if with_images_folder else val / wnid
            target.mkdir(parents=True, exist_ok=True)
            (val / "images" / filename).rename(target / filename)
    shutil.rmtree(val / "images")
    (val / "val_annotations.txt").unlink()


# ODIN's OOD sets (Protocol B): folder -> the one subfolder of images its archive extracts to
ODIN_LAYOUT = {"Imagenet": "test", "Imagenet_resize": "Imagenet_resize", "LSUN": "test",
               "LSUN_resize": "LSUN_resize"}


def odin_colour(set_index: int, i: int) -> tuple[int, int, int]:
    """The RGB colour of fabricated OOD image ``i`` of ODIN set ``set_index`` (0..3 in
    ``ODIN_LAYOUT`` order); steps of 16 survive JPEG."""
    return 8 + 16 * set_index, 8 + 16 * (i % 16), 200


def write_odin(root: Path, n_images: int = 16) -> None:
    """ODIN's four OOD folders as their archives extract: ``Imagenet/test/*.jpg``,
    ``Imagenet_resize/Imagenet_resize/*.jpg``, ``LSUN/test/*.jpg``,
    ``LSUN_resize/LSUN_resize/*.jpg``; 32x32 flat-colour JPEGs (``odin_colour``)."""
    for set_index, (folder, sub) in enumerate(ODIN_LAYOUT.items()):
        images = root / folder / sub
        images.mkdir(parents=True)
        for i in range(n_images):
            (images / f"{i}.jpg").write_bytes(_jpeg(odin_colour(set_index, i), size=32))


def fabricate_all(root: Path, per_class: int = 8) -> None:
    """Write every real dataset under ``root`` (see ``counts_for`` for the sizes)."""
    root = Path(root)
    c = counts_for(per_class)
    write_mnist(root, c.train, c.test)
    write_svhn(root, c.train, c.test)
    write_cifar10(root, c.train, c.test)
    write_cifar100(root, c.cifar100_train, c.test)
    write_tiny_imagenet(root, c.tiny_train, c.tiny_val)
    write_odin(root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="where to write the datasets (load_osr's root)")
    parser.add_argument("--per-class", type=int, default=8,
                        help="train images per class for MNIST / SVHN / CIFAR-10 (default 8)")
    args = parser.parse_args(argv)
    marker = args.dir / ".fabricated"
    if marker.exists():  # a rerun (make gpu-dry-run twice) starts from an empty folder
        shutil.rmtree(args.dir)
    elif args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"{args.dir} is not empty and was not made by this script; "
                     "give an empty or new folder")
    fabricate_all(args.dir, args.per_class)
    marker.write_text("written by tests/fabricate.py; removed and rewritten on each run\n")
    print(f"fabricated MNIST, SVHN, CIFAR-10, CIFAR-100, TinyImageNet and ODIN's OOD sets "
          f"under {args.dir}")


if __name__ == "__main__":
    main()
