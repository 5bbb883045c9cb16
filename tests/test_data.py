"""Tests for companion.data: split lists, in-memory sets, every loader on tiny fabricated files,
integrity checks on damaged and crafted files, safe downloads.

Nothing here touches the network. The real datasets are imitated in their on-disk formats by
``fabricate.py`` (beside this file), with a few images per class; each image is one flat colour
that encodes its class and whether it comes from the train or the test part, so the tests can
check which images landed in which set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import data
from companion.data import TensorSet, as_tensors, duplicate_splits, known_unknown, load_osr
from fabricate import (
    Python2Pickler, counts_for, decode, fabricate_all, preorganise_tiny_imagenet_val, tiny_class_of,
    tiny_decode,
)

REFERENCE = Path(__file__).parents[2] / "shared/reference/osr_splits.json"
PACKAGED = Path(data.__file__).with_name("osr_splits.json")
ALL_DATASETS = [
    "toy2d", "digits", "mnist", "svhn", "cifar10", "cifar+10", "cifar+50", "tiny_imagenet"
]
IMAGE_DATASETS = ALL_DATASETS[2:]
REDOWNLOAD = r"delete .*download again \(load_osr\(\.\.\., download=True\) / --download\)"


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


def test_test_limit_keeps_evenly_spaced_test_samples_and_all_training_data(monkeypatch):
    monkeypatch.delenv("COMPANION_TEST_LIMIT", raising=False)
    whole = load_osr("digits", 0)
    cut = load_osr("digits", 0, test_limit=5)
    assert torch.equal(cut.train.inputs, whole.train.inputs)
    for name in ("test_known", "test_unknown"):
        full, part = getattr(whole, name), getattr(cut, name)
        # positions round(linspace(0, N - 1, 5)): the first, the last and three evenly between
        positions = [round(i * (len(full) - 1) / 4) for i in range(5)]
        assert torch.equal(part.inputs, full.inputs[positions])
        assert torch.equal(part.targets, full.targets[positions])
    assert load_osr("digits", 0, test_limit=10_000).test_known.inputs.shape == whole.test_known.inputs.shape
    monkeypatch.setenv("COMPANION_TEST_LIMIT", "5")  # the default comes from the environment
    with pytest.warns(UserWarning, match=r"COMPANION_TEST_LIMIT=5: digits keeps 5 of \d+ test knowns"):
        assert len(load_osr("digits", 0).test_unknown) == 5
    with pytest.raises(ValueError, match="test_limit must be a positive int, got 0"):
        load_osr("digits", 0, test_limit=0)


def test_digits_seed_changes_the_split_and_only_the_split():
    a, b, c = (load_osr("digits", 2, seed=s) for s in (1, 1, 2))
    assert torch.equal(as_tensors(a.train)[0], as_tensors(b.train)[0])
    assert not torch.equal(as_tensors(a.test_known)[0], as_tensors(c.test_known)[0])
    assert len(a.train) + len(a.test_known) == len(c.train) + len(c.test_known)


# --------------------------------------------------------------------------------------------------
# TensorSet


def uint8_set(n: int = 10) -> TensorSet:
    """n images (3, 2, 2), image i filled with the value 10 * i, labelled i % 3."""
    inputs = (torch.arange(n, dtype=torch.uint8) * 10).view(n, 1, 1, 1).expand(n, 3, 2, 2)
    return TensorSet(inputs.contiguous(), torch.arange(n) % 3)


def test_tensor_set_items_are_float_images_in_unit_range_and_int64_scalars():
    s = uint8_set()
    assert len(s) == 10 and s.inputs.dtype == torch.uint8 and s.targets.dtype == torch.int64
    x, y = s[4]
    assert x.dtype == torch.float32 and x.shape == (3, 2, 2)
    assert torch.equal(x, torch.full((3, 2, 2), 40 / 255))
    assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == 1
    assert float(s[-1][0].max()) == pytest.approx(90 / 255)
    floats = TensorSet(torch.tensor([[0.5, -2.0]]), torch.tensor([7], dtype=torch.int32))
    assert torch.equal(floats[0][0], torch.tensor([0.5, -2.0]))
    assert floats.targets.dtype == torch.int64


def test_tensor_set_to_float():
    assert torch.equal(TensorSet.to_float(torch.tensor([0, 51, 255], dtype=torch.uint8)),
                       torch.tensor([0.0, 0.2, 1.0]))
    x64 = torch.tensor([0.1, 3.0], dtype=torch.float64)
    assert TensorSet.to_float(x64).dtype == torch.float32
    assert torch.equal(TensorSet.to_float(x64), x64.float())
    x32 = torch.tensor([-1.5])
    assert torch.equal(TensorSet.to_float(x32), x32)


def test_tensor_set_batches_stream_in_order_and_convert_per_batch():
    s = uint8_set(10)
    batches = list(s.batches(batch_size=4, device="cpu"))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    X, y = as_tensors(s)
    assert torch.equal(torch.cat([x for x, _ in batches]), X)
    assert torch.equal(torch.cat([t for _, t in batches]), y)
    assert len(list(s.batches())) == 1  # default 512
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        next(s.batches(0))


def test_tensor_set_subset_keeps_the_storage_type():
    s = uint8_set(10)
    sub = s.subset([7, 2])
    assert isinstance(sub, TensorSet) and sub.inputs.dtype == torch.uint8
    assert sub.targets.tolist() == [1, 2] and torch.equal(sub[0][0], s[7][0])
    assert s.subset(torch.tensor([1, 1])).targets.tolist() == [1, 1]
    assert s.subset(np.array([9])).targets.tolist() == [0]
    assert s.subset(s.targets == 0).targets.tolist() == [0, 0, 0, 0]  # a boolean mask
    empty = s.subset([])
    assert len(empty) == 0 and empty.inputs.shape == (0, 3, 2, 2)
    with pytest.raises(ValueError, match="integers or a boolean mask"):
        s.subset([0.5])


@pytest.mark.parametrize("inputs, targets, message", [
    (torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64), "3 inputs, 2 targets"),
    (torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), "float64"),
    (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), "float32 or uint8"),
    (torch.zeros(3, 2), torch.zeros(3), "1-D integer"),
    (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64), r"shape \(3, 1\)"),
])
def test_tensor_set_rejects_bad_tensors(inputs, targets, message):
    with pytest.raises(ValueError, match=message):
        TensorSet(inputs, targets)


def test_tensor_set_works_with_a_data_loader():
    loader = torch.utils.data.DataLoader(uint8_set(10), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 2, 2) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_as_tensors_fast_path_matches_reading_every_item():
    s = uint8_set(6)
    X, y = as_tensors(s)
    assert torch.equal(X, torch.stack([s[i][0] for i in range(6)]))
    assert torch.equal(y, torch.stack([s[i][1] for i in range(6)]))
    floats = TensorSet(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64))
    X, y = as_tensors(floats)
    X += 1
    y += 1
    assert floats.inputs.sum() == 0 and floats.targets.sum() == 0  # copies, not views


# --------------------------------------------------------------------------------------------------
# The real datasets, from fabricated files

PER_CLASS = 8  # fabricate.py's default, which CI uses too
C = counts_for(PER_CLASS)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fabricate_all(root, per_class=PER_CLASS)
    return root


def copy_of(fake_root: Path, tmp_path: Path, folder: str) -> Path:
    """A fresh root holding a copy of one dataset folder of ``fake_root``, to damage."""
    shutil.copytree(fake_root / folder, tmp_path / folder)
    return tmp_path


def check_sets(d, decode_fn=decode, n_train=C.train, n_test=C.test, unknown_per_class=C.test):
    """Every image is in the set its class and part say, with the right label, shape and range."""
    known, unknown = d.known_classes, d.unknown_classes
    assert len(d.train) == n_train * len(known)
    assert len(d.test_known) == n_test * len(known)
    assert len(d.test_unknown) == unknown_per_class * len(unknown)
    for part, is_test, classes in (
        (d.train, 0, known), (d.test_known, 1, known), (d.test_unknown, 1, unknown)
    ):
        assert isinstance(part, TensorSet) and part.inputs.dtype == torch.uint8
        assert part.inputs.shape[1:] == d.input_shape
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


def test_fabricated_sets_are_big_enough_for_the_ci_run(fake_root):
    """CI trains every chapter on these files with batches of up to 16: 32 train images at least."""
    for dataset in IMAGE_DATASETS:
        d = load_osr(dataset, 0, root=fake_root, verify=False)
        assert len(d.train) >= 32, dataset
        assert len(d.test_known) >= 2 * d.num_classes and len(d.test_unknown) >= 16, dataset


def test_mnist_from_fabricated_idx_files(fake_root):
    d = load_osr("mnist", 0, root=fake_root)
    assert d.input_shape == (3, 32, 32) and d.known_classes == (2, 4, 5, 9, 8, 3)
    check_sets(d)
    x = d.train.inputs[0]
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # gray repeated to RGB


def test_default_root_is_the_data_dir_from_the_environment(fake_root, monkeypatch):
    monkeypatch.setenv("COMPANION_DATA_DIR", str(fake_root))
    assert len(load_osr("mnist", 1).train) == C.train * 6


def test_mnist_download_flag_with_the_files_present_stays_offline(fake_root, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("MNIST files are present: nothing should be downloaded")

    monkeypatch.setattr(data.tv_utils, "download_and_extract_archive", no_network)
    assert len(load_osr("mnist", 0, root=fake_root, download=True).train) == C.train * 6


def test_svhn_from_fabricated_mat_files_maps_label_10_to_digit_0(fake_root):
    d = load_osr("svhn", 3, root=fake_root, verify=False)  # split 3 has digit 0 among its knowns
    assert d.known_classes == (3, 8, 2, 5, 0, 6)
    check_sets(d)


def test_cifar10_from_fabricated_pickles(fake_root):
    d = load_osr("cifar10", 4, root=fake_root, verify=False)
    check_sets(d)


@pytest.mark.parametrize("dataset, n_unknown", [("cifar+10", 10), ("cifar+50", 50)])
def test_cifar_plus_takes_unknowns_from_the_cifar100_test_set(fake_root, dataset, n_unknown):
    d = load_osr(dataset, 2, root=fake_root, verify=False)
    assert d.num_classes == 4 and len(d.unknown_classes) == n_unknown
    assert list(d.unknown_classes) == known_unknown(dataset, 2)[1]
    check_sets(d)  # the unknown images decode to CIFAR-100 ids, test part


def test_tiny_imagenet_classes_follow_sorted_wnids_and_val_annotations(fake_root):
    d = load_osr("tiny_imagenet", 0, root=fake_root)
    assert d.input_shape == (3, 64, 64) and d.num_classes == 20 and len(d.unknown_classes) == 180
    check_sets(d, decode_fn=tiny_decode, n_train=C.tiny_train, n_test=C.tiny_val,
               unknown_per_class=C.tiny_val)


@pytest.mark.parametrize("dataset", IMAGE_DATASETS)
def test_image_size_defaults_to_the_protocol_and_can_be_overridden(fake_root, dataset):
    native = 64 if dataset == "tiny_imagenet" else 32
    assert load_osr(dataset, 1, root=fake_root, verify=False).input_shape == (3, native, native)
    d = load_osr(dataset, 1, root=fake_root, verify=False, image_size=24)
    assert d.input_shape == (3, 24, 24) and d.train.inputs.shape[1:] == (3, 24, 24)
    x, y = d.test_known[0]
    cls, is_test = (tiny_decode if dataset == "tiny_imagenet" else decode)(x)
    assert (cls, is_test) == (d.known_classes[int(y)], 1)  # resizing a flat image keeps its colour


def test_image_size_is_checked_and_ignored_by_the_offline_datasets():
    with pytest.raises(ValueError, match="image_size must be a positive int, got 0"):
        load_osr("toy2d", image_size=0)
    assert load_osr("digits", image_size=64).input_shape == (1, 8, 8)


def test_offline_datasets_are_float_tensor_sets():
    d = load_osr("toy2d", n_per_class=3, n_test_per_class=2)
    for part in (d.train, d.test_known, d.test_unknown):
        assert isinstance(part, TensorSet) and part.inputs.dtype == torch.float32


def test_tiny_imagenet_decodes_only_the_train_images_it_returns(fake_root):
    d = load_osr("tiny_imagenet", root=fake_root, known=[5, 3])
    assert d.known_classes == (5, 3) and sorted(d.train.targets.tolist()) == [0] * 2 + [1] * 2
    assert len(d.test_unknown) == 198 * C.tiny_val


@pytest.mark.parametrize("with_images_folder", [True, False])
def test_tiny_imagenet_preorganised_val_gives_the_official_labels(fake_root, tmp_path,
                                                                   with_images_folder):
    root = copy_of(fake_root, tmp_path, "tiny-imagenet-200")
    preorganise_tiny_imagenet_val(root / "tiny-imagenet-200", with_images_folder)
    assert not (root / "tiny-imagenet-200/val/val_annotations.txt").exists()
    official = load_osr("tiny_imagenet", 3, root=fake_root)
    sorted_val = load_osr("tiny_imagenet", 3, root=root)
    for part in ("test_known", "test_unknown"):
        a, b = getattr(official, part), getattr(sorted_val, part)
        pairs = [sorted((tiny_decode(x), int(y)) for x, y in s) for s in (a, b)]
        assert len(a) == len(b) and pairs[0] == pairs[1]
    assert torch.equal(official.train.inputs, sorted_val.train.inputs)


def test_tiny_imagenet_preorganised_val_must_cover_every_class(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path, "tiny-imagenet-200")
    preorganise_tiny_imagenet_val(root / "tiny-imagenet-200")
    shutil.rmtree(root / "tiny-imagenet-200/val" / sorted(tiny_class_of())[0])
    with pytest.raises(ValueError, match="class folders for 199 of the 200"):
        load_osr("tiny_imagenet", root=root)


# --------------------------------------------------------------------------------------------------
# Integrity: checksums, damaged files, crafted pickles


@pytest.mark.parametrize("dataset, path", [
    ("svhn", "svhn/train_32x32.mat"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar+10", "cifar-10-batches-py/data_batch_1"),
])
def test_md5_is_checked_by_default_and_names_the_file(fake_root, dataset, path):
    with pytest.raises(ValueError) as info:
        load_osr(dataset, 0, root=fake_root)
    message = str(info.value)
    assert str(fake_root / path) in message and "is not the official" in message
    assert "verify=False" in message
    assert info.match(REDOWNLOAD)


def test_cifar100_md5_is_checked_too(fake_root, tmp_path, monkeypatch):
    root = copy_of(fake_root, tmp_path, "cifar-10-batches-py")
    copy_of(fake_root, tmp_path, "cifar-100-python")
    # Give the fabricated CIFAR-10 files their md5s, so the check reaches CIFAR-100.
    table = [[name, md5_of(root / "cifar-10-batches-py" / name)]
             for name, _ in data.tvd.CIFAR10.train_list]
    monkeypatch.setattr(data.tvd.CIFAR10, "train_list", table)
    monkeypatch.setattr(data.tvd.CIFAR10, "test_list", [
        ["test_batch", md5_of(root / "cifar-10-batches-py/test_batch")]])
    with pytest.raises(ValueError, match="cifar-100-python/test: md5"):
        load_osr("cifar+50", 0, root=root)


class Exploit:
    """Pickles into a call of os.system that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_crafted_cifar_pickle_is_refused_without_running_it(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path, "cifar-10-batches-py")
    batch = root / "cifar-10-batches-py/data_batch_1"
    marker = tmp_path / "pwned"
    # A real-format batch (the allowed numpy globals come first) with the exploit inside.
    with open(batch, "wb") as f:
        Python2Pickler(f).dump({"data": np.zeros((1, 3072), np.uint8), "labels": Exploit(marker)})
    payload = batch.read_bytes()
    # The payload is live: plain pickle runs the command.
    pickle.loads(payload, encoding="latin1")
    assert marker.exists()
    marker.unlink()

    with pytest.raises(pickle.UnpicklingError) as info:
        load_osr("cifar10", 0, root=root, verify=False)  # verify=False skips only the md5
    assert str(batch) in str(info.value) and "system" in str(info.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="is not the official"):
        load_osr("cifar10", 0, root=root)  # with verify=True the md5 refuses it first
    assert not marker.exists()


def test_cifar_pickle_of_other_objects_is_refused(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path, "cifar-10-batches-py")
    batch = root / "cifar-10-batches-py/test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8),
                                    "labels": [0], "when": dataclasses.field}))
    with pytest.raises(pickle.UnpicklingError, match="dataclasses.field"):
        load_osr("cifar10", 0, root=root, verify=False)


def truncate(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * keep)])


@pytest.mark.parametrize("dataset, folder, path, damage, problem", [
    ("mnist", "MNIST", "MNIST/raw/train-images-idx3-ubyte", truncate, "truncated"),
    ("mnist", "MNIST", "MNIST/raw/t10k-labels-idx1-ubyte",
     lambda p: p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:]), "magic number"),
    ("mnist", "MNIST", "MNIST/raw/t10k-images-idx3-ubyte", lambda p: p.write_bytes(b""),
     "magic number missing"),
    ("svhn", "svhn", "svhn/test_32x32.mat", truncate, "not a readable .mat file"),
    ("svhn", "svhn", "svhn/train_32x32.mat", lambda p: p.write_bytes(b"not a mat file" * 20),
     "not a readable .mat file"),
    ("cifar10", "cifar-10-batches-py", "cifar-10-batches-py/data_batch_3", truncate,
     "not a readable CIFAR pickle"),
    ("cifar10", "cifar-10-batches-py", "cifar-10-batches-py/test_batch",
     lambda p: p.write_bytes(pickle.dumps({"data": [1, 2]}, protocol=2)), "'data' should be"),
    ("tiny_imagenet", "tiny-imagenet-200", "tiny-imagenet-200/val/images/val_7.JPEG", truncate,
     "unreadable or truncated image"),
])
def test_damaged_files_raise_naming_the_file_and_the_fix(fake_root, tmp_path, dataset, folder,
                                                         path, damage, problem):
    root = copy_of(fake_root, tmp_path, folder)
    damage(root / path)
    with pytest.raises(ValueError) as info:
        load_osr(dataset, 0, root=root, verify=False)
    message = str(info.value)
    assert str(root / path) in message and problem in message
    assert "delete" in message and "download=True" in message and "--download" in message


def test_tiny_imagenet_bad_annotation_line_is_named(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path, "tiny-imagenet-200")
    annotations = root / "tiny-imagenet-200/val/val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("\t", " ", 5))  # line 1 has no tab
    with pytest.raises(ValueError, match=f"{annotations}, line 1: .*download again"):
        load_osr("tiny_imagenet", root=root)


def test_mnist_label_count_must_match_the_images(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path, "MNIST")
    labels = root / "MNIST/raw/t10k-labels-idx1-ubyte"
    raw = labels.read_bytes()
    labels.write_bytes(raw[:4] + (len(raw) - 9).to_bytes(4, "big") + raw[8:-1])
    with pytest.raises(ValueError, match=f"{labels}: .* labels for the .* images"):
        load_osr("mnist", root=root)


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
    for needle in (repr(dataset), str(root), "download=True", "--download", "COMPANION_DATA_DIR",
                   expected):
        assert needle in message
    assert not root.exists()  # nothing is created without download=True


def test_cifar_plus_needs_cifar100_as_well(fake_root, tmp_path):
    (tmp_path / "cifar-10-batches-py").symlink_to(fake_root / "cifar-10-batches-py")
    load_osr("cifar10", root=tmp_path, verify=False)
    with pytest.raises(FileNotFoundError, match="missing: cifar-100-python/test"):
        load_osr("cifar+10", root=tmp_path, verify=False)


def test_as_tensors_and_frozen_result():
    d = load_osr("toy2d", n_per_class=2, n_test_per_class=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"
    with pytest.raises(ValueError, match="empty"):
        as_tensors(torch.utils.data.TensorDataset(torch.zeros(0, 2)))
    with pytest.raises(ValueError, match="empty"):
        as_tensors(d.train.subset([]))
    X, y = as_tensors(torch.utils.data.TensorDataset(torch.ones(2, 3), torch.tensor([1, 0])))
    assert X.shape == (2, 3) and y.tolist() == [1, 0]


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
    check_sets(d, decode_fn=tiny_decode, n_train=C.tiny_train, n_test=C.tiny_val,
               unknown_per_class=C.tiny_val)


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


# --------------------------------------------------------------------------------------------------
# Protocol B: out-of-distribution sets and the validation split

ODIN_NAMES = ["imagenet_crop", "imagenet_resize", "lsun_crop", "lsun_resize"]


def test_ood_sets_name_their_folders_and_datasets():
    assert {n: data.OOD_SETS[n] for n in ODIN_NAMES} == {
        "imagenet_crop": "Imagenet", "imagenet_resize": "Imagenet_resize",
        "lsun_crop": "LSUN", "lsun_resize": "LSUN_resize"}
    assert data.ood_sets("cifar10") == ODIN_NAMES
    assert data.ood_sets("digits") == ["photo_crop", "photo_resize"]
    assert data.ood_sets("mnist") == []
    for name in ODIN_NAMES:  # ODIN's README links, one archive per folder
        assert data.OOD_URLS[name].endswith(f"/{data.OOD_SETS[name]}.tar.gz")


@pytest.mark.parametrize("name", ODIN_NAMES)
def test_odin_sets_load_from_fabricated_folders(fake_root, name):
    from fabricate import ODIN_LAYOUT, odin_colour

    d = load_osr("cifar10", root=fake_root, verify=False, ood=name)
    # every CIFAR-10 class known, labels = class ids; the whole test set as test knowns
    assert d.known_classes == tuple(range(10)) and d.unknown_classes == () and d.ood == name
    assert len(d.train) == 10 * C.train and len(d.test_known) == 10 * C.test
    assert sorted(set(d.test_known.targets.tolist())) == list(range(10))
    assert all(decode(x) == (int(y), 1) for x, y in d.test_known)
    u = d.test_unknown
    assert u.inputs.shape == (16, 3, 32, 32) and u.inputs.dtype == torch.uint8
    assert (u.targets == -1).all() and d.input_shape == (3, 32, 32)
    # the images of this set's folder, in file-name order (JPEG keeps flat colours within 2)
    set_index = list(ODIN_LAYOUT).index(data.OOD_SETS[name])
    order = sorted(range(16), key=str)  # 0.jpg, 1.jpg, 10.jpg, ...
    colours = torch.tensor([odin_colour(set_index, i) for i in order], dtype=torch.float32)
    assert (u.inputs.float().mean((2, 3)) - colours).abs().max() <= 2
    assert d.val is None


def test_ood_sets_follow_image_size_and_test_limit(fake_root):
    d = load_osr("cifar10", root=fake_root, verify=False, ood="lsun_resize", image_size=24,
                 test_limit=5)
    assert d.test_unknown.inputs.shape == (5, 3, 24, 24) and len(d.test_known) == 5
    assert d.input_shape == (3, 24, 24) and len(d.train) == 10 * C.train  # train untouched


def test_missing_ood_folder_says_where_to_get_it(fake_root, tmp_path):
    (tmp_path / "cifar-10-batches-py").symlink_to(fake_root / "cifar-10-batches-py")
    with pytest.raises(FileNotFoundError) as info:
        load_osr("cifar10", root=tmp_path, verify=False, ood="lsun_crop")
    message = str(info.value)
    for needle in ("https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz",
                   "https://github.com/facebookresearch/odin",
                   f"tar -xzf LSUN.tar.gz -C {tmp_path}",
                   str(tmp_path / "LSUN"), "COMPANION_DATA_DIR"):
        assert needle in message
    (tmp_path / "LSUN").mkdir()  # a folder without its image folder is named too
    with pytest.raises(FileNotFoundError, match="LSUN holds no subfolder of images"):
        load_osr("cifar10", root=tmp_path, verify=False, ood="lsun_crop")


@pytest.mark.parametrize("dataset, ood, message", [
    ("digits", "lsun_crop", "valid for digits: photo_crop, photo_resize"),
    ("cifar10", "photo_crop", "valid for cifar10: imagenet_crop, imagenet_resize, lsun_crop, "
                              "lsun_resize"),
    ("mnist", "lsun_crop", "mnist has none; OOD sets go with cifar10, digits"),
    ("cifar10", "isun", "unknown OOD set 'isun'"),
])
def test_an_ood_set_that_does_not_fit_lists_the_valid_ones(dataset, ood, message):
    with pytest.raises(ValueError, match=message):
        load_osr(dataset, ood=ood, root="/nonexistent")


def test_ood_makes_every_class_known_so_split_and_known_are_refused():
    with pytest.raises(ValueError, match="leave split at 0 and known unset"):
        load_osr("digits", 2, ood="photo_crop")
    with pytest.raises(ValueError, match="leave split at 0 and known unset"):
        load_osr("digits", known=[1, 2], ood="photo_crop")


@pytest.mark.parametrize("name", ["photo_crop", "photo_resize"])
def test_photo_sets_are_digits_like_and_seeded(name):
    d = load_osr("digits", ood=name)
    u = d.test_unknown
    assert u.inputs.shape == (data.PHOTO_COUNT, 1, 8, 8) == (len(d.test_known), 1, 8, 8)
    assert u.inputs.dtype == torch.float32 and (u.targets == -1).all()
    # digits' 17 gray levels 0..16, divided by 16 as load_osr scales the digits
    levels = u.inputs * 16
    assert torch.equal(levels, levels.round()) and levels.min() >= 0 and levels.max() <= 16
    assert len(torch.unique(u.inputs)) > 8  # not a constant image
    again, other = data.load_ood(name, "digits", seed=0), data.load_ood(name, "digits", seed=1)
    assert torch.equal(again.inputs, u.inputs) and not torch.equal(other.inputs, u.inputs)
    assert d.known_classes == tuple(range(10)) and len(d.train) + len(d.test_known) == 1797


def test_photo_crop_and_resize_differ_as_crops_and_shrunk_windows_do():
    crop, resize = (data.load_ood(n, "digits").inputs for n in ("photo_crop", "photo_resize"))
    assert not torch.equal(crop, resize)
    # an 8x8 crop of a 427x640 photo is smoother than a 64x64 window shrunk to 8x8:
    # neighbouring pixels differ less
    step = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert step(crop) < step(resize)


def test_photo_windows_by_hand():
    # the first image of photo_crop is the luma of its window, on 17 levels
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng([0, list(data.OOD_SETS).index("photo_crop")])
    photo = load_sample_images().images[rng.integers(2)].astype(np.float64)
    top, left = rng.integers(photo.shape[0] - 7), rng.integers(photo.shape[1] - 7)
    gray = photo[top:top + 8, left:left + 8] @ [0.299, 0.587, 0.114]
    expected = np.round(gray / 255 * 16) / 16
    got = data.load_ood("photo_crop", "digits").inputs[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_validation_split_is_stratified_exact_disjoint_and_seeded():
    full = load_osr("digits", 1)
    d = load_osr("digits", 1, val_fraction=0.2)
    counts = torch.bincount(full.train.targets)
    val_counts = torch.bincount(d.val.targets, minlength=len(counts))
    # floor(0.2 n_c + 1/2) of each class
    assert val_counts.tolist() == [int(np.floor(0.2 * n + 0.5)) for n in counts.tolist()]
    assert len(d.train) + len(d.val) == len(full.train)
    assert torch.equal(torch.bincount(d.train.targets) + val_counts, counts)
    # disjoint, together exactly the full training set (images are distinct rows)
    rows = lambda s: {tuple(x.flatten().tolist()) + (int(y),) for x, y in s}  # noqa: E731
    assert rows(d.train) | rows(d.val) == rows(full.train)
    assert not rows(d.train) & rows(d.val)
    # same seed, same split; other seed, other hold-out; test sets untouched
    assert torch.equal(load_osr("digits", 1, val_fraction=0.2).val.inputs, d.val.inputs)
    assert torch.equal(d.test_known.inputs, full.test_known.inputs)
    assert torch.equal(d.test_unknown.inputs, full.test_unknown.inputs)
    assert d.val.inputs.dtype == torch.float32 and d.val.targets.max() < d.num_classes
    assert full.val is None


def test_split_validation_by_hand():
    s = TensorSet(torch.arange(10.0)[:, None], torch.tensor([0] * 6 + [1] * 4))
    rest, val = data.split_validation(s, 0.25, seed=3)
    # class 0: floor(1.5 + 0.5) = 2 held out; class 1: floor(1 + 0.5) = 1
    assert torch.bincount(val.targets).tolist() == [2, 1] and len(rest) == 7
    assert sorted(rest.inputs.flatten().tolist() + val.inputs.flatten().tolist()) == \
        list(map(float, range(10)))
    assert rest.inputs.flatten().tolist() == sorted(rest.inputs.flatten().tolist())  # order kept
    assert data.split_validation(s, 0.0, seed=3) == (s, None)
    with pytest.raises(ValueError, match="holds out all 4 training samples of class 1"):
        data.split_validation(s, 0.9, seed=0)
    with pytest.raises(ValueError, match="holds out no sample"):
        data.split_validation(s, 0.05, seed=0)
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="val_fraction must be a number in"):
            data.split_validation(s, bad, seed=0)


def test_validation_split_with_protocol_b_and_image_datasets(fake_root):
    d = load_osr("cifar10", root=fake_root, verify=False, ood="imagenet_crop",
                 val_fraction=0.25)
    assert torch.bincount(d.val.targets).tolist() == [2] * 10  # floor(0.25 * 8 + 0.5) = 2
    assert len(d.train) == 60 and d.val.inputs.dtype == torch.uint8
    assert all(decode(x) == (int(y), 0) for x, y in d.val)  # train images, own labels
