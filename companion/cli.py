"""The command line, ``python -m companion <command>``: train, evaluate, sweep, merge.

Every command builds run specs (``companion.spec.RunSpec``) from the same options, then calls the
verbs of ``companion.experiments``, so what the CLI runs is exactly what a notebook or a sweep
runs. Heavy modules are imported inside the commands, so ``--help`` stays instant. User errors
(bad values, missing files) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

LABEL_HELP = ("a loss head (sce, center, ovr, movr, or intra: the intra-class term alone, an "
              "ablation), optionally with head arguments after ':' and training techniques "
              "after '+': +aug (augmentation), +wd (weight decay), +ssl (rotation "
              "self-supervision), each with the dataset preset's value unless given as "
              "+wd=5e-4; e.g. movr+aug+wd+ssl or movr:margin=0.3+wd")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_int_list(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``, ``"0,2,3"`` -> ``[0, 2, 3]``; mixed: ``"0-2,7"``."""
    values = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            values += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers as a range like 0-4 or a list like 0,2,3, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _int_at_least(low: int, what: str):
    """An argparse type for integers >= ``low``; ``what`` names them in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _labels(text: str) -> list[str]:
    from .spec import _parse_label

    labels = [part.strip() for part in text.split(",") if part.strip()]
    if not labels:
        raise argparse.ArgumentTypeError("expected at least one loss label")
    for label in labels:
        try:
            _parse_label(label)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return labels


def _label(text: str) -> list[str]:
    labels = _labels(text)
    if len(labels) != 1:
        raise argparse.ArgumentTypeError(f"expected one loss label, got {text!r} (a sweep takes "
                                         "several)")
    return labels


def _dataset(text: str) -> str:
    from .data import DATASETS

    if text not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; valid names: "
                                         f"{', '.join(DATASETS)}")
    return text


def _oods(text: str) -> list[str]:
    from .data import OOD_SETS

    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in OOD_SETS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown OOD set {(bad or [text])[0]!r}; valid names: "
                                         f"{', '.join(OOD_SETS)}")
    return names


def _ood(text: str) -> list[str]:
    names = _oods(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"expected one OOD set, got {text!r} (a sweep takes "
                                         "several)")
    return names


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


OOD_HELP = ("Protocol B: evaluate on this out-of-distribution set, every class of the dataset "
            "known (cifar10: imagenet_crop, imagenet_resize, lsun_crop, lsun_resize, ODIN's "
            "folders under the dataset folder; digits: photo_crop, photo_resize, offline)")


def _shard(text: str) -> tuple[int, int]:
    from .experiments import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --------------------------------------------------------------------------------------------------
# options shared by the commands


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="where to run (default: cuda if available, else cpu)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="dataset folder (default: $COMPANION_DATA_DIR or "
                             "~/.cache/companion/data)")
    parser.add_argument("--download", action="store_true",
                        help="download a missing dataset (mnist, svhn, cifar, tiny_imagenet) "
                             "into the dataset folder, verified by checksum")


def _add_spec_options(parser: argparse.ArgumentParser, many: bool) -> None:
    """Every field of a run spec; ``many``: lists of labels, splits and seeds (sweep)."""
    parser.add_argument("--dataset", default="digits", type=_dataset, metavar="NAME",
                        help="toy2d, digits, mnist, svhn, cifar10, cifar+10, cifar+50 or "
                             "tiny_imagenet (default: digits; toy2d and digits need no "
                             "download)")
    if many:
        parser.add_argument("--losses", type=_labels, default=["sce", "movr"], metavar="LIST",
                            help=f"comma-separated loss labels (default: sce,movr); each is "
                                 f"{LABEL_HELP}")
        parser.add_argument("--splits", type=parse_int_list, default=None,
                            metavar="SPEC", help="splits 0..4 as a range (0-4) or a list "
                                                 "(0,2,3) (default: 0-4; 0 with --ood)")
        parser.add_argument("--seeds", type=parse_int_list, default=[0], metavar="SPEC",
                            help="random seeds, same syntax (default: 0)")
        parser.add_argument("--ood", type=_oods, default=None, metavar="LIST",
                            help=f"{OOD_HELP}; a comma-separated list evaluates each model on "
                                 "every set (trained once)")
    else:
        parser.add_argument("--loss", type=_label, default=["sce"], metavar="LABEL",
                            help=f"{LABEL_HELP} (default: sce)")
        parser.add_argument("--split", type=_int_at_least(0, "split (0..4)"), default=0,
                            help="known/unknown split 0..4 (default: 0)")
        parser.add_argument("--seed", type=_non_negative_int, default=0,
                            help="random seed (default: 0)")
        parser.add_argument("--ood", type=_ood, default=None, metavar="NAME", help=OOD_HELP)
    parser.add_argument("--val-fraction", type=_fraction, default=0.0, metavar="V",
                        help="hold out this share of the known training samples (stratified, "
                             "seeded) to set rejection thresholds: adds open-set macro-F1 "
                             "(macro_f1_<score>) to the results (default: 0, none)")
    spec = parser.add_argument_group("model and training (defaults: the dataset's preset, see "
                                     "companion.presets)")
    spec.add_argument("--model", default=None, metavar="NAME",
                      help="backbone: mlp, small_cnn, classifier32, resnet18, wrn16_4")
    spec.add_argument("--image-size", type=_positive_int, default=None, metavar="PX",
                      help="resize images to PX x PX (default: 32, TinyImageNet 64)")
    spec.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                      help="SGD steps (default: 500 on digits, 1000 on toy2d, 20000 on the "
                           "paper's datasets)")
    spec.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                      help="train for N passes over the data instead of --iterations")
    spec.add_argument("--batch-size", type=_positive_int, default=None, metavar="B")
    spec.add_argument("--lr", type=float, default=None, metavar="LR",
                      help="initial learning rate (cosine schedule down to --lr-min)")
    spec.add_argument("--lr-min", type=float, default=None, metavar="LR")
    spec.add_argument("--momentum", type=float, default=None, metavar="M")
    spec.add_argument("--margin", type=float, default=None, metavar="M",
                      help="m-OvR angular margin m in radians (default 0.5)")
    spec.add_argument("--scale", type=float, default=None, metavar="T",
                      help="OvR / m-OvR scale T (default 32)")
    spec.add_argument("--margin-on", choices=["target", "all", "signed"], default=None,
                      help="which classes get the m-OvR margin (default: target)")
    spec.add_argument("--scale-warmup", type=_non_negative_int, default=None, metavar="STEPS",
                      help="OvR / m-OvR: steps over which T ramps up (default 100; 0 is the "
                           "paper's recipe exactly)")
    spec.add_argument("--center-weight", type=float, default=None, metavar="W",
                      help="center-loss weight (default 0.1)")
    spec.add_argument("--weight-decay", type=float, default=None, metavar="WD",
                      help="the weight decay +wd turns on (default: the preset's, 1e-3)")
    spec.add_argument("--ssl-weight", type=float, default=None, metavar="L",
                      help="the lambda_self +ssl turns on (default: 0.1)")
    spec.add_argument("--fast", action="store_true",
                      help="the preset's tiny schedule (tests, smoke runs)")


_HEAD_OPTIONS = ("margin", "scale", "margin_on", "scale_warmup", "center_weight")
_TRAIN_OPTIONS = ("iterations", "epochs", "batch_size", "lr", "lr_min", "momentum")
_TECHNIQUE_OPTIONS = {"weight_decay": "wd", "ssl_weight": "ssl"}


def _with_options(labels: list[str], args: argparse.Namespace) -> list[str]:
    """``labels`` with the head-argument and technique-value options written into each label
    they apply to (``--margin`` to the heads that have a margin, ``--weight-decay`` to the
    labels with ``+wd``); an option that applies to none of them is an error."""
    from .spec import head_defaults

    out = []
    used = set()
    for label in labels:
        head_part, *techniques = label.split("+")
        for name in _HEAD_OPTIONS:
            if getattr(args, name) is not None and name in head_defaults(head_part.split(":")[0]):
                head_part += f":{name}={getattr(args, name)}"
                used.add(name)
        for option, technique in _TECHNIQUE_OPTIONS.items():
            names = [t.partition("=")[0] for t in techniques]
            if getattr(args, option) is not None and technique in names:
                techniques[names.index(technique)] = f"{technique}={getattr(args, option)}"
                used.add(option)
        out.append("+".join([head_part, *techniques]))
    for name in (*_HEAD_OPTIONS, *_TECHNIQUE_OPTIONS):
        if getattr(args, name) is not None and name not in used:
            what = (f"+{_TECHNIQUE_OPTIONS[name]}" if name in _TECHNIQUE_OPTIONS
                    else f"a head with a {name} argument")
            raise ValueError(f"--{name.replace('_', '-')} applies to none of the losses "
                             f"{', '.join(labels)}: none has {what}")
    return out


def _specs(args: argparse.Namespace) -> list:
    """The run specs the options describe (one for train, a grid for sweep)."""
    from .experiments import grid

    fields = {name: getattr(args, name) for name in _TRAIN_OPTIONS
              if getattr(args, name) is not None}
    for name in ("model", "image_size"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.iterations is not None and args.epochs is not None:
        raise ValueError("give --iterations or --epochs, not both")
    labels = _with_options(args.losses if hasattr(args, "losses") else args.loss, args)
    if hasattr(args, "splits"):
        splits = args.splits if args.splits is not None else (
            [0] if args.ood else [0, 1, 2, 3, 4])
    else:
        splits = args.split
    if args.ood and splits not in ([0], 0):
        raise ValueError(f"--ood makes every class known, so there is one split: drop "
                         f"--split/--splits (got {splits})")
    seeds = args.seeds if hasattr(args, "seeds") else args.seed
    return grid(labels, datasets=args.dataset, splits=splits, seeds=seeds, oods=args.ood,
                fast=args.fast, val_fraction=args.val_fraction, **fields)


def _device(args: argparse.Namespace):
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but CUDA is not available")
    return torch.device(args.device) if args.device else None


def _print_row(row: dict) -> None:
    width = max(map(len, row))
    for key, value in row.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float)
              else f"{key:<{width}}  {value}")


# --------------------------------------------------------------------------------------------------
# commands


def _run_train(args: argparse.Namespace) -> None:
    from .experiments import save_run, train
    from .train import check_output_path

    (spec,) = _specs(args)
    part = f"ood-{spec.ood}" if spec.ood else f"split{spec.split}"
    out = args.out or f"{spec.dataset}_{spec.label}_{part}_seed{spec.seed}.pt"
    check_output_path(out)  # before minutes of training, not after
    state = f"{out}.state" if args.checkpoint_every or args.resume else None
    trained = train(spec, device=_device(args), progress=True, checkpoint=state,
                    checkpoint_every=args.checkpoint_every, resume=args.resume,
                    compile=args.compile, root=args.data_dir, download=args.download)
    save_run(trained, out)
    print(f"trained {spec.label} on {spec.dataset} split {spec.split} seed {spec.seed} "
          f"({spec.config.steps(len(trained.osr.train))} steps, spec {spec.hash}) in "
          f"{trained.train_time_s:.1f} s; saved: {out}"
          + (f"; training state: {state}" if state else ""))


def _run_evaluate(args: argparse.Namespace) -> None:
    import dataclasses

    from .experiments import evaluate, load_data, load_run

    trained = load_run(args.checkpoint, root=args.data_dir, download=args.download)
    if args.ood is not None and args.ood[0] != trained.spec.ood:
        spec = dataclasses.replace(trained.spec, ood=args.ood[0])
        if spec.training_key != trained.spec.training_key:
            raise ValueError(f"--ood needs a model trained for Protocol B (train --ood ...); "
                             f"{args.checkpoint} was trained on split {trained.spec.split}'s "
                             "known classes only")
        trained = dataclasses.replace(trained, spec=spec,
                                      osr=load_data(spec, root=args.data_dir,
                                                    download=args.download))
    _print_row({**trained.spec.row(), **evaluate(trained, device=_device(args))})


def _run_sweep(args: argparse.Namespace) -> None:
    import pandas as pd

    from .experiments import format_summary, submit, summarise, sweep

    specs = _specs(args)
    if args.launcher:
        if args.shard or args.out:
            raise ValueError("--launcher runs every shard itself into --folder; drop --shard "
                             "and --out")
        params = {"slurm_partition": args.partition, "timeout_min": args.timeout_min,
                  "gpus_per_node": args.gpus} if args.launcher == "slurm" else {}
        rows = submit(specs, shards=args.jobs, folder=args.folder, cluster=args.launcher,
                      device=args.device, **{k: v for k, v in params.items() if v is not None})
    else:
        rows = sweep(specs, out_csv=args.out, resume=not args.restart, shard=args.shard,
                     device=_device(args), root=args.data_dir, download=args.download)
    if rows.empty:
        print("no runs in this shard")
        return
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(format_summary(summarise(rows)).T.to_string())
    if args.out:
        print(f"\n{len(rows)} rows in {args.out}")


def _run_merge(args: argparse.Namespace) -> None:
    from .experiments import merge

    rows = merge(args.inputs, args.out)
    print(f"merged {len(rows)} runs from {len(args.inputs)} files into {args.out}")


# --------------------------------------------------------------------------------------------------
# the parser


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m companion`` parser, one subcommand per task."""
    parser = _Parser(
        prog="python -m companion",
        description="Companion of the book 'Understanding Open-Set Recognition by Jacobian "
                    "Norm'. Run 'python -m companion <command> --help' for a command's options.")
    commands = parser.add_subparsers(title="commands", metavar="<command>", required=True,
                                     parser_class=_Parser)

    p = commands.add_parser(
        "train", help="train one model and save it with its run spec",
        description="Train one model on the known classes of a split and save its weights "
                    "with its run spec to a checkpoint that 'evaluate' reads.")
    _add_spec_options(p, many=False)
    _add_data_options(p)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="checkpoint to write (default: <dataset>_<label>_split<s>_seed<s>.pt)")
    p.add_argument("--checkpoint-every", type=_non_negative_int, default=0, metavar="N",
                   help="save the full training state to <out>.state every N steps "
                        "(atomically), so an interrupted run can --resume (default: 0, none)")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>.state if it exists; the resumed run ends with "
                        "exactly the weights of an uninterrupted one")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.set_defaults(run=_run_train)

    p = commands.add_parser(
        "evaluate", help="print the open-set metrics of a saved model",
        description="Load a checkpoint written by 'train' (or its .state file), rebuild the "
                    "exact model and test sets from its run spec and print closed-set "
                    "accuracy, AUROC and OSCR of every score (higher = more likely known), "
                    "Jacobian norms and DBI.")
    p.add_argument("checkpoint", help="file written by 'python -m companion train'")
    p.add_argument("--ood", type=_ood, default=None, metavar="NAME",
                   help="evaluate a model trained with --ood on another OOD set (default: "
                        "the one it was trained with)")
    _add_data_options(p)
    p.set_defaults(run=_run_evaluate)

    for name in ("sweep", "benchmark"):
        p = commands.add_parser(
            name, help="train and evaluate over losses x splits x seeds; print mean ± std"
            + (" (alias of sweep)" if name == "benchmark" else ""),
            description="Protocol A: for every loss label, split and seed, train a model on "
                        "the known classes and score known vs unknown test samples. Protocol "
                        "B (--ood): every class known, unknowns from OOD sets; with "
                        "--val-fraction, open-set macro-F1 too. Prints "
                        "mean ± std over splits x seeds. With --out every finished run is "
                        "written to a CSV at once, keyed by its spec hash; the same command "
                        "again reads finished runs back, so an interrupted sweep resumes.",
            epilog="scale-out: run N copies with --shard 0/N ... --shard N-1/N (e.g. a SLURM "
                   "array: --shard $SLURM_ARRAY_TASK_ID/N --out shard$SLURM_ARRAY_TASK_ID.csv), "
                   "then 'merge'; or let --launcher slurm submit them through submitit.")
        _add_spec_options(p, many=True)
        _add_data_options(p)
        p.add_argument("--out", default=None, metavar="CSV",
                       help="results file, one row per run (default: none)")
        p.add_argument("--restart", action="store_true",
                       help="recompute every run and start --out afresh instead of resuming")
        p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                       help="run only shard I of N (0 <= I < N) of the runs")
        cluster = p.add_argument_group("submitit launcher (pip install 'companion[cluster]')")
        cluster.add_argument("--launcher", choices=["slurm", "local"], default=None,
                             help="submit the sweep as --jobs jobs and merge their results")
        cluster.add_argument("--jobs", type=_positive_int, default=4, metavar="N")
        cluster.add_argument("--folder", default="sweep", metavar="DIR",
                             help="shard results, logs and results.csv (default: sweep/)")
        cluster.add_argument("--partition", default=None, help="SLURM partition")
        cluster.add_argument("--timeout-min", type=_positive_int, default=None, metavar="MIN")
        cluster.add_argument("--gpus", type=_non_negative_int, default=None, metavar="G",
                             help="GPUs per job")
        p.set_defaults(run=_run_sweep)

    p = commands.add_parser("merge", help="join the results files of a sharded sweep",
                            description="Join results files (one row per spec hash, the first "
                                        "seen kept) into one, atomically.")
    p.add_argument("inputs", nargs="+", metavar="CSV")
    p.add_argument("--out", required=True, metavar="CSV")
    p.set_defaults(run=_run_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command; user errors print
    one line and exit with status 2, a diverged training run with status 1."""
    from .train import CheckpointError, TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except (ValueError, FileNotFoundError, PermissionError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
