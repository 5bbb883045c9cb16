"""Run specs and presets: labels parsed once and written back, defaults from one place, hashes
that change exactly when a result can."""

import dataclasses
import math

import pytest

from companion import presets
from companion.presets import preset, scaled
from companion.spec import RunSpec, head_defaults
from companion.train import TrainConfig


def test_a_label_is_parsed_once_and_written_back_canonically():
    spec = RunSpec.parse("movr+ssl+aug+wd", dataset="digits")
    c = spec.config
    assert (spec.head, c.augment, c.weight_decay, c.ssl_weight) == ("movr", "crop", 1e-3, 0.1)
    assert spec.label == "movr+aug+wd+ssl"  # canonical order
    assert RunSpec.parse(spec.label, dataset="digits") == spec
    assert RunSpec.parse("sce", dataset="digits").label == "sce"
    assert RunSpec.parse("sce", dataset="digits").config.weight_decay == 0.0


@pytest.mark.parametrize("label, canonical", [
    ("movr:margin=0.5", "movr"),  # a default is left out
    ("movr:scale=16:margin=0.3", "movr:margin=0.3:scale=16"),  # sorted
    ("movr:margin_on=signed+wd=5e-4", "movr:margin_on=signed+wd=0.0005"),
    ("sce+wd=0.001", "sce+wd"),  # the preset's value is written plainly
    ("center:center_weight=1+ssl=0.5", "center:center_weight=1+ssl=0.5"),
    ("ovr+aug=crop_flip", "ovr+aug=crop_flip"),  # digits' own augmentation is crop
])
def test_labels_round_trip(label, canonical):
    spec = RunSpec.parse(label, dataset="digits")
    assert spec.label == canonical
    assert RunSpec.parse(canonical, dataset="digits") == spec


@pytest.mark.parametrize("label, message", [
    ("arpl", "unknown loss 'arpl'; valid losses: center, intra, movr, ovr, sce"),
    ("sce+mixup", "unknown technique 'mixup'.*aug, wd, ssl"),
    ("movr:mrgin=0.3", "bad head argument 'mrgin=0.3'"),
    ("sce:margin=0.3", "bad head argument 'margin=0.3'"),
    ("movr:margin=2", r"margin must be in \[0, pi/2\)"),
    ("movr+wd+wd", "technique 'wd' appears twice"),
    ("movr+wd=-1", r"\+wd=-1: expected a finite number >= 0"),
    ("movr+aug=blur", r"\+aug=blur: valid augmentations"),
    ("", "a loss label is a head name"),
])
def test_bad_labels_name_the_problem(label, message):
    with pytest.raises(ValueError, match=message):
        RunSpec.parse(label, dataset="digits")


def test_toy2d_has_no_augmentation():
    with pytest.raises(ValueError, match=r"\+aug: toy2d has no augmentation"):
        RunSpec.parse("sce+aug", dataset="toy2d")


def test_defaults_come_from_the_preset():
    digits = RunSpec.parse("sce", dataset="digits")
    assert (digits.model, digits.image_size, digits.config) == \
        ("small_cnn", None, preset("digits").config)
    cifar = RunSpec.parse("movr", dataset="cifar10")
    assert (cifar.model, cifar.image_size) == ("classifier32", 32)
    assert (cifar.config.iterations, cifar.config.batch_size, cifar.config.lr,
            cifar.config.lr_min) == (20_000, 128, 0.1, 1e-5)
    assert RunSpec.parse("sce", dataset="tiny_imagenet").image_size == 64
    resnet = RunSpec.parse("sce", dataset="cifar10", model="resnet18").config
    assert (resnet.iterations, resnet.epochs, resnet.lr, resnet.lr_min) == (None, 200, 0.06, 0.0)
    assert resnet.steps(30_000) == 200 * (30_000 // 128)
    # fast mode is the caller's choice, never the library's
    assert RunSpec.parse("sce", dataset="digits", fast=True).config == preset("digits").fast
    assert RunSpec.parse("sce", dataset="cifar10", fast=True).config.iterations == 4
    # techniques default to off
    assert TrainConfig().weight_decay == 0 and TrainConfig().augment == "none"
    assert TrainConfig().ssl_weight == 0


def test_config_fields_change_the_schedule():
    spec = RunSpec.parse("movr+wd", dataset="digits", iterations=123, lr=0.01)
    assert (spec.config.iterations, spec.config.lr, spec.config.weight_decay) == (123, 0.01, 1e-3)
    assert spec.replace(iterations=7).config.iterations == 7
    assert spec.replace(epochs=2).config.iterations is None
    assert spec.replace(seed=3).seed == 3 and spec.replace(seed=3).config == spec.config
    assert scaled(presets.schedule("resnet18"), iterations=10).epochs is None


def test_head_arguments_are_stored_complete():
    spec = RunSpec(dataset="digits", head="movr", head_kwargs={"margin": 0.3})
    assert dict(spec.head_kwargs) == {"margin": 0.3, "margin_on": "target", "scale": 32.0,
                                      "scale_warmup": 100.0}
    assert head_defaults("sce") == {}
    with pytest.raises(ValueError, match="loss 'movr' has no argument 'margn'"):
        RunSpec(head="movr", head_kwargs={"margn": 1})


def test_hash_changes_exactly_when_a_result_can():
    base = RunSpec.parse("movr", dataset="digits")
    assert len(base.hash) == 12 and base.hash == RunSpec.parse("movr:margin=0.5",
                                                               dataset="digits").hash
    variants = [base.replace(iterations=300), base.replace(seed=1), base.replace(split=1),
                base.replace(lr=0.01), base.replace(model="classifier32"),
                RunSpec.parse("movr:margin=0.3", dataset="digits"),
                RunSpec.parse("movr+wd", dataset="digits"),
                RunSpec.parse("movr+wd=5e-4", dataset="digits"),
                RunSpec.parse("movr", dataset="toy2d"),
                RunSpec.parse("movr", dataset="digits", known=[1, 2])]
    hashes = {v.hash for v in variants} | {base.hash}
    assert len(hashes) == len(variants) + 1


def test_as_dict_round_trips_and_rows_are_flat():
    spec = RunSpec.parse("movr:margin=0.3+aug+wd", dataset="digits", seed=2, split=3)
    assert RunSpec.from_dict(spec.as_dict()) == spec
    row = spec.row()
    assert row["spec"] == spec.hash and row["label"] == spec.label and row["split"] == 3
    assert all(isinstance(v, (str, int, float)) for v in row.values())
    with pytest.raises(ValueError, match="not a run spec"):
        RunSpec.from_dict({"dataset": "digits"})


def test_custom_known_classes():
    spec = RunSpec.parse("sce", dataset="digits", known=[3, 1])
    assert spec.known == (3, 1) and spec.split == -1
    with pytest.raises(ValueError, match="give a split or known classes, not both"):
        RunSpec.parse("sce", dataset="digits", split=2, known=[1])


@pytest.mark.parametrize("fields, message", [
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; valid names: toy2d, digits"),
    ({"split": 7}, r"split must be an integer in 0..4, got 7"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"model": "vit"}, "unknown model 'vit'"),
    ({"image_size": 64}, "digits has a fixed input size"),
    ({"config": {"iterations": 3}}, "config must be a TrainConfig"),
])
def test_bad_fields_name_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        RunSpec(**fields)


def test_every_dataset_has_a_preset_with_the_papers_techniques():
    from companion.data import DATASETS

    for name in DATASETS:
        p = preset(name)
        assert p.fast.iterations < (p.config.iterations or math.inf)
        assert (p.weight_decay, p.ssl_weight) == (1e-3, 0.1)
    # digits are never mirrored; natural images are
    assert preset("mnist").augment == preset("svhn").augment == preset("digits").augment == "crop"
    assert preset("cifar10").augment == "crop_flip"
    vgg = presets.schedule("classifier32")
    assert (vgg.iterations, vgg.batch_size, vgg.lr, vgg.lr_min, vgg.momentum) == \
        (20_000, 128, 0.1, 1e-5, 0.9)
    assert presets.schedule("wrn16_4") == vgg
    with pytest.raises(ValueError, match="no paper schedule for model 'mlp'"):
        presets.schedule("mlp")
    assert dataclasses.replace(vgg).weight_decay == 0  # no technique in a schedule


# --------------------------------------------------------------------------------------------------
# Protocol B: ood and val_fraction


def test_old_specs_keep_their_hash():
    # results/digits_protocol_a.csv's first row, made before ood / val_fraction existed
    spec = RunSpec.parse("sce", dataset="digits", split=0, seed=0)
    assert spec.hash == "0a89550403cb"
    assert "ood" not in spec.as_dict() and "val_fraction" not in spec.as_dict()
    assert spec.training_key == spec.hash
    row = spec.row()
    assert (row["ood"], row["val_fraction"]) == ("", 0.0)


def test_ood_and_val_fraction_change_the_hash_and_round_trip():
    base = RunSpec.parse("movr", dataset="digits")
    variants = [base.replace(ood="photo_crop"), base.replace(ood="photo_resize"),
                base.replace(val_fraction=0.1), base.replace(val_fraction=0.2),
                base.replace(ood="photo_crop", val_fraction=0.1)]
    assert len({v.hash for v in variants} | {base.hash}) == len(variants) + 1
    for v in variants:
        assert RunSpec.from_dict(v.as_dict()) == v
        assert RunSpec.parse(v.label, dataset="digits", ood=v.ood,
                             val_fraction=v.val_fraction) == v
    b = variants[-1]
    assert b.row()["ood"] == "photo_crop" and b.row()["val_fraction"] == 0.1
    assert b.as_dict()["ood"] == "photo_crop" and b.as_dict()["val_fraction"] == 0.1
    assert RunSpec(val_fraction=1 / 10).val_fraction == 0.1 and \
        isinstance(RunSpec(val_fraction=0).val_fraction, float)


def test_training_key_ignores_only_the_ood_set():
    a = RunSpec.parse("sce", dataset="digits", ood="photo_crop", val_fraction=0.1)
    b = a.replace(ood="photo_resize")
    assert a.hash != b.hash and a.training_key == b.training_key
    # trained on other data or otherwise: another model
    for other in (a.replace(val_fraction=0.2), a.replace(seed=1), a.replace(ood=None),
                  a.replace(iterations=7)):
        assert other.training_key != a.training_key


@pytest.mark.parametrize("fields, message", [
    ({"ood": "lsun_crop"}, "valid for digits: photo_crop, photo_resize"),
    ({"ood": "photo_crop", "split": 2}, "leave split at 0 and known unset"),
    ({"ood": "photo_crop", "known": (1, 2)}, "leave split at 0 and known unset"),
    ({"val_fraction": 1.0}, r"val_fraction must be a number in \[0, 1\), got 1.0"),
    ({"val_fraction": -0.1}, r"val_fraction must be a number in \[0, 1\)"),
    ({"val_fraction": "0.1"}, r"val_fraction must be a number in \[0, 1\)"),
])
def test_bad_protocol_b_fields_name_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        RunSpec(dataset="digits", **fields)
