"""The run spec: one frozen value that says everything that changes a run's result.

A ``RunSpec`` holds the dataset, split (or a custom list of known classes), seed, backbone, head
and the head's arguments, the image size and the ``TrainConfig``. Whatever is not given comes
from ``companion.presets`` once, when the spec is made, so a spec is always complete: two specs
that train the same way are equal, have the same ``label`` and the same ``hash``.

Labels
------
A label names the head, its non-default arguments and the techniques switched on::

    movr                      m-OvR with its defaults (T = 32, m = 0.5)
    movr+aug+wd+ssl           ... plus the preset's augmentation, weight decay and lambda_self
    movr:margin=0.3:scale=16  head arguments after ':' (see companion.losses)
    sce+wd=5e-4               a technique with a value other than the preset's

``RunSpec.parse(label, dataset=..., ...)`` reads a label exactly once; ``spec.label`` writes the
canonical form back (head arguments sorted, defaults left out, techniques in the order aug, wd,
ssl), so ``RunSpec.parse(spec.label, ...) == spec`` for the same other fields.

Identity
--------
``spec.hash`` (12 hex digits of a SHA-256 over every field) is the key a sweep resumes by and is
written in every result row; ``spec.as_dict()`` is stored in checkpoints and ``RunSpec.from_dict``
rebuilds the spec from it, so a saved model is rebuilt exactly as it was trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .losses import HEADS
from .models import MODELS
from .presets import preset, scaled
from .train import AUGMENTATIONS, TrainConfig, _is_int

TECHNIQUES = ("aug", "wd", "ssl")
_HEAD_ARGS_SKIPPED = ("self", "embed_dim", "num_classes")


def head_defaults(head: str) -> dict[str, Any]:
    """The keyword arguments of loss head ``head`` and their defaults, e.g. ``{"scale": 32.0,
    "scale_warmup": 100, "margin": 0.5, "margin_on": "target"}`` for ``"movr"``."""
    if head not in HEADS:
        raise ValueError(f"unknown loss {head!r}; valid losses: {', '.join(sorted(HEADS))}")
    params = inspect.signature(HEADS[head].__init__).parameters
    return {name: p.default for name, p in params.items() if name not in _HEAD_ARGS_SKIPPED}


def _normalise_value(value: Any) -> float | str:
    if isinstance(value, bool):
        raise ValueError(f"head arguments are numbers or names, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"head arguments are numbers or names, got {value!r}")


def _parse_value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _format_value(value: float | str) -> str:
    return format(value, "g") if isinstance(value, float) else value


@dataclass(frozen=True)
class RunSpec:
    """Everything that changes the result of one run (see the module docstring).

    Fields left at ``None`` are filled from the dataset's preset when the spec is made: ``model``,
    ``image_size`` (real image datasets only) and ``config`` (the preset's schedule for that
    model, no technique). ``head_kwargs`` may be given as a dict; it is stored complete (every
    argument of the head, defaults included) as sorted ``(name, value)`` pairs. ``known``: a
    custom list of known class ids instead of a standard split; ``split`` is then -1.

    ``ood`` (Protocol B): an out-of-distribution set of ``companion.data.OOD_SETS`` that goes
    with the dataset; every class is then known and ``split`` stays 0. ``val_fraction`` (in
    [0, 1)): the share of the known training samples held out for validation (rejection
    thresholds, open-set macro-F1). At their defaults (``None``, 0) neither enters ``as_dict``
    or ``hash``, so specs made before they existed keep their hashes.
    """

    dataset: str = "digits"
    head: str = "sce"
    split: int = 0
    seed: int = 0
    model: str | None = None
    head_kwargs: Any = ()
    known: tuple[int, ...] | None = None
    image_size: int | None = None
    config: TrainConfig | None = None
    ood: str | None = None
    val_fraction: float = 0.0

    def __post_init__(self):
        p = preset(self.dataset)  # checks the dataset name
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        defaults = head_defaults(self.head)  # checks the head name
        given = dict(self.head_kwargs)
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"loss {self.head!r} has no argument {unknown[0]!r}; its arguments: "
                             f"{', '.join(defaults) or 'none'}")
        set_("head_kwargs", tuple(sorted(
            (k, _normalise_value(given.get(k, v))) for k, v in defaults.items())))
        HEADS[self.head](2, 2, **dict(self.head_kwargs))  # the head checks its own arguments
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.known is not None:
            if self.split not in (0, -1):
                raise ValueError(f"give a split or known classes, not both (split={self.split}, "
                                 f"known={self.known})")
            set_("known", tuple(int(k) for k in self.known))
            set_("split", -1)
        elif not _is_int(self.split) or not 0 <= self.split <= 4:
            raise ValueError(f"split must be an integer in 0..4, got {self.split!r}")
        set_("model", self.model or p.model)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid names: "
                             f"{', '.join(sorted(MODELS))}")
        if p.image_size is None and self.image_size is not None:
            raise ValueError(f"{self.dataset} has a fixed input size; image_size must be None, "
                             f"got {self.image_size!r}")
        set_("image_size", self.image_size or p.image_size)
        if self.image_size is not None and (not _is_int(self.image_size) or self.image_size < 8):
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        if self.config is None:
            set_("config", p.schedule(self.model))
        elif not isinstance(self.config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        if self.ood is not None:
            from .data import _check_ood  # checks the name against the dataset
            _check_ood(self.dataset, self.ood)
            if self.split != 0:
                raise ValueError(f"ood={self.ood!r} makes every class of {self.dataset} known: "
                                 f"leave split at 0 and known unset (got split={self.split}"
                                 + (f", known={list(self.known)})" if self.known else ")"))
        from .data import _check_fraction
        set_("val_fraction", _check_fraction(self.val_fraction))

    # -- labels ------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, label: str, *, fast: bool = False, **fields) -> RunSpec:
        """A spec from a label (``"movr+aug+wd"``, see the module docstring) and other fields.

        ``fields`` are ``RunSpec`` fields (``dataset``, ``split``, ``seed``, ``model``,
        ``known``, ``image_size``, ``config``, ``ood``, ``val_fraction``) or ``TrainConfig``
        fields (``iterations``, ``lr``, ...), which change the preset's schedule. ``fast=True`` starts from the preset's
        fast schedule instead (tests, CI). The label's techniques are applied last.
        """
        head, head_kwargs, techniques = _parse_label(label)
        if "head_kwargs" in fields:
            raise ValueError("give head arguments in the label, e.g. 'movr:margin=0.3'")
        config_fields = {k: fields.pop(k) for k in list(fields)
                         if k in {f.name for f in dataclasses.fields(TrainConfig)}}
        spec = cls(head=head, head_kwargs=head_kwargs, **fields)
        config = fields.get("config") or preset(spec.dataset).schedule(spec.model, fast=fast)
        if config_fields:
            config = scaled(config, **config_fields)
        p = preset(spec.dataset)
        technique_fields = {"aug": ("augment", p.augment), "wd": ("weight_decay", p.weight_decay),
                            "ssl": ("ssl_weight", p.ssl_weight)}
        changes = {}
        for name, value in techniques.items():
            field, default = technique_fields[name]
            changes[field] = default if value is None else value
        if changes.get("augment") == "none" and "aug" in techniques:
            raise ValueError(f"+aug: {spec.dataset} has no augmentation (its inputs are not images)")
        return dataclasses.replace(spec, config=dataclasses.replace(config, **changes))

    @property
    def label(self) -> str:
        """The canonical label: head, non-default head arguments, techniques switched on."""
        defaults = head_defaults(self.head)
        parts = [self.head] + [f"{k}={_format_value(v)}" for k, v in self.head_kwargs
                               if v != _normalise_value(defaults[k])]
        text = ":".join(parts)
        p, c = preset(self.dataset), self.config
        for name, value, default, off in (("aug", c.augment, p.augment, "none"),
                                          ("wd", c.weight_decay, p.weight_decay, 0.0),
                                          ("ssl", c.ssl_weight, p.ssl_weight, 0.0)):
            if value != off:
                text += f"+{name}" if value == default else f"+{name}={_format_value(value)}"
        return text

    # -- identity ----------------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """The spec as JSON-able primitives (nested ``config``), for checkpoints. ``ood`` and
        ``val_fraction`` appear only when set (so older specs keep their dicts and hashes)."""
        d = {"dataset": self.dataset, "split": self.split, "seed": self.seed,
             "model": self.model, "head": self.head, "head_kwargs": dict(self.head_kwargs),
             "known": list(self.known) if self.known is not None else None,
             "image_size": self.image_size, "config": dataclasses.asdict(self.config)}
        if self.ood is not None:
            d["ood"] = self.ood
        if self.val_fraction != 0.0:
            d["val_fraction"] = self.val_fraction
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> RunSpec:
        """The inverse of ``as_dict``; ``ValueError`` if ``d`` is not a spec's dict."""
        try:
            d = dict(d)
            config = TrainConfig(**d.pop("config"))
            return cls(**d, config=config)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a run spec: {e}") from None

    @property
    def hash(self) -> str:
        """12 hex digits identifying the spec: equal for equal specs, different otherwise."""
        return _digest(self.as_dict())

    @property
    def training_key(self) -> str:
        """12 hex digits identifying the trained model: specs that differ only in which OOD set
        they are evaluated on (``ood``) share it, since training never sees the OOD set. For a
        spec without ``ood`` it is ``hash``."""
        if self.ood is None:
            return self.hash
        return _digest({**self.as_dict(), "ood": "*"})

    def row(self) -> dict:
        """The spec as the first columns of a result row (flat: str, int, float or "")."""
        c = dataclasses.asdict(self.config)
        return {"spec": self.hash, "label": self.label, "dataset": self.dataset,
                "split": self.split, "seed": self.seed,
                "known": ",".join(map(str, self.known)) if self.known is not None else "",
                "model": self.model, "head": self.head,
                "head_kwargs": json.dumps(dict(self.head_kwargs), sort_keys=True),
                "image_size": self.image_size or "",
                "ood": self.ood or "", "val_fraction": self.val_fraction,
                **{k: ("" if v is None else v) for k, v in c.items()}}

    def replace(self, **changes) -> RunSpec:
        """A copy with some fields changed; ``TrainConfig`` fields (``iterations=...``) change
        the config. The head's arguments and techniques are changed through a new label."""
        config_names = {f.name for f in dataclasses.fields(TrainConfig)}
        config_changes = {k: changes.pop(k) for k in list(changes) if k in config_names}
        spec = dataclasses.replace(self, **changes)
        if config_changes:
            spec = dataclasses.replace(spec, config=scaled(spec.config, **config_changes))
        return spec


def _digest(d: dict) -> str:
    text = json.dumps(d, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _parse_label(label: str) -> tuple[str, dict, dict]:
    """``"movr:margin=0.3+aug+wd=5e-4"`` -> ``("movr", {"margin": 0.3}, {"aug": None,
    "wd": 0.0005})``, with every name checked."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"a loss label is a head name with optional techniques, got {label!r}")
    head_part, *technique_parts = label.strip().split("+")
    head, *arg_parts = head_part.split(":")
    defaults = head_defaults(head)
    head_kwargs = {}
    for part in arg_parts:
        name, sep, value = part.partition("=")
        if not sep or name not in defaults:
            raise ValueError(f"bad head argument {part!r} in {label!r}; write name=value with a "
                             f"name of {', '.join(defaults) or '(none: ' + head + ' has none)'}")
        head_kwargs[name] = _parse_value(value)
    techniques: dict[str, Any] = {}
    for part in technique_parts:
        name, sep, value = part.partition("=")
        if name not in TECHNIQUES:
            raise ValueError(f"unknown technique {name!r} in {label!r}; valid techniques: "
                             f"{', '.join(TECHNIQUES)} (e.g. movr+aug+wd+ssl)")
        if name in techniques:
            raise ValueError(f"technique {name!r} appears twice in {label!r}")
        if not sep:
            techniques[name] = None
        elif name == "aug":
            if value not in AUGMENTATIONS:
                raise ValueError(f"+aug={value}: valid augmentations: {', '.join(AUGMENTATIONS)}")
            techniques[name] = value
        else:
            number = _parse_value(value)
            if not isinstance(number, float) or not math.isfinite(number) or number < 0:
                raise ValueError(f"+{name}={value}: expected a finite number >= 0")
            techniques[name] = number
    return head, head_kwargs, techniques
