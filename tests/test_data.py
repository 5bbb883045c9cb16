"""Tests for companion.data: split lists, every loader on tiny fabricated files, safe downloads.

Nothing here touches the network. The real datasets are imitated in torchvision's on-disk formats
with a few images per class; each image is one flat colour that encodes its class (and whether it
comes from the train or the test part), so the tests can check which images landed in which set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from companion import data
from companion.data import as_tensors, duplicate_splits, known_unknown, load_osr

REFERENCE = Path(__file__).parents[2] / "shared/reference/osr_splits.json"
PACKAGED = Path(data.__file__).with_name("osr_splits.json")
ALL_DATASETS = [
    "toy2d", "digits", "mnist", "svhn", "cifar10", "cifar+10", "cifar+50", "tiny_imagenet"
]


def reference_splits() -> dict:
    """The reference split file beside the repository when present, else the packaged copy."""
    with open(REFERENCE if REFERENCE.exists() else PACKAGED, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------------
# Split lists


def test_packaged_splits_are_a_byte_copy_of_the_reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference file {REFERENCE} not present")
    assert PACKAGED.read_bytes() == REFERENCE.read_bytes()


def test_splits_dict_holds_the_lists_and_keeps_the_notes_apart():
    ref = reference_splits()
    assert data.SPLITS == {k: v for k, v in ref.items() if not k.startswith("_")}
    assert set(data.SPLITS) == {
        "mnist", "svhn", "cifar10", "tiny_imagenet",
        "cifar_plus_known", "cifar_plus_10", "cifar_plus_50",
    }
    assert data.SPLIT_SOURCE == ref["_source"]
    assert list(data.SPLIT_CAVEATS) == ref["_caveats"]
    assert set(data.DATASETS) == set(ALL_DATASETS)


@pytest.mark.parametrize("dataset", ALL_DATASETS)
def test_known_unknown_follows_the_reference_lists_for_every_split(dataset):
    ref = reference_splits()
    key = {"toy2d": "mnist", "digits": "mnist", "cifar+10": "cifar_plus_known",
           "cifar+50": "cifar_plus_known"}.get(dataset, dataset)
    assert len(ref[key]) == 5
    for split in range(5):
        known, unknown = known_unknown(dataset, split)
        assert known == ref[key][split]
        if dataset in ("cifar+10", "cifar+50"):
            assert unknown == ref["cifar_plus_" + dataset[-2:]][split]
        else:
            size = 200 if dataset == "tiny_imagenet" else 10
            assert unknown == [c for c in range(size) if c not in known]


def test_known_unknown_hand_checked_cases():
    assert known_unknown("mnist", 0) == ([2, 4, 5, 9, 8, 3], [0, 1, 6, 7])
    assert known_unknown("digits", 0) == known_unknown("toy2d", 0) == known_unknown("mnist", 0)
    assert known_unknown("svhn", 3) == ([3, 8, 2, 5, 0, 6], [1, 4, 7, 9])
    assert known_unknown("cifar10", 2) == ([1, 5, 7, 3, 9, 4], [0, 2, 6, 8])
    assert known_unknown("cifar+10", 4) == ([1, 0, 9, 8], [33, 2, 3, 97, 46, 21, 64, 63, 88, 43])
    known, unknown = known_unknown("cifar+50", 0)
    assert known == [4, 7, 9, 1] and len(unknown) == 50
    assert unknown[-10:] == known_unknown("cifar+10", 0)[1]
    known, unknown = known_unknown("tiny_imagenet", 0)
    assert known[:5] == [108, 147, 17, 58, 193] and len(known) == 20
    assert len(unknown) == 180 and unknown[:3] == [0, 2, 3]


def test_known_unknown_returns_copies():
    known, _ = known_unknown("mnist", 0)
    known.append(99)
    assert known_unknown("mnist", 0)[0] == [2, 4, 5, 9, 8, 3]


@pytest.mark.parametrize(
    "dataset, pairs",
    [("svhn", [(0, 1)]), ("cifar10", [(0, 1)]), ("cifar+10", [(1, 2)]), ("cifar+50", [(1, 2)]),
     ("mnist", []), ("digits", []), ("toy2d", []), ("tiny_imagenet", [])],
)
def test_duplicate_splits(dataset, pairs):
    assert duplicate_splits(dataset) == pairs


def test_bad_names_and_splits_are_rejected_with_the_offending_value():
    with pytest.raises(ValueError, match=r"'cifar100'.*valid names: .*cifar\+10.*tiny_imagenet"):
        known_unknown("cifar100", 0)
    with pytest.raises(ValueError, match="valid names"):
        duplicate_splits("MNIST")
    with pytest.raises(ValueError, match="valid names"):
        load_osr("imagenet")
    for bad in (5, -1):
        with pytest.raises(ValueError, match=rf"0\.\.4, got {bad}"):
            known_unknown("mnist", bad)
    for bad in ("0", 1.0, True, None):
        with pytest.raises(ValueError, match=rf"int .*got {bad!r}"):
            known_unknown("cifar10", bad)
    with pytest.raises(ValueError, match="got 7"):
        load_osr("toy2d", 7)
    assert known_unknown("mnist", np.int64(1)) == known_unknown("mnist", 1)


# --------------------------------------------------------------------------------------------------
# toy2d and digits (offline)


def test_toy2d_shapes_labels_and_reproducibility():
    a = load_osr("toy2d", 1, seed=3, n_per_class=20, n_test_per_class=10)
    b = load_osr("toy2d", 1, seed=3, n_per_class=20, n_test_per_class=10)
    c = load_osr("toy2d", 1, seed=4, n_per_class=20, n_test_per_class=10)
    assert a.input_shape == (2,) and a.num_classes == 6 and a.name == "toy2d" and a.split == 1
    X, y = as_tensors(a.train)
    assert X.shape == (6 * 20, 2) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.bincount(y).tolist()) == [20] * 6
    assert len(a.test_known) == 6 * 10 and len(a.test_unknown) == 4 * 10
    assert (as_tensors(a.test_unknown)[1] == -1).all()
    for part in ("train", "test_known", "test_unknown"):
        assert torch.equal(as_tensors(getattr(a, part))[0], as_tensors(getattr(b, part))[0])
    assert not torch.equal(as_tensors(a.train)[0], as_tensors(c.train)[0])


def test_toy2d_clusters_sit_on_the_ring_inside_the_box_and_are_disjoint():
    d = load_osr("toy2d", 0, seed=0, n_per_class=300, n_test_per_class=100)
    centres = torch.as_tensor(data.TOY2D_CENTRES, dtype=torch.float32)
    assert centres.shape == (10, 2)
    angles = torch.atan2(centres[:, 1], centres[:, 0]) % (2 * np.pi)
    assert torch.allclose(angles, torch.arange(10) * 2 * np.pi / 10, atol=1e-5)
    assert torch.allclose(centres.norm(dim=1), torch.full((10,), 0.6))
    assert data.TOY2D_STD == pytest.approx(0.06)

    known = torch.tensor(d.known_classes)
    X_known = torch.cat([as_tensors(d.train)[0], as_tensors(d.test_known)[0]])
    cls_known = known[torch.cat([as_tensors(d.train)[1], as_tensors(d.test_known)[1]])]
    X_unknown = as_tensors(d.test_unknown)[0]
    cls_unknown = torch.cdist(X_unknown, centres).argmin(dim=1)
    assert set(cls_unknown.tolist()) == set(d.unknown_classes)
    X, cls = torch.cat([X_known, X_unknown]), torch.cat([cls_known, cls_unknown])

    assert X.abs().max() <= 1
    assert (X - centres[cls]).norm(dim=1).max() <= data.TOY2D_CLUSTER_RADIUS + 1e-6
    assert (X - centres[cls]).std() == pytest.approx(data.TOY2D_STD, rel=0.2)
    dist = torch.cdist(X, X)
    different = cls[:, None] != cls[None, :]
    assert dist[different].min() > 0.05


def test_digits_split_is_stratified_and_keeps_unknowns_out_of_train():
    from sklearn.datasets import load_digits

    d = load_osr("digits", 0, seed=0)
    known, unknown = d.known_classes, d.unknown_classes
    assert d.input_shape == (1, 8, 8) and d.num_classes == 6
    X_train, y_train = as_tensors(d.train)
    X_known, y_known = as_tensors(d.test_known)
    X_unknown, y_unknown = as_tensors(d.test_unknown)
    assert X_train.shape[1:] == (1, 8, 8) and X_train.dtype == torch.float32
    for X in (X_train, X_known, X_unknown):
        assert X.min() >= 0 and X.max() <= 1
    assert X_train.max() == 1  # scaled by 16, the largest pixel value
    assert (y_unknown == -1).all() and set(y_train.tolist()) == set(range(6))

    full = load_digits()
    counts = np.bincount(full.target)
    train_counts = np.bincount(y_train.numpy(), minlength=6)
    test_counts = np.bincount(y_known.numpy(), minlength=6)
    for k, c in enumerate(known):  # 70/30 within every class
        assert train_counts[k] + test_counts[k] == counts[c]
        assert abs(test_counts[k] - 0.3 * counts[c]) <= 1
    assert abs(len(d.test_unknown) - 0.3 * counts[list(unknown)].sum()) <= len(unknown)
    assert len(d.train) + len(d.test_known) + len(d.test_unknown) < len(full.target)

    # Find every train image in the full set: its class must be the known class of its label.
    label_of = {}
    for image, target in zip(full.images, full.target):
        label_of.setdefault((image / 16).astype(np.float32).tobytes(), set()).add(int(target))
    for x, y in zip(X_train.numpy(), y_train.tolist()):
        assert label_of[x[0].tobytes()] == {known[y]}  # no unknown class in train
    for x in X_unknown.numpy():
        assert label_of[x[0].tobytes()] <= set(unknown)


def test_digits_seed_changes_the_split_and_only_the_split():
    a, b, c = (load_osr("digits", 2, seed=s) for s in (1, 1, 2))
    assert torch.equal(as_tensors(a.train)[0], as_tensors(b.train)[0])
    assert not torch.equal(as_tensors(a.test_known)[0], as_tensors(c.test_known)[0])
    assert len(a.train) + len(a.test_known) == len(c.train) + len(c.test_known)


# --------------------------------------------------------------------------------------------------
# Fabricated copies of the real datasets

N_TRAIN, N_TEST = 3, 2  # images per class in MNIST / SVHN / CIFAR-10; CIFAR-100 test has N_TEST


def flat_value(cls: int, is_test: bool) -> int:
    """The grey level of a fabricated image: it encodes the class and the part (0..255)."""
    return 10 + 2 * cls + int(is_test)


def decode(x: torch.Tensor) -> tuple[int, int]:
    """(class, is_test) back from an image made by ``flat_value``, after checking it is flat."""
    assert torch.all(x == x.flatten()[0])
    v = round(float(x.flatten()[0]) * 255) - 10
    return v // 2, v % 2


def labels_per_part(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


def flat_images(labels: np.ndarray, is_test: bool, shape: tuple[int, ...]) -> np.ndarray:
    values = np.array([flat_value(c, is_test) for c in labels], dtype=np.uint8)
    return np.broadcast_to(values.reshape(-1, *[1] * len(shape)), (len(labels), *shape)).copy()


def write_mnist(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for part, per_class, is_test in (("train", N_TRAIN, False), ("t10k", N_TEST, True)):
        labels = labels_per_part(10, per_class)
        images = flat_images(labels, is_test, (28, 28))
        # idx format: big-endian magic (0x08 = ubyte, then the number of dims), sizes, raw bytes
        (raw / f"{part}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, len(labels), 28, 28) + images.tobytes())
        (raw / f"{part}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes())


def write_svhn(root: Path) -> None:
    (root / "svhn").mkdir(parents=True)
    for part, per_class, is_test in (("train", N_TRAIN, False), ("test", N_TEST, True)):
        labels = labels_per_part(10, per_class)
        images = flat_images(labels, is_test, (32, 32, 3))
        stored = np.where(labels == 0, 10, labels)  # SVHN stores digit 0 as 10
        scipy.io.savemat(root / "svhn" / f"{part}_32x32.mat", {
            "X": images.transpose(1, 2, 3, 0),  # (32, 32, 3, N)
            "y": stored.reshape(-1, 1).astype(np.uint8),
        })


def pickle_to(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def cifar_rows(labels: np.ndarray, is_test: bool) -> np.ndarray:
    return flat_images(labels, is_test, (3 * 32 * 32,))  # one row per image, channel-major


def write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(1, 6):  # one image per class in each of the five train batches
        labels = labels_per_part(10, 1)
        pickle_to(folder / f"data_batch_{batch}",
                  {"data": cifar_rows(labels, False), "labels": labels.tolist()})
    labels = labels_per_part(10, N_TEST)
    pickle_to(folder / "test_batch", {"data": cifar_rows(labels, True), "labels": labels.tolist()})
    pickle_to(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for part, per_class, is_test in (("train", 1, False), ("test", N_TEST, True)):
        labels = labels_per_part(100, per_class)
        pickle_to(folder / part, {
            "data": cifar_rows(labels, is_test),
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
        })
    pickle_to(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)]})


TINY_WNIDS = [f"n{n:08d}" for n in np.random.default_rng(0).choice(10**8, size=200, replace=False)]
TINY_TRAIN = 2  # images per class; the val set has one per class


def tiny_colour(cls: int, is_test: bool) -> tuple[int, int, int]:
    # Steps of 16 per channel survive JPEG compression of a flat image.
    return 8 + 16 * (cls // 16), 8 + 16 * (cls % 16), 8 + 16 * int(is_test)


def tiny_decode(x: torch.Tensor) -> tuple[int, int]:
    r, g, b = (round((float(x[c].mean()) * 255 - 8) / 16) for c in range(3))
    return 16 * r + g, b


def write_tiny_imagenet(root: Path) -> None:
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    # wnids.txt is not sorted, like the real file: class ids come from the sorted train folders
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    class_of = {wnid: i for i, wnid in enumerate(sorted(TINY_WNIDS))}
    for wnid in TINY_WNIDS:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(TINY_TRAIN):
            Image.new("RGB", (64, 64), tiny_colour(class_of[wnid], False)).save(
                images / f"{wnid}_{i}.JPEG", quality=95)
    # val images in a shuffled class order: only the annotations say which class each one is
    lines = []
    for i, wnid in enumerate(np.random.default_rng(1).permutation(TINY_WNIDS)):
        Image.new("RGB", (64, 64), tiny_colour(class_of[wnid], True)).save(
            folder / "val" / "images" / f"val_{i}.JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for write in (write_mnist, write_svhn, write_cifar10, write_cifar100, write_tiny_imagenet):
        write(root)
    return root


def check_sets(d, decode_fn=decode, n_train=N_TRAIN, n_test=N_TEST, unknown_per_class=N_TEST):
    """Every image is in the set its class and part say, with the right label, shape and range."""
    known, unknown = d.known_classes, d.unknown_classes
    assert len(d.train) == n_train * len(known)
    assert len(d.test_known) == n_test * len(known)
    assert len(d.test_unknown) == unknown_per_class * len(unknown)
    for part, is_test, classes in (
        (d.train, 0, known), (d.test_known, 1, known), (d.test_unknown, 1, unknown)
    ):
        X, y = as_tensors(part)
        assert X.shape[1:] == d.input_shape and X.dtype == torch.float32 and y.dtype == torch.int64
        assert X.min() >= 0 and X.max() <= 1
        assert torch.equal(y, part.targets)
        seen = set()
        for x, label in zip(X, y.tolist()):
            cls, from_test = decode_fn(x)
            assert from_test == is_test
            assert label == (known.index(cls) if classes is known else -1)
            seen.add(cls)
        assert seen == set(classes)


def test_mnist_from_fabricated_idx_files(fake_root):
    d = load_osr("mnist", 0, root=fake_root)
    assert d.input_shape == (3, 32, 32) and d.known_classes == (2, 4, 5, 9, 8, 3)
    check_sets(d)


def test_default_root_is_the_data_dir_from_the_environment(fake_root, monkeypatch):
    monkeypatch.setenv("COMPANION_DATA_DIR", str(fake_root))
    assert len(load_osr("mnist", 1).train) == N_TRAIN * 6


def test_svhn_from_fabricated_mat_files_maps_label_10_to_digit_0(fake_root):
    d = load_osr("svhn", 3, root=fake_root, verify=False)  # split 3 has digit 0 among its knowns
    assert d.known_classes == (3, 8, 2, 5, 0, 6)
    check_sets(d)


def test_cifar10_from_fabricated_pickles(fake_root):
    d = load_osr("cifar10", 4, root=fake_root, verify=False)
    check_sets(d, n_train=5)


@pytest.mark.parametrize("dataset, n_unknown", [("cifar+10", 10), ("cifar+50", 50)])
def test_cifar_plus_takes_unknowns_from_the_cifar100_test_set(fake_root, dataset, n_unknown):
    d = load_osr(dataset, 2, root=fake_root, verify=False)
    assert d.num_classes == 4 and len(d.unknown_classes) == n_unknown
    assert list(d.unknown_classes) == known_unknown(dataset, 2)[1]
    check_sets(d, n_train=5)  # the unknown images decode to CIFAR-100 ids, test part


@pytest.mark.parametrize("dataset", ["svhn", "cifar10", "cifar+10"])
def test_md5_is_checked_by_default(fake_root, dataset):
    with pytest.raises(RuntimeError, match="verify=False"):
        load_osr(dataset, 0, root=fake_root)


def test_tiny_imagenet_classes_follow_sorted_wnids_and_val_annotations(fake_root):
    d = load_osr("tiny_imagenet", 0, root=fake_root)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 20 and len(d.unknown_classes) == 180
    check_sets(d, decode_fn=tiny_decode, n_train=TINY_TRAIN, n_test=1, unknown_per_class=1)


def test_tiny_imagenet_native_size(fake_root):
    d = load_osr("tiny_imagenet", 1, root=fake_root, image_size=64)
    assert d.input_shape == (3, 64, 64)
    x, y = d.test_known[0]
    assert x.shape == (3, 64, 64) and tiny_decode(x) == (d.known_classes[int(y)], 1)
    with pytest.raises(ValueError, match="image_size must be a positive int, got 0"):
        load_osr("tiny_imagenet", 1, root=fake_root, image_size=0)


@pytest.mark.parametrize("dataset, expected", [
    ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte"),
    ("svhn", "svhn/test_32x32.mat"),
    ("cifar10", "cifar-10-batches-py/data_batch_5"),
    ("cifar+50", "cifar-100-python/test"),
    ("tiny_imagenet", "tiny-imagenet-200/val/val_annotations.txt"),
])
def test_missing_data_says_how_to_get_it(tmp_path, dataset, expected):
    root = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as info:
        load_osr(dataset, root=root)
    message = str(info.value)
    for needle in (repr(dataset), str(root), "download=True", "COMPANION_DATA_DIR", expected):
        assert needle in message
    assert not root.exists()  # nothing is created without download=True


def test_cifar_plus_needs_cifar100_as_well(fake_root, tmp_path):
    (tmp_path / "cifar-10-batches-py").symlink_to(fake_root / "cifar-10-batches-py")
    load_osr("cifar10", root=tmp_path, verify=False)
    with pytest.raises(FileNotFoundError, match="missing: cifar-100-python/train"):
        load_osr("cifar+10", root=tmp_path, verify=False)


def test_as_tensors_and_frozen_result():
    d = load_osr("toy2d", n_per_class=2, n_test_per_class=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"
    with pytest.raises(ValueError, match="empty"):
        as_tensors(torch.utils.data.TensorDataset(torch.zeros(0, 2)))


# --------------------------------------------------------------------------------------------------
# Downloads and archives, offline: file:// URLs to local files


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verified_copies_and_skips_a_good_file(tmp_path, monkeypatch):
    source = tmp_path / "source.bin"
    source.write_bytes(b"open-set" * 1000)
    dest = tmp_path / "out" / "file.bin"
    assert data._download_verified(source.as_uri(), dest, md5_of(source)) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]

    def no_network(*args, **kwargs):
        raise AssertionError("a file with the right checksum must not be fetched again")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    data._download_verified(source.as_uri(), dest, md5_of(source))


def test_download_with_a_wrong_checksum_is_deleted(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"tampered")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ValueError, match="checksum mismatch.*expected md5 0{32}"):
        data._download_verified(source.as_uri(), dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken:
        headers = {}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            raise ConnectionResetError("connection lost")

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(ConnectionResetError):
        data._download_verified("http://example.invalid/x.zip", tmp_path / "x.zip", "0" * 32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.txt", "inner/../../evil.txt", "/evil.txt"])
def test_unsafe_zip_is_refused_and_nothing_is_written(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good.txt", "fine")
        z.writestr(member, "escaped")
    assert member in zipfile.ZipFile(archive).namelist()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ValueError, match="refusing"):
        data._safe_extract_zip(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_safe_zip_extracts(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/b.txt", "hello")
    data._safe_extract_zip(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "a" / "b.txt").read_text() == "hello"


@pytest.fixture(scope="module")
def tiny_zip(fake_root, tmp_path_factory) -> Path:
    archive = tmp_path_factory.mktemp("zip") / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((fake_root / "tiny-imagenet-200").rglob("*")):
            z.write(path, path.relative_to(fake_root).as_posix())
    return archive


def test_tiny_imagenet_download_verifies_and_extracts(tiny_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TINY_IMAGENET_URL", tiny_zip.as_uri())
    monkeypatch.setattr(data, "TINY_IMAGENET_MD5", md5_of(tiny_zip))
    root = tmp_path / "new"
    d = load_osr("tiny_imagenet", 2, root=root, download=True)
    assert [p.name for p in root.iterdir()] == ["tiny-imagenet-200"]  # archive and scratch removed
    check_sets(d, decode_fn=tiny_decode, n_train=TINY_TRAIN, n_test=1, unknown_per_class=1)


def test_tiny_imagenet_download_with_a_bad_checksum_leaves_nothing(tiny_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TINY_IMAGENET_URL", tiny_zip.as_uri())
    root = tmp_path / "new"
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_osr("tiny_imagenet", root=root, download=True)  # the real md5 != the fabricated zip's
    assert list(root.iterdir()) == []


def test_custom_known_classes_label_in_given_order_and_leave_the_rest_unknown():
    osr = load_osr("digits", known=[7, 2], seed=0)
    assert osr.known_classes == (7, 2) and osr.unknown_classes == (0, 1, 3, 4, 5, 6, 8, 9)
    assert osr.split == -1 and osr.num_classes == 2
    x, y = as_tensors(osr.test_known)
    assert set(y.tolist()) == {0, 1}
    standard = load_osr("digits", 0, seed=0)  # knowns (2, 4, 5, 9, 8, 3): class 2 is label 0
    x_std, y_std = as_tensors(standard.test_known)
    assert torch.equal(x[y == 1], x_std[y_std == 0])  # same images of class 2, new label
    total = len(standard.test_known) + len(standard.test_unknown)
    assert len(osr.test_known) + len(osr.test_unknown) == total


@pytest.mark.parametrize("known, message", [
    ([], "1 to 9 distinct"), ([1, 1], "distinct"), (list(range(10)), "at least one class"),
    ([10], "0..9"), ([-1], "0..9"), ([True], "distinct")])
def test_custom_known_classes_are_checked(known, message):
    with pytest.raises(ValueError, match=message):
        load_osr("digits", known=known)


def test_custom_known_classes_refused_for_cifar_plus():
    with pytest.raises(ValueError, match="not available for cifar\\+10"):
        load_osr("cifar+10", known=[0, 1])
